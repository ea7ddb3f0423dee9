"""The consent ledger: who allowed what, folded from `consent/` into current grants.

Entries are add-only files, each a grant or a revocation of one *subject*
(`provider:openai`, `client:claude-code`, `env:OPENAI_API_KEY`, `tool:memory.write`).
Folding them gives, for every subject, the one entry that decides it now:

1. Entries of a subject are taken in order of id (a ULID, so by time), ties broken by
   putting a revocation after a grant and then by digest. Every machine holding the same
   files computes the same order, whatever order sync brought them in.
2. A revocation always takes effect: it wins over every earlier grant of its subject.
3. A grant takes effect, replacing what was there (so a narrower grant narrows), unless
   the entry in force is a revocation the grant did not see: one that is not in the
   grant's `supersedes` chain. A grant written on one machine while another revoked the
   subject cannot undo that revocation after sync; every machine then denies. (`gitgw
   consent grant` fills in `supersedes` with the entry in force where it runs.)
4. A grant up to level L allows every level up to L; a subject with no grant in force is
   denied.
5. A consent file that cannot be read (schema, digest) could be a revocation, so while
   one exists every check is denied, naming it. `gitgw verify` proves the history.

`ConsentLedger.check` answers "may SUBJECT receive LEVEL now, and which entry says so?"
from memory with a dict lookup; `refresh()` folds only the consent files that changed
since the head it last saw. A fresh ledger loads through a derived index under
`.git/gitgw/index/`, so a process start does not re-read every file.
"""

from __future__ import annotations

import bisect
import sqlite3
import stat
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from gitgw._clock import Clock, default_clock, ulid_time
from gitgw.concepts.checks import check_file, is_add_only
from gitgw.concepts.consent_fold import (
    Entry,
    Folded,
    fold,
    fold_subject,
    load_index,
    read_entry,
)
from gitgw.concepts.store import Unreadable
from gitgw.errors import Contention, GitgwError
from gitgw.records import LEVEL_RANK, LEVELS, ConsentEntry, render
from gitgw.records.consent import SUBJECT_KINDS
from gitgw.state import StateRepo

__all__ = [
    "ConsentLedger",
    "Decision",
    "Entry",
    "Written",
    "fold",
    "grant",
    "parse_subject",
    "require_level",
    "revoke",
]


def _unknown_level(level: str) -> GitgwError:
    return GitgwError(f"unknown level {level!r}", f"levels, lowest to highest: {', '.join(LEVELS)}")


def require_level(level: str) -> str:
    """`level` if it is a trust level; a clear error otherwise."""
    if level not in LEVEL_RANK:
        raise _unknown_level(level)
    return level


