"""`gitgw mode`: show or switch online and offline mode."""

from __future__ import annotations

import click

from gitgw.cli._output import echo, emit_json
from gitgw.cli._repo import open_repo
from gitgw.services.mode import MODES, current_mode, set_mode


@click.command("mode")
@click.argument("mode", required=False, type=click.Choice(MODES))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a versioned envelope).")
def command(mode: str | None, as_json: bool) -> None:
    """Show the gateway's mode, or switch it to MODE (online or offline).

    Offline removes every hosted provider from every route: requests go to local
    models only, or are refused with a clear error. The switch is a commit to
    gitgw.yaml on the state branch that changes only its `mode:` line, so it is
    recorded, synced like any other change, and taken by a running proxy within a
    second.

    \b
    Examples:
      gitgw mode            # which mode is in force
      gitgw mode offline    # hosted providers off, now and on every synced machine
      gitgw mode online
    """
    with open_repo() as repo:
        if mode is None:
            now = current_mode(repo)
            if as_json:
                emit_json({"mode": now})
            else:
                echo(f"mode: {now}")
            return
        change = set_mode(repo, mode)
    if as_json:
        emit_json(change)
    elif change.commit is None:
        echo(f"mode: already {mode}; nothing to do")
    else:
        echo(f"mode: {change.previous} -> {mode} (commit {change.commit[:12]})")
        if mode == "offline":
            echo("hosted providers are off: requests go to local models or are refused")
