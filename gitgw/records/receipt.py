"""`receipts/<yyyy>/<mm>/<dd>/<hh>/<batch-id>.jsonl`: proof of what context went where.

A receipt never holds prompt or completion text unless the configuration turns on
content capture for its route; it holds digests, sizes and the names of rules.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gitgw.records.base import AddOnlyRecord, Level, Sha256, Timestamp, Ulid

__all__ = ["ContextPart", "Receipt", "Rejection", "Route", "Usage"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Route(_Strict):
    """Where a call went. `location` lets an audit answer from the receipt alone."""

    provider: str
    model: str
    endpoint: str
    location: Literal["local", "hosted"] | None = Field(
        default=None, description="Whether the provider was local or hosted at the time."
    )


class Rejection(_Strict):
    """A candidate that was not used, and why."""

    provider: str
    model: str
    reason: str


class ContextPart(_Strict):
    """One message (or tool result) of the context, by digest and size only."""

    role: str
    sha256: Sha256
    chars: int = Field(ge=0)
    tokens: int | None = Field(default=None, ge=0)
    content: str | None = Field(default=None, description="Only with content capture on.")


class Usage(_Strict):
    """Token counts reported by the upstream."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class Receipt(AddOnlyRecord):
    """One model call (or refusal), as one line of a receipt batch."""

    created: Timestamp
    client: str | None = None
    level: Level
    rules: list[str] = Field(default_factory=list)
    route: Route | None = None
    rejected: list[Rejection] = Field(default_factory=list)
    consent: list[Ulid] = Field(default_factory=list)
    context: list[ContextPart] = Field(default_factory=list)
    usage: Usage | None = None
    cost: float | None = None
    latency_ms: float | None = None
    overhead_ms: float | None = None
    outcome: Literal["ok", "refused", "upstream_error", "client_error", "interrupted"]
    detail: str | None = None
    offline: bool = False
    config_commit: str | None = None
    run: Ulid | None = None
