"""`gitgw sync`: exchange the state branch with a remote."""

from __future__ import annotations

import click

from gitgw.cli._output import echo, emit_json
from gitgw.cli._repo import open_repo
from gitgw.records import Conflict
from gitgw.services.sync import configured_remote, sync


@click.command("sync")
@click.option(
    "--remote",
    help="A configured remote's name, or a URL (git://, http(s)://, a path) "
    "[default: sync.remote in gitgw.yaml, else origin].",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a versioned envelope).")
def command(remote: str | None, as_json: bool) -> None:
    """Fetch the remote's state branch, merge it, and push the result.

    Records never conflict (each is its own file). If a mutable file (gitgw.yaml, a
    workflow, a memory note) changed on both sides, your version stays in place and the
    remote's is kept under conflicts/ with a conflict record: nothing is dropped. If
    one side deleted a file the other changed, the change stays and a conflict record
    says so. Either way the sync names each conflict, here and at the other machine's
    next sync. An
    unreachable remote leaves your local state untouched; one reached over git:// or
    http(s) that sends nothing for GITGW_SYNC_TIMEOUT seconds (60; over http, on each
    of a few tries) counts as unreachable (ssh keeps its own settings). Credentials in
    a remote's URL are never printed.
    """
    with open_repo() as repo:
        result = sync(repo, remote or configured_remote(repo))
    if as_json:
        emit_json(result)
        return
    head = result.head[:12] if result.head else "-"
    echo(
        f"{result.action}: {result.remote} and local are both at {head}"
        f" ({result.attempts} attempt(s))"
    )
    for conflict in result.conflicts:
        echo(_met(conflict, result.remote))
    for conflict in result.arrived:
        echo(_arrived(conflict))


def _met(conflict: Conflict, remote: str) -> str:
    if conflict.deleted == "ours":
        return (
            f"conflict: {conflict.path} was deleted here and changed on {remote}; their "
            "change is back in place (delete it again if it should go)"
        )
    if conflict.deleted == "theirs":
        return f"conflict: {conflict.path} was deleted on {remote} and changed here; kept yours"
    return (
        f"conflict: {conflict.path} changed on both sides; kept yours, theirs is at "
        f"{conflict.kept_at}"
    )


def _arrived(conflict: Conflict) -> str:
    if conflict.deleted is not None:
        return (
            f"conflict: {conflict.path} was deleted on one machine and changed on another, "
            "and a sync elsewhere kept the change (delete it again if it should go)"
        )
    return (
        f"conflict: {conflict.path} was changed on two machines, and a sync elsewhere "
        f"kept one version in place; the other is at {conflict.kept_at} (check that "
        "yours is the one you want)"
    )
