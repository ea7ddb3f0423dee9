"""`gitgw status`: the state branch's head, what it holds, and its remote."""

from __future__ import annotations

import click

from gitgw.cli._output import echo, emit_json, table, when
from gitgw.cli._repo import open_repo
from gitgw.services.status import status
from gitgw.services.sync import configured_remote


@click.command("status")
@click.option(
    "--remote",
    help="The remote to compare with [default: sync.remote in gitgw.yaml, else origin].",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a versioned envelope).")
def command(remote: str | None, as_json: bool) -> None:
    """Show the state branch's head, the records per kind, and the remote's state.

    The remote's state is as of the last `gitgw sync` or fetch: status never uses the
    network.
    """
    with open_repo() as repo:
        remote = remote or configured_remote(repo)
        result = status(repo, remote)
    if as_json:
        emit_json(result)
        return
    assert result.head is not None
    echo(f"repository  {result.repository}")
    echo(f"branch      {result.branch} at {result.head[:12]} ({when(result.head_time)})")
    if result.checked_out_in:
        echo(
            f"warning     the branch is checked out in {result.checked_out_in}; gitgw will "
            "not write to it until you switch away"
        )
    if result.config_problem:
        echo(
            f"warning     {result.config_problem} (commands that need the config refuse "
            "to run; `gitgw verify` lists every problem)"
        )
    if result.remote is None:
        echo(f"remote      none named {remote!r} (sync is off)")
    elif result.remote.head is None:
        echo(f"remote      {remote} ({result.remote.url}): not fetched yet")
    else:
        r = result.remote
        echo(
            f"remote      {remote} ({r.url}) at {r.head[:12] if r.head else '-'}: "
            f"{r.ahead} ahead, {r.behind} behind"
        )
    echo()
    table([(kind, str(n)) for kind, n in result.counts.items()], ("kind", "files"))
    if result.unknown:
        echo()
        echo(f"{len(result.unknown)} file(s) gitgw does not know, e.g. {result.unknown[0]}")
