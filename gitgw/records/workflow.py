"""`workflows/<name>.yaml`: what fires a workflow and the steps it runs.

A step's `with` is kept as written (its strings are jinja2 templates, rendered when the
step runs), and is checked here against the arguments of the step's kind
(`STEP_ARGS[uses]`): a missing or unknown key, or a value of the wrong shape, makes the
whole file invalid, so the hooks and `gitgw verify` reject it before any daemon sees
it. The runner renders the templates and validates the result with the same model.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gitgw.records.base import LEVELS, Record
from gitgw.records.cron import Cron
from gitgw.records.handoff import ContextRef, RepoRef, TaskState

__all__ = [
    "GITEA_STATES",
    "STEP_ARGS",
    "ArtifactArgs",
    "ChatMessage",
    "CompleteArgs",
    "GiteaStatusArgs",
    "HandoffArgs",
    "HandoffCreateArgs",
    "MemoryArgs",
    "RunArgs",
    "Step",
    "StepKind",
    "Trigger",
    "Workflow",
    "explain_args",
    "is_template",
]

StepKind = Literal["complete", "run", "memory", "handoff", "gitea-status"]
GITEA_STATES: tuple[str, ...] = ("pending", "success", "error", "failure", "warning")
_TASK_STATES: tuple[str, ...] = get_args(TaskState)
_TEMPLATE = re.compile(r"\{\{|\{%")


def is_template(text: str) -> bool:
    """Whether `text` holds jinja2 markup (`{{ … }}` or `{% … %}`)."""
    return _TEMPLATE.search(text) is not None


def _problem(message: str) -> PydanticCustomError:
    # "{message}" keeps braces in the text (templates) from being read as placeholders.
    return PydanticCustomError("workflow", "{message}", {"message": message})


def _one_of(choices: tuple[str, ...], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if value in choices or is_template(value):
            return value
        raise _problem(f"{value!r} is not {what} ({', '.join(choices)}) or a template")

    return AfterValidator(check)


def _one_of_schema(choices: tuple[str, ...], what: str) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [
                {"enum": list(choices)},
                {"type": "string", "pattern": r"\{\{|\{%", "description": "A template."},
            ],
            "description": f"{what.capitalize()}, or a template that renders to one.",
        }
    )


LevelOrTemplate = Annotated[
    str, _one_of(LEVELS, "a trust level"), _one_of_schema(LEVELS, "a trust level")
]
TaskStateOrTemplate = Annotated[
    str, _one_of(_TASK_STATES, "a handoff state"), _one_of_schema(_TASK_STATES, "a handoff state")
]
GiteaStateOrTemplate = Annotated[
    str,
    _one_of(GITEA_STATES, "a commit status state"),
    _one_of_schema(GITEA_STATES, "a commit status state"),
]
NonEmpty = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


# -- triggers --------------------------------------------------------------------------------


def _keys(value: dict[str, str], allowed: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise _problem(
            f"{what} does not take {', '.join(map(repr, unknown))}; its keys are "
            f"{', '.join(allowed)}"
        )


def _object_schema(properties: dict[str, Any], required: tuple[str, ...] = ()) -> WithJsonSchema:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return WithJsonSchema({"anyOf": [schema, {"type": "null"}]})


class Trigger(_Strict):
    """What fires a workflow; exactly one kind is set."""

    handoff: Annotated[
        dict[str, str] | None,
        _object_schema({"to": {"type": "string"}, "state": {"enum": list(_TASK_STATES)}}),
    ] = Field(
        default=None,
        description="A handoff created or changed; optional keys `to` (an agent) and `state`.",
    )
    request: Annotated[
        dict[str, str] | None,
        _object_schema({"model": {"type": "string"}, "agent": {"type": "string"}}),
    ] = Field(default=None, description="A new request file; optional keys `model`, `agent`.")
    path: str | None = Field(
        default=None, min_length=1, description="Any change under this glob (`**` spans dirs)."
    )
    schedule: str | None = Field(
        default=None, description="A five-field cron expression (UTC), or `@hourly`, `@daily`…"
    )
    gitea_push: Annotated[
        dict[str, str] | None,
        _object_schema(
            {
                "repo": {"type": "string", "pattern": r"^[^/\s]+/[^/\s]+$"},
                "branch": {"type": "string"},
            },
            required=("repo",),
        ),
    ] = Field(
        default=None,
        description="A Gitea push: `repo` (owner/name) and optionally `branch`.",
    )

    @field_validator("handoff")
    @classmethod
    def _handoff_keys(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            _keys(value, ("to", "state"), "a handoff trigger")
            state = value.get("state")
            if state is not None and state not in _TASK_STATES:
                raise _problem(
                    f"{state!r} is not a handoff state; use one of {', '.join(_TASK_STATES)}"
                )
        return value

    @field_validator("request")
    @classmethod
    def _request_keys(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            _keys(value, ("model", "agent"), "a request trigger")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                Cron.parse(value)
            except ValueError as exc:
                raise _problem(str(exc)) from None
        return value

    @field_validator("gitea_push")
    @classmethod
    def _push_keys(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            _keys(value, ("repo", "branch"), "a gitea_push trigger")
            repo = value.get("repo")
            if repo is None:
                raise _problem("a gitea_push trigger needs `repo` (owner/name)")
            if re.fullmatch(r"[^/\s]+/[^/\s]+", repo) is None:
                raise _problem(f"`repo` {repo!r} is not owner/name")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Trigger:
        kinds = [name for name, value in self if value is not None]
        if len(kinds) != 1:
            raise _problem(
                "a trigger sets exactly one of handoff, request, path, schedule, gitea_push"
                + (f" (this one sets {', '.join(kinds)})" if kinds else " (this one sets none)")
            )
        return self

    @property
    def kind(self) -> str:
        """Which kind of trigger this is (`handoff`, `request`, `path`, `schedule`, …)."""
        return next(name for name, value in self if value is not None)


# -- the arguments of each step kind ---------------------------------------------------------


class ChatMessage(_Strict):
    """One message of a `complete` step; `content` is a template."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str


