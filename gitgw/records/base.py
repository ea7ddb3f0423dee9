"""Types every record shares: trust levels, ULIDs, times, and the record base classes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

from gitgw._canonical import compute_digest, format_time

__all__ = [
    "LEVELS",
    "LEVEL_RANK",
    "AddOnlyRecord",
    "Digest",
    "Level",
    "Record",
    "Sha256",
    "Timestamp",
    "Ulid",
    "level_rank",
]

LEVELS: tuple[str, ...] = ("public", "internal", "confidential", "restricted")
Level = Literal["public", "internal", "confidential", "restricted"]


LEVEL_RANK: dict[str, int] = {level: rank for rank, level in enumerate(LEVELS)}


def level_rank(level: str) -> int:
    """The position of `level` from lowest (public, 0) to highest (restricted, 3)."""
    return LEVEL_RANK[level]


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must carry a time zone (gitgw writes UTC with a trailing Z)")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:30-01:00 is in the year 10000 in UTC
        raise ValueError("lies outside the years 1 to 9999 in UTC") from None


# The pattern is the whole ULID check (`is_ulid`'s), run inside pydantic-core: pydantic's
# regular expressions anchor `$` at the very end, so nothing a Python check would refuse
# gets past it, and a record holding a few ULIDs is validated without calling back here.
Ulid = Annotated[str, Field(pattern=r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
Timestamp = Annotated[datetime, AfterValidator(_utc), PlainSerializer(format_time, return_type=str)]
Digest = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Record(BaseModel):
    """A file on the state branch: strict (unknown keys are errors) and immutable in memory."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    schema_version: Literal[1] = 1

    def to_data(self) -> dict[str, Any]:
        """The record as the JSON-compatible mapping written to its file."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class AddOnlyRecord(Record):
    """A record that is written once under its id and never changed or deleted.

    Its `digest` covers every other field, so verification can prove the bytes on the
    branch are the bytes that were added.
    """

    id: Ulid
    digest: Digest | None = None

    def sealed(self) -> dict[str, Any]:
        """The record's content with its digest computed and set, ready to write."""
        data = self.to_data()
        data.pop("digest", None)
        data["digest"] = compute_digest(data)
        return data