def parse_subject(subject: str) -> tuple[str, str]:
    """A subject's kind and name (`provider:openai` → provider, openai); errors name why."""
    kind, sep, name = subject.partition(":")
    example = "e.g. provider:openai, client:claude-code, env:OPENAI_API_KEY, tool:memory.write"
    if not sep or kind not in SUBJECT_KINDS:
        raise GitgwError(
            f"unknown subject kind {kind!r} in {subject!r}"
            if sep
            else f"{subject!r} is not a subject",
            f"a subject is KIND:NAME with KIND one of {', '.join(SUBJECT_KINDS)} ({example})",
        )
    if not name or any(not (c.isascii() and (c.isalnum() or c in "_.@/-")) for c in name):
        raise GitgwError(
            f"{subject!r} has an invalid name",
            "a name is ASCII letters, digits and _ . @ / - only",
        )
    return kind, name


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to "may SUBJECT receive LEVEL?", and the entry that gave it.

    `why` is one of `allowed`, `narrower` (granted, but to a lower level), `revoked`,
    `never` (no entry) or `damaged` (an unreadable consent file denies every check).
    """

    subject: str
    level: str
    allowed: bool
    entry: Entry | None
    why: str
    detail: str = ""  # damaged: the file and its problem; revoked: a grant it overrode

    @property
    def reason(self) -> str:
        """The answer in words, naming the entry that decided."""
        entry = self.entry
        if self.why == "damaged":
            return f"{self.detail}; every check is denied until that is fixed"
        if entry is None:
            return f"{self.subject} was never granted"
        if self.why == "revoked":
            note = (
                f"; later grant {self.detail} did not see that revocation, so it does not "
                "override it"
                if self.detail
                else ""
            )
            return f"revoked: {entry.describe()}{note}"
        if self.why == "narrower":
            return f"granted only up to {entry.level}: {entry.describe()}"
        return f"allowed by {entry.describe()}"


TAMPERED = (
    "an add-only consent entry was modified or deleted after it was added; restore it "
    "(`gitgw verify` names the commit)"
)


class ConsentLedger:
    """The consent ledger of one state branch, folded in memory."""

    def __init__(self, repo: StateRepo) -> None:
        self._repo = repo
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], Decision] = {}
        try:
            self.head, self._folded = load_index(repo)
        except (OSError, sqlite3.Error):  # a read-only .git: fold from the files instead
            self.head, self._folded = None, Folded()
        self.refresh()

    # -- keeping up with the branch -------------------------------------------------------

    def refresh(self) -> bool:
        """Fold what changed under `consent/` since the last head; True if anything did."""
        with self._lock:
            head = self._repo.head()
            if head == self.head:
                return False
            old = self._folded
            try:
                old_tree = self._consent_tree(self.head)
            except GitgwError:  # the old head is gone: start over
                old, old_tree = Folded(), None
            self._folded = self._advance(old, old_tree, self._consent_tree(head))
            self._cache = {}
            self.head = head
            return True

    def _advance(self, old: Folded, old_tree: bytes | None, new_tree: bytes | None) -> Folded:
        entries, damaged = dict(old.entries), dict(old.damaged)
        paths: dict[str, str] | None = None  # path -> id, made only if a file changed
        changed: dict[str, dict[str, Entry]] = {}  # subject -> entries added to it
        for path, before, after in self._repo.trees.diff(old_tree, new_tree, "consent/"):
            if before is not None or damaged.get(path) == TAMPERED:
                if paths is None:
                    paths = {e.path: e.id for e in entries.values()}
                if path in paths:
                    # Entries are add-only: one modified or deleted after it was added is
                    # tampering that bypassed the hooks (deleting a revocation would
                    # re-open a grant). Keep the entry and fail closed until the file is
                    # back as it was first added.
                    back = after is not None and read_entry(
                        path, self._repo.trees.blob(after)
                    ) == entries.get(paths[path])
                    if back:
                        damaged.pop(path, None)
                    else:
                        damaged[path] = TAMPERED
                    continue
                damaged.pop(path, None)  # an unreadable file, replaced or removed
            if after is not None:
                read = read_entry(path, self._repo.trees.blob(after))
                if isinstance(read, str):
                    damaged[path] = read
                else:
                    entries[read.id] = read
                    if paths is not None:
                        paths[path] = read.id
                    changed.setdefault(read.subject, {})[read.id] = read
        subjects = dict(old.subjects)
        for subject, added in changed.items():
            prior = old.subjects.get(subject)
            group = {
                i: entries[i]
                for i in (prior.ids if prior is not None else [])
                if i in entries and entries[i].subject == subject
            }
            group.update(added)
            if group:
                subjects[subject] = fold_subject(list(group.values()), False, entries)
            else:
                subjects.pop(subject, None)
        return Folded(entries, subjects, damaged)

    def _consent_tree(self, commit: str | None) -> bytes | None:
        if commit is None:
            return None
        found = self._repo.trees.lookup(self._repo.tree_of(commit), "consent")
        return found[1] if found is not None and stat.S_ISDIR(found[0]) else None

    # -- answering ------------------------------------------------------------------------

    def check(self, subject: str, level: str) -> Decision:
        """May `subject` receive `level` now, and which entry says so? (From memory.)"""
        decision = self._cache.get((subject, level))
        if decision is None:
            decision = self._decide(subject, level)
            self._cache[(subject, level)] = decision
        return decision

    def _decide(self, subject: str, level: str) -> Decision:
        rank = LEVEL_RANK.get(level)
        if rank is None:
            raise _unknown_level(level)
        folded = self._folded
        timeline = folded.subjects.get(subject)
        if timeline is None:
            parse_subject(subject)
        if folded.damaged:
            path, problem = min(folded.damaged.items())
            detail = f"the consent ledger has {len(folded.damaged)} unreadable file(s), e.g. "
            return Decision(subject, level, False, None, "damaged", f"{detail}{path}: {problem}")
        entry = timeline.current if timeline is not None else None
        if entry is None or timeline is None:
            return Decision(subject, level, False, None, "never")
        if entry.action == "revoke":
            later = [g for g, r in timeline.ignored.items() if r == entry.id]
            return Decision(subject, level, False, entry, "revoked", later[-1] if later else "")
        assert entry.level is not None
        if rank > LEVEL_RANK[entry.level]:
            return Decision(subject, level, False, entry, "narrower")
        return Decision(subject, level, True, entry, "allowed")

    @property
    def damaged(self) -> list[Unreadable]:
        """Consent files that could not be read (while any exist, every check is denied)."""
        return [Unreadable(p, r) for p, r in sorted(self._folded.damaged.items())]

    def current(self) -> list[Entry]:
        """The grants in force, by subject."""
        grants = []
        for subject in sorted(self._folded.subjects):
            entry = self._folded.subjects[subject].current
            if entry is not None and entry.action == "grant":
                grants.append(entry)
        return grants

    def history(self) -> list[Entry]:
        """Every entry, in fold order."""
        return sorted(self._folded.entries.values(), key=lambda e: e.key)

    def entry(self, entry_id: str) -> Entry | None:
        """The entry with id `entry_id`, if the ledger holds it."""
        return self._folded.entries.get(entry_id)

    def in_force(self, subject: str) -> Entry | None:
        """The entry deciding `subject` now (a grant or a revocation), if any."""
        timeline = self._folded.subjects.get(subject)
        return timeline.current if timeline is not None else None

    def fate(self, entry_id: str) -> str:
        """What became of an entry: in force, replaced by which entry, or ignored."""
        entry = self._folded.entries.get(entry_id)
        if entry is None:
            return "unknown"
        timeline = self._folded.subjects[entry.subject]
        if entry_id in timeline.ignored:
            return f"no effect: did not see revocation {timeline.ignored[entry_id]}"
        if entry_id in timeline.fate:
            after = self._folded.entries[timeline.fate[entry_id]]
            return f"{'revoked' if after.action == 'revoke' else 'replaced'} by {after.id}"
        return "in force"

    def position(self, subject: str, millis: int) -> int:
        """How many of `subject`'s entries are at or before `millis` (a cache key: two
        moments with the same position have the same entry in force)."""
        timeline = self._folded.subjects.get(subject)
        return 0 if timeline is None else bisect.bisect_right(timeline.millis, millis)

    def decisive_at(self, subject: str, moment: datetime | int) -> Entry | None:
        """The entry that decided `subject` at `moment` (a time, or milliseconds since the
        epoch), by the ledger as it is now. Entries of that very millisecond count."""
        timeline = self._folded.subjects.get(subject)
        if timeline is None:
            return None
        millis = moment if isinstance(moment, int) else int(moment.timestamp() * 1000)
        at = bisect.bisect_right(timeline.millis, millis)
        return timeline.decisive[at - 1] if at else None


# -- writing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Written:
    """A consent entry just committed, and the entry that was in force before it."""

    entry: Entry
    previous: Entry | None
    commit: str


def _actor(repo: StateRepo, actor: str | None) -> str:
    return actor or repo.identity.decode("utf-8", "replace")


def _write(
    repo: StateRepo,
    build: _Builder,
    subject: str,
    clock: Clock | None,
) -> Written:
    clock = clock or default_clock()
    ledger = ConsentLedger(repo)
    for _ in range(50):
        repo.require_head()
        ledger.refresh()
        previous = ledger.in_force(subject)
        record = build(clock, previous)
        path, data = render(record)
        check_file(path, data)
        try:
            commit = repo.commit(
                {path: data},
                f"gitgw: consent {record.action} {subject}",
                add_only=is_add_only,
                expect_head=ledger.head,
            )
        except Contention:
            continue  # another writer moved the branch: look again at what is in force
        sealed = ConsentEntry.model_validate(record.sealed())
        return Written(Entry.of(sealed, path), previous, commit)
    raise Contention("the state branch kept moving while writing a consent entry")


class _Builder:
    def __init__(self, **fields: str | None) -> None:
        self.fields = fields

    def __call__(self, clock: Clock, previous: Entry | None) -> ConsentEntry:
        now = clock.now()
        entry_id = clock.new_id(now)
        if previous is not None and entry_id <= previous.id:
            # The ledger folds in id order: an entry must sort after the one it replaces
            # even when this machine's clock is behind the one that wrote that entry
            # (else a narrowing grant would lose to the wider grant it names). A clock
            # of its own makes that id, leaving this one's sequence where it was.
            after = ulid_time(previous.id) + timedelta(milliseconds=1)
            entry_id = Clock(now=lambda: after).new_id()
        return ConsentEntry.model_validate(
            {
                **{k: v for k, v in self.fields.items() if v is not None},
                "id": entry_id,
                "created": now,
                "supersedes": previous.id if previous is not None else None,
            }
        )


def grant(
    repo: StateRepo,
    subject: str,
    level: str,
    *,
    purpose: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
    clock: Clock | None = None,
) -> Written:
    """Grant `subject` every level up to `level`, superseding the entry in force."""
    parse_subject(subject)
    require_level(level)
    build = _Builder(
        action="grant",
        subject=subject,
        level=level,
        purpose=purpose,
        reason=reason,
        actor=_actor(repo, actor),
    )
    return _write(repo, build, subject, clock)


def revoke(
    repo: StateRepo,
    subject: str,
    *,
    reason: str | None = None,
    actor: str | None = None,
    clock: Clock | None = None,
) -> Written:
    """Revoke `subject`. Revoking what was never granted is recorded all the same
    (`Written.previous` is then None, and the caller should say so)."""
    parse_subject(subject)
    build = _Builder(action="revoke", subject=subject, reason=reason, actor=_actor(repo, actor))
    return _write(repo, build, subject, clock)
