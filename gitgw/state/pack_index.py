"""Finding objects in a pack without dulwich's per-object lookup.

dulwich looks an object up in a pack's index by a binary search that calls back into
Python at every step (about 20 µs an object here). A reader about to read most of a
pack (`verify`) reads the whole version 2 index once, in a few C calls, into a table of
every object's offset (about 130 bytes an object), and maps the pack itself.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass

__all__ = ["PackView", "shared_offset_table"]

_TABLE_LIMIT = 1_000_000  # objects in a pack above which no offset table is made


@dataclass
class PackView:
    """How this store reads one pack: its file mapped, and (for a bulk reader) a table of
    every object's offset."""

    name: str
    data: mmap.mmap | None = None
    offsets: dict[bytes, int] | None = None
    tabled: bool = False  # a table was asked for (None: this index has none)


def _large(index: bytes, large_at: int, offset: int) -> int:
    at = large_at + 8 * (offset & 0x7FFFFFFF)
    return int.from_bytes(index[at : at + 8], "big")


def _offset_table(index_path: str) -> dict[bytes, int] | None:
    """Every object's offset in a pack, read from its version 2 index in a few C calls;
    None for any other index (dulwich's lookup serves it)."""
    with open(index_path, "rb") as handle:
        index = handle.read()
    if index[:8] != b"\xfftOc\x00\x00\x00\x02":
        return None
    count = int.from_bytes(index[8 + 255 * 4 : 8 + 256 * 4], "big")
    if count > _TABLE_LIMIT:
        return None  # over 130 MB of table: dulwich's lookup serves a pack this large
    names_at = 8 + 256 * 4
    offsets_at = names_at + 24 * count  # past the names (20 bytes each) and CRCs (4)
    large_at = offsets_at + 4 * count
    names = index[names_at : names_at + 20 * count]
    offsets: list[int] | tuple[int, ...] = struct.unpack(f">{count}I", index[offsets_at:large_at])
    if any(offset & 0x80000000 for offset in offsets):  # packs over 2 GiB
        offsets = [_large(index, large_at, o) if o & 0x80000000 else o for o in offsets]
    return dict(zip([names[i : i + 20] for i in range(0, 20 * count, 20)], offsets, strict=True))


# Offset tables by index file (path, size, modification time), kept for the process and the
# processes it forks: verify's workers would each read the index again (a tenth of a
# second for 100,000 objects) to build the table their parent built during its walk.
_TABLES: dict[tuple[str, int, int], dict[bytes, int] | None] = {}
_TABLES_KEPT = 8


def shared_offset_table(index_path: str) -> dict[bytes, int] | None:
    """The offset table of the pack index at `index_path`, read once per process (and
    inherited by the processes it forks); None when the index has none."""
    found = os.stat(index_path)
    key = (index_path, found.st_size, found.st_mtime_ns)
    if key not in _TABLES:
        if len(_TABLES) >= _TABLES_KEPT:
            _TABLES.clear()  # packs a repack replaced
        _TABLES[key] = _offset_table(index_path)
    return _TABLES[key]
