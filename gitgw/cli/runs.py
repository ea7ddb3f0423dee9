"""`gitgw runs`: list, show and replay the run ledger."""

from __future__ import annotations

from typing import Any

import click

from gitgw._canonical import format_time
from gitgw.cli._output import echo, emit_json, err, table
from gitgw.cli._repo import open_repo
from gitgw.cli._when import show_time
from gitgw.concepts.runs import RunSummary, list_runs, show_run


def _summary_json(run: RunSummary) -> dict[str, Any]:
    return {
        "id": run.id,
        "kind": run.kind,
        "status": run.status,
        "provider": run.provider,
        "model": run.model,
        "workflow": run.workflow,
        "level": run.level,
        "started": format_time(run.started) if run.started else None,
        "finished": format_time(run.finished) if run.finished else None,
        "error": run.error,
        "records": run.records,
    }


@click.group("runs")
def command() -> None:
    """List, show and replay runs: what it takes to reproduce a call or workflow.

    A run records its inputs and outputs by SHA-256 (their text only with content
    capture on), the provider, model and parameters, the trust level, the config commit,
    its receipts, timings and outcome. Runs are add-only files under runs/.
    """


@command.command("list")
@click.option(
    "--limit", default=50, show_default=True, type=click.IntRange(min=0), help="0 for all."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a versioned envelope).")
def list_command(limit: int, as_json: bool) -> None:
    """List runs, newest first, each with its latest status."""
    with open_repo() as repo:
        repo.require_head()
        listing = list_runs(repo, limit or None)
    if as_json:
        emit_json(
            {
                "total": listing.total,
                "runs": [_summary_json(r) for r in listing.runs],
                "unreadable": listing.unreadable,
            }
        )
        return
    rows: list[tuple[str, ...]] = [
        (
            r.id,
            show_time(r.started),
            r.kind,
            r.status,
            r.workflow or f"{r.provider or '-'}/{r.model or '-'}",
            r.level or "-",
        )
        for r in listing.runs
    ]
    table(rows, ("run", "started (UTC)", "kind", "status", "what", "level"))
    if listing.total > len(rows):
        echo(f"showing the newest {len(rows)} of {listing.total}; --limit 0 for all")
    elif not rows:
        echo("no runs yet")
    for problem in listing.unreadable:
        err(f"warning: {problem.path}: {problem.reason}")


@command.command("show")
@click.argument("run_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a versioned envelope).")
def show_command(run_id: str, as_json: bool) -> None:
    """Show run ID (the id of any of its records), folded from its records."""
    with open_repo() as repo:
        view = show_run(repo, run_id)
    run = view.merged()
    if as_json:
        emit_json({"id": view.id, "run": run, "records": list(view.records), "paths": view.paths})
        return
    echo(f"run       {view.id}  ({', '.join(view.paths)})")
    echo(f"kind      {run.kind}{' ' + run.workflow if run.workflow else ''}")
    echo(f"status    {run.status}{': ' + run.error if run.error else ''}")
    echo(f"started   {format_time(run.started)}")
    echo(f"finished  {format_time(run.finished) if run.finished else '-'}")
    if run.provider or run.model:
        echo(f"model     {run.provider or '-'}/{run.model or '-'}")
    echo(f"level     {run.level or '- (not recorded)'}")
    if run.params:
        echo(f"params    {', '.join(f'{k}={v}' for k, v in sorted(run.params.items()))}")
    if run.trigger:
        echo(f"trigger   {', '.join(f'{k}={v}' for k, v in sorted(run.trigger.items()))}")
    echo(f"config    {run.config_commit or '-'}")
    echo(f"receipts  {', '.join(run.receipts) or '-'}")
    parts = [("input", n, p) for n, p in enumerate(run.inputs, 1)] + [
        ("output", n, p) for n, p in enumerate(run.outputs, 1)
    ]
    table(
        [
            (kind, str(n), p.role, p.sha256, str(p.chars), "yes" if p.content is not None else "no")
            for kind, n, p in parts
        ],
        ("part", "#", "role", "sha256", "chars", "captured"),
    )
    for step in run.steps:
        echo(f"step {step.name} ({step.kind}): {step.outcome}")


@command.command("replay")
@click.argument("run_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a versioned envelope).")
def replay_command(run_id: str, as_json: bool) -> None:
    """Send run ID's model call again and show how the outputs differ.

    Needs the run's inputs captured (content capture on when it ran). Refused, with
    nothing sent, when the run's level is above the provider's max_trust, when a hosted
    provider has no consent grant covering that level (or gitgw is offline), or when
    the provider's key variable is not set. The replay leaves a receipt and a `replay`
    run of its own.
    """
    from gitgw.services.replay import replay  # httpx is loaded only for this command

    with open_repo() as repo:
        result = replay(repo, run_id)
    if as_json:
        emit_json(
            {
                "original": result.original.id,
                "run": result.run.id,
                "receipt": result.receipt.id,
                "identical": result.identical,
                "outputs": [
                    {
                        "number": o.number,
                        "role": o.role,
                        "same": o.same,
                        "recorded": o.recorded.sha256 if o.recorded else None,
                        "replayed": o.replayed.sha256 if o.replayed else None,
                        "replayed_text": o.replayed_text,
                        "diff": o.diff,
                    }
                    for o in result.outputs
                ],
            }
        )
        return
    route = f"{result.run.provider}/{result.run.model}"
    echo(
        f"replayed run {result.original.id} on {route}: run {result.run.id}, "
        f"receipt {result.receipt.id}"
    )
    for o in result.outputs:
        if o.same and o.recorded is not None:
            echo(f"output {o.number} ({o.role}): identical (sha256 {o.recorded.sha256[:12]}…)")
        elif o.recorded is None:
            echo(f"output {o.number} ({o.role}): new, not in the original run")
        elif o.replayed is None:
            echo(f"output {o.number} ({o.role}): missing from the replay")
        elif o.diff:
            echo(f"output {o.number} ({o.role}): differs")
            for line in o.diff:
                echo(line)
        else:
            echo(
                f"output {o.number} ({o.role}): differs (recorded sha256 "
                f"{o.recorded.sha256[:12]}…, {o.recorded.chars} chars, text not captured)"
            )
            echo("--- replayed")
            echo(o.replayed_text or "")
    echo("outputs identical" if result.identical else "outputs differ")
