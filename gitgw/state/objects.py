"""Reading objects: straight from the packs' mappings and the loose files, without the
object store's general lookup (which looks for a multi-pack index on every call and
costs about 35 µs more an object); anything unusual is left to the store, which finds
it or raises as it always does.
"""

from __future__ import annotations

import binascii
import contextlib
import mmap
import os
import threading
import time
import zlib
from collections.abc import Iterator

from dulwich.object_store import BaseObjectStore, DiskObjectStore, PackBasedObjectStore
from dulwich.objects import Blob, ObjectID, RawObjectID, ShaFile
from dulwich.pack import Pack, PackFileDisappeared

from gitgw.errors import MissingObject
from gitgw.state.pack_index import PackView, shared_offset_table
from gitgw.state.pack_objects import BaseCache, read_object

__all__ = ["ObjectReader"]

TYPE_NAMES = {1: b"commit", 2: b"tree", 3: b"blob", 4: b"tag"}
_TYPE_NUMS = {name: num for num, name in TYPE_NAMES.items()}
_PACKS_TTL = 1.0  # seconds before the list of packs is read again


class ObjectReader:
    """Reads the objects of one object store: any object raw or parsed, and blobs one at
    a time or many at once."""

    def __init__(self, store: BaseObjectStore) -> None:
        self._store = store
        self._objects_dir = str(store.path) if isinstance(store, DiskObjectStore) else None
        self.preloaded: dict[bytes, tuple[int, bytes]] | None = None
        self._packs: list[Pack] = []
        self._packs_read = -_PACKS_TTL
        # The last commits written here: the next commit starts from one of them.
        self._recent: dict[bytes, tuple[int, bytes]] = {}
        self._pack_lock = threading.Lock()
        self._views: dict[int, PackView] = {}  # by id() of a pack in self._packs
        self._bases = BaseCache()  # delta bases read lately, from any pack
        self._bulk = False

    def raw(self, sha: bytes) -> tuple[int, bytes]:
        """(type number, raw bytes) of any object."""
        if self.preloaded is not None:
            found = self.preloaded.get(sha)
            if found is not None:
                return found
        found = self._recent.get(sha)
        if found is not None:
            return found
        # Straight to the packs, then the loose object: the store's own lookup costs more
        # than reading a small object (it looks for a multi-pack index on every call).
        # Anything unusual (an object elsewhere, a pack removed by a repack) goes through
        # the store, which finds it or raises as it always does.
        found = self._read_direct(sha) if len(sha) == 40 else None
        if found is not None:
            return found
        with self._pack_lock:
            try:
                return self._store.get_raw(ObjectID(sha))
            except KeyError:
                raise MissingObject(sha.decode("ascii", "replace")) from None

    def _read_direct(self, sha: bytes) -> tuple[int, bytes] | None:
        try:
            binary = RawObjectID(binascii.unhexlify(sha))
        except binascii.Error:
            return None
        with self._pack_lock:  # a pack is one file handle: seek-and-read is not shareable
            try:
                packs = self._known_packs()
            except (OSError, PackFileDisappeared):  # a gc is replacing packs: the store decides
                self._packs_read = -_PACKS_TTL
                return None
            for pack in packs:
                try:
                    return self._read_packed(pack, binary)
                except KeyError:
                    continue
                except (OSError, ValueError, zlib.error, PackFileDisappeared):
                    self._packs_read = -_PACKS_TTL
                    return None
        return self._read_loose(sha)

    def index_packs(self) -> None:
        """Find objects in the packs through a table of every object's offset from now
        on, for a reader about to read most of them (`verify`). The table costs about
        130 bytes an object, so a long-running reader of a few objects goes without."""
        with self._pack_lock:
            self._bulk = True

    @contextlib.contextmanager
    def bulk_reads(self) -> Iterator[None]:
        """`index_packs` for the block only: a long-running reader (the daemon, syncing)
        goes back to reading a few objects at a time after it."""
        with self._pack_lock:
            was = self._bulk
            self._bulk = True
        try:
            yield
        finally:
            if not was:
                with self._pack_lock:
                    self._bulk = False
                    for view in self._views.values():
                        view.offsets, view.tabled = None, False

    def _read_packed(self, pack: Pack, binary: RawObjectID) -> tuple[int, bytes]:
        # Read here straight from a mapping of the pack (`read_object`: a third of the
        # cost of dulwich's general reader for a whole object, an eighth for a delta);
        # anything that does not come out as expected is read by dulwich.
        view = self._views[id(pack)]
        self._table(view)
        if view.offsets is not None:
            offset = view.offsets[binary]  # KeyError: not in this pack
        else:
            offset = pack.index.object_offset(binary)
        data = self._mapped(view)
        if data is None:
            return pack.get_raw(binary)
        found = read_object(data, offset, view.offsets, self._bases, view.name)
        return found if found is not None else pack.get_raw(binary)

    def _table(self, view: PackView) -> None:
        if not view.tabled and self._bulk and self._objects_dir is not None:
            view.tabled = True
            index = os.path.join(self._objects_dir, "pack", view.name[: -len(".pack")] + ".idx")
            view.offsets = shared_offset_table(index)

    def _mapped(self, view: PackView) -> mmap.mmap | None:
        if view.data is None and self._objects_dir is not None:
            with open(os.path.join(self._objects_dir, "pack", view.name), "rb") as handle:
                view.data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        return view.data

    def _tabled(self, pack: Pack) -> tuple[mmap.mmap, dict[bytes, int], str] | None:
        # A pack's mapping and table of offsets, for `blobs`; None without a table.
        view = self._views[id(pack)]
        self._table(view)
        if view.offsets is None:
            return None
        data = self._mapped(view)
        return None if data is None else (data, view.offsets, view.name)

    def _known_packs(self) -> list[Pack]:
        now = time.monotonic()
        if now - self._packs_read >= _PACKS_TTL and isinstance(self._store, PackBasedObjectStore):
            # A pack's name comes from its path: asking its data opens the file, which a
            # running `git gc` may have renamed away. Its temporary packs are not ours.
            named = [
                (pack, os.path.basename(pack._basename) + ".pack") for pack in self._store.packs
            ]
            named = [(pack, name) for pack, name in named if not name.startswith(".tmp-")]
            # A pack a repack replaced loses its view; its mapping closes once no read
            # holds it.
            known = {view.name: view for view in self._views.values()}
            self._views = {id(pack): known.get(name) or PackView(name) for pack, name in named}
            self._packs = [pack for pack, _ in named]
            self._packs_read = now
        return self._packs

    def _read_loose(self, sha: bytes) -> tuple[int, bytes] | None:
        if self._objects_dir is None:
            return None
        hexsha = sha.decode("ascii")
        try:
            with open(os.path.join(self._objects_dir, hexsha[:2], hexsha[2:]), "rb") as handle:
                data = zlib.decompress(handle.read())
        except (OSError, zlib.error):
            return None
        header, _, raw = data.partition(b"\0")
        type_name, _, size = header.partition(b" ")
        type_num = _TYPE_NUMS.get(type_name)
        if type_num is None or size != b"%d" % len(raw):
            return None  # not an object in today's format: let the store read it
        return type_num, raw

    def get(self, sha: bytes) -> ShaFile:
        """Any object, parsed."""
        type_num, raw = self.raw(sha)
        return ShaFile.from_raw_string(type_num, raw, ObjectID(sha))

    def blob(self, sha: bytes) -> bytes:
        """The bytes of blob `sha`."""
        type_num, raw = self.raw(sha)
        if type_num != Blob.type_num:
            raise ValueError(f"{sha.decode()} is not a blob")
        return raw

    def blobs(self, shas: list[bytes]) -> Iterator[bytes]:
        """The bytes of each of `shas` in turn, as `blob` gives them, for a reader of many
        (`verify`): each is found in the offset tables of the packs straight away, without
        the layers a lone read goes through (a tenth of the cost of a small blob)."""
        tabled = []
        if self.preloaded is None:
            # Should a gc be replacing the packs just now, each blob is read on its own.
            with self._pack_lock, contextlib.suppress(OSError, ValueError, PackFileDisappeared):
                tabled = [self._tabled(pack) for pack in self._known_packs()]
        tables = [found for found in tabled if found is not None]
        for sha in shas:
            found = None
            try:
                binary = binascii.unhexlify(sha) if tables else b""
            except binascii.Error:
                binary = b""
            for data, offsets, name in tables:
                offset = offsets.get(binary)
                if offset is not None:
                    # The cache of delta bases is shared; a mapping a gc has made unreadable
                    # leaves the blob to a lone read, as it does there.
                    with self._pack_lock, contextlib.suppress(OSError, ValueError, zlib.error):
                        found = read_object(data, offset, offsets, self._bases, name)
                    break
            if found is not None and found[0] == Blob.type_num:
                yield found[1]
            else:  # anything else, as a lone read finds it (or raises)
                yield self.blob(sha)
