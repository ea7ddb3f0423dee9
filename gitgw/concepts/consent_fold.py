"""Folding the consent ledger: entries in memory, each subject's timeline, and the
derived index a process start loads them from.

The rules (see `gitgw.concepts.consent` and docs/concepts/consent.md): a subject's
entries are taken in order of id, a revocation after a grant on an equal id, then by
digest; a revocation always takes effect; a grant takes effect unless the entry in force
is a revocation that is not in the grant's `supersedes` chain.
"""

from __future__ import annotations

import gc
import itertools
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from gitgw._canonical import format_time
from gitgw.concepts.index import Index, IndexSpec
from gitgw.errors import InvalidRecord
from gitgw.records import ConsentEntry, parse_file
from gitgw.state import StateRepo

__all__ = [
    "CONSENT_INDEX",
    "Entry",
    "Folded",
    "Timeline",
    "fold",
    "fold_subject",
    "load_index",
    "read_entry",
    "ulid_millis",
]

_TO_BASE32 = str.maketrans("0123456789ABCDEFGHJKMNPQRSTVWXYZ", "0123456789abcdefghijklmnopqrstuv")


def ulid_millis(ulid: str) -> int:
    """The milliseconds since the epoch that a ULID's first ten characters encode."""
    return int(ulid[:10].translate(_TO_BASE32), 32)


class Entry(NamedTuple):
    """One consent entry as the ledger holds it in memory (a tuple: cheap to make)."""

    id: str
    action: str  # "grant" or "revoke"
    subject: str
    level: str | None
    actor: str
    created_at: str  # the record's `created`, as written (ISO 8601, UTC)
    digest: str
    path: str
    purpose: str | None
    reason: str | None
    supersedes: str | None
    millis: int  # the time in the id, in milliseconds: the ledger's timeline

    @property
    def created(self) -> datetime:
        """When the entry was written."""
        return datetime.fromisoformat(self.created_at)

    @property
    def key(self) -> tuple[str, int, str]:
        """The fold order: id, then a revocation after a grant, then digest."""
        return self.id, 0 if self.action == "grant" else 1, self.digest

    @classmethod
    def of(cls, record: ConsentEntry, path: str) -> Entry:
        """The in-memory form of a checked record."""
        return cls(
            record.id,
            record.action,
            record.subject,
            record.level,
            record.actor,
            format_time(record.created),
            record.digest or "",
            path,
            record.purpose,
            record.reason,
            record.supersedes,
            ulid_millis(record.id),
        )

    def describe(self) -> str:
        """E.g. `grant 01M5… up to internal by alice at 2026-10-27 16:40 UTC`."""
        if self.action == "grant":
            what = f"grant {self.id} up to {self.level}"
        else:
            what = f"revocation {self.id}"
        when = self.created_at[:16].replace("T", " ")
        return f"{what} by {self.actor} at {when} UTC"


@dataclass(frozen=True)
class Timeline:
    """One subject folded: after each of its entries (in fold order), the entry in force."""

    ids: list[str]
    millis: list[int]  # the time of each id, for "what was in force at that moment"
    decisive: list[Entry | None]
    fate: dict[str, str]  # entry id -> the entry that ended it
    ignored: dict[str, str]  # grant id -> the revocation it did not see

    @property
    def current(self) -> Entry | None:
        """The entry in force now."""
        return self.decisive[-1] if self.decisive else None


def _saw(grant: Entry, revocation: str, by_id: dict[str, Entry]) -> bool:
    seen: set[str] = set()
    step = grant.supersedes
    while step is not None and step not in seen:
        if step == revocation:
            return True
        seen.add(step)
        earlier = by_id.get(step)
        step = earlier.supersedes if earlier is not None else None
    return False


def fold_subject(
    entries: list[Entry], ordered: bool = False, by_id: dict[str, Entry] | None = None
) -> Timeline:
    """Fold one subject's entries (sorted into fold order first unless `ordered`);
    `by_id` may hold every entry of the ledger, to follow `supersedes` chains."""
    if not ordered:
        entries.sort(key=lambda e: (e.id, e.action == "revoke", e.digest))
    if by_id is None:
        by_id = {e.id: e for e in entries}
    ids = [e.id for e in entries]
    decisive: list[Entry | None] = []
    fate: dict[str, str] = {}
    ignored: dict[str, str] = {}
    current: Entry | None = None
    for entry in entries:
        if (
            current is not None
            and current.action == "revoke"
            and entry.action == "grant"
            and not _saw(entry, current.id, by_id)
        ):
            ignored[entry.id] = current.id
        else:
            if current is not None:
                fate[current.id] = entry.id
            current = entry
        decisive.append(current)
    return Timeline(ids, [e.millis for e in entries], decisive, fate, ignored)


