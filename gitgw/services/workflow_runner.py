"""Running a workflow: its steps in order, for one event, recorded in the run ledger.

A run is two run records: `started` (written by `start_run` before any step runs, so a
daemon killed mid-run leaves a record to mark `interrupted`) and `succeeded` or
`failed` (written by `execute_run` with every step's outcome and every receipt). A
failing step fails the run with its reason and the steps after it are recorded as
`skipped`; no exception escapes for a step that fails.

Every write a run makes (its run records, memory notes, handoff events and handoffs) is
a commit whose message ends with `Gitgw-Run: <run id>`, so the daemon never fires
workflows on the commits a run wrote.

Before a step runs, every string in its `with` (at any depth) is rendered as a jinja2
template with strict undefined variables, from:

- `event`: what fired the run (`event`, `key`, `commit`);
- the event's data: `handoff` (its fields, `body`, `state`, `holder`, `events`),
  `request`, `push` or `changes`, whichever the event has;
- `notes`: the memory notes the handoff's context points to (`id`, `title`, `body`,
  `tags`, `trust`, …);
- `run`: `id` and `workflow`;
- `steps`: each earlier step by name, with its `output` and the fields of its kind.

A template naming anything else fails its step with an error naming the variable.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
from pydantic import BaseModel, ValidationError

from gitgw.concepts import handoff as handoffs
from gitgw.concepts import memory
from gitgw.concepts.events import Event
from gitgw.concepts.identity import check_level
from gitgw.concepts.runs import RunLedger
from gitgw.concepts.store import Store
from gitgw.errors import GitgwError
from gitgw.records import LEVELS, Run, Workflow, level_rank
from gitgw.records.handoff import Artifact
from gitgw.records.run import RunStep
from gitgw.records.workflow import (
    GITEA_STATES,
    STEP_ARGS,
    CompleteArgs,
    GiteaStatusArgs,
    HandoffArgs,
    MemoryArgs,
    RunArgs,
    Step,
    explain_args,
)
from gitgw.render import render_string
from gitgw.services.calls import complete
from gitgw.services.commands import run_command
from gitgw.services.gateway import Gateway
from gitgw.services.gitea import CommitState, client_from_config

__all__ = [
    "OUTPUT_LIMIT",
    "RunContext",
    "StepFailed",
    "execute_run",
    "run_workflow",
    "start_run",
]

OUTPUT_LIMIT = 64 * 1024  # a `run` step's stdout kept as its output, at most


@dataclass
class RunContext:
    """What a run needs beyond the workflow and the event."""

    gateway: Gateway  # model calls, receipts, the store, the clock, the configuration
    transport: httpx.BaseTransport | None = None  # model calls and Gitea's API
    step_timeout_s: float = 600.0  # a step's limit when it sets no timeout_s
    daemon: str | None = None  # the daemon instance, written into the run's trigger
    on_step: Callable[[str, str], None] | None = None  # (run id, step name), before a step
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)


class StepFailed(GitgwError):
    """A step could not do its work; the run fails with this reason."""


def _store(ctx: RunContext, run_id: str) -> Store:
    return ctx.gateway.store.for_run(run_id)


def _event_level(event: Event) -> str | None:
    """The trust level the triggering record carries (a handoff's, a request's)."""
    for name in ("handoff", "request"):
        record = event.data.get(name)
        if isinstance(record, Mapping) and record.get("trust") in LEVELS:
            return str(record["trust"])
    return None


def _highest(*levels: str | None) -> str | None:
    found = [level for level in levels if level is not None]
    return max(found, key=level_rank) if found else None


# -- starting and finishing -----------------------------------------------------------------


def start_run(ctx: RunContext, name: str, workflow: Workflow, event: Event) -> Run:
    """Write the run's `started` record (before any step runs) and return it."""
    gateway = ctx.gateway
    trigger = event.describe()
    if ctx.daemon is not None:
        trigger["daemon"] = ctx.daemon
    started = RunLedger(gateway.store).begin(
        "workflow",
        workflow=name,
        trigger=trigger,
        level=_event_level(event),
        config_commit=gateway.loaded.commit,
    )
    RunLedger(_store(ctx, started.id)).record(started)
    return started


def run_workflow(ctx: RunContext, name: str, workflow: Workflow, event: Event) -> Run:
    """Start and execute one run of `workflow` for `event`; its finished record."""
    started = start_run(ctx, name, workflow, event)
    return execute_run(ctx, name, workflow, event, started)


