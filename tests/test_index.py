"""Derived indexes: follow the branch, survive deletion and rewrites, never lead it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gitgw.concepts.index import Index, IndexSpec
from gitgw.state import StateRepo
from tests.conftest import git


def _apply(db: sqlite3.Connection, path: str, data: bytes | None) -> None:
    if data is None:
        db.execute("DELETE FROM files WHERE path = ?", (path,))
    else:
        db.execute("INSERT OR REPLACE INTO files VALUES (?, ?)", (path, data.decode()))


SPEC = IndexSpec(
    name="files",
    version=1,
    schema="CREATE TABLE files (path TEXT PRIMARY KEY, body TEXT);",
    prefixes=("runs",),
    apply=_apply,
)


def _rows(index: Index) -> dict[str, str]:
    with index.connect() as db:
        return dict(db.execute("SELECT path, body FROM files").fetchall())


def test_an_index_follows_the_branch_and_can_be_deleted(state_repo: Path) -> None:
    with StateRepo.discover(state_repo) as repo:
        index = Index(repo, SPEC)
        assert _rows(index) == {}
        repo.commit({"runs/a.yaml": b"a", "consent/x.yaml": b"x"}, "add")
        assert _rows(index) == {"runs/a.yaml": "a"}
        repo.commit({"runs/b.yaml": b"b", "runs/a.yaml": None}, "change")
        assert _rows(index) == {"runs/b.yaml": "b"}
        assert index.path.is_relative_to(state_repo / ".git" / "gitgw")
        index.path.unlink()
        assert _rows(index) == {"runs/b.yaml": "b"}


def test_an_index_rebuilds_after_history_is_rewritten(state_repo: Path) -> None:
    with StateRepo.discover(state_repo) as repo:
        index = Index(repo, SPEC)
        repo.commit({"runs/a.yaml": b"a"}, "one")
        repo.commit({"runs/b.yaml": b"b"}, "two")
        assert set(_rows(index)) == {"runs/a.yaml", "runs/b.yaml"}
    git("branch", "-f", "gitgw", "gitgw~1", cwd=state_repo)
    with StateRepo.discover(state_repo) as repo:
        assert set(_rows(Index(repo, SPEC))) == {"runs/a.yaml"}
