"""`conflicts/<id>/conflict.yaml`: a sync that found one mutable file edited on both
sides, or deleted on one side and changed on the other.

Edited on both sides: sync keeps the local version in place and the remote one under
`conflicts/<id>/files/<path>`, so nothing is dropped and a person decides. Deleted on
one side: the change stays in place, so the deletion is undone, and the record says so.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gitgw.records.base import AddOnlyRecord, Timestamp

__all__ = ["Conflict"]


class Conflict(AddOnlyRecord):
    """Which file conflicted, between which commits, and where the other version is."""

    path: str
    ours: str = Field(description="The local commit of the sync that met the conflict.")
    theirs: str = Field(description="The remote commit of that sync.")
    kept_at: str | None = Field(
        None, description="Where the remote version is kept; none when a side deleted the file."
    )
    deleted: Literal["ours", "theirs"] | None = Field(
        None,
        description="The side that deleted the file while the other changed it; the change "
        "stays in place.",
    )
    created: Timestamp
