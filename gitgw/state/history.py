"""The branch's history, oldest first, and what each commit changed.

For a merge commit, a file counts as changed only when it differs from every parent:
a record that arrived through the other parent was checked where it was first added.
A changed file's earlier version is the first parent's, or, where the first parent
lacks the file, another parent's: a merge onto an old first parent cannot pass off a
new version of a file another parent holds as a new file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from dulwich.objects import Commit

from gitgw.state.repo import StateRepo

__all__ = [
    "Change",
    "FileChange",
    "changes_along",
    "changes_of",
    "commits_oldest_first",
    "commits_since",
]


@dataclass(frozen=True)
class Change:
    """A file added, modified or deleted by a commit (blob ids; None when absent)."""

    path: str
    old: str | None
    new: str | None

    @property
    def kind(self) -> str:
        """`added`, `modified` or `deleted`."""
        if self.old is None:
            return "added"
        return "deleted" if self.new is None else "modified"


def commits_oldest_first(repo: StateRepo, head: str) -> list[str]:
    """Every commit reachable from `head`, each after all of its parents."""
    order: list[bytes] = []
    state: dict[bytes, int] = {}  # 1 = being visited, 2 = done
    stack: list[tuple[bytes, bool]] = [(head.encode("ascii"), False)]
    while stack:
        sha, expanded = stack.pop()
        if expanded:
            state[sha] = 2
            order.append(sha)
            continue
        if state.get(sha):
            continue
        state[sha] = 1
        stack.append((sha, True))
        for parent in reversed(repo.parents(sha)):
            if not state.get(parent):
                stack.append((parent, False))
    return [sha.decode("ascii") for sha in order]


def commits_since(repo: StateRepo, head: str, known: set[str]) -> list[str]:
    """The commits reachable from `head` that are not in `known`, each after its parents.

    `known` must be closed under ancestry (every parent of a known commit is known), as
    the set of commits a follower has handled is; the walk stops at them.
    """
    order: list[str] = []
    done: set[str] = set()
    stack: list[tuple[str, bool]] = [(head, False)]
    while stack:
        sha, expanded = stack.pop()
        if expanded:
            order.append(sha)
            continue
        if sha in done or sha in known:
            continue
        done.add(sha)
        stack.append((sha, True))
        for parent in reversed(repo.parents(sha.encode("ascii"))):
            name = parent.decode("ascii")
            if name not in done and name not in known:
                stack.append((name, False))
    return order


def changes_of(repo: StateRepo, commit_id: str) -> Iterator[Change]:
    """The files `commit_id` added, modified or deleted relative to its parents."""
    commit = repo.trees.get(commit_id.encode("ascii"))
    assert isinstance(commit, Commit)
    parent_trees = []
    for parent in commit.parents:
        obj = repo.trees.get(parent)
        assert isinstance(obj, Commit)
        parent_trees.append(obj.tree)
    if not parent_trees:
        for path, blob in repo.trees.walk(commit.tree):
            yield Change(path, None, blob.decode("ascii"))
        return
    first, others = parent_trees[0], parent_trees[1:]
    seen_deleted: set[str] = set()
    for path, before, after in repo.trees.diff(first, commit.tree):
        if after is not None:
            elsewhere = [_blob_at(repo, t, path) for t in others]
            if after in elsewhere:
                continue  # it came from another parent unchanged
            if before is None:  # new to the first parent; another may hold a version
                before = next((blob for blob in elsewhere if blob is not None), None)
        else:
            seen_deleted.add(path)
        yield Change(path, _ascii(before), _ascii(after))
    for other in others:
        for path, before, after in repo.trees.diff(other, commit.tree):
            if after is None and path not in seen_deleted and before is not None:
                seen_deleted.add(path)
                yield Change(path, _ascii(before), None)


FileChange = tuple[str, str | None, str | None]  # (path, old blob, new blob), as a `Change`


def changes_along(repo: StateRepo, commits: Sequence[str]) -> Iterator[list[FileChange]]:
    """What each of `commits` changed, in turn, as `changes_of` finds it.

    For commits each after its parents (`commits_oldest_first`), a commit's one parent is
    most often the commit before it: that tree is kept from then rather than the parent
    read and parsed again, and the changes come as plain tuples. `verify` walks every
    commit of a long history this way; a merge or a root commit goes through `changes_of`.
    """
    last: tuple[bytes, bytes] | None = None  # (commit, its tree)
    for commit_id in commits:
        sha = commit_id.encode("ascii")
        commit = repo.trees.get(sha)
        assert isinstance(commit, Commit)
        if last is not None and commit.parents == [last[0]]:
            yield [
                (path, _ascii(old), _ascii(new))
                for path, old, new in repo.trees.diff(last[1], commit.tree)
            ]
        else:
            yield [(c.path, c.old, c.new) for c in changes_of(repo, commit_id)]
        last = (sha, commit.tree)


def _blob_at(repo: StateRepo, tree: bytes, path: str) -> bytes | None:
    found = repo.trees.lookup(tree, path)
    return None if found is None else found[1]


def _ascii(sha: bytes | None) -> str | None:
    return None if sha is None else sha.decode("ascii")