@dataclass
class Folded:
    """The whole ledger folded: every entry, and every subject's timeline."""

    entries: dict[str, Entry] = field(default_factory=dict)  # by id
    subjects: dict[str, Timeline] = field(default_factory=dict)
    damaged: dict[str, str] = field(default_factory=dict)  # path -> reason


def fold(
    entries: Iterable[Entry], damaged: dict[str, str] | None = None, ordered: bool = False
) -> Folded:
    """Fold `entries` into every subject's timeline. `ordered` says they already come
    grouped by subject and in fold order (as the index gives them)."""
    entries = list(entries)
    by_id = {e.id: e for e in entries}
    folded = Folded(entries=by_id, damaged=dict(damaged or {}))
    if ordered:
        groups = itertools.groupby(entries, key=lambda e: e.subject)
        folded.subjects = {s: fold_subject(list(g), True, by_id) for s, g in groups}
    else:
        by_subject: dict[str, list[Entry]] = {}
        for entry in entries:
            by_subject.setdefault(entry.subject, []).append(entry)
        folded.subjects = {s: fold_subject(g, False, by_id) for s, g in by_subject.items()}
    return folded


def read_entry(path: str, data: bytes) -> Entry | str:
    """The entry in a consent file, or why it cannot be read."""
    try:
        [record] = parse_file(path, data).records
    except InvalidRecord as exc:
        return exc.reason
    assert isinstance(record, ConsentEntry)
    return Entry.of(record, path)


# -- the derived index: one row per consent file, so a process start reads no files --------

_COLUMNS = (
    "id, action, subject, level, actor, created, digest, path, purpose, reason, supersedes, millis"
)


def _apply(db: sqlite3.Connection, path: str, data: bytes | None) -> None:
    db.execute("DELETE FROM entries WHERE path = ?", (path,))
    db.execute("DELETE FROM problems WHERE path = ?", (path,))
    if data is None:
        return
    entry = read_entry(path, data)
    if isinstance(entry, str):
        db.execute("INSERT INTO problems VALUES (?, ?)", (path, entry))
        return
    db.execute(
        f"INSERT OR REPLACE INTO entries ({_COLUMNS}, revoke) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (*entry, int(entry.action == "revoke")),
    )


# Rows are stored in fold order (the primary key), so loading them needs no sort.
CONSENT_INDEX = IndexSpec(
    name="consent",
    version=4,
    schema="""
        CREATE TABLE entries (id TEXT NOT NULL, action TEXT, subject TEXT NOT NULL,
            level TEXT, actor TEXT, created TEXT, digest TEXT NOT NULL, path TEXT NOT NULL,
            purpose TEXT, reason TEXT, supersedes TEXT, millis INTEGER,
            revoke INTEGER NOT NULL,
            PRIMARY KEY (subject, id, revoke, digest)) WITHOUT ROWID;
        CREATE UNIQUE INDEX entries_path ON entries (path);
        CREATE TABLE problems (path TEXT PRIMARY KEY, reason TEXT);
    """,
    prefixes=("consent",),
    apply=_apply,
)


def load_index(repo: StateRepo) -> tuple[str | None, Folded]:
    """The folded ledger at the head the index reflects (brought up to date first)."""
    with Index(repo, CONSENT_INDEX).connect() as db:
        head = db.execute("SELECT value FROM gitgw_meta WHERE key = 'commit'").fetchone()[0]
        damaged = dict(db.execute("SELECT path, reason FROM problems").fetchall())
        # Hundreds of thousands of new tuples would set off the cyclic garbage collector
        # over and over; none of them can form a cycle, so let it rest meanwhile.
        collecting = gc.isenabled()
        gc.disable()
        try:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM entries ORDER BY subject, id, revoke, digest"
            ).fetchall()
            folded = fold(map(Entry._make, rows), damaged, ordered=True)
        finally:
            if collecting:
                gc.enable()
    return head or None, folded
