"""Shared memory: notes agents and people leave each other, and forgetting them.

A note is `memory/<id>.md` (front matter, then markdown). Notes are the one kind of
record that is edited in place; an edit of the same note on two machines makes `sync`
keep both versions (the other under `conflicts/`) and say so. Forgetting a note writes
an add-only tombstone (`memory/tombstones/<id>.yaml`) and removes the note's file in the
same commit: the note leaves search and `show` on every machine once the tombstone has
synced, and the branch's history still holds every version.

Search is ranked keyword search (SQLite FTS5, BM25; titles weigh most, then tags, then
bodies) over an index under `.git/gitgw/`, filtered by the trust level the caller may see.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

from gitgw._clock import is_ulid
from gitgw.concepts._quick import fields, text_of
from gitgw.concepts.checks import check_file, is_add_only
from gitgw.concepts.identity import allowed, clearance, require_clearance
from gitgw.concepts.index import Index, IndexSpec
from gitgw.concepts.secrets import SecretFound
from gitgw.concepts.store import Store
from gitgw.errors import Contention, GitgwError
from gitgw.records import (
    LEVELS,
    Conflict,
    Level,
    MemoryNote,
    MemoryTombstone,
    kind_named,
    kind_of,
    parse_file,
    render,
)
from gitgw.state import StateRepo

__all__ = [
    "Hit",
    "NoteError",
    "NoteView",
    "add",
    "edit",
    "find",
    "forget",
    "search",
]

_EDIT_ATTEMPTS = 50  # a busy proxy commits twice a second; an edit's window is milliseconds


class NoteError(GitgwError):
    """A note that does not exist, was forgotten, or a search that cannot run."""


@dataclass(frozen=True)
class NoteView:
    """A note, its body, and the versions of it a sync set aside."""

    note: MemoryNote
    body: str
    path: str
    conflicts: list[Conflict] = field(default_factory=list)


def note_path(note_id: str) -> str:
    """Where the note `note_id` lives."""
    return kind_named("memory").path(id=note_id)


def _tombstone(repo: StateRepo, note_id: str) -> MemoryTombstone | None:
    with Index(repo, SPEC).connect() as db:
        row = db.execute("SELECT path FROM tombstones WHERE note = ?", (note_id,)).fetchone()
    data = repo.read(row[0]) if row else None
    if data is None:
        return None
    record = parse_file(row[0], data).records[0]
    assert isinstance(record, MemoryTombstone)
    return record


def find(store: Store, note_id: str) -> NoteView:
    """The note `note_id`; a clear error if it does not exist or was forgotten."""
    repo = store.repo
    tombstone = _tombstone(repo, note_id) if is_ulid(note_id) else None
    if tombstone is not None:
        why = f" ({tombstone.reason})" if tombstone.reason else ""
        raise NoteError(
            f"memory note {note_id} was forgotten by {tombstone.actor} "
            f"(tombstone {tombstone.id}){why}",
            f"the branch's history keeps it: git log -p {repo.branch} -- {note_path(note_id)}",
        )
    data = repo.read(note_path(note_id)) if is_ulid(note_id) else None
    if data is None:
        raise NoteError(
            f"no memory note {note_id} on the state branch",
            "find notes with `gitgw memory search WORDS` (after `gitgw sync`, if it was "
            "written elsewhere)",
        )
    parsed = parse_file(note_path(note_id), data)
    note = parsed.records[0]
    assert isinstance(note, MemoryNote)
    return NoteView(note, parsed.body or "", note_path(note_id), _conflicts(repo, note_id))


def _conflicts(repo: StateRepo, note_id: str) -> list[Conflict]:
    found = []
    target = note_path(note_id)
    for path, blob in repo.walk("conflicts"):
        if path.endswith("/conflict.yaml"):
            record = parse_file(path, repo.blob(blob)).records[0]
            if isinstance(record, Conflict) and record.path == target:
                found.append(record)
    return found


def show(store: Store, note_id: str) -> NoteView:
    """The note `note_id`, if the caller's clearance lets them see it."""
    view = find(store, note_id)
    require_clearance(view.note.trust, f"memory note {note_id}")
    return view


