"""Tree objects: rebuild only the trees along changed paths, diff and walk them.

A commit of k new files costs the depth of their paths times the size of the
directories they land in, never the number of files already on the branch. Each tree
is cached as its sorted raw entries, so a changed tree is a splice of the cached one
(bisect, insert, join) rather than a re-serialization, and it is written as a loose
object in git's own format without being parsed back. Ids never change meaning, so the
cache needs no invalidation.
"""

from __future__ import annotations

import binascii
import bisect
import contextlib
import hashlib
import itertools
import os
import re
import stat
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Union

from dulwich.object_store import BaseObjectStore
from dulwich.objects import Blob, Commit, ObjectID, ShaFile, Tree, parse_tree

from gitgw.state.objects import TYPE_NAMES, ObjectReader

__all__ = ["DIR_MODE", "FILE_MODE", "Entries", "TreeStore", "nest_changes"]

FILE_MODE = 0o100644
DIR_MODE = stat.S_IFDIR
_FORMAT = 0o170000  # the file-type bits of a mode: `stat.S_ISDIR(m)` is `m & _FORMAT == DIR_MODE`

Entries = dict[bytes, tuple[int, bytes]]  # name -> (mode, hex id)
# name -> blob id (set), None (delete), or the changes of a subdirectory
Nested = dict[bytes, Union[bytes, "Nested", None]]

_RECENT_COMMITS = 64
_CREATE_ATTEMPTS = 20


def nest_changes(changes: Mapping[str, bytes | None]) -> Nested:
    """Turn {"a/b/c": blob_id} into {b"a": {b"b": {b"c": blob_id}}}."""
    root: Nested = {}
    for path, blob_id in changes.items():
        *dirs, leaf = path.encode("utf-8").split(b"/")
        node = root
        for name in dirs:
            child = node.setdefault(name, {})
            if not isinstance(child, dict):
                raise ValueError(f"{path}: a file and a directory cannot share a name")
            node = child
        node[leaf] = blob_id
    return root


def _sort_key(name: bytes, mode: int) -> bytes:
    # Git orders entries by name, with a directory's name compared as "name/".
    return name + b"/" if mode == DIR_MODE else name


def _chunk(name: bytes, mode: int, sha: bytes) -> bytes:
    return b"%o %s\0%s" % (mode, name, binascii.unhexlify(sha))


# One raw tree entry: "<octal mode> <name>\0" and a 20-byte id (which may hold any byte).
_ENTRY = re.compile(rb"[^\0]+\0.{20}", re.DOTALL)
_ENTRY_SETS = 256  # trees whose raw entries are kept for diffs


# Git's modes of a file; a symbolic link (120000) or a submodule (160000) is none to gitgw.
_REGULAR = frozenset({0o100644, 0o100755})
_NOT_A_FILE = "is a symbolic link or a submodule, not a file: gitgw reads regular files only"


def _decoded(name: bytes) -> str:
    # A name is UTF-8 in every path gitgw knows; any other is shown, escaped, as unknown.
    return name.decode("utf-8", "backslashreplace")


def _parse_entry(chunk: bytes) -> tuple[bytes, tuple[int, bytes]]:
    mode, _, name = chunk[:-21].partition(b" ")
    return name, (int(mode, 8), binascii.hexlify(chunk[-20:]))


@dataclass
class _CachedTree:
    entries: Entries
    twice: list[bytes]  # names the tree holds more than once (entries keeps the last)
    keys: list[bytes] | None = None  # sort keys, in git order
    chunks: list[bytes] | None = None  # raw entries, in the same order
    raw: bytes | None = None  # a tree read from the store: keys and chunks come from it

    def spliceable(self) -> tuple[list[bytes], list[bytes]]:
        """The sort keys and raw entries; made on first use (a walk needs only entries)."""
        if self.keys is None or self.chunks is None:
            assert self.raw is not None
            parsed = list(parse_tree(self.raw, 20))
            self.keys = [_sort_key(name, mode) for name, mode, _ in parsed]
            self.chunks = [_chunk(name, mode, hexsha) for name, mode, hexsha in parsed]
            self.raw = None
        return self.keys, self.chunks