class CompleteArgs(_Strict):
    """`uses: complete`: one model call through the trust router."""

    model: NonEmpty = Field(description="A model alias from gitgw.yaml, or PROVIDER/MODEL.")
    prompt: str | None = Field(default=None, description="Sent as one user message.")
    messages: list[ChatMessage] | None = Field(default=None, min_length=1)
    params: dict[str, Any] = Field(
        default_factory=dict, description="More request fields: temperature, max_tokens, …"
    )
    trust: LevelOrTemplate | None = Field(
        default=None, description="A trust hint: may raise the request's level, never lower it."
    )

    @model_validator(mode="after")
    def _prompt_or_messages(self) -> CompleteArgs:
        if (self.prompt is None) == (self.messages is None):
            raise _problem("a complete step needs exactly one of `prompt` or `messages`")
        reserved = sorted({"model", "messages", "stream"} & self.params.keys())
        if reserved:
            raise _problem(f"`params` may not set {', '.join(reserved)}: the step sets them")
        return self


def _command(value: Any) -> Any:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(a, str) and a for a in value):
        return value
    raise _problem(
        "must be a command line (a string, run by /bin/sh) or a list of non-empty strings "
        "(the program and its arguments)"
    )


Command = Annotated[
    str | list[str],
    BeforeValidator(_command),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
            ]
        }
    ),
]


class RunArgs(_Strict):
    """`uses: run`: a command, with a time limit and its output captured."""

    command: Command = Field(
        description="A string (run by /bin/sh) or a list (the program and its arguments)."
    )
    cwd: NonEmpty | None = Field(
        default=None, description="Where it runs; relative to the repository's directory."
    )
    env: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], str] = Field(
        default_factory=dict, description="Variables added to the environment."
    )


class MemoryArgs(_Strict):
    """`uses: memory`: write a shared memory note."""

    body: str
    title: NonEmpty | None = Field(default=None, description="Default: `<workflow>: <step>`.")
    tags: list[NonEmpty] = Field(default_factory=list)
    trust: LevelOrTemplate | None = Field(
        default=None, description="Default: the triggering handoff's level, else internal."
    )


class ArtifactArgs(_Strict):
    """An artifact to add to a handoff."""

    name: NonEmpty
    uri: NonEmpty
    sha256: str | None = None


class HandoffCreateArgs(_Strict):
    """A new handoff (`create:` of a handoff step)."""

    to: NonEmpty
    title: NonEmpty
    body: str
    goal: str | None = None
    acceptance: list[str] = Field(default_factory=list)
    verify_commands: list[str] = Field(default_factory=list)
    next_steps: list[str] = Field(default_factory=list)
    blockers: list[str] = Field(default_factory=list)
    context: list[ContextRef] = Field(default_factory=list)
    repo: RepoRef | None = None
    trust: LevelOrTemplate | None = Field(
        default=None, description="Default: the triggering handoff's level, else internal."
    )