def _write(
    store: Store, note: MemoryNote, body: str, message: str, expect_head: str | None = None
) -> None:
    path, data = render(note, body)
    try:
        store.put(path, data, message, expect_head)
    except SecretFound as exc:
        body_start = data.decode("utf-8").split("\n---\n", 1)[0].count("\n") + 2
        where = [
            f"line {f.line - body_start} of the text"
            if f.line > body_start and not f.field
            else f"the {f.field or 'front matter'}"
            for f in exc.findings
        ]
        raise NoteError(
            f"refused to write {path}: {'; '.join(f.describe() for f in exc.findings)} "
            f"({', '.join(where)}); the value is not shown",
            "nothing was written; remove the secret (keep it in a vault or the environment "
            "and write its name instead) and try again",
        ) from None


def add(
    store: Store,
    title: str,
    body: str,
    author: str,
    tags: Sequence[str] = (),
    trust: Level = "internal",
    source: str | None = None,
) -> MemoryNote:
    """Write a new note; refuses (writing nothing) if it holds anything like a secret."""
    store.repo.require_head()  # a note is no way to make a state branch without gitgw.yaml
    now = store.clock.now()
    note = _note(
        id=store.clock.new_id(now), title=title, tags=list(dict.fromkeys(tags)), trust=trust,
        author=author, source=source, created=now, updated=now,
    )  # fmt: skip
    _write(store, note, body, f"gitgw: memory {note.id}: {title}")
    return note


def _note(**fields: object) -> MemoryNote:
    from pydantic import ValidationError

    try:
        return MemoryNote.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise NoteError(f"the note is not valid: {problems}") from None


def edit(
    store: Store,
    note_id: str,
    *,
    title: str | None = None,
    body: str | None = None,
    tags: Sequence[str] | None = None,
    trust: Level | None = None,
) -> MemoryNote:
    """Change a note in place (it is the one mutable kind); `updated` moves to now.

    The change is applied to the note as it is when the commit is made: an edit made
    elsewhere meanwhile (another field, on another process) is kept, not overwritten
    by the version read before it."""
    for _ in range(_EDIT_ATTEMPTS):
        head = store.repo.require_head()
        view = find(store, note_id)  # at `head`, or later: then the commit below refuses
        old = view.note
        note = _note(
            **{
                **old.model_dump(),
                "title": title if title is not None else old.title,
                "tags": list(dict.fromkeys(tags)) if tags is not None else old.tags,
                "trust": trust or old.trust,
                "updated": store.clock.now(),
            }
        )
        text = view.body if body is None else body
        try:
            _write(store, note, text, f"gitgw: memory {note_id}: edit", expect_head=head)
        except Contention:
            continue  # the branch moved since the note was read: read it again
        return note
    raise Contention(
        f"the state branch kept moving while editing memory note {note_id}",
        "nothing was written; try again",
    )


def forget(store: Store, note_id: str, actor: str, reason: str | None = None) -> MemoryTombstone:
    """Write a tombstone for the note and remove its file, in one commit."""
    find(store, note_id)  # a clear error if there is nothing to forget
    now = store.clock.now()
    tombstone = MemoryTombstone(
        id=store.clock.new_id(now), note=note_id, actor=actor, reason=reason, created=now
    )
    path, data = render(tombstone)
    check_file(path, data)
    store.repo.commit(
        {path: data, note_path(note_id): None},
        f"gitgw: memory {note_id}: forget",
        add_only=is_add_only,
    )
    return tombstone


# -- search ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    """One search result."""

    id: str
    title: str
    tags: list[str]
    trust: str
    author: str
    updated: str
    score: float
    snippet: str


