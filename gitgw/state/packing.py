"""What a push must send: the objects that the new commits add, found from tree diffs.

dulwich works this out by walking every tree the remote already has, which costs the
size of the whole branch on every push. gitgw's commits change a few paths each, so the
objects a push needs are the new commits plus the trees and blobs along the paths they
changed: found by comparing each new commit's tree with a parent's, skipping every
subtree that did not change.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable

from dulwich.objects import Commit, ShaFile

from gitgw.state.repo import StateRepo
from gitgw.state.trees import TreeStore

__all__ = ["objects_to_send"]


def _ancestors(repo: StateRepo, heads: Iterable[bytes]) -> set[bytes]:
    seen: set[bytes] = set()
    stack = [h for h in heads if repo.has_object(h.decode("ascii"))]
    while stack:
        sha = stack.pop()
        if sha in seen:
            continue
        seen.add(sha)
        stack.extend(repo.parents(sha))
    return seen


def _new_tree_objects(trees: TreeStore, tree: bytes, base: bytes | None, out: set[bytes]) -> None:
    if tree == base or tree in out:
        return
    out.add(tree)
    base_entries = trees.entries(base) if base is not None else {}
    for name, (mode, sha) in trees.entries(tree).items():
        before = base_entries.get(name)
        if before is not None and before[1] == sha:
            continue
        if stat.S_ISDIR(mode):
            old = before[1] if before is not None and stat.S_ISDIR(before[0]) else None
            _new_tree_objects(trees, sha, old, out)
        else:
            out.add(sha)


def objects_to_send(
    repo: StateRepo, wants: Iterable[bytes], haves: Iterable[bytes]
) -> list[ShaFile]:
    """The objects reachable from `wants` that the holder of `haves` lacks (a superset is
    harmless: a pack may carry an object the remote has)."""
    known = _ancestors(repo, haves)
    commits: list[Commit] = []
    stack = [w for w in wants if w not in known]
    seen: set[bytes] = set()
    while stack:
        sha = stack.pop()
        if sha in seen or sha in known:
            continue
        seen.add(sha)
        commit = repo.trees.get(sha)
        assert isinstance(commit, Commit)
        commits.append(commit)
        stack.extend(commit.parents)
    objects: set[bytes] = set()
    for commit in commits:
        # Compare with a parent the remote has, when there is one: a merge then sends only
        # what this side added, not the remote's own records back to it.
        parents = sorted(commit.parents, key=lambda p: p not in known)
        base = None
        if parents:
            parent = repo.trees.get(parents[0])
            assert isinstance(parent, Commit)
            base = bytes(parent.tree)
        _new_tree_objects(repo.trees, bytes(commit.tree), base, objects)
    return [*commits, *(repo.trees.get(sha) for sha in sorted(objects))]
