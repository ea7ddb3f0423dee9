"""`gitgw init`: create a state branch."""

from __future__ import annotations

from pathlib import Path
from shlex import quote

import click

from gitgw.cli._output import echo
from gitgw.cli._repo import settings
from gitgw.services.init import init_state


@click.command("init")
@click.argument("path", type=click.Path(file_okay=False), required=False)
@click.option("--example", is_flag=True, help="Seed the branch with the example state.")
@click.option("--branch", help="The state branch's name [default: the root --branch, gitgw].")
def command(path: str | None, example: bool, branch: str | None) -> None:
    """Create the state branch in the repository at PATH (default: the root --repo or
    GITGW_REPO, else here).

    PATH becomes a Git repository if it is not one. Inside an existing code repository,
    gitgw adds only the state branch: the checked-out branch, the index and the files
    stay as they are. An existing state branch is never overwritten.
    """
    if path == "":  # as git does: an unset variable in a script must not mean "here"
        raise click.BadParameter("the path is empty", param_hint="PATH")
    current = settings()
    where = Path(path) if path is not None else current.repo or Path(".")
    result = init_state(where, branch or current.branch, example=example)
    made = "created a repository and " if result.created_repository else ""
    seed = "the example state" if example else "a default configuration"
    echo(
        f"{made}created state branch {result.branch!r} in {result.repository} "
        f"with {seed} ({result.files} files) at {result.head[:12]}"
    )
    echo(f"next: gitgw --repo {quote(str(where))} status")
