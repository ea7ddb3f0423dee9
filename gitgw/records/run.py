"""`runs/<yyyy>/<mm>/<dd>/<id>.yaml`: what it takes to reproduce a call or a workflow run."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gitgw.records.base import AddOnlyRecord, Level, Sha256, Timestamp, Ulid

__all__ = ["Run", "RunPart", "RunStep"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class RunPart(_Strict):
    """An input or output, by digest; its text only when capture is on.

    `sha256` is the digest of the exact text that `content` holds when captured: the
    message's text (no `form`), or the canonical JSON of the message without its
    role (`form: json`, for structured content and tool calls).
    """

    role: str
    sha256: Sha256
    chars: int = Field(ge=0)
    form: Literal["text", "json"] | None = Field(
        default=None,
        description="What `sha256` covers: the text (absent, or `text`), or the canonical "
        "JSON of the message without its role (`json`).",
    )
    content: str | None = Field(default=None, description="Only with content capture on.")


class RunStep(_Strict):
    """One step of a workflow run."""

    name: str
    kind: str
    outcome: Literal["succeeded", "failed", "skipped", "interrupted"]
    started: Timestamp
    finished: Timestamp | None = None
    error: str | None = None
    receipts: list[Ulid] = Field(default_factory=list)


class Run(AddOnlyRecord):
    """A run ledger entry. A run that starts and later ends is two records; the second
    names the first in `follows`."""

    kind: Literal["call", "workflow", "replay", "request"]
    status: Literal["started", "succeeded", "failed", "interrupted"]
    follows: Ulid | None = None
    workflow: str | None = None
    trigger: dict[str, Any] | None = None
    provider: str | None = None
    model: str | None = None
    level: Level | None = Field(
        default=None, description="The trust level of the inputs; a replay may go no higher."
    )
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: list[RunPart] = Field(default_factory=list)
    outputs: list[RunPart] = Field(default_factory=list)
    steps: list[RunStep] = Field(default_factory=list)
    receipts: list[Ulid] = Field(default_factory=list)
    config_commit: str | None = None
    started: Timestamp
    finished: Timestamp | None = None
    error: str | None = None