class TreeStore(ObjectReader):
    """Reads and writes the trees, blobs and commits of one object store."""

    def __init__(
        self, store: BaseObjectStore, cache_size: int = 8192, cache_entries: int = 50_000
    ) -> None:
        super().__init__(store)
        self._cache: OrderedDict[bytes, _CachedTree] = OrderedDict()  # oldest first
        self._cache_entries = cache_entries  # about 100 bytes each
        self._cached_entries = 0
        # Trees' raw entries for diffs, and each raw tree the entries are all of.
        self._entry_sets: dict[bytes, tuple[frozenset[bytes], bytes | None]] = {}
        self._cache_size = cache_size
        self._counter = itertools.count()
        self._known_dirs: set[str] = set()
        self._odd = threading.local()
        # What this store wrote as loose objects, for the writer's housekeeping.
        self.loose_written = 0
        self.loose_bytes_written = 0

    @property
    def odd(self) -> list[tuple[str, str]] | None:
        """While a list (`verify` sets one in its thread, and reports and empties it),
        what `diff` and `walk` pass over in this thread, as (path, why): entries that are
        not regular files (absent to every reader here) and names a tree holds twice. Per
        thread: the daemon checks a commit while the proxy's threads read the branch."""
        found: list[tuple[str, str]] | None = getattr(self._odd, "found", None)
        return found

    @odd.setter
    def odd(self, found: list[tuple[str, str]] | None) -> None:
        self._odd.found = found

    # -- trees ---------------------------------------------------------------------------

    def _cached(self, sha: bytes) -> _CachedTree:
        cached = self._cache.get(sha)
        if cached is None:
            type_num, raw = self.raw(sha)
            if type_num != Tree.type_num:
                raise ValueError(f"{sha.decode()} is not a tree")
            items = list(parse_tree(raw, 20))
            entries = {name: (mode, hexsha) for name, mode, hexsha in items}
            twice = []
            if len(entries) < len(items):  # git's fsck refuses such a tree
                names = [name for name, _, _ in items]
                twice = sorted({name for name in names if names.count(name) > 1})
            cached = _CachedTree(entries, twice, raw=raw)
            self._remember(sha, cached)
        return cached

    def entries(self, sha: bytes) -> Entries:
        """The entries of tree `sha` (shared: do not change the dict)."""
        return self._cached(sha).entries

    def names_twice(self, sha: bytes) -> list[bytes]:
        """The names tree `sha` holds more than once: `entries` has only the last one."""
        return self._cached(sha).twice

    @property
    def cached_entries(self) -> int:
        """How many tree entries the cache holds (bounded: `cache_entries`)."""
        return self._cached_entries

    def _remember(self, sha: bytes, tree: _CachedTree) -> None:
        # Bounded by entries, not by trees: each commit caches a new version of every
        # directory on its path, and a busy writer's directory of thousands of entries
        # made a few thousand versions hold hundreds of megabytes. The oldest go first
        # (a writer's old versions; a reader's trees of commits long walked past).
        previous = self._cache.pop(sha, None)
        if previous is not None:
            self._cached_entries -= len(previous.entries)
        size = len(tree.entries)
        while self._cache and (
            len(self._cache) >= self._cache_size
            or self._cached_entries + size > self._cache_entries
        ):
            _oldest, evicted = self._cache.popitem(last=False)
            self._cached_entries -= len(evicted.entries)
        self._cache[sha] = tree
        self._cached_entries += size

    def lookup(self, tree_sha: bytes | None, path: str) -> tuple[int, bytes] | None:
        """The (mode, id) at `path` under `tree_sha`, or None."""
        if tree_sha is None:
            return None
        mode, sha = DIR_MODE, tree_sha
        for name in path.encode("utf-8").split(b"/") if path else []:
            if not stat.S_ISDIR(mode):
                return None
            entry = self.entries(sha).get(name)
            if entry is None:
                return None
            mode, sha = entry
        return mode, sha

    def walk(self, tree_sha: bytes | None, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        """Every (path, blob id) under `tree_sha`."""
        if tree_sha is None:
            return
        for name, (mode, sha) in sorted(self.entries(tree_sha).items()):
            path = prefix + _decoded(name)
            if stat.S_ISDIR(mode):
                yield from self.walk(sha, path + "/")
            elif mode in _REGULAR:
                yield path, sha
            elif self.odd is not None:
                self.odd.append((path, _NOT_A_FILE))

    def diff(
        self, old: bytes | None, new: bytes | None, prefix: str = ""
    ) -> Iterator[tuple[str, bytes | None, bytes | None]]:
        """(path, old blob, new blob) for every file that differs; equal subtrees are skipped."""
        # Gathered in one list by plain recursion, then handed out: a generator per
        # directory level passed each change up through every level above it, which
        # cost verify's walk as much as finding the changes.
        found: list[tuple[str, bytes | None, bytes | None]] = []
        self._diff_into(old, new, prefix, found)
        yield from found

    def _diff_into(
        self,
        old: bytes | None,
        new: bytes | None,
        prefix: str,
        found: list[tuple[str, bytes | None, bytes | None]],
    ) -> None:
        if old == new:
            return
        if old and new:
            removed, added = self._changed_entries(old, new)
        else:
            removed = self._entry_set(old)[0] if old else frozenset()
            added = self._entry_set(new)[0] if new else frozenset()
        # The entries that differ, found by set operations on raw entries in C: a commit
        # adds a few files to a directory of hundreds, and parsing every entry of both
        # versions cost most of verify's walk through history.
        after = dict(map(_parse_entry, added))
        if len(after) < len(added) and self.odd is not None:
            self._odd_names(prefix, added)
        if not removed:  # only entries added (the usual commit): none to pair with one before
            for name, (mode, sha) in sorted(after.items()):
                path = prefix + _decoded(name)
                if mode & _FORMAT == DIR_MODE:
                    self._subdiff(None, sha, path, found)
                elif mode in _REGULAR:
                    found.append((path, None, sha))
                elif self.odd is not None:
                    self.odd.append((path, _NOT_A_FILE))
            return
        before = dict(map(_parse_entry, removed))
        for name in sorted(before.keys() | after.keys()):
            was, now = before.get(name), after.get(name)
            path = prefix + _decoded(name)
            before_dir = was[1] if was and was[0] & _FORMAT == DIR_MODE else None
            after_dir = now[1] if now and now[0] & _FORMAT == DIR_MODE else None
            if before_dir or after_dir:
                self._subdiff(before_dir, after_dir, path, found)
            # Only a regular file is a file to gitgw: anything else is absent to it.
            before_file = was[1] if was and not before_dir and was[0] in _REGULAR else None
            after_file = now[1] if now and not after_dir and now[0] in _REGULAR else None
            if now and not after_dir and not after_file and self.odd is not None:
                self.odd.append((path, _NOT_A_FILE))
            new_mode = was and now and was[0] != now[0]
            if before_file != after_file or (after_file and new_mode):
                found.append((path, before_file, after_file))  # a new mode is a change too

    def _subdiff(
        self,
        old: bytes | None,
        new: bytes | None,
        path: str,
        found: list[tuple[str, bytes | None, bytes | None]],
    ) -> None:
        try:
            self._diff_into(old, new, path + "/", found)
        except (KeyError, ValueError):  # a directory whose object is missing or no tree
            if self.odd is None:
                raise
            self.odd.append((path, "is a directory whose tree cannot be read"))

    def _odd_names(self, prefix: str, entries: frozenset[bytes]) -> None:
        assert self.odd is not None
        names = [_parse_entry(entry)[0] for entry in entries]
        for name in sorted({name for name in names if names.count(name) > 1}):
            self.odd.append((prefix + _decoded(name), "the tree holds this name twice"))

    def _changed_entries(self, old: bytes, new: bytes) -> tuple[frozenset[bytes], frozenset[bytes]]:
        """The raw entries only tree `old` has, and those only tree `new` has."""
        old_set, old_raw = self._entry_set(old)
        if new not in self._entry_sets and old_raw is not None:
            new_raw = self._tree_raw(new)
            # Records are added in time order and their names sort by time, so a commit
            # most often appends entries after all of its parent's: the new tree is the
            # old one and a tail. Only the tail is parsed then (the whole of a directory
            # of thousands of entries, for every commit, was half of the walk).
            if new_raw.startswith(old_raw):
                tail = _ENTRY.findall(new_raw, len(old_raw))
                if sum(map(len, tail)) == len(new_raw) - len(old_raw):
                    added = frozenset(tail) - old_set
                    self._keep(new, old_set | added, new_raw)
                    return frozenset(), added
            new_set = self._parsed_entries(new, new_raw)[0]
        else:
            new_set = self._entry_set(new)[0]
        return old_set - new_set, new_set - old_set

    def _entry_set(self, sha: bytes) -> tuple[frozenset[bytes], bytes | None]:
        # A tree's raw entries (mode, name, binary id), unparsed, and the raw tree when
        # they are all of it; kept for the next commit's diff, which compares with this.
        found = self._entry_sets.get(sha)
        if found is not None:
            return found
        cached = self._cache.get(sha)
        if cached is not None and cached.chunks is not None:
            entries = frozenset(cached.chunks)
            self._keep(sha, entries, None)
            return entries, None
        raw = cached.raw if cached is not None else None
        return self._parsed_entries(sha, raw if raw is not None else self._tree_raw(sha))

    def _parsed_entries(self, sha: bytes, raw: bytes) -> tuple[frozenset[bytes], bytes | None]:
        chunks = _ENTRY.findall(raw)
        # Only a tree that is entries from end to end can be the head of a longer one.
        found = (frozenset(chunks), raw if sum(map(len, chunks)) == len(raw) else None)
        self._keep(sha, *found)
        return found

    def _keep(self, sha: bytes, entries: frozenset[bytes], raw: bytes | None) -> None:
        # Bounded by clearing: a walk compares each tree with the one before it.
        if len(self._entry_sets) >= _ENTRY_SETS:
            self._entry_sets.clear()
        self._entry_sets[sha] = (entries, raw)

    def _tree_raw(self, sha: bytes) -> bytes:
        type_num, raw = self.raw(sha)
        if type_num != Tree.type_num:
            raise ValueError(f"{sha.decode()} is not a tree")
        return raw

    # -- writing -------------------------------------------------------------------------

    def add_raw(self, type_num: int, raw: bytes) -> bytes:
        """Store an object given its raw content; returns its hex id."""
        header = b"%s %d\0" % (TYPE_NAMES[type_num], len(raw))
        sha = hashlib.sha1(header + raw).hexdigest().encode("ascii")
        self._write(type_num, header, raw, sha)
        if type_num == Commit.type_num:
            if len(self._recent) >= _RECENT_COMMITS:
                self._recent.clear()
            self._recent[sha] = (type_num, raw)
        return sha

    @staticmethod
    def _create(directory: str, tmp: str) -> int:
        # git's gc removes a fan-out directory it emptied (when it packs, and again when
        # it prunes), possibly between our makedirs and open; once our file is in it,
        # the directory is not empty and stays.
        for _ in range(_CREATE_ATTEMPTS - 1):
            try:
                return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            except FileNotFoundError:
                os.makedirs(directory, exist_ok=True)
        return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)

    def _write(self, type_num: int, header: bytes, raw: bytes, sha: bytes) -> None:
        if self._objects_dir is None:
            self._store.add_object(ShaFile.from_raw_string(type_num, raw, ObjectID(sha)))
            return
        # A loose object exactly as git writes it (zlib level 1 is git's default for
        # loose objects): a temporary file in the fan-out directory, then a rename, so a
        # reader never sees half an object and a crash leaves only a stray temp file.
        hexsha = sha.decode("ascii")
        directory = os.path.join(self._objects_dir, hexsha[:2])
        target = os.path.join(directory, hexsha[2:])
        if hexsha[:2] not in self._known_dirs:
            os.makedirs(directory, exist_ok=True)
            self._known_dirs.add(hexsha[:2])
        else:
            try:
                os.utime(target)  # as git does: a gc then spares an object just written
                return
            except FileNotFoundError:
                pass  # not written yet, or packed and removed meanwhile
            except OSError:
                return  # there, but not this user's to touch
        tmp = os.path.join(directory, f"tmp_obj_{os.getpid()}_{next(self._counter)}")
        fd = self._create(directory, tmp)
        try:
            # Wide trees are mostly SHA bytes that do not compress, and they are rewritten
            # on every commit: storing them (level 0) saves about 1 ms per 1,000 entries.
            level = 0 if type_num == Tree.type_num and len(raw) > 4096 else 1
            compressed = zlib.compress(header + raw, level)
            os.write(fd, compressed)
            os.close(fd)
            os.replace(tmp, target)
            self.loose_written += 1
            self.loose_bytes_written += len(compressed)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def add_blob(self, data: bytes) -> bytes:
        """Store `data` as a blob and return its id."""
        return self.add_raw(Blob.type_num, data)

    def apply(self, tree_sha: bytes | None, changes: Nested) -> bytes | None:
        """A new tree: `tree_sha` with `changes` applied; None when it ends up empty."""
        if tree_sha is not None:
            base = self._cached(tree_sha)
            entries = dict(base.entries)
            base_keys, base_chunks = base.spliceable()
            keys, chunks = list(base_keys), list(base_chunks)
        else:
            entries, keys, chunks = {}, [], []
        for name, change in changes.items():
            existing = entries.get(name)
            if isinstance(change, dict):
                sub = existing[1] if existing and stat.S_ISDIR(existing[0]) else None
                new_sub = self.apply(sub, change)
                new = None if new_sub is None else (DIR_MODE, new_sub)
            else:
                new = None if change is None else (FILE_MODE, change)
            if existing is not None:
                at = bisect.bisect_left(keys, _sort_key(name, existing[0]))
                del keys[at], chunks[at]
                del entries[name]
            if new is not None:
                key = _sort_key(name, new[0])
                at = bisect.bisect_left(keys, key)
                keys.insert(at, key)
                chunks.insert(at, _chunk(name, new[0], new[1]))
                entries[name] = new
        if not entries:
            return None
        sha = self.add_raw(Tree.type_num, b"".join(chunks))
        self._remember(sha, _CachedTree(entries, [], keys, chunks))
        return sha

    def write_tree(self, entries: Entries) -> bytes:
        """Store a tree of `entries` and return its id."""
        order = sorted(entries, key=lambda n: _sort_key(n, entries[n][0]))
        keys = [_sort_key(n, entries[n][0]) for n in order]
        chunks = [_chunk(n, *entries[n]) for n in order]
        sha = self.add_raw(Tree.type_num, b"".join(chunks))
        self._remember(sha, _CachedTree(dict(entries), [], keys, chunks))
        return sha
