"""`conflicts/<id>/conflict.yaml`: a sync that found one mutable file edited on both sides.

Sync keeps the local version in place and the remote one under
`conflicts/<id>/files/<path>`, so nothing is dropped and a person decides.
"""

from __future__ import annotations

from pydantic import Field

from gitgw.records.base import AddOnlyRecord, Timestamp

__all__ = ["Conflict"]


class Conflict(AddOnlyRecord):
    """Which file conflicted, between which commits, and where the other version is."""

    path: str
    ours: str = Field(description="The local commit whose version stays in place.")
    theirs: str = Field(description="The remote commit whose version is kept aside.")
    kept_at: str
    created: Timestamp
