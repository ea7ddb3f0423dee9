"""`gitgw hooks`: the same checks on a person's commit and on a push as on gitgw's writes."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gitgw.cli._output import echo, err
from gitgw.cli._repo import settings
from gitgw.services import hooks


@click.group("hooks")
def command() -> None:
    """Run gitgw's checks as Git hooks, so every way into the branch passes them.

    gitgw's own writes run them in process. For commits made by people in a clone of
    the state branch, the pre-commit framework runs them (this project publishes
    gitgw-validate, gitgw-append-only and gitgw-secrets in .pre-commit-hooks.yaml). For
    pushes, a server-side pre-receive hook runs them.

    \b
    In a clone of the state branch, .pre-commit-config.yaml:
      repos:
        - repo: <gitgw's repository URL>
          rev: <a tag>
          hooks: [{id: gitgw-validate}, {id: gitgw-append-only}, {id: gitgw-secrets}]
    On the server, once:
      gitgw hooks install --server /srv/git/state.git
    """


def _report(problems: list[hooks.Problem], what: str) -> None:
    for problem in problems:
        err(f"gitgw: {problem}")
    if problems:
        err(f"gitgw: {len(problems)} problem(s); {what}")
        raise SystemExit(1)


@command.command("run")
@click.argument("check", type=click.Choice(["validate", "append-only", "secrets"]))
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
def run(check: str, files: tuple[str, ...]) -> None:
    """Run one check in a clone of the state branch (as the pre-commit framework does).

    \b
    validate     FILES match their schema, digest and place (every tracked file if none)
    secrets      FILES hold nothing that looks like a key, token or credential
    append-only  the staged changes modify or delete no add-only record

    Exits 1 naming each file and the reason (never a secret's value).
    """
    if check == "append-only":
        problems = hooks.staged_append_only()
        _report(problems, "add-only records are never changed: add a new record instead")
        return
    problems = hooks.check_paths(check, files)
    _report(
        problems,
        "fix the files above"
        if check == "validate"
        else "remove the secrets above (refer to them by name; keep them in a vault)",
    )


@command.command("pre-receive")
def pre_receive() -> None:
    """Check a push (run by the server's pre-receive hook; reads git's lines on stdin).

    Every commit the push brings to the state branch is checked: its new and changed
    files (format and secrets), that it modifies or deletes no add-only record, and that
    the branch only moves forward. Exits 1, refusing the whole push, naming each file.
    """
    problems = hooks.pre_receive(sys.stdin.read().splitlines(), settings().branch)
    _report(problems, f"push to {settings().branch!r} refused; nothing was changed")


@command.command("install")
@click.argument(
    "repo", required=False, type=click.Path(file_okay=False, path_type=Path), default="."
)
@click.option("--server", is_flag=True, help="Install the server-side pre-receive hook.")
@click.option("--force", is_flag=True, help="Replace a pre-receive hook that is not gitgw's.")
def install(repo: Path, server: bool, force: bool) -> None:
    """Install the pre-receive hook into REPO, a repository that receives pushes.

    The hook runs this gitgw (with this Python) on every push and guards the state branch
    named by --branch. Clones use the pre-commit framework instead (see `gitgw hooks
    --help`).
    """
    if not server:
        raise click.UsageError(
            "only the server hook is installed by gitgw (--server); in a clone, use the "
            "pre-commit framework with this project's .pre-commit-hooks.yaml"
        )
    target = hooks.install_server_hook(repo, settings().branch, force)
    echo(f"installed {target} (guards branch {settings().branch!r})")
