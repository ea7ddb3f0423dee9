"""`requests/<id>.yaml` and `responses/<id>.yaml`: the gateway over `git push`.

A response has its own id (so its file is add-only like every record) and names the
request it answers in `request`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gitgw.records.base import AddOnlyRecord, Level, Timestamp, Ulid

__all__ = ["Message", "Request", "Response"]


class Message(BaseModel):
    """A chat message, as the OpenAI API shapes it."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)

    role: str
    content: Any = None


class Request(AddOnlyRecord):
    """A model call asked for by committing a file."""

    created: Timestamp
    agent: str
    model: str
    messages: list[Message] | None = None
    template: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    trust: Level | None = Field(default=None, description="May raise the level, never lower it.")
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _messages_or_template(self) -> Request:
        if (self.messages is None) == (self.template is None):
            raise ValueError("a request needs exactly one of `messages` or `template`")
        return self


class Response(AddOnlyRecord):
    """The answer to a request file: where it went and what came back."""

    request: Ulid
    created: Timestamp
    outcome: Literal["ok", "refused", "error"]
    content: str | None = None
    receipt: Ulid | None = None
    run: Ulid | None = None
    error: str | None = None
