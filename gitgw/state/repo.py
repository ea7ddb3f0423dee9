"""The state branch of one repository: read it, and commit to it through the object store.

gitgw never touches the repository's index, work tree or checked-out branch. A commit
is blobs → the trees along the changed paths → a commit object → a compare-and-swap of
the branch ref, retried when another writer got there first. Two writers can only ever
add different files (record paths are unique), so a retry simply re-applies the same
files on top of the new head.
"""

from __future__ import annotations

import contextlib
import os
import random
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from shlex import quote
from typing import Literal

from dulwich.errors import NotGitRepository
from dulwich.file import FileLocked
from dulwich.objects import Commit, ObjectID, Tree
from dulwich.refs import Ref
from dulwich.repo import Repo

from gitgw.errors import (
    BranchCheckedOut,
    Contention,
    GitgwError,
    InvalidRecord,
    NotARepository,
    StateBranchExists,
    StateBranchMissing,
)
from gitgw.state.heads import KnownHeads
from gitgw.state.opening import check_branch, check_usable, identity
from gitgw.state.trees import TreeStore, nest_changes

__all__ = ["DEFAULT_BRANCH", "CommitInfo", "StateRepo"]

DEFAULT_BRANCH = "gitgw"
_RETRY_SECONDS = 60.0
# Holding a ref lock takes microseconds (write 41 bytes, fsync, rename); a lock this old
# was left by a process killed inside that window, and nobody else will remove it.
_STALE_LOCK_SECONDS = 10.0


@dataclass(frozen=True)
class CommitInfo:
    """One commit of the state branch."""

    id: str
    parents: tuple[str, ...]
    tree: str
    message: str
    author: str
    time: int


