"""The `gitgw` command: the only place that prints, and the one place errors become
messages and exit codes.

Exit codes: 0 success; 1 a `GitgwError` (message and hint on stderr) or a failed check;
2 bad usage (click); 3 an unexpected crash, with a log written under gitgw's home.
"""

from __future__ import annotations

import datetime
import importlib
import os
import platform
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from gitgw import __version__
from gitgw._collector import collector_paused
from gitgw.errors import GitgwError
from gitgw.settings import Settings, default_home

__all__ = ["cli", "main"]


class UserError(click.ClickException):
    """A `GitgwError` on its way out: printed as `gitgw: error: …` plus its hint."""

    exit_code = 1

    def __init__(self, error: GitgwError) -> None:
        super().__init__(error.message)
        self.error = error

    def show(self, file: Any = None) -> None:
        click.echo(f"gitgw: error: {self.error.message}", err=True)
        if self.error.hint:
            click.echo(f"hint: {self.error.hint}", err=True)


class GitgwGroup(click.Group):
    """The root group: loads each command on first use, and turns every `GitgwError` into
    a `UserError`, once."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _COMMANDS and cmd_name not in self.commands:
            # A command's modules (pydantic's models above all) are objects for life.
            with collector_paused(keep=True):
                module = importlib.import_module(f"gitgw.cli.{_COMMANDS[cmd_name]}")
            self.add_command(module.command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GitgwError as error:
            raise UserError(error) from error
        except KeyboardInterrupt:  # click would say "Aborted!" and exit 1
            click.echo("gitgw: interrupted", err=True)
            raise click.exceptions.Exit(130) from None


@click.group(
    cls=GitgwGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="GITGW_REPO",
    help="The repository holding the state branch, or a directory inside it, as for "
    "`git -C` [env: GITGW_REPO; default: the Git repository around the current directory].",
)
@click.option(
    "--branch",
    default="gitgw",
    envvar="GITGW_BRANCH",
    show_default=True,
    help="The state branch's name [env: GITGW_BRANCH].",
)
@click.version_option(__version__, prog_name="gitgw")
@click.pass_context
def cli(ctx: click.Context, repo: Path | None, branch: str) -> None:
    """gitgw: a Git-native AI gateway and workflow engine.

    Everything gitgw remembers (configuration, consent, receipts, runs, handoffs and
    shared memory) lives as plain files on one branch of a Git repository, written
    through the object store and synced through any Git server.

    \b
    Start here:
      gitgw init --example DIR   create a repository with the example state
      gitgw --repo DIR status    what the state branch holds
      gitgw --repo DIR verify    prove nothing was altered or deleted
    """
    ctx.obj = Settings(repo=repo, branch=branch)


# Command name -> the module (gitgw.cli.<module>) whose `command` it is. A module is
# imported only when its command runs, so `gitgw verify` never pays for the proxy's
# aiohttp or the renderer's jinja2 (and a pre-commit hook starts fast).
_COMMANDS = {
    "init": "init",
    "status": "status",
    "verify": "verify",
    "sync": "sync",
    "schemas": "schemas",
    "demo": "demo",
    "handoff": "handoff",
    "memory": "memory",
    "hooks": "hooks",
    "consent": "consent",
    "receipts": "receipts",
    "runs": "runs",
    "audit": "audit",
    "proxy": "proxy",
    "route": "route",
    "mode": "mode",
    "workflows": "workflows",
    "start": "start",
}


def _crash_log(exc: BaseException) -> Path | None:
    stamp = datetime.datetime.now(tz=datetime.UTC).strftime("%Y%m%dT%H%M%S%f")
    path = default_home() / "crash" / f"{stamp}-{os.getpid()}.log"
    try:
        from gitgw.state import shown_url  # here, on the way out, not at every start

        path.parent.mkdir(parents=True, exist_ok=True)
        details = (
            f"gitgw {__version__}\npython {sys.version}\nplatform {platform.platform()}\n"
            f"argv {sys.argv!r}\n\n" + "".join(traceback.format_exception(exc))
        )
        # Readable by its owner only, and without the credentials a remote's URL may carry.
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as log:
            log.write(shown_url(details))
    except (OSError, ImportError):
        return None
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code instead of raising SystemExit."""
    try:
        cli.main(args=argv, prog_name="gitgw")
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except KeyboardInterrupt:
        click.echo("gitgw: interrupted", err=True)
        return 130
    except Exception as exc:  # the one place an unexpected error becomes exit 3
        log = _crash_log(exc)
        where = f"; details are in {log}" if log else ""
        click.echo(f"gitgw: unexpected error ({type(exc).__name__}: {exc}){where}", err=True)
        click.echo("hint: this is a bug in gitgw; please report it with that file", err=True)
        return 3
