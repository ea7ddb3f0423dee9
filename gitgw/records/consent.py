"""`consent/<yyyy>/<mm>/<id>.yaml`: who may send what to which provider."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gitgw.records.base import AddOnlyRecord, Level, Timestamp, Ulid

__all__ = ["SUBJECT_KINDS", "ConsentEntry"]

SUBJECT_KINDS = ("provider", "client", "env", "tool")


class ConsentEntry(AddOnlyRecord):
    """A grant or a revocation of one subject, e.g. ``provider:openai`` up to ``internal``."""

    action: Literal["grant", "revoke"]
    subject: str = Field(pattern=r"^(provider|client|env|tool):[A-Za-z0-9_.@/-]+$")
    level: Level | None = None
    purpose: str | None = None
    actor: str
    created: Timestamp
    reason: str | None = None
    supersedes: Ulid | None = None

    @model_validator(mode="after")
    def _grant_has_level(self) -> ConsentEntry:
        if self.action == "grant" and self.level is None:
            raise ValueError("a grant needs a level")
        return self
