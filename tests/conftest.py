"""Shared fixtures. The autouse `isolated` fixture runs every test in a temporary
directory with its own HOME and gitgw home, and with no GIT_* variable from outside,
so no test can read or write a developer's real configuration or repositories."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gitgw._clock import Clock
from gitgw.cli import cli

pytest_plugins = ["tests.gitservers", "tests.fakeupstream"]

_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.test",
    "GIT_COMMITTER_NAME": "Test Committer",
    "GIT_COMMITTER_EMAIL": "committer@example.test",
}


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME, gitgw home and working directory for each test."""
    for name in list(os.environ):
        if name.startswith(("GIT_", "GITGW_", "XDG_")):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test User\n\temail = user@example.test\n"
        '[init]\n\tdefaultBranch = main\n[protocol "file"]\n\tallow = always\n'
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GITGW_HOME", str(tmp_path / "gitgw-home"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name, value in _IDENTITY.items():
        monkeypatch.setenv(name, value)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def git(*args: str, cwd: Path | None = None, check: bool = True) -> str:
    """Run real git and return its standard output."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


@dataclass
class Ran:
    """The outcome of one CLI invocation."""

    exit_code: int
    stdout: str
    stderr: str


def run_cli(*args: str, input: str | None = None) -> Ran:
    """Invoke the `gitgw` command in process, as a user would, with separate streams."""
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return Ran(result.exit_code, result.stdout, result.stderr)


def run_on(repo: Path, *args: str, input: str | None = None) -> Ran:
    """Invoke `gitgw --repo REPO ARGS...`."""
    return run_cli("--repo", str(repo), *args, input=input)


def succeeds(repo: Path, *args: str, input: str | None = None) -> str:
    """Run a gitgw command on `repo` that must succeed; its stdout."""
    ran = run_on(repo, *args, input=input)
    assert ran.exit_code == 0, ran.stderr
    return ran.stdout


def fails(repo: Path, *args: str, input: str | None = None) -> str:
    """Run a gitgw command on `repo` that must fail with a `gitgw: error:`; its stderr."""
    ran = run_on(repo, *args, input=input)
    assert ran.exit_code == 1, ran.stdout + ran.stderr
    assert ran.stderr.startswith("gitgw: error: "), ran.stderr
    assert "hint: " in ran.stderr or "Traceback" not in ran.stderr
    return ran.stderr


def envelope_data(ran: Ran) -> Any:
    """The `data` of a `--json` output, after checking its envelope's version."""
    envelope = json.loads(ran.stdout)
    assert envelope["schema_version"] == 1
    return envelope["data"]


def branch_head(repo: Path) -> str:
    """The state branch's commit id."""
    return git("rev-parse", "gitgw", cwd=repo).strip()


MOMENT = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)  # when `clock` stands still


@pytest.fixture
def clock() -> Clock:
    """A clock standing still at `MOMENT` (its ids still grow, one after another)."""
    return Clock(now=lambda: MOMENT)


@pytest.fixture
def state_repo(tmp_path: Path) -> Path:
    """A new repository with a default state branch."""
    path = tmp_path / "state"
    ran = run_cli("init", str(path))
    assert ran.exit_code == 0, ran.stderr
    return path


@pytest.fixture
def example_repo(tmp_path: Path) -> Path:
    """A new repository seeded with the example state."""
    path = tmp_path / "example"
    ran = run_cli("init", "--example", str(path))
    assert ran.exit_code == 0, ran.stderr
    return path
