"""Derived indexes under `.git/gitgw/index/`: rebuildable, keyed by commit id.

An index is a SQLite file that answers queries a walk of the branch would answer too,
only faster. It records the commit it reflects; bringing it up to date applies the tree
diff from that commit to the branch's head (add-only records make that diff small), or
rebuilds it from scratch when the old commit is gone or unrelated. Deleting the file
loses nothing: the next query rebuilds it. It is never the source of truth.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gitgw.errors import GitgwError
from gitgw.state import StateRepo

__all__ = ["Index", "IndexSpec"]

# Called for each changed file: (db, path, new bytes or None when the file went away).
ApplyChange = Callable[[sqlite3.Connection, str, bytes | None], None]


@dataclass(frozen=True)
class IndexSpec:
    """What one index holds: its tables, which paths feed it, and how a change applies."""

    name: str
    version: int  # bump to force a rebuild when the tables or their meaning change
    schema: str  # CREATE TABLE statements
    prefixes: tuple[str, ...]  # top-level directories whose files feed this index
    apply: ApplyChange


_BUSY_S = 30.0  # how long a connection waits for another process's lock


def _use_wal(db: sqlite3.Connection) -> None:
    # The journal mode is kept in the file: set once, it needs no lock again. Setting it
    # needs the file to itself, and SQLite answers "database is locked" at once (no busy
    # wait) when two processes open a new index together: try again for a while.
    deadline = time.monotonic() + _BUSY_S
    while db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
        else:
            if time.monotonic() > deadline:
                return  # it keeps its journal: slower for many readers, still correct
        time.sleep(0.02)


class Index:
    """One derived index of one repository's state branch."""

    def __init__(self, repo: StateRepo, spec: IndexSpec) -> None:
        self.repo = repo
        self.spec = spec
        directory = repo.gitgw_dir / "index" / repo.branch
        directory.mkdir(parents=True, exist_ok=True)
        self.path: Path = directory / f"{spec.name}.sqlite"

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection to an index that reflects the branch's current head."""
        db = sqlite3.connect(self.path, timeout=_BUSY_S, isolation_level=None)
        try:
            _use_wal(db)
            db.execute("PRAGMA synchronous=NORMAL")
            self._refresh(db)
            yield db
        finally:
            db.close()

    def _refresh(self, db: sqlite3.Connection) -> None:
        head = self.repo.head()
        db.execute("BEGIN IMMEDIATE")  # one updater at a time, across processes
        try:
            indexed, version = self._meta(db)
            if version != self.spec.version or indexed is None:
                self._rebuild(db, head)
            elif indexed != head:
                if head is not None and self._can_advance(indexed, head):
                    self._advance(db, indexed, head)
                else:
                    self._rebuild(db, head)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _meta(self, db: sqlite3.Connection) -> tuple[str | None, int | None]:
        db.execute("CREATE TABLE IF NOT EXISTS gitgw_meta (key TEXT PRIMARY KEY, value TEXT)")
        rows = dict(db.execute("SELECT key, value FROM gitgw_meta").fetchall())
        version = rows.get("version")
        return rows.get("commit") or None, int(version) if version is not None else None

    def _set_meta(self, db: sqlite3.Connection, head: str | None) -> None:
        db.executemany(
            "INSERT OR REPLACE INTO gitgw_meta (key, value) VALUES (?, ?)",
            [("commit", head or ""), ("version", str(self.spec.version))],
        )

    def _can_advance(self, indexed: str, head: str) -> bool:
        try:
            return self.repo.has_object(indexed) and self.repo.is_ancestor(indexed, head)
        except GitgwError:
            return False

    def _rebuild(self, db: sqlite3.Connection, head: str | None) -> None:
        tables = db.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name != 'gitgw_meta'"
        ).fetchall()
        for (table,) in tables:
            db.execute(f'DROP TABLE IF EXISTS "{table}"')  # FTS5 drops its own shadow tables
        # Not executescript: it would commit the open transaction first.
        for statement in self.spec.schema.split(";"):
            if statement.strip():
                db.execute(statement)
        if head is not None:
            for prefix in self.spec.prefixes:
                for path, blob in self.repo.walk(prefix, head):
                    self.spec.apply(db, path, self.repo.blob(blob))
        self._set_meta(db, head)

    def _advance(self, db: sqlite3.Connection, indexed: str, head: str) -> None:
        old_tree, new_tree = self.repo.tree_of(indexed), self.repo.tree_of(head)
        for path, _old, new in self.repo.trees.diff(old_tree, new_tree):
            if path.split("/", 1)[0] in self.spec.prefixes:
                data = None if new is None else self.repo.trees.blob(new)
                self.spec.apply(db, path, data)
        self._set_meta(db, head)