class HandoffArgs(_Strict):
    """`uses: handoff`: add an event to a handoff, or create one."""

    handoff: NonEmpty | None = Field(default=None, description="The id of the handoff.")
    kind: Literal["note", "state", "artifact"] | None = None
    note: str | None = None
    state: TaskStateOrTemplate | None = None
    artifact: ArtifactArgs | None = None
    create: HandoffCreateArgs | None = None
    agent: NonEmpty | None = Field(
        default=None, description="Who writes it; default `workflow:<name>`."
    )

    @model_validator(mode="after")
    def _event_or_create(self) -> HandoffArgs:
        event = [
            n for n in ("handoff", "kind", "state", "artifact") if getattr(self, n) is not None
        ]
        if self.create is not None:
            if event or self.note is not None:
                extra = ", ".join(event + (["note"] if self.note is not None else []))
                raise _problem(f"a handoff step with `create` does not take {extra}")
            return self
        if self.handoff is None or self.kind is None:
            raise _problem(
                "a handoff step needs `handoff` (an id) and `kind` (note, state or artifact), "
                "or `create` (to, title, body, …)"
            )
        needed = {"note": self.note, "state": self.state, "artifact": self.artifact}[self.kind]
        if needed is None:
            raise _problem(f"a handoff step of kind {self.kind} needs `{self.kind}`")
        if self.state is not None and self.kind != "state":
            raise _problem("`state` goes only with kind state")
        if self.artifact is not None and self.kind != "artifact":
            raise _problem("`artifact` goes only with kind artifact")
        return self


class GiteaStatusArgs(_Strict):
    """`uses: gitea-status`: set a commit status through Gitea's API."""

    state: GiteaStateOrTemplate
    sha: NonEmpty = Field(description="The commit.")
    repo: NonEmpty = Field(description="owner/name on the Gitea server of gitgw.yaml.")
    context: NonEmpty | None = Field(default=None, description="Default: `gitgw/<workflow>`.")
    description: str | None = None
    target_url: str | None = None


STEP_ARGS: dict[str, type[_Strict]] = {
    "complete": CompleteArgs,
    "run": RunArgs,
    "memory": MemoryArgs,
    "handoff": HandoffArgs,
    "gitea-status": GiteaStatusArgs,
}


def explain_args(uses: str, exc: ValidationError) -> str:
    """The problems of a step's `with` as one line a person can act on."""
    model = STEP_ARGS[uses]
    problems = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(part) for part in ("with", *error["loc"]))
        if error["type"] == "missing":
            problems.append(f"`{where}` is required")
        elif error["type"] == "extra_forbidden" and len(error["loc"]) == 1:
            known = ", ".join(model.model_fields)
            problems.append(f"`{where}` is not a key of a {uses} step (it takes {known})")
        elif error["type"] == "extra_forbidden":
            problems.append(f"`{where}` is not a known key")
        elif error["loc"]:
            problems.append(f"`{where}`: {error['msg']}")
        else:
            problems.append(error["msg"])
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with its local `$ref`s replaced by their definitions (no cycles here)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return dict(walk(schema))


def _step_schema(schema: dict[str, Any]) -> None:
    schema["allOf"] = [
        {
            "if": {"properties": {"uses": {"const": uses}}, "required": ["uses"]},
            "then": {
                "properties": {
                    "with": _inline(model.model_json_schema(by_alias=True, mode="validation"))
                },
                "required": ["with"],
            },
        }
        for uses, model in STEP_ARGS.items()
    ]


class Step(_Strict):
    """One step; `with` holds the step kind's arguments (its strings are templates)."""

    model_config = ConfigDict(json_schema_extra=_step_schema)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    uses: StepKind
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    timeout_s: float | None = Field(
        default=None, gt=0, description="Default: daemon.step_timeout_s in gitgw.yaml."
    )

    @model_validator(mode="after")
    def _arguments(self) -> Step:
        try:
            STEP_ARGS[self.uses].model_validate(self.with_)
        except ValidationError as exc:
            raise _problem(
                f"step {self.name!r} ({self.uses}): {explain_args(self.uses, exc)}"
            ) from None
        return self


class Workflow(Record):
    """A whole workflow file."""

    description: str | None = None
    on: list[Trigger] = Field(min_length=1)
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_steps(self) -> Workflow:
        seen: set[str] = set()
        for step in self.steps:
            if step.name in seen:
                raise _problem(
                    f"two steps are named {step.name!r}; step names are unique within a "
                    "workflow (later steps refer to them as steps.NAME)"
                )
            seen.add(step.name)
        return self
