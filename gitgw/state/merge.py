"""Three-way merge of two heads of the state branch, path by path.

Records are add-only files with unique names, so the two sides almost always touch
different paths and the merge is their union. When one mutable file was changed on
both sides, the local version stays in place and the conflict is returned, so the
caller can keep the other version beside it. When one side deleted a file the other
changed, the change stays in place (a deletion never wins over a change) and that is
returned too: nothing is dropped or undone silently.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from typing import Literal

from dulwich.graph import find_merge_base
from dulwich.objects import Commit, ObjectID

from gitgw.state.repo import StateRepo
from gitgw.state.trees import DIR_MODE, Entries, TreeStore

__all__ = ["MergeResult", "PathConflict", "merge_heads"]

Entry = tuple[int, bytes] | None


@dataclass(frozen=True)
class PathConflict:
    """A file the two sides changed differently.

    Both changed it: the local version stays and the remote one (`theirs`, a blob, or a
    tree when `theirs_tree`) is to be set aside. One side deleted it (`deleted`): the
    other side's change stays in place and nothing is set aside (`theirs` is None).
    """

    path: str
    theirs: str | None
    theirs_tree: bool = False
    deleted: Literal["ours", "theirs"] | None = None


@dataclass
class MergeResult:
    """The merged tree and the conflicts met on the way."""

    tree: bytes
    base: str | None
    conflicts: list[PathConflict] = field(default_factory=list)


def merge_heads(repo: StateRepo, ours: str, theirs: str) -> MergeResult:
    """Merge the trees of commits `ours` and `theirs` against their merge base."""
    dulwich_repo = repo.dulwich_repo
    bases = find_merge_base(dulwich_repo, [ObjectID(ours.encode()), ObjectID(theirs.encode())])
    base = bases[0] if bases else None
    trees = repo.trees

    def tree_of(sha: bytes | None) -> bytes | None:
        if sha is None:
            return None
        commit = trees.get(sha)
        assert isinstance(commit, Commit)
        return bytes(commit.tree)

    result = MergeResult(tree=b"", base=base.decode("ascii") if base else None)
    merged = _merge(
        trees,
        tree_of(base),
        tree_of(ours.encode("ascii")),
        tree_of(theirs.encode("ascii")),
        "",
        result.conflicts,
    )
    if merged is None:
        merged = trees.write_tree({})
    result.tree = merged
    return result


def _entries(trees: TreeStore, sha: bytes | None) -> Entries:
    return trees.entries(sha) if sha is not None else {}


def _is_dir(entry: Entry) -> bool:
    return entry is not None and stat.S_ISDIR(entry[0])


def _merge(trees: TreeStore, base: bytes | None, ours: bytes | None, theirs: bytes | None,
           prefix: str, conflicts: list[PathConflict]) -> bytes | None:  # fmt: skip
    if ours == theirs or base == theirs:
        return ours
    if base == ours:
        return theirs
    b_entries, o_entries, t_entries = (_entries(trees, t) for t in (base, ours, theirs))
    out: Entries = {}
    for name in sorted(b_entries.keys() | o_entries.keys() | t_entries.keys()):
        b, o, t = b_entries.get(name), o_entries.get(name), t_entries.get(name)
        chosen = _merge_entry(trees, b, o, t, prefix + name.decode("utf-8"), conflicts)
        if chosen is not None:
            out[name] = chosen
    return trees.write_tree(out) if out else None


def _merge_entry(trees: TreeStore, b: Entry, o: Entry, t: Entry, path: str,
                 conflicts: list[PathConflict]) -> Entry:  # fmt: skip
    if o == t or b == t:
        return o
    if b == o:
        return t
    if (_is_dir(o) or o is None) and (_is_dir(t) or t is None) and (_is_dir(b) or b is None):
        sub = _merge(
            trees,
            b[1] if b else None,
            o[1] if o else None,
            t[1] if t else None,
            path + "/",
            conflicts,
        )
        return None if sub is None else (DIR_MODE, sub)
    # Both sides changed one file differently, or one deleted what the other changed. A
    # deletion never wins over a change, and either is reported. A file one side
    # replaced by a directory where the other deleted it is no conflict.
    if o is None:
        if t is not None and not _is_dir(t):
            conflicts.append(PathConflict(path, None, deleted="ours"))
        return t
    if t is None:
        if not _is_dir(o):
            conflicts.append(PathConflict(path, None, deleted="theirs"))
        return o
    conflicts.append(PathConflict(path, t[1].decode("ascii"), theirs_tree=_is_dir(t)))
    return o
