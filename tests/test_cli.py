"""The command line as a user meets it: help, exit codes, and the one error format."""

from __future__ import annotations

import fcntl
import gc
import json
import stat
import sys
from pathlib import Path

import click
import pytest

from gitgw import __version__
from gitgw._collector import collector_paused
from gitgw.cli import cli, main
from tests.conftest import git, run_cli


def test_version_and_help_teach() -> None:
    assert run_cli("--version").stdout.strip() == f"gitgw, version {__version__}"
    top = run_cli("--help").stdout
    assert "gitgw init --example DIR" in top
    for command in cli.list_commands(click.Context(cli)):
        ran = run_cli(command, "--help")
        assert ran.exit_code == 0
        assert "Usage: " in ran.stdout


def test_bad_usage_exits_2() -> None:
    ran = run_cli("status", "--no-such-flag")
    assert ran.exit_code == 2
    assert "No such option" in ran.stderr
    assert run_cli("no-such-command").exit_code == 2


def test_repo_and_branch_come_from_the_environment(
    state_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITGW_REPO", str(state_repo))
    assert run_cli("status").exit_code == 0
    monkeypatch.setenv("GITGW_BRANCH", "elsewhere")
    ran = run_cli("status")
    assert ran.exit_code == 1
    assert "no state branch 'elsewhere'" in ran.stderr


def test_status_json_is_enveloped(state_repo: Path) -> None:
    ran = run_cli("--repo", str(state_repo), "status", "--json")
    envelope = json.loads(ran.stdout)
    assert envelope["schema_version"] == 1
    data = envelope["data"]
    assert data["head"] == git("rev-parse", "gitgw", cwd=state_repo).strip()
    assert data["counts"]["config"] == 1
    assert data["remote"] is None


def test_an_unexpected_crash_exits_3_and_leaves_a_log(
    state_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A corrupt object store is not something gitgw can explain: it must say so honestly.
    head = git("rev-parse", "gitgw", cwd=state_repo).strip()
    loose = state_repo / ".git" / "objects" / head[:2] / head[2:]
    loose.chmod(0o644)
    loose.write_bytes(b"garbage")
    code = main(["--repo", str(state_repo), "verify"])
    err = capsys.readouterr().err
    assert code == 3
    assert "unexpected error" in err
    log = Path(err.split("details are in ")[1].split()[0].rstrip(";"))
    assert log.is_file()
    assert "Traceback" in log.read_text()


def test_a_crash_log_is_its_owners_alone_and_holds_no_credentials(
    state_repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    head = git("rev-parse", "gitgw", cwd=state_repo).strip()
    loose = state_repo / ".git" / "objects" / head[:2] / head[2:]
    loose.chmod(0o644)
    loose.write_bytes(b"garbage")
    argv = ["--repo", str(state_repo), "verify", "--json"]
    monkeypatch.setattr(sys, "argv", ["gitgw", *argv, "https://alice:hunter2@127.0.0.1/s.git"])
    assert main(argv) == 3
    err = capsys.readouterr().err
    log = Path(err.split("details are in ")[1].split()[0].rstrip(";"))
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text()
    assert "hunter2" not in text
    assert "https://***@127.0.0.1/s.git" in text


def test_main_returns_the_exit_code(state_repo: Path) -> None:
    assert main(["--repo", str(state_repo), "status"]) == 0
    assert main(["--repo", str(state_repo / "nowhere"), "status"]) == 1
    assert main(["status", "--bogus"]) == 2


@pytest.mark.parametrize("collecting", [True, False])
def test_loading_a_command_leaves_the_cycle_collector_as_it_was(collecting: bool) -> None:
    # Commands are imported with the collector off (faster start-up); it must come back.
    ctx = click.Context(cli)
    cli.commands.pop("status", None)
    if not collecting:
        gc.disable()
    try:
        assert cli.get_command(ctx, "status") is not None
        assert gc.isenabled() is collecting
    finally:
        gc.enable()


def test_what_a_paused_block_keeps_can_go_to_the_oldest_generation() -> None:
    if gc.get_freeze_count():  # Python 3.12 freezes objects of its own: nothing is moved
        pytest.skip("objects are frozen already")
    # Left young, it would all be read by the first collection after the block (which
    # moves it one generation up: from a full collection's clean slate, to the middle).
    gc.collect()
    with collector_paused(keep=True):
        kept = [[number] for number in range(20_000)]
    assert gc.isenabled()
    oldest = {id(item) for item in gc.get_objects(generation=2)}
    assert id(kept[0]) in oldest
    assert id(kept[-1]) in oldest


def test_garbage_from_a_paused_block_is_left_to_the_young_collections() -> None:
    # What a long-lived process pauses for again and again: its garbage must not move
    # out of the collections that free it.
    gc.collect()
    with collector_paused():
        for _ in range(100):
            cycle: list[object] = []
            cycle.append(cycle)
        del cycle
    assert gc.collect(0) >= 100


def test_objects_someone_froze_stay_frozen_after_a_paused_block() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with collector_paused(keep=True):
            kept = [[number] for number in range(100)]
        assert gc.get_freeze_count() == frozen
        assert gc.isenabled()
        assert kept
    finally:
        gc.unfreeze()


def test_demo_never_removes_a_directory_that_is_not_an_earlier_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "mine"
    (mine / "precious").mkdir(parents=True)
    (mine / "precious" / "file.txt").write_text("mine\n")
    ran = run_cli("demo", str(mine), "--no-serve")
    assert ran.exit_code == 1
    assert "exists and is not an earlier gitgw demo" in ran.stderr
    assert (mine / "precious" / "file.txt").read_text() == "mine\n"
    demo = tmp_path / "demo"
    assert run_cli("demo", str(demo), "--no-serve").exit_code == 0
    # While a demo serves it (its daemon holds the lock), it is not replaced either.
    lock = demo / ".git" / "gitgw" / "daemon" / "gitgw.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        ran = run_cli("demo", str(demo), "--no-serve")
        assert ran.exit_code == 1
        assert "a gitgw demo is serving" in ran.stderr
    assert run_cli("demo", str(demo), "--no-serve").exit_code == 0  # once it stopped
    monkeypatch.chdir(demo)
    ran = run_cli("demo", ".", "--no-serve")
    assert ran.exit_code == 1
    assert "is the directory you are in" in ran.stderr
    assert (demo / ".git").is_dir()


def test_demo_runs_inside_a_checkout_as_the_readme_runs_it(tmp_path: Path) -> None:
    checkout = tmp_path / "gitgw"
    checkout.mkdir()
    git("init", "-q", cwd=checkout)
    (checkout / "README.md").write_text("a checkout\n")
    ran = run_cli("demo", str(checkout / ".gitgw-demo"), "--no-serve")
    assert ran.exit_code == 0, ran.stderr
    assert "verify: ok" in ran.stdout
    assert (checkout / ".gitgw-demo" / ".git").is_dir()
    assert (checkout / "README.md").read_text() == "a checkout\n"


def test_demo_builds_and_verifies_the_example(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    ran = run_cli("demo", str(target), "--no-serve")
    assert ran.exit_code == 0, ran.stderr
    assert "verify: ok" in ran.stdout
    again = run_cli("demo", str(target), "--no-serve")  # starts over each time
    assert again.exit_code == 0, again.stderr


def test_ordinary_bad_input_gets_a_clear_error_never_a_crash(
    state_repo: Path, tmp_path: Path
) -> None:
    # Each of these ended in "unexpected error" (exit 3) with a traceback in a crash log.
    latin1 = tmp_path / "latin1.md"
    latin1.write_bytes("Caf\xe9 au lait\n".encode("latin-1"))
    repo = ["--repo", str(state_repo)]
    handoff = run_cli(*repo, "handoff", "create", "--to", "codex", "--title", "t").stdout.strip()
    cases = [
        (["--branch", "a..b", "init", str(tmp_path / "new")], "is not a branch name Git accepts"),
        ([*repo, "memory", "add", "--title", "t", "--file", str(latin1)], "is not UTF-8 text"),
        ([*repo, "handoff", "create", "--to", "x", "--title", "t", "--body-file", str(latin1)],
         "is not UTF-8 text"),
        ([*repo, "handoff", "export", handoff, "--format", "a2a", "-o",
          str(tmp_path / "nodir" / "x.json")], "cannot write"),
        (["schemas", "export", str(latin1 / "sub")], "cannot write the schemas"),
        ([*repo, "receipts", "list", "--since", "10000000w"], "before the year 1"),
        ([*repo, "audit", "--since", "0001-01-01T00:00+01:00"], "outside the years 1 to 9999"),
    ]  # fmt: skip
    cases += [
        ([*repo, "handoff", "create", "--to", "x", "--title", "t", "--changed", ":added"],
         "names no file"),
        ([*repo, "handoff", "list", "--limit", "-1"], "is not in the range x>=0"),
        ([*repo, "audit", "--since", "2026-11-10", "--until", "2026-11-01"],
         "the period ends before it starts"),
    ]  # fmt: skip
    for argv, words in cases:
        ran = run_cli(*argv)
        assert ran.exit_code in (1, 2), (argv, ran.stderr)
        assert words in ran.stderr, (argv, ran.stderr)
    assert not (tmp_path / "new").exists()  # the bad branch name stopped init before it began
