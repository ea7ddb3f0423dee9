"""Reading an object straight from a mapped pack: whole objects and deltas.

A whole object is its header and one zlib stream, inflated here in one call. A delta
(what `git gc` and `git repack` make of most objects) names its base by offset or by
id; the base is read the same way, and the delta applied to it with dulwich's C
`apply_delta`. The bases are kept, by pack and offset, in one cache per store bounded
by bytes: a reader going through history meets the same bases again and again (each
version of a tree or a record is stored as a delta against a neighbour), and dulwich's
general reader, which resolved each chain from its start, cost about eight times as
much per delta.

Anything unusual (a chain deeper than git makes, a base in another pack, data that does
not come out at the size its header says, a pack cut short, a header declaring more
than memory holds) returns None: the caller reads it through dulwich, which reads it or
says what is wrong with it, as it always has.
"""

from __future__ import annotations

import mmap
import zlib
from collections import OrderedDict
from collections.abc import Mapping

from dulwich.errors import ApplyDeltaError
from dulwich.pack import apply_delta

__all__ = ["MAX_DEPTH", "BaseCache", "read_object"]

_WHOLE = frozenset({1, 2, 3, 4})  # commit, tree, blob, tag
_OFS_DELTA, _REF_DELTA = 6, 7
MAX_DEPTH = 128  # git's own repacks stop at 50 (--depth); deeper is left to dulwich


class BaseCache:
    """Objects that served as delta bases, by pack and offset; the least recently used
    go first once they hold more than `limit` bytes (one cache for every pack of a
    store, so the bound holds however many packs there are)."""

    def __init__(self, limit: int = 8 << 20) -> None:
        self.limit = limit
        self.size = 0
        self._objects: OrderedDict[tuple[str, int], tuple[int, bytes]] = OrderedDict()

    def get(self, key: tuple[str, int]) -> tuple[int, bytes] | None:
        """The object cached under `key` (pack name, offset), if any."""
        found = self._objects.get(key)
        if found is not None:
            self._objects.move_to_end(key)
        return found

    def put(self, key: tuple[str, int], found: tuple[int, bytes]) -> None:
        """Keep `found` under `key` (not an object over a quarter of the limit)."""
        if key in self._objects or len(found[1]) > self.limit // 4:
            return
        self._objects[key] = found
        self.size += len(found[1])
        while self.size > self.limit:
            _, (_, dropped) = self._objects.popitem(last=False)
            self.size -= len(dropped)


def _inflate(data: mmap.mmap | bytes, pos: int, size: int) -> bytes | None:
    # Deflate's worst case for `size` bytes (zlib's compressBound), with room; data past
    # the stream's end is ignored.
    bound = size + (size >> 12) + (size >> 14) + 64
    try:
        raw = zlib.decompress(data[pos : pos + bound], bufsize=size + 1)
    except zlib.error:
        return None
    return raw if len(raw) == size else None


def _header(data: mmap.mmap | bytes, offset: int) -> tuple[int, int, int]:
    # An object's type, its (inflated) size, and where what follows the header starts.
    byte = data[offset]
    type_num, size, shift, pos = (byte >> 4) & 7, byte & 15, 4, offset + 1
    while byte & 0x80:  # the size goes on, seven bits a byte
        byte = data[pos]
        size |= (byte & 0x7F) << shift
        shift, pos = shift + 7, pos + 1
    return type_num, size, pos


def _base(
    data: mmap.mmap | bytes,
    type_num: int,
    offset: int,
    pos: int,
    offsets: Mapping[bytes, int] | None,
) -> tuple[int | None, int]:
    # A delta's base (its offset in this pack, None if not found) and where the delta's
    # zlib stream starts.
    if type_num == _OFS_DELTA:
        byte = data[pos]
        distance, pos = byte & 0x7F, pos + 1
        while byte & 0x80:  # git's offset encoding: each further byte adds one first
            byte = data[pos]
            distance, pos = ((distance + 1) << 7) | (byte & 0x7F), pos + 1
        return (offset - distance if distance <= offset else None), pos
    if type_num == _REF_DELTA and offsets is not None:
        return offsets.get(bytes(data[pos : pos + 20])), pos + 20
    return None, pos


def read_object(
    data: mmap.mmap | bytes,
    offset: int,
    offsets: Mapping[bytes, int] | None,
    cache: BaseCache,
    pack: str,
    depth: int = 0,
) -> tuple[int, bytes] | None:
    """(type number, raw bytes) of the object at `offset` of the pack `data` (named
    `pack` in the cache), or None where dulwich should read it. `offsets` finds a base
    named by id in this pack; `depth` is how many deltas down this read is."""
    try:
        type_num, size, pos = _header(data, offset)
        if type_num in _WHOLE:
            raw = _inflate(data, pos, size)
            return None if raw is None else (type_num, raw)
        base_at, pos = _base(data, type_num, offset, pos, offsets)
        if base_at is None or depth >= MAX_DEPTH:
            return None
        base = cache.get((pack, base_at))
        if base is None:
            base = read_object(data, base_at, offsets, cache, pack, depth + 1)
            if base is None:
                return None
            cache.put((pack, base_at), base)
        delta = _inflate(data, pos, size)
        if delta is None:
            return None
        return base[0], b"".join(apply_delta(base[1], delta))
    except ApplyDeltaError:  # a delta that does not fit its base
        return None
    except (IndexError, OverflowError, MemoryError):
        # A pack cut short, or a header declaring more than can be: dulwich reads it, or
        # says what is wrong with it, as it always has.
        return None