def search(
    repo: StateRepo, query: str, limit: int = 10, max_trust: Level | None = None
) -> list[Hit]:
    """Notes matching `query`'s words, best first, at or below `max_trust`.

    `max_trust` defaults to the caller's clearance and may not exceed it. Forgotten
    notes never appear.
    """
    repo.require_head()
    limit_level = clearance()
    if max_trust is not None:
        require_clearance(max_trust, "the requested --max-trust")
        limit_level = max_trust
    words = re.findall(r"\w+", query.lower())
    if not words:
        raise NoteError(
            f"nothing to search for in {query!r}", "give at least one word, e.g. `retry`"
        )
    match = " OR ".join(f'"{word}"*' for word in words)
    levels = [level for level in LEVELS if allowed(level, limit_level)]
    marks = ",".join("?" * len(levels))
    sql = f"""
        SELECT n.id, n.title, n.tags, n.trust, n.author, n.updated,
               bm25(notes_fts, 10.0, 5.0, 1.0) AS score,
               snippet(notes_fts, 2, '[', ']', '…', 12)
        FROM notes_fts JOIN notes n ON n.rid = notes_fts.rowid
        WHERE notes_fts MATCH ? AND n.trust IN ({marks})
          AND n.id NOT IN (SELECT note FROM tombstones)
        ORDER BY score, n.id DESC LIMIT ?
    """
    with Index(repo, SPEC).connect() as db:
        rows = db.execute(sql, (match, *levels, max(1, limit))).fetchall()
    return [
        Hit(r[0], r[1], [t for t in r[2].split(" ") if t], r[3], r[4], r[5], -r[6], r[7])
        for r in rows
    ]


def _apply(db: sqlite3.Connection, path: str, data: bytes | None) -> None:
    found = kind_of(path)
    if found is None or found[0].name not in ("memory", "memory-tombstone"):
        return
    kind, parts = found
    read = None if data is None else fields(data, markdown=kind.name == "memory")
    record, body = read if read is not None else ({}, "")
    if kind.name == "memory-tombstone":
        db.execute("DELETE FROM tombstones WHERE path = ?", (path,))
        note = text_of(record.get("note"))
        if note is not None:
            db.execute("INSERT OR REPLACE INTO tombstones VALUES (?, ?)", (note, path))
        return
    note_id = parts["id"]
    old = db.execute("SELECT rid FROM notes WHERE id = ?", (note_id,)).fetchone()
    if old is not None:
        db.execute("DELETE FROM notes_fts WHERE rowid = ?", old)
        db.execute("DELETE FROM notes WHERE rid = ?", old)
    tags = record.get("tags") or []
    row = (
        note_id, text_of(record.get("title")),
        " ".join(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else "",
        text_of(record.get("trust")) or "internal", text_of(record.get("author")) or "",
        text_of(record.get("updated")) or "",
    )  # fmt: skip
    if record.get("id") == note_id and row[1] is not None:
        rid = db.execute(
            "INSERT INTO notes (id, title, tags, trust, author, updated) VALUES (?, ?, ?, ?, ?, ?)",
            row,
        ).lastrowid
        db.execute(
            "INSERT INTO notes_fts (rowid, title, tags, body) VALUES (?, ?, ?, ?)",
            (rid, row[1], row[2], body),
        )


SPEC = IndexSpec(
    name="memory",
    version=1,
    schema="""
        CREATE TABLE notes (rid INTEGER PRIMARY KEY, id TEXT UNIQUE, title TEXT, tags TEXT,
                            trust TEXT, author TEXT, updated TEXT);
        CREATE TABLE tombstones (note TEXT, path TEXT PRIMARY KEY);
        CREATE INDEX tombstones_note ON tombstones (note);
        CREATE VIRTUAL TABLE notes_fts USING fts5(
            title, tags, body, tokenize = 'porter unicode61 remove_diacritics 2'
        )
    """,
    prefixes=("memory",),
    apply=_apply,
)


__all__ += ["SPEC", "note_path", "show"]
