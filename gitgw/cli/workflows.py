"""`gitgw workflows`: list, show and run the workflows on the state branch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from gitgw._yaml import YamlError, load_document
from gitgw.cli._input import read_text
from gitgw.cli._output import echo, emit_json, err, is_tty, table
from gitgw.cli._repo import open_repo, settings
from gitgw.concepts.events import matches
from gitgw.concepts.handoff_index import find_ids
from gitgw.concepts.store import Store
from gitgw.concepts.workflows import WorkflowSet, load, manual_event
from gitgw.errors import GitgwError
from gitgw.records import Run, Workflow, kind_named
from gitgw.records.workflow import Trigger

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON (a versioned envelope).")


@click.group("workflows")
def command() -> None:
    """List, show and run workflows: versioned automations on the state branch.

    A workflow is workflows/<name>.yaml on the state branch: triggers (`on`: a handoff
    created or changed, a new request file, a change under a path, a schedule, a Gitea
    push) and steps (`complete`, `run`, `memory`, `handoff`, `gitea-status`) whose
    arguments are templates. `gitgw start` fires them; `gitgw workflows run` runs one by
    hand. Every run is in the run ledger (`gitgw runs`).
    """


def _trigger_text(trigger: Trigger) -> str:
    if trigger.path is not None:
        return f"path {trigger.path}"
    if trigger.schedule is not None:
        return f"schedule {trigger.schedule!r}"
    kind = trigger.kind
    found: dict[str, str] = getattr(trigger, kind) or {}
    label = "gitea push" if kind == "gitea_push" else kind
    details = " ".join(f"{k}={v}" for k, v in found.items())
    return f"{label} {details}" if details else f"{label} (any)"


def _path(name: str) -> str:
    return kind_named("workflow").path(name=name)


def _workflow_json(name: str, workflow: Workflow) -> dict[str, Any]:
    return {"name": name, "path": _path(name), **workflow.to_data()}


def _load() -> WorkflowSet:
    with open_repo() as repo:
        return load(Store(repo))


@command.command("list")
@_JSON
def list_command(as_json: bool) -> None:
    """List the workflows: name, triggers, steps and description; invalid files with why."""
    found = _load()
    if as_json:
        emit_json(
            {
                "commit": found.commit,
                "workflows": [_workflow_json(n, w) for n, w in sorted(found.workflows.items())],
                "invalid": [{"path": p.path, "reason": p.reason} for p in found.problems],
            }
        )
        return
    rows: list[tuple[str, ...]] = [
        (
            name,
            "; ".join(_trigger_text(t) for t in workflow.on),
            ", ".join(f"{s.name} ({s.uses})" for s in workflow.steps),
            (workflow.description or "")[:60],
        )
        for name, workflow in sorted(found.workflows.items())
    ]
    table(rows, ("NAME", "TRIGGERS", "STEPS", "DESCRIPTION"))
    if not rows:
        echo("no workflows yet: add workflows/<name>.yaml to the state branch")
    for problem in found.problems:
        echo(f"invalid: {problem.path}: {problem.reason}")


def _value_lines(value: Any, indent: str) -> list[str]:
    if isinstance(value, str) and "\n" in value:
        return ["|", *(indent + "  " + line for line in value.rstrip("\n").splitlines())]
    if isinstance(value, str):
        return [value]
    return [json.dumps(value, ensure_ascii=False)]


@command.command("show")
@click.argument("name")
@_JSON
def show_command(name: str, as_json: bool) -> None:
    """Show workflow NAME: its triggers and its steps with their arguments."""
    workflow = _load().get(name)
    if as_json:
        emit_json(_workflow_json(name, workflow))
        return
    echo(f"workflow {name}  ({_path(name)})")
    if workflow.description:
        echo(f"  {workflow.description}")
    echo("  on:")
    for trigger in workflow.on:
        echo(f"    - {_trigger_text(trigger)}")
    echo("  steps:")
    for number, step in enumerate(workflow.steps, 1):
        limit = f", timeout {step.timeout_s:g} s" if step.timeout_s else ""
        echo(f"    {number}. {step.name} ({step.uses}{limit})")
        for key, value in step.with_.items():
            first, *rest = _value_lines(value, "         ")
            echo(f"         {key}: {first}")
            for line in rest:
                echo(line)


def _event_spec(path: Path) -> dict[str, Any]:
    text = read_text(path, "the event")
    try:
        return load_document(text)
    except YamlError as exc:
        raise GitgwError(
            f"the event file {path} is not JSON or YAML: {exc}",
            'write e.g. {"kind": "handoff", "handoff": "<id>"}',
        ) from None


def _run_json(run: Run) -> dict[str, Any]:
    return {
        "run": run.follows or run.id,
        "record": run.id,
        "workflow": run.workflow,
        "status": run.status,
        "error": run.error,
        "level": run.level,
        "receipts": run.receipts,
        "steps": [step.model_dump(mode="json", exclude_none=True) for step in run.steps],
    }


@command.command("run")
@click.argument("name")
@click.option(
    "--event",
    "event_file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help='The event to run it for, as JSON or YAML: {"kind": "handoff", "handoff": ID}, '
    '{"kind": "request", "request": ID}, {"kind": "gitea_push", "push": {...}}, '
    '{"kind": "path", "paths": [...]} or {"kind": "manual", "data": {...}} '
    "[default: a manual event with no data].",
)
@_JSON
def run_command(name: str, event_file: Path | None, as_json: bool) -> None:
    """Run workflow NAME now, for one event, and print each step's outcome.

    The event is built from the records on the state branch, as a commit bringing them
    would: a handoff's fields, body, state and events, a request file, and so on. The
    run is recorded in the run ledger like any other (`gitgw runs show ID`), its model
    calls go through the trust router with a receipt each, and every commit it writes
    ends with `Gitgw-Run: <id>`. Exits 1 when the run failed.

    \b
    Example:
      echo '{"kind": "handoff", "handoff": "01M72BN4RPD00B6JMKN1EPWCWX"}' > event.json
      gitgw workflows run review-handoffs --event event.json
    """
    from gitgw.services.gateway import Gateway  # httpx and jinja2 only for this command
    from gitgw.services.workflow_runner import RunContext, run_workflow

    spec = _event_spec(event_file) if event_file is not None else None
    current = settings()
    gateway = Gateway.open(current.repo, current.branch)
    try:
        workflow = load(gateway.store).get(name)
        if spec is not None and spec.get("kind") == "handoff":
            given = spec.get("handoff")
            if isinstance(given, str) and 4 <= len(given) < 26:
                ids = find_ids(gateway.repo, given)
                spec["handoff"] = ids[0] if len(ids) == 1 else given
        event = manual_event(gateway.store, spec, workflow=name)
        if event.kind != "manual" and not any(matches(t, event) for t in workflow.on):
            err(f"note: this {event.kind} event does not fire {name} by itself; running it anyway")

        def progress(run_id: str, step: str) -> None:
            if not as_json and is_tty():
                err(f"run {run_id}: step {step}…")

        context = RunContext(
            gateway=gateway,
            step_timeout_s=gateway.config.daemon.step_timeout_s,
            on_step=progress,
        )
        ended = run_workflow(context, name, workflow, event)
    finally:
        gateway.close()
    if as_json:
        emit_json(_run_json(ended) | {"event": event.describe()})
    else:
        run_id = ended.follows or ended.id
        echo(f"run {run_id}: workflow {name}, event {event.key}")
        for step in ended.steps:
            detail = ""
            if step.error:
                detail = f": {step.error}"
            elif step.receipts:
                detail = f" (receipt {', '.join(step.receipts)})"
            echo(f"  step {step.name} ({step.kind}): {step.outcome}{detail}")
        echo(f"run {run_id} {ended.status}" + (f": {ended.error}" if ended.error else ""))
    if ended.status != "succeeded":
        raise SystemExit(1)
