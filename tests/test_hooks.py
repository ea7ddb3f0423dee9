"""The hooks: a person's commit (the real pre-commit framework) and a push (a real server's
pre-receive hook) pass the same checks as gitgw's own writes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gitgw._canonical import compute_digest
from gitgw._clock import default_clock
from gitgw._yaml import dump_record, load_record
from gitgw.records import Receipt, jsonl_lines, render_batch
from gitgw.services import hooks
from tests.conftest import git, run_cli
from tests.gitservers import GitServer

PROJECT = Path(__file__).resolve().parent.parent
EVENT = "handoffs/01M72BN4RPD00B6JMKN1EPWCWX/events/01M72BN4RS2SCSS1DGP7EMDW1Q.yaml"
NEW_NOTE = "memory/01M8B1B85J709A7SXXVSJKPWBZ.md"
AWS_KEY = "AKIA" + "IOSFODNN7" + "EXAMPLE"


def note_file(body: str) -> str:
    """A valid memory note with `body`."""
    return (
        '---\nschema_version: 1\nid: "01M8B1B85J709A7SXXVSJKPWBZ"\ntitle: "Ports"\ntags: []\n'
        'trust: "internal"\nauthor: "bob"\ncreated: "2026-11-26T04:20:32.054Z"\n'
        f'updated: "2026-11-26T04:20:32.054Z"\n---\n{body}'
    )


def rewrite_event(clone: Path) -> None:
    """Change a handoff event and give it a matching digest: valid, but rewritten."""
    path = clone / EVENT
    data = load_record(path.read_text())
    data["agent"] = "mallory"
    data.pop("digest")
    data["digest"] = compute_digest(data)
    path.write_text(dump_record(data))


def person_clone(source: str | Path, where: Path) -> Path:
    """A person's clone of the state branch, with the branch checked out."""
    git("clone", "--quiet", "--branch", "gitgw", str(source), str(where))
    return where


# -- the checks in a clone ----------------------------------------------------------------


def test_the_example_state_passes_every_hook(example_repo: Path, tmp_path: Path) -> None:
    clone = person_clone(example_repo, tmp_path / "clone")
    assert hooks.check_paths("validate", [], clone) == []
    assert hooks.check_paths("secrets", [], clone) == []
    assert hooks.staged_append_only(clone) == []


