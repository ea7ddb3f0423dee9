"""`gitgw demo`: gitgw's main job on the example state, in one command."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from gitgw.cli._output import echo, table, when
from gitgw.services.init import init_state
from gitgw.services.status import status
from gitgw.services.verify import verify
from gitgw.state import StateRepo


@click.command("demo")
@click.argument(
    "directory", type=click.Path(file_okay=False, path_type=Path), default=".gitgw-demo"
)
def command(directory: Path) -> None:
    """Create a state repository from the example state, show it, and verify it.

    DIRECTORY (default: .gitgw-demo) is replaced on each run, so the demo always starts
    from the example.
    """
    if directory.exists():
        shutil.rmtree(directory)
    result = init_state(directory, "gitgw", example=True)
    echo(f"created {result.repository} with the example state ({result.files} files)")
    with StateRepo.discover(directory) as repo:
        current = status(repo)
        report = verify(repo)
    assert current.head is not None
    echo(f"state branch gitgw at {current.head[:12]} ({when(current.head_time)})")
    table([(k, str(n)) for k, n in current.counts.items() if n], ("kind", "files"))
    verdict = "ok" if report.ok else f"FAILED ({len(report.problems)} problems)"
    echo(f"verify: {verdict}: {report.commits} commit(s), {report.records} records")
    echo(f"explore: gitgw --repo {directory} status | verify | --help")
    if not report.ok:
        raise SystemExit(1)
