"""`gitgw verify`: check every file and the whole history of the state branch."""

from __future__ import annotations

import click

from gitgw.cli._output import echo, emit_json, err, is_tty
from gitgw.cli._repo import open_repo
from gitgw.services.verify import verify


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@click.command("verify")
@click.option(
    "--secrets",
    is_flag=True,
    help="Also scan every record in history for secrets (writes and hooks always do).",
)
@click.option(
    "--no-cache",
    is_flag=True,
    help="Check every file from scratch, not only those no earlier run has proven.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a versioned envelope).")
def command(secrets: bool, no_cache: bool, as_json: bool) -> None:
    """Prove the state branch is intact; exit 1 listing every problem.

    \b
    Checks that:
      - every file matches its schema, and every add-only record its digest;
      - no add-only record was modified or deleted after it was added, in any commit;
      - every earlier head this machine has seen (gitgw's record of heads, the reflog,
        remote-tracking branches and their reflogs) is still in the history, so a
        rewrite with plain git (an amended commit, a force push) is caught;
      - the branch holds regular files only (no symbolic links or submodules).

    The history is walked every time; files an earlier run proved (same path, same
    bytes) are not parsed again (see --no-cache).
    """

    def progress(done: int, total: int) -> None:
        if is_tty() and not as_json:
            click.echo(f"\rverifying: {done}/{total} commits", err=True, nl=done == total)

    with open_repo() as repo:
        report = verify(repo, progress, secrets=secrets, cache=not no_cache)
    if as_json:
        emit_json({"ok": report.ok, **vars(report)})
    else:
        for problem in report.problems:
            err(f"{problem.path}: {problem.reason} [commit {problem.commit[:12]}]")
        rate = report.records / report.seconds if report.seconds else 0.0
        summary = (
            f"{_count(report.commits, 'commit')}, {_count(report.files, 'file')}, "
            f"{_count(report.records, 'record')}, {_count(report.witnesses, 'earlier head')} "
            f"checked in {report.seconds:.2f}s ({rate:,.0f} records/s"
            + (f"; {report.cached} files proven before" if report.cached else "")
            + ")"
        )
        if report.ok:
            echo(f"ok: {summary}")
        else:
            echo(f"FAILED: {len(report.problems)} problem(s); {summary}")
    if not report.ok:
        raise SystemExit(1)