def test_hooks_name_the_file_and_the_reason(
    example_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clone = person_clone(example_repo, tmp_path / "clone")
    monkeypatch.chdir(clone)
    (clone / NEW_NOTE).write_text(note_file(f"aws {AWS_KEY}\n"))
    (clone / "memory" / "broken.md").write_text("no front matter\n")
    rewrite_event(clone)
    (clone / "consent/2026/10/01M5Z3QMHNBMDBRMB9GVEB4S5J.yaml").unlink()
    git("add", "-A", cwd=clone)

    ran = run_cli("hooks", "run", "secrets", NEW_NOTE, EVENT)
    assert ran.exit_code == 1
    assert f"gitgw: {NEW_NOTE}: line 11: possible secret (AWS Access Key)" in ran.stderr
    assert AWS_KEY not in ran.stderr + ran.stdout

    ran = run_cli("hooks", "run", "validate", "memory/broken.md", EVENT, NEW_NOTE)
    assert ran.exit_code == 1
    assert "memory/broken.md: is not a path gitgw knows" in ran.stderr
    assert EVENT not in ran.stderr  # a rewrite with a fresh digest is valid on its own...

    ran = run_cli("hooks", "run", "append-only")  # ...and caught here
    assert ran.exit_code == 1
    assert f"gitgw: {EVENT}: add-only record was modified" in ran.stderr
    assert "01M5Z3QMHNBMDBRMB9GVEB4S5J.yaml: add-only record was deleted" in ran.stderr


# -- the real pre-commit framework --------------------------------------------------------


def project_copy(where: Path) -> Path:
    """This project's files in a fresh repository with one commit, as pre-commit needs."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache")
    where.mkdir()
    for name in ("gitgw", "example-repo", "hooks"):
        shutil.copytree(PROJECT / name, where / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml"):
        shutil.copy2(PROJECT / name, where / name)
    git("init", "--quiet", str(where))
    git("add", "-A", cwd=where)
    git("commit", "--quiet", "-m", "gitgw", cwd=where)
    return where


def try_repo(project: Path, clone: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """`pre-commit try-repo` of gitgw's hooks on the staged changes of `clone`."""
    env = {**os.environ, "PRE_COMMIT_HOME": str(home), "PRE_COMMIT_COLOR": "never"}
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(project), "--verbose"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_pre_commit_framework_runs_the_hooks(example_repo: Path, tmp_path: Path) -> None:
    project = project_copy(tmp_path / "project")
    ran = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-manifest", ".pre-commit-hooks.yaml"],
        cwd=project, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    clone = person_clone(example_repo, tmp_path / "clone")
    home = tmp_path / "pre-commit-home"

    (clone / NEW_NOTE).write_text(note_file("The proxy listens on 8741.\n"))
    git("add", "-A", cwd=clone)
    good = try_repo(project, clone, home)
    assert good.returncode == 0, good.stdout + good.stderr
    for hook_name in ("gitgw validate", "gitgw append-only", "gitgw secrets"):
        assert hook_name in good.stdout
    git("commit", "--quiet", "-m", "a note", cwd=clone)

    (clone / NEW_NOTE).write_text(note_file(f"The proxy listens on 8741; aws {AWS_KEY}.\n"))
    git("add", "-A", cwd=clone)
    secret = try_repo(project, clone, home)
    assert secret.returncode == 1
    assert f"{NEW_NOTE}: line 11: possible secret (AWS Access Key)" in secret.stdout
    assert AWS_KEY not in secret.stdout + secret.stderr
    git("checkout", "--quiet", "HEAD", "--", NEW_NOTE, cwd=clone)

    rewrite_event(clone)
    git("add", "-A", cwd=clone)
    rewritten = try_repo(project, clone, home)
    assert rewritten.returncode == 1
    assert f"{EVENT}: add-only record was modified" in rewritten.stdout


# -- the server's pre-receive hook --------------------------------------------------------


def push(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`git push` from `clone`; the outcome, whatever it is."""
    return subprocess.run(
        ["git", "push", "origin", *args], cwd=clone, capture_output=True, text=True, check=False
    )


def server_head(server: GitServer, branch: str = "gitgw") -> str:
    """The branch's commit id on the server."""
    return git("--git-dir", str(server.path()), "rev-parse", f"refs/heads/{branch}").strip()


def test_the_server_refuses_bad_pushes(
    example_repo: Path, tmp_path: Path, git_daemon: GitServer
) -> None:
    url = git_daemon.create()
    ran = run_cli("hooks", "install", "--server", str(git_daemon.path()))
    assert ran.exit_code == 0, ran.stderr
    assert "guards branch 'gitgw'" in ran.stdout
    git("remote", "add", "origin", url, cwd=example_repo)
    assert run_cli("--repo", str(example_repo), "sync").exit_code == 0  # gitgw's own push
    clone = person_clone(url, tmp_path / "clone")
    accepted = server_head(git_daemon)

    # A secret in a memory note: refused, naming the file and line, never the value.
    (clone / NEW_NOTE).write_text(note_file(f"aws {AWS_KEY}\n"))
    git("add", "-A", cwd=clone)
    git("commit", "--quiet", "-m", "a note with a key", cwd=clone)
    refused = push(clone, "gitgw")
    assert refused.returncode != 0
    assert "pre-receive hook declined" in refused.stderr
    assert f"gitgw: {NEW_NOTE}: line 11: possible secret (AWS Access Key)" in refused.stderr
    assert AWS_KEY not in refused.stderr + refused.stdout
    assert server_head(git_daemon) == accepted

    # A secret added and removed again within one push still reached history: refused.
    (clone / NEW_NOTE).write_text(note_file("no key here\n"))
    git("commit", "--quiet", "-am", "remove the key", cwd=clone)
    assert push(clone, "gitgw").returncode != 0
    git("reset", "--quiet", "--hard", "origin/gitgw", cwd=clone)

    # A rewritten handoff event, even with a fresh digest: refused.
    rewrite_event(clone)
    git("commit", "--quiet", "-am", "rewrite an event", cwd=clone)
    refused = push(clone, "gitgw")
    assert refused.returncode != 0
    assert f"gitgw: {EVENT}: add-only record was modified" in refused.stderr
    git("reset", "--quiet", "--hard", "origin/gitgw", cwd=clone)

    # Rewriting history, or deleting the branch: refused.
    git("commit", "--quiet", "--amend", "-m", "amended", cwd=clone)
    refused = push(clone, "--force", "gitgw")
    assert refused.returncode != 0
    assert "not a fast-forward" in refused.stderr
    refused = push(clone, ":gitgw")
    assert "deleting the state branch" in refused.stderr
    git("reset", "--quiet", "--hard", "origin/gitgw", cwd=clone)
    assert server_head(git_daemon) == accepted

    # A good push is accepted, and other branches pass through unchecked.
    (clone / NEW_NOTE).write_text(note_file("The proxy listens on 8741.\n"))
    git("add", "-A", cwd=clone)
    git("commit", "--quiet", "-m", "a good note", cwd=clone)
    good = push(clone, "gitgw")
    assert good.returncode == 0, good.stderr
    assert server_head(git_daemon) == git("rev-parse", "HEAD", cwd=clone).strip()
    (clone / "anything.txt").write_text("not state\n")
    git("add", "-A", cwd=clone)
    git("commit", "--quiet", "-m", "other work", cwd=clone)
    assert push(clone, "HEAD:refs/heads/main").returncode == 0

    # Commits pushed to another branch first are still checked when the state branch
    # moves onto them.
    git("reset", "--quiet", "--hard", "origin/gitgw", cwd=clone)
    (clone / NEW_NOTE).write_text(note_file(f"aws {AWS_KEY}\n"))
    git("add", "-A", cwd=clone)
    git("commit", "--quiet", "-m", "a note with a key, by way of another branch", cwd=clone)
    assert push(clone, "HEAD:refs/heads/scratch").returncode == 0  # not the state branch
    accepted = server_head(git_daemon)
    refused = push(clone, "HEAD:gitgw")
    assert refused.returncode != 0
    assert f"gitgw: {NEW_NOTE}: line 11: possible secret (AWS Access Key)" in refused.stderr
    assert server_head(git_daemon) == accepted


def test_the_server_refuses_a_receipt_given_again(
    example_repo: Path, tmp_path: Path, git_daemon: GitServer
) -> None:
    # A new batch repeating a receipt of the branch with other content (its digest made
    # anew) would stand for it in every reader: refused, as is one receipt pushed twice.
    url = git_daemon.create()
    assert run_cli("hooks", "install", "--server", str(git_daemon.path())).exit_code == 0
    git("remote", "add", "origin", url, cwd=example_repo)
    assert run_cli("--repo", str(example_repo), "sync").exit_code == 0
    clone = person_clone(url, tmp_path / "clone")
    accepted = server_head(git_daemon)
    original = sorted(clone.glob("receipts/**/*.jsonl"))[0]
    line = jsonl_lines(original.read_text())[0]
    first = Receipt.model_validate_json(line)
    clock = default_clock()
    forged = first.model_copy(update={"level": "public"})

    again, data = render_batch([forged], clock.new_id())
    (clone / again).parent.mkdir(parents=True, exist_ok=True)
    (clone / again).write_bytes(data)
    git("add", "-A", cwd=clone)
    git("commit", "--quiet", "-m", "the same receipt, changed", cwd=clone)
    refused = push(clone, "gitgw")
    assert refused.returncode != 0
    where = original.relative_to(clone).as_posix()
    assert f"gitgw: {again}: record {first.id} is given again (first in {where})" in refused.stderr
    assert server_head(git_daemon) == accepted
    git("reset", "--quiet", "--hard", "origin/gitgw", cwd=clone)

    fresh = Receipt.model_validate_json(line).model_copy(update={"id": clock.new_id()})
    paths = []
    for _ in range(2):
        path, data = render_batch([fresh], clock.new_id())
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        (clone / path).write_bytes(data)
        paths.append(path)
    git("add", "-A", cwd=clone)
    git("commit", "--quiet", "-m", "one new receipt, twice", cwd=clone)
    refused = push(clone, "gitgw")
    assert refused.returncode != 0
    assert f"record {fresh.id} is given again (first in {min(paths)})" in refused.stderr
    assert server_head(git_daemon) == accepted


def test_install_refuses_to_overwrite_a_foreign_hook(tmp_path: Path) -> None:
    bare = tmp_path / "srv.git"
    git("init", "--quiet", "--bare", str(bare))
    (bare / "hooks" / "pre-receive").write_text("#!/bin/sh\nexit 0\n")
    ran = run_cli("hooks", "install", "--server", str(bare))
    assert ran.exit_code == 1
    assert "exists and is not gitgw's" in ran.stderr
    ran = run_cli("--branch", "state", "hooks", "install", "--server", "--force", str(bare))
    assert ran.exit_code == 0, ran.stderr
    script = (bare / "hooks" / "pre-receive").read_text()
    assert hooks.HOOK_MARK in script
    assert ':-state}"' in script
    assert os.access(bare / "hooks" / "pre-receive", os.X_OK)
    assert run_cli("hooks", "install", str(bare)).exit_code == 2  # --server is required
    assert "not a Git repository" in run_cli("hooks", "install", "--server", str(tmp_path)).stderr


def test_merges_pushed_by_sync_pass_and_a_merge_dropping_a_record_does_not(
    tmp_path: Path, git_daemon: GitServer
) -> None:
    url = git_daemon.create()
    assert run_cli("hooks", "install", "--server", str(git_daemon.path())).exit_code == 0
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("init", "--example", str(a)).exit_code == 0
    git("remote", "add", "origin", url, cwd=a)
    git("init", "--quiet", str(b))
    git("remote", "add", "origin", url, cwd=b)
    for machine in (a, b):
        assert run_cli("--repo", str(machine), "sync").exit_code == 0
    for machine, title in ((a, "from a"), (b, "from b")):
        ran = run_cli("--repo", str(machine), "handoff", "create", "--to", "x", "--title", title)
        assert ran.exit_code == 0, ran.stderr
    assert run_cli("--repo", str(a), "sync").exit_code == 0
    ran = run_cli("--repo", str(b), "sync")  # a merge commit, through the hook
    assert ran.exit_code == 0, ran.stderr
    assert "merged+pushed" in ran.stdout

    # A hand-made merge that leaves out a record one parent had is refused.
    clone = person_clone(url, tmp_path / "clone")
    git("checkout", "--quiet", "-b", "side", "HEAD~1", cwd=clone)
    (clone / NEW_NOTE).write_text(note_file("side note\n"))
    git("add", "-A", cwd=clone)
    git("commit", "--quiet", "-m", "side", cwd=clone)
    git("checkout", "--quiet", "gitgw", cwd=clone)
    git("merge", "--quiet", "--no-ff", "--no-commit", "side", cwd=clone)
    git("rm", "--quiet", "-r", "handoffs", cwd=clone)
    git("commit", "--quiet", "-m", "a merge that drops handoffs", cwd=clone)
    refused = push(clone, "gitgw")
    assert refused.returncode != 0
    assert "add-only record was deleted" in refused.stderr
    assert "handoffs/" in refused.stderr