def execute_run(ctx: RunContext, name: str, workflow: Workflow, event: Event, started: Run) -> Run:
    """Run the steps in order and write the run's finished record; return it."""
    runner = _Runner(ctx, name, event, started)
    steps: list[RunStep] = []
    receipts: list[str] = []
    error: str | None = None
    for step in workflow.steps:
        begun = ctx.gateway.clock.now()
        if error is not None:
            steps.append(RunStep(name=step.name, kind=step.uses, outcome="skipped", started=begun))
            continue
        if ctx.on_step is not None:
            with contextlib.suppress(Exception):  # a watcher's failure is not the run's
                ctx.on_step(started.id, step.name)
        done = runner.run(step)
        receipts += [r for r in done.receipts if r not in receipts]
        steps.append(
            RunStep(
                name=step.name,
                kind=step.uses,
                outcome="failed" if done.error else "succeeded",
                started=begun,
                finished=ctx.gateway.clock.now(),
                error=done.error,
                receipts=done.receipts,
            )
        )
        if done.error is not None:
            error = f"step {step.name!r} ({step.uses}) failed: {done.error}"
    ctx.gateway.flush()  # the receipts the run names are on the branch before it ends
    ledger = RunLedger(_store(ctx, started.id))
    ended = ledger.ended(
        started, "failed" if error else "succeeded", steps=steps, receipts=receipts, error=error
    )
    level = _highest(started.level, *runner.levels)
    if level != ended.level:
        ended = ended.model_copy(update={"level": level})
    ledger.record(ended)
    return ended


# -- the steps ----------------------------------------------------------------------------------


@dataclass
class _Done:
    """What one step came to."""

    error: str | None = None
    receipts: list[str] = field(default_factory=list)


def _render(value: Any, context: dict[str, Any], where: str) -> Any:
    if isinstance(value, str):
        try:
            return render_string(value, context)
        except GitgwError as exc:
            raise StepFailed(f"{where}: {exc.message}") from None
    if isinstance(value, dict):
        return {key: _render(item, context, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, context, f"{where}[{n}]") for n, item in enumerate(value)]
    return value


