"""`handoffs/<id>/handoff.md` and `handoffs/<id>/events/<event-id>.yaml`.

The handoff file never changes after it is created; its life is its events. States are
A2A's TaskState, so a handoff exports losslessly to an A2A Task.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gitgw.records.base import AddOnlyRecord, Level, Sha256, Timestamp, Ulid

__all__ = [
    "TERMINAL_STATES",
    "Artifact",
    "ChangedFile",
    "ContextRef",
    "Decision",
    "Handoff",
    "HandoffEvent",
    "Party",
    "RepoRef",
    "TaskState",
]

TaskState = Literal[
    "submitted", "working", "input-required", "completed", "failed", "canceled", "rejected"
]
TERMINAL_STATES = frozenset({"completed", "failed", "canceled", "rejected"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Party(_Strict):
    """An agent, the model behind it and the machine it ran on."""

    agent: str
    model: str | None = None
    machine: str | None = None


class RepoRef(_Strict):
    """The code the handoff concerns."""

    url: str | None = None
    branch: str | None = None
    base_commit: str | None = None
    wip_commit: str | None = None


class ChangedFile(_Strict):
    """A file the work touched."""

    path: str
    status: Literal["added", "modified", "deleted", "renamed"] = "modified"


class Decision(_Strict):
    """A decision taken, and why."""

    decision: str
    reason: str


class ContextRef(_Strict):
    """Something the receiving agent should read."""

    kind: Literal["memory", "file", "receipt", "handoff", "url"]
    ref: str


class Handoff(AddOnlyRecord):
    """The front matter of `handoff.md`; the markdown body follows it."""

    from_: Party = Field(alias="from")
    to: str = Field(description="An agent name, or `any`.")
    title: str = Field(min_length=1)
    goal: str | None = None
    acceptance: list[str] = Field(default_factory=list)
    repo: RepoRef | None = None
    changed_files: list[ChangedFile] = Field(default_factory=list)
    decisions: list[Decision] = Field(default_factory=list)
    verify_commands: list[str] = Field(default_factory=list)
    blockers: list[str] = Field(default_factory=list)
    next_steps: list[str] = Field(default_factory=list)
    context: list[ContextRef] = Field(default_factory=list)
    trust: Level = "internal"
    created: Timestamp


class Artifact(_Strict):
    """Something an agent produced: a commit, a file, a link, by digest where it has one."""

    name: str
    uri: str
    sha256: Sha256 | None = None


class HandoffEvent(AddOnlyRecord):
    """A claim, a state change, a note or an artifact on a handoff."""

    handoff: Ulid
    kind: Literal["claim", "state", "note", "artifact"]
    agent: str
    state: TaskState | None = None
    note: str | None = None
    artifact: Artifact | None = None
    created: Timestamp
