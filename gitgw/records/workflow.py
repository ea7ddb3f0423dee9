"""`workflows/<name>.yaml`: a trigger and the steps it runs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gitgw.records.base import Record

__all__ = ["Step", "Trigger", "Workflow"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


class Trigger(_Strict):
    """What fires a workflow; exactly one kind is set."""

    handoff: dict[str, str] | None = Field(
        default=None, description="Match a handoff created or changed: keys `to`, `state`."
    )
    request: dict[str, str] | None = Field(
        default=None, description="A new request file; optional key `model`."
    )
    path: str | None = Field(default=None, description="Any change under this glob.")
    schedule: str | None = Field(default=None, description="A five-field cron expression.")
    gitea_push: dict[str, str] | None = Field(
        default=None, description="A Gitea push: keys `repo` (owner/name) and `branch`."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Trigger:
        kinds = [name for name, value in self if value is not None]
        if len(kinds) != 1:
            raise ValueError(
                "a trigger sets exactly one of handoff, request, path, schedule, gitea_push"
            )
        return self


class Step(_Strict):
    """One step; `with_` holds the step kind's arguments (templates allowed in strings)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    uses: Literal["complete", "run", "memory", "handoff", "gitea-status"]
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    timeout_s: float | None = Field(default=None, gt=0)


class Workflow(Record):
    """A whole workflow file."""

    description: str | None = None
    on: list[Trigger] = Field(min_length=1)
    steps: list[Step] = Field(min_length=1)