def _note_context(store: Store, handoff: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The memory notes a handoff's context refers to (forgotten or missing ones left out)."""
    notes = []
    for ref in handoff.get("context") or []:
        if not isinstance(ref, Mapping) or ref.get("kind") != "memory":
            continue
        try:
            view = memory.find(store, str(ref.get("ref")))
        except GitgwError:
            continue
        notes.append(view.note.model_dump(mode="json", exclude_none=True) | {"body": view.body})
    return notes


class _Runner:
    """The state of one run while its steps execute."""

    def __init__(self, ctx: RunContext, name: str, event: Event, started: Run) -> None:
        self.ctx = ctx
        self.name = name
        self.event = event
        self.run_id = started.id
        self.store = _store(ctx, started.id)
        self.agent = f"workflow:{name}"
        self.event_level = _event_level(event)
        self.levels: list[str] = []  # the levels of the model calls made
        self.steps: dict[str, dict[str, Any]] = {}
        self._notes: list[dict[str, Any]] | None = None

    def context(self) -> dict[str, Any]:
        if self._notes is None:
            handoff = self.event.data.get("handoff")
            self._notes = _note_context(self.store, handoff) if isinstance(handoff, Mapping) else []
        return {
            **self.event.data,
            "event": self.event.describe(),
            "notes": self._notes,
            "run": {"id": self.run_id, "workflow": self.name},
            "steps": self.steps,
        }

    def run(self, step: Step) -> _Done:
        done = _Done()
        try:
            rendered = _render(step.with_, self.context(), "with")
            try:
                args = STEP_ARGS[step.uses].model_validate(rendered)
            except ValidationError as exc:
                raise StepFailed(f"after rendering: {explain_args(step.uses, exc)}") from None
            fields = self._dispatch(step, args, done)
        except GitgwError as exc:
            done.error = exc.message + (f" ({exc.hint})" if exc.hint else "")
            return done
        except Exception as exc:  # a bug must not leave the run open: it fails the step
            done.error = f"unexpected {type(exc).__name__}: {exc}"
            return done
        self.steps[step.name] = fields
        return done

    def _dispatch(self, step: Step, args: BaseModel, done: _Done) -> dict[str, Any]:
        timeout = step.timeout_s or self.ctx.step_timeout_s
        if isinstance(args, CompleteArgs):
            return self._complete(args, timeout, done)
        if isinstance(args, RunArgs):
            return self._command(args, timeout)
        if isinstance(args, MemoryArgs):
            return self._memory(step, args)
        if isinstance(args, HandoffArgs):
            return self._handoff(args)
        assert isinstance(args, GiteaStatusArgs)
        return self._gitea_status(args)

    def _level(self, value: str | None, what: str) -> str | None:
        if value is not None and value not in LEVELS:
            raise StepFailed(
                f"{what} rendered to {value!r}, not a trust level ({', '.join(LEVELS)})"
            )
        return value

    # complete -------------------------------------------------------------------------------

    def _complete(self, args: CompleteArgs, timeout: float, done: _Done) -> dict[str, Any]:
        if args.messages is not None:
            messages = [{"role": m.role, "content": m.content} for m in args.messages]
        else:
            messages = [{"role": "user", "content": args.prompt or ""}]
        # The triggering handoff's (or request's) level counts as declared: a hint may raise
        # the level, never lower it below the records the prompt was made from.
        declared = _highest(self._level(args.trust, "with.trust"), self.event_level)
        result = complete(
            self.ctx.gateway,
            {**args.params, "model": args.model, "messages": messages},
            declared=declared,
            transport=self.ctx.transport,
            timeout=timeout,
        )
        done.receipts.append(result.receipt)
        if result.level is not None:
            self.levels.append(result.level)
        if result.outcome == "refused":
            raise StepFailed(f"the trust router refused the call: {result.error}")
        if result.outcome != "ok":
            raise StepFailed(result.error or "the model call failed")
        return {
            "output": result.content or "",
            "receipt": result.receipt,
            "provider": result.provider,
            "model": result.model,
            "level": result.level,
        }

    # run ------------------------------------------------------------------------------------

    def _command(self, args: RunArgs, timeout: float) -> dict[str, Any]:
        base = self.ctx.gateway.repo.path
        cwd = base if args.cwd is None else (base / args.cwd)
        if not cwd.is_dir():
            raise StepFailed(f"the directory {cwd} does not exist (with.cwd)")
        env = {
            **self.ctx.environ,
            **args.env,
            "GITGW_RUN_ID": self.run_id,
            "GITGW_WORKFLOW": self.name,
        }
        try:
            finished = run_command(args.command, cwd, env, timeout, output_limit=OUTPUT_LIMIT)
        except GitgwError as exc:
            raise StepFailed(exc.message) from None
        if finished.timed_out:
            raise StepFailed(f"timed out after {timeout:g} s; the command was killed")
        stderr = finished.stderr_tail()
        if finished.code != 0:
            if finished.code < 0:
                try:
                    how = f"was killed by {signal.Signals(-finished.code).name}"
                except ValueError:
                    how = f"was killed by signal {-finished.code}"
            else:
                how = f"exited with code {finished.code}"
            raise StepFailed(f"the command {how}" + (f"; stderr ends: {stderr}" if stderr else ""))
        return {"output": finished.output(), "exit_code": finished.code, "stderr": stderr}

    # memory ---------------------------------------------------------------------------------

    def _memory(self, step: Step, args: MemoryArgs) -> dict[str, Any]:
        level = _highest(self._level(args.trust, "with.trust") or "internal", self.event_level)
        assert level is not None
        note = memory.add(
            self.store,
            title=args.title or f"{self.name}: {step.name}",
            body=args.body,
            author=self.agent,
            tags=args.tags,
            trust=check_level(level, "with.trust"),
            source=f"workflow {self.name}, run {self.run_id}",
        )
        return {"output": note.id, "note": note.id, "trust": note.trust}

    # handoff --------------------------------------------------------------------------------

    def _handoff(self, args: HandoffArgs) -> dict[str, Any]:
        agent = args.agent or self.agent
        if args.create is not None:
            create = args.create
            level = _highest(self._level(create.trust, "with.create.trust"), self.event_level)
            fields = create.model_dump(mode="json", exclude_none=True, exclude={"body", "trust"})
            fields["from"] = {"agent": agent}
            if level is not None:
                fields["trust"] = level
            made = handoffs.create(self.store, fields, create.body)
            return {"output": made.id, "handoff": made.id}
        assert args.handoff is not None
        assert args.kind is not None
        if args.state is not None and args.state not in handoffs.STATES:
            raise StepFailed(
                f"with.state rendered to {args.state!r}, not a handoff state "
                f"({', '.join(handoffs.STATES)})"
            )
        view = handoffs.read(self.store, args.handoff.strip().upper())
        artifact = None
        if args.artifact is not None:
            artifact = Artifact.model_validate(args.artifact.model_dump(exclude_none=True))
        event = handoffs.new_event(
            self.store,
            view,
            args.kind,
            agent,
            state=args.state,
            note=args.note,
            artifact=artifact,
        )
        handoffs.write_events(self.store, view, event)
        return {"output": event.id, "handoff": view.handoff.id, "event": event.id}

    # gitea-status ---------------------------------------------------------------------------

    def _gitea_status(self, args: GiteaStatusArgs) -> dict[str, Any]:
        if args.state not in GITEA_STATES:
            raise StepFailed(
                f"with.state rendered to {args.state!r}, not one of {', '.join(GITEA_STATES)}"
            )
        context = args.context or f"gitgw/{self.name}"
        config = self.ctx.gateway.config.gitea
        with client_from_config(config, self.ctx.environ, self.ctx.transport) as client:
            client.set_commit_status(
                args.repo,
                args.sha,
                cast(CommitState, args.state),  # checked against GITEA_STATES above
                context=context,
                description=args.description,
                target_url=args.target_url,
            )
        return {
            "output": args.state,
            "state": args.state,
            "context": context,
            "repo": args.repo,
            "sha": args.sha,
        }
