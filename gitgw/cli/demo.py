"""`gitgw demo`: gitgw's main job on the example state, in one command."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import click

from gitgw.cli._output import echo, table, when
from gitgw.cli.start import start_daemon
from gitgw.errors import GitgwError
from gitgw.proxy import ProxySettings
from gitgw.services.engine import is_followed
from gitgw.services.gateway import Gateway
from gitgw.services.init import init_state
from gitgw.services.status import status
from gitgw.services.verify import verify
from gitgw.state import StateRepo

DEMO_HOST = "127.0.0.1"


def _free(port: int) -> int:
    """`port` if nothing listens on it, else 0 (any free port)."""
    with socket.socket() as probe:
        try:
            probe.bind((DEMO_HOST, port))
        except OSError:
            return 0
    return port


def _clear(directory: Path) -> None:
    """Remove an earlier demo at `directory`; refuse to remove anything else."""
    if not directory.exists() or not any(directory.iterdir()):
        return
    here = Path.cwd().resolve()
    target = directory.resolve()
    if target == here or target in here.parents:
        raise GitgwError(
            f"{directory} is the directory you are in (or holds it); the demo replaces its "
            "directory",
            "run it from elsewhere, or give another directory",
        )
    # An earlier demo is a repository and nothing else: `init` checks out no files, and
    # gitgw's own directory is in it. Anything holding other files is someone's work.
    entries = {entry.name for entry in directory.iterdir()}
    if entries != {".git"} or not (directory / ".git" / "gitgw").is_dir():
        raise GitgwError(
            f"{directory} exists and is not an earlier gitgw demo; the demo would replace it",
            "give a new or empty directory (the default is .gitgw-demo)",
        )
    with StateRepo.discover(directory) as repo:
        served = is_followed(repo)
    if served:
        raise GitgwError(
            f"a gitgw demo is serving {directory} now; replacing it would pull the state from "
            "under it",
            "stop that demo first (Ctrl-C), or give another directory",
        )
    shutil.rmtree(directory)


@click.command("demo")
@click.argument(
    "directory", type=click.Path(file_okay=False, path_type=Path), default=".gitgw-demo"
)
@click.option("--no-serve", is_flag=True, help="Stop after verifying; do not start gitgw (for CI).")
def command(directory: Path, no_serve: bool) -> None:
    """Create a state repository from the example state, verify it, and start gitgw.

    DIRECTORY (default: .gitgw-demo) is replaced on each run, so the demo always starts
    from the example. Then `gitgw start` runs on it on 127.0.0.1 (the configured port,
    or a free one) until Ctrl-C: the proxy, and the watcher that fires the example's
    workflow when a handoff is submitted and answers request files. No model is needed:
    with no local model running, a request gets a clear error naming the model that is
    down, and leaves a receipt all the same (`gitgw --repo DIRECTORY receipts list`).
    """
    _clear(directory)
    # The demo's directory is its own repository, wherever it is made: the README runs
    # it inside gitgw's checkout.
    result = init_state(directory, "gitgw", example=True, nest=True)
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
    if no_serve:
        return
    echo()
    gateway = Gateway.open(directory, "gitgw")
    try:
        port = _free(gateway.config.proxy.port)
        start_daemon(gateway, DEMO_HOST, port, ProxySettings())
    finally:
        gateway.close()
    echo(f"receipts: gitgw --repo {directory} receipts list")
