"""`verify`'s cache of proven files: the (path, blob) pairs whose format check passed.

A file's format check depends only on its path and its bytes, and a blob id is the hash
of its bytes, so a pair proven once stays proven for this version of gitgw and its
schemas. The pairs live under `.git/gitgw/verified/`, in a file named by a fingerprint of
both (and of whether the secrets guard ran), one entry a line, appended at the end of a
run; a receipt batch's record ids go to a file beside it, for the check that no record
is given twice. Derived and rebuildable: deleting the directory loses nothing.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from pathlib import Path

from gitgw import __version__
from gitgw.records import json_schemas
from gitgw.state import StateRepo

__all__ = ["ProvenFiles"]


@functools.cache
def _fingerprint(secrets: bool) -> str:
    # Generating the schemas costs ~0.2 s: once per process, and never for the checks
    # of incoming commits (sync, the daemon), which do not use the cache.
    schemas = b"".join(data for _, data in sorted(json_schemas().items()))
    return hashlib.sha256(f"{__version__} {secrets}".encode() + schemas).hexdigest()[:16]


class ProvenFiles:
    """The (path, blob) pairs whose format check passed before, and their record counts."""

    def __init__(self, repo: StateRepo, secrets: bool, enabled: bool) -> None:
        self.path: Path | None = None
        if enabled:
            tag = _fingerprint(secrets)
            self.path = repo.gitgw_dir / "verified" / tag
        self.known: dict[tuple[str, str], int] = {}
        self.ids: dict[str, list[str]] = {}  # a batch's record ids, by its blob
        self.new: list[str] = []
        self.new_ids: list[str] = []
        if self.path is not None:
            # One entry a line, ended by a line feed only: a file name may hold any other
            # character `str.splitlines` breaks at, and the branch chooses its names.
            for line in _lines(self.path):
                parts = line.split(" ", 2)
                if len(parts) == 3 and parts[1].isdigit():  # a torn last line is skipped
                    self.known[(parts[2], parts[0])] = int(parts[1])
            for line in _lines(self._ids_path):
                blob, _, ids = line.partition(" ")
                if ids:
                    self.ids[blob] = ids.split(",")

    @property
    def _ids_path(self) -> Path:
        assert self.path is not None
        return self.path.with_name(self.path.name + ".ids")

    def add(self, path: str, blob: str, records: int, ids: list[str] | None) -> None:
        self.known[(path, blob)] = records
        if "\n" not in path:  # a name a line feed would split is proven again next time
            self.new.append(f"{blob} {records} {path}\n")
            if ids:
                self.ids[blob] = ids
                self.new_ids.append(f"{blob} {','.join(ids)}\n")

    def batch_ids(self, blob: str, records: int) -> list[str] | None:
        """The record ids of a proven batch, if all of them are known."""
        ids = self.ids.get(blob)
        return ids if ids is not None and len(ids) == records else None

    def save(self) -> None:
        """Append the entries proven in this run; a repository this process cannot
        write to keeps its cache as it was (the next run proves them again)."""
        if self.path is None or not self.new:
            return
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # The ids first: a batch proven without them is proven again.
            with self._ids_path.open("a", encoding="utf-8") as handle:
                handle.writelines(self.new_ids)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.writelines(self.new)
        self.new.clear()
        self.new_ids.clear()


def _lines(path: Path) -> list[str]:
    # A line spoilt by a torn write is skipped (its entry is proven again), not the file.
    try:
        return path.read_text(encoding="utf-8", errors="replace").split("\n")
    except OSError:
        return []
