"""`memory/<id>.md` notes and `memory/tombstones/<id>.yaml` records that forget them."""

from __future__ import annotations

from pydantic import Field

from gitgw.records.base import AddOnlyRecord, Level, Record, Timestamp, Ulid

__all__ = ["MemoryNote", "MemoryTombstone"]


class MemoryNote(Record):
    """The front matter of a shared memory note; the markdown body follows it."""

    id: Ulid
    title: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    trust: Level = "internal"
    author: str
    source: str | None = None
    created: Timestamp
    updated: Timestamp


class MemoryTombstone(AddOnlyRecord):
    """Forgets a note: it leaves search on every machine; history keeps it."""

    note: Ulid
    actor: str
    reason: str | None = None
    created: Timestamp