class StateRepo(KnownHeads):
    """A Git repository and the name of its state branch."""

    def __init__(self, repo: Repo, branch: str = DEFAULT_BRANCH) -> None:
        check_branch(branch)
        check_usable(repo)
        self._repo = repo
        self.branch = branch
        self.ref = Ref(b"refs/heads/" + branch.encode("utf-8"))
        self.trees = TreeStore(repo.object_store)
        self.identity = identity(repo)
        self.retries = 0  # compare-and-swap attempts lost to other writers, for benchmarks
        # Commits never change, so their parents are cached for the life of the handle:
        # history walks (ancestry, sync, the daemon) read each commit's header once.
        self._parents: dict[bytes, tuple[bytes, ...]] = {}

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def discover(cls, start: Path | None = None, branch: str = DEFAULT_BRANCH) -> StateRepo:
        """The repository at or above `start` (like `git -C`), with its state branch."""
        where = Path(start or Path.cwd())
        hint = "run `gitgw init` there, or point at one with --repo / GITGW_REPO"
        try:
            if not where.is_dir():  # as `git -C`: not the repository above a missing one
                raise FileNotFoundError(where)
            repo = Repo.discover(str(where))
        except NotGitRepository:
            raise NotARepository(f"not a Git repository: {where}", hint) from None
        except FileNotFoundError:
            raise NotARepository(f"no such directory: {where}", hint) from None
        return cls(repo, branch)

    @classmethod
    def create(cls, path: Path, branch: str = DEFAULT_BRANCH, nest: bool = False) -> StateRepo:
        """Open the repository at `path`, or make one there (non-bare) if there is none.

        Refuses a directory inside another repository's work tree: a repository made
        there would sit inside that one's files, and gitgw run at its top would not see
        it. Its top is what to give (or `git init` the directory first, to nest one);
        `nest` makes one there all the same."""
        check_branch(branch)  # before anything is made
        try:
            return cls(Repo(str(path)), branch)
        except NotGitRepository:
            pass
        existing = next((p for p in (path, *path.parents) if p.is_dir()), None)
        if existing is not None and not nest:
            try:
                outer = Repo.discover(str(existing))
            except NotGitRepository:
                pass
            else:
                top = outer.path
                outer.close()
                raise NotARepository(
                    f"{path} is inside the Git repository at {top}",
                    f"run `gitgw init {quote(top)}` to add the state branch to it, or `git "
                    f"init {quote(str(path))}` first to make a repository of its own there",
                )
        try:
            path.mkdir(parents=True, exist_ok=True)
            made = Repo.init(str(path), default_branch=b"main")
        except OSError as exc:  # a file in the way, a directory not writable, a stray .git
            raise GitgwError(
                f"cannot make a Git repository at {path}: {exc.strerror or exc}",
                "give a directory that is, or can be, a repository of its own",
            ) from None
        return cls(made, branch)

    def close(self) -> None:
        """Release the repository's open files."""
        self._repo.close()

    def __enter__(self) -> StateRepo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        """The repository's top directory (the work tree, or the bare repository)."""
        return Path(self._repo.path)

    @property
    def git_dir(self) -> Path:
        """The repository's `.git` directory (the repository itself when bare)."""
        return Path(self._repo.controldir())

    @property
    def common_dir(self) -> Path:
        """The directory holding refs and objects (shared by every linked work tree)."""
        return Path(self._repo.commondir())

    @property
    def bare(self) -> bool:
        """Whether the repository has no work tree."""
        return bool(self._repo.bare)

    # -- reading -------------------------------------------------------------------------

    def head(self) -> str | None:
        """The state branch's commit id, or None when the branch does not exist."""
        try:
            sha = self._repo.refs[self.ref]
        except KeyError:
            return None
        return sha.decode("ascii")

    def require_head(self) -> str:
        """The state branch's commit id; a clear error when there is no state branch."""
        head = self.head()
        if head is None:
            raise StateBranchMissing(
                f"{self.path} has no state branch {self.branch!r}", self.init_hint()
            )
        return head

    def init_hint(self) -> str:
        """How to create this state branch, as a hint."""
        init = "gitgw init"
        if self.branch != DEFAULT_BRANCH:
            init = f"gitgw --branch {quote(self.branch)} init"
        return f"create one with `{init}` (or `{init} --example`)"

    def commit_info(self, commit_id: str) -> CommitInfo:
        """The commit `commit_id`."""
        commit = self._commit(commit_id.encode("ascii"))
        return CommitInfo(
            id=commit_id,
            parents=tuple(p.decode("ascii") for p in commit.parents),
            tree=commit.tree.decode("ascii"),
            message=commit.message.decode("utf-8", "replace"),
            author=commit.author.decode("utf-8", "replace"),
            time=commit.commit_time,
        )

    def _commit(self, sha: bytes) -> Commit:
        obj = self.trees.get(sha)
        if not isinstance(obj, Commit):
            raise GitgwError(f"{sha.decode()} is not a commit")
        return obj

    def tree_of(self, commit_id: str | None) -> bytes | None:
        """The root tree id of `commit_id` (default: the head), or None without a branch."""
        return self._tree_of(commit_id)

    def _tree_of(self, commit_id: str | None) -> bytes | None:
        if commit_id is None:
            commit_id = self.head()
            if commit_id is None:
                return None
        return bytes(self._commit(commit_id.encode("ascii")).tree)

    def read(self, path: str, commit: str | None = None) -> bytes | None:
        """The bytes of `path` on the branch (or at `commit`), or None if it is not there."""
        found = self.trees.lookup(self._tree_of(commit), path)
        if found is None or not stat.S_ISREG(found[0]):  # a link or a submodule is no file
            return None
        return self.trees.blob(found[1])

    def listdir(self, directory: str = "", commit: str | None = None) -> list[str]:
        """The names in `directory` (sub-directories end with "/"); [] if it is not there.
        Only directories and regular files are listed."""
        found = self.trees.lookup(self._tree_of(commit), directory.strip("/"))
        if found is None or not stat.S_ISDIR(found[0]):
            return []
        return sorted(
            name.decode("utf-8", "backslashreplace") + ("/" if stat.S_ISDIR(mode) else "")
            for name, (mode, _) in self.trees.entries(found[1]).items()
            if stat.S_ISDIR(mode) or stat.S_ISREG(mode)
        )

    def walk(self, directory: str = "", commit: str | None = None) -> Iterator[tuple[str, str]]:
        """Every (path, blob id) under `directory`."""
        directory = directory.strip("/")
        found = self.trees.lookup(self._tree_of(commit), directory)
        if found is None or not stat.S_ISDIR(found[0]):
            return
        prefix = directory + "/" if directory else ""
        for path, sha in self.trees.walk(found[1], prefix):
            yield path, sha.decode("ascii")

    def blob(self, blob_id: str) -> bytes:
        """The bytes of one blob."""
        return self.trees.blob(blob_id.encode("ascii"))

    def blobs(self, blob_ids: list[str]) -> Iterator[bytes]:
        """The bytes of each blob in turn, for a reader of many (`verify`)."""
        return self.trees.blobs([blob_id.encode("ascii") for blob_id in blob_ids])

    def parents(self, commit_id: bytes) -> tuple[bytes, ...]:
        """The parents of a commit (hex ids as bytes), read from its header alone."""
        found = self._parents.get(commit_id)
        if found is None:
            type_num, raw = self.trees.raw(commit_id)
            if type_num != Commit.type_num:
                raise GitgwError(f"{commit_id.decode('ascii')} is not a commit")
            # A commit starts `tree <id>` then one `parent <id>` line per parent.
            parents = []
            at = raw.index(b"\n") + 1
            while raw.startswith(b"parent ", at):
                end = raw.index(b"\n", at)
                parents.append(raw[at + 7 : end])
                at = end + 1
            found = self._parents[commit_id] = tuple(parents)
        return found

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether `ancestor` is reachable from `descendant` (or equal to it)."""
        seen: set[bytes] = set()
        stack = [descendant.encode("ascii")]
        target = ancestor.encode("ascii")
        while stack:
            sha = stack.pop()
            if sha == target:
                return True
            if sha in seen:
                continue
            seen.add(sha)
            stack.extend(self.parents(sha))
        return False

    def ahead_behind(self, ours: str, theirs: str) -> tuple[int, int]:
        """How many commits `ours` has that `theirs` lacks, and the other way round."""
        mine, other = self._ancestors(ours), self._ancestors(theirs)
        return len(mine - other), len(other - mine)

    def ancestors(self, commit_id: str) -> set[str]:
        """Every commit reachable from `commit_id`, itself included."""
        return {sha.decode("ascii") for sha in self._ancestors(commit_id)}

    def _ancestors(self, commit_id: str) -> set[bytes]:
        seen: set[bytes] = set()
        stack = [commit_id.encode("ascii")]
        while stack:
            sha = stack.pop()
            if sha not in seen:
                seen.add(sha)
                stack.extend(self.parents(sha))
        return seen

    def config_value(self, section: bytes, name: str, key: bytes) -> str | None:
        """One value of the repository's config (e.g. remote.origin.url), or None."""
        try:
            value = self._repo.get_config().get((section, name.encode("utf-8")), key)
        except KeyError:
            return None
        return value.decode("utf-8")

    def has_object(self, sha: str) -> bool:
        """Whether the object store holds `sha`."""
        return ObjectID(sha.encode("ascii")) in self._repo.object_store

    # -- writing -------------------------------------------------------------------------

    def checked_out_in(self) -> Path | None:
        """The work tree that has the state branch checked out, if any."""
        common = Path(self._repo.commondir()).resolve()  # a linked worktree's ends in ".."
        candidates = []
        # The main work tree's HEAD, wherever this handle was opened: the work tree
        # itself, a linked worktree of it, or its `.git` directory (which dulwich opens
        # as if it were bare).
        if not self.bare and Path(self._repo.controldir()).resolve() == common:
            candidates.append((common / "HEAD", self.path))
        elif not self.bare or self._has_work_tree():
            main = common.parent if common.name == ".git" else common
            candidates.append((common / "HEAD", main))
        worktrees = common / "worktrees"
        if worktrees.is_dir():
            for entry in worktrees.iterdir():
                gitdir = entry / "gitdir"
                where = Path(gitdir.read_text().strip()).parent if gitdir.exists() else entry
                candidates.append((entry / "HEAD", where))
        target = b"ref: " + self.ref
        for head_file, where in candidates:
            with contextlib.suppress(OSError):
                if head_file.read_bytes().strip() == target:
                    return where
        return None

    def _has_work_tree(self) -> bool:
        try:
            value = self._repo.get_config().get((b"core",), b"bare")
        except KeyError:
            return False
        return value.strip().lower() in (b"false", b"no", b"off", b"0")

    def _guard_checkout(self) -> None:
        where = self.checked_out_in()
        if where is None:
            return
        if self.head() is None:  # an unborn branch cannot be detached from
            hint = (
                f"it has no commit yet, so use another state branch with --branch (the "
                f"default, {DEFAULT_BRANCH}, is made for this and never checked out)"
            )
        else:
            shown = quote(str(where))
            hint = (
                f"leave it there (`git -C {shown} switch --detach`, or `git worktree remove "
                f"{shown}` for a worktree made for it), or use another state branch with --branch"
            )
        raise BranchCheckedOut(
            f"the state branch {self.branch!r} is checked out in {where}; "
            "gitgw will not move it under your feet",
            hint,
        )

    def commit(
        self,
        files: Mapping[str, bytes | None],
        message: str,
        *,
        add_only: Callable[[str], bool] = lambda path: False,
        expect_head: str | None = None,
        parents_extra: tuple[str, ...] = (),
        new_branch: bool = False,
    ) -> str:
        """Commit `files` (path → bytes, or None to delete) as one commit on the branch.

        Paths for which `add_only` is true must not exist yet with other content. With
        `expect_head`, the commit happens only if the branch is still there; with
        `new_branch`, only if the branch does not exist yet. Returns the new commit id,
        once the ref points at it.
        """
        self._guard_checkout()
        if new_branch or self.head() is None:
            self._refuse_clashing_refs()  # before anything is written
        blob_ids = {
            path: None if data is None else self.trees.add_blob(data)
            for path, data in files.items()
        }
        changes = nest_changes(blob_ids)
        deadline = time.monotonic() + _RETRY_SECONDS
        attempt = 0
        while time.monotonic() < deadline:
            old = None if new_branch else self.head() if expect_head is None else expect_head
            old_tree = self._tree_of(old) if old else None
            for path, blob_id in blob_ids.items():
                if add_only(path):
                    existing = self.trees.lookup(old_tree, path)
                    if existing is not None and existing[1] != blob_id:
                        raise InvalidRecord(path, "already exists with other content")
            new_tree = self.trees.apply(old_tree, changes) or self._empty_tree()
            parents = ([old] if old else []) + list(parents_extra)
            commit_id = self._new_commit(new_tree, parents, message)
            outcome = self._swap(old, commit_id)
            if outcome == "done":
                self._witness(commit_id)
                return commit_id.decode("ascii")
            if outcome == "moved" and new_branch:
                raise StateBranchExists(f"the state branch {self.branch!r} was created meanwhile")
            if outcome == "moved" and expect_head is not None:
                raise Contention(f"the state branch moved away from {expect_head[:12]}")
            self.retries += 1
            attempt += 1
            time.sleep(random.uniform(0, min(0.05, 0.0005 * 2 ** min(attempt, 7))))
        raise Contention(
            f"gave up committing to {self.branch!r} after {_RETRY_SECONDS:.0f}s of retries",
            "another process keeps moving or locking the branch; try again",
        )

    def _new_commit(self, tree: bytes, parents: list[str], message: str) -> bytes:
        commit = Commit()
        commit.tree = ObjectID(tree)
        commit.parents = [ObjectID(p.encode("ascii")) for p in parents]
        commit.author = commit.committer = self.identity
        commit.commit_time = commit.author_time = int(time.time())
        commit.commit_timezone = commit.author_timezone = 0
        commit.encoding = b"UTF-8"
        commit.message = message.encode("utf-8") + (b"" if message.endswith("\n") else b"\n")
        return self.trees.add_raw(Commit.type_num, commit.as_raw_string())

    def commit_tree(
        self, tree: bytes, parents: list[str], message: str, expect: str | None
    ) -> str | None:
        """Commit a ready-made tree (a merge) and move the branch from `expect` to it.

        Returns the new commit id, or None when the branch had moved (nothing changed).
        """
        self._guard_checkout()
        commit_id = self._new_commit(tree, parents, message)
        if self._swap(expect, commit_id) != "done":
            return None
        self._witness(commit_id)
        return commit_id.decode("ascii")

    def add_files(self, tree: bytes, files: Mapping[str, bytes]) -> bytes:
        """A tree: `tree` plus `files` (used to add conflict copies to a merge)."""
        changes = nest_changes({path: self.trees.add_blob(data) for path, data in files.items()})
        return self.trees.apply(tree, changes) or self._empty_tree()

    def _empty_tree(self) -> bytes:
        return self.trees.add_raw(Tree.type_num, b"")

    def _swap(self, old: str | None, new: bytes) -> Literal["done", "moved", "locked"]:
        old_sha = old.encode("ascii") if old else None
        try:
            if old_sha is None:
                added = self._repo.refs.add_if_new(self.ref, ObjectID(new))
                return "done" if added else "moved"
            # No reflog message: dulwich re-reads the config stack for each reflog line
            # (about 1 ms); gitgw keeps its own record of heads (see `witnessed_heads`).
            swapped = self._repo.refs.set_if_equals(self.ref, ObjectID(old_sha), ObjectID(new))
            return "done" if swapped else "moved"
        except FileLocked:
            self.break_stale_lock()
            return "locked"

    def _refuse_clashing_refs(self) -> None:
        # Git keeps `x` and `x/y` apart only as long as no ref holds both names: a new
        # branch `x` beside `x/y` (or `x/y` beside `x`) breaks every clone of the repository.
        mine = self.ref + b"/"
        for name in self._repo.refs.allkeys():
            if name.startswith(mine) or self.ref.startswith(name + b"/"):
                raise GitgwError(
                    f"cannot make branch {self.branch!r}: the ref {name.decode()} exists, "
                    "and Git cannot hold both names",
                    "choose another state branch name with --branch",
                )

    def break_stale_lock(self, ref: Ref | None = None) -> bool:
        """Remove the lock on `ref` (default: the state branch) that a writer killed while
        holding it left behind; whether there was one. Holding a ref's lock takes
        microseconds, so one this old belongs to a dead process."""
        lock = Path(self._repo.commondir()) / ((ref or self.ref).decode("utf-8") + ".lock")
        try:
            if time.time() - lock.stat().st_mtime > _STALE_LOCK_SECONDS:
                lock.unlink()
                return True
        except OSError:
            pass
        return False

    def set_head(self, new: str, expect: str | None) -> bool:
        """Move the branch from `expect` to `new` (compare-and-swap); False if it moved."""
        self._guard_checkout()
        ok = self._swap(expect, new.encode("ascii")) == "done"
        if ok:
            self._witness(new.encode("ascii"))
        return ok

    # -- housekeeping --------------------------------------------------------------------

    def loose_object_count(self) -> int:
        """How many loose objects the repository holds (a bounded estimate, like git gc)."""
        objects = Path(self._repo.object_store.path)
        sample = objects / "17"
        try:
            return len(os.listdir(sample)) * 256
        except FileNotFoundError:
            return 0

    def pack(self) -> int:
        """Pack loose objects into one pack; returns how many were packed."""
        return int(self._repo.object_store.pack_loose_objects())

    def preload(self) -> None:
        """Read every object once, sequentially, so a full-history walk avoids random I/O."""
        objects: dict[bytes, tuple[int, bytes]] = {}
        store = self._repo.object_store
        for pack in store.packs:
            for obj in pack.iterobjects():
                objects[obj.id] = (obj.type_num, obj.as_raw_string())
        for sha in store._iter_loose_objects():
            if sha not in objects:
                objects[sha] = store.get_raw(sha)
        self.trees.preloaded = objects

    @property
    def dulwich_repo(self) -> Repo:
        """The underlying dulwich repository, for the other modules of this package."""
        return self._repo
