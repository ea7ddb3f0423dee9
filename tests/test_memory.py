"""Shared memory: add, show, search, edit, forget; secrets and clearance; two machines."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gitgw.concepts import memory
from gitgw.concepts.index import Index
from gitgw.concepts.store import Store
from gitgw.state import StateRepo
from tests.conftest import branch_head as head
from tests.conftest import fails, git, run_cli
from tests.conftest import succeeds as cli
from tests.gitservers import GitServer

PUBLIC_NOTE = "01M5C9EDKFBFGEPRV2W147SA69"
CONFIDENTIAL_NOTE = "01M6DYZDS6CWHHTH9THZXXQ8X6"
AWS_KEY = "AKIA" + "IOSFODNN7" + "EXAMPLE"
PRIVATE_KEY = (
    "-----BEGIN OPENSSH "
    + "PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"
)


def search(repo: Path, query: str, *extra: str) -> list[dict[str, Any]]:
    """`memory search --json`'s hits."""
    hits: list[dict[str, Any]] = json.loads(cli(repo, "memory", "search", query, "--json", *extra))[
        "data"
    ]["hits"]
    return hits


def add(repo: Path, title: str, text: str, *extra: str) -> str:
    """Add a note from stdin; its id."""
    return cli(repo, "memory", "add", "--title", title, *extra, "-", input=text).strip()


def test_add_show_and_search(example_repo: Path, tmp_path: Path) -> None:
    text = tmp_path / "note.md"
    text.write_text("Retries use full jitter: a random delay up to the capped backoff.\n")
    note_id = cli(example_repo, "memory", "add", "--title", "Backoff with jitter", "--tag",
                  "retry", "--tag", "http", "--trust", "public", "--source", "RFC draft",
                  "--file", str(text)).strip()  # fmt: skip

    shown = json.loads(cli(example_repo, "memory", "show", note_id, "--json"))["data"]
    assert shown["note"]["title"] == "Backoff with jitter"
    assert shown["note"]["tags"] == ["retry", "http"]
    assert (shown["note"]["trust"], shown["note"]["source"]) == ("public", "RFC draft")
    assert shown["note"]["author"] == "Test User"
    assert shown["body"] == text.read_text()
    assert shown["path"] == f"memory/{note_id}.md"
    assert "# Backoff with jitter" in cli(example_repo, "memory", "show", note_id)

    # A word in the title outranks the same word in another note's body.
    other = add(example_repo, "Upload timeouts", "Uploads give up after one jitter-free retry.\n")
    hits = search(example_repo, "jitter")
    assert [h["id"] for h in hits[:2]] == [note_id, other]
    assert "[jitter]" in hits[0]["snippet"] or "[Jitter]" in hits[0]["snippet"]
    assert search(example_repo, "retry")[0]["id"] == note_id  # tag + stem (retries)
    assert [h["id"] for h in search(example_repo, "staging database")] == [CONFIDENTIAL_NOTE]
    assert len(search(example_repo, "the", "--limit", "1")) == 1
    assert cli(example_repo, "verify").startswith("ok:")


def test_search_follows_the_branch_and_rebuilds(example_repo: Path) -> None:
    assert search(example_repo, "staging")
    with StateRepo.discover(example_repo) as repo:
        Index(repo, memory.SPEC).path.unlink()
    assert [h["id"] for h in search(example_repo, "staging")] == [CONFIDENTIAL_NOTE]
    before = head(example_repo)
    added = add(example_repo, "Falcon notes", "Nothing yet about the falcon.\n")
    assert [h["id"] for h in search(example_repo, "falcon")] == [added]
    git("branch", "-f", "gitgw", before, cwd=example_repo)  # history rewritten behind its back
    assert search(example_repo, "falcon") == []


def test_a_note_with_a_secret_is_refused_and_nothing_is_written(example_repo: Path) -> None:
    before = head(example_repo)
    error = fails(example_repo, "memory", "add", "--title", "deploy", "-",
                  input=f"the deploy key:\n{PRIVATE_KEY}\n")  # fmt: skip
    assert "possible secret (Private Key)" in error
    assert "line 2 of the text" in error
    assert "nothing was written" in error
    assert "b3BlbnNzaC1rZXktdjEAAAAA" not in error
    error = fails(example_repo, "memory", "add", "--title", f"key {AWS_KEY}", "-", input="x\n")
    assert "possible secret (AWS Access Key)" in error
    assert "the title" in error
    assert AWS_KEY not in error
    error = fails(example_repo, "memory", "edit", PUBLIC_NOTE, "--file", "-",
                  input=f"aws_secret: {AWS_KEY}\n")  # fmt: skip
    assert "possible secret (AWS Access Key)" in error
    assert AWS_KEY not in error
    assert head(example_repo) == before
    assert search(example_repo, "deploy") == []


def test_clearance_limits_search_and_show(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    everything = {h["id"] for h in search(example_repo, "agents staging checks")}
    assert CONFIDENTIAL_NOTE in everything
    assert {h["id"] for h in search(example_repo, "agents staging checks",
                                   "--max-trust", "public")} == {PUBLIC_NOTE}  # fmt: skip

    monkeypatch.setenv("GITGW_CLEARANCE", "internal")
    assert CONFIDENTIAL_NOTE not in {h["id"] for h in search(example_repo, "agents staging")}
    error = fails(example_repo, "memory", "search", "staging", "--max-trust", "confidential")
    assert "the requested --max-trust is confidential, above what you may see (internal" in error
    error = fails(example_repo, "memory", "show", CONFIDENTIAL_NOTE)
    assert "is confidential, above what you may see" in error
    monkeypatch.setenv("GITGW_CLEARANCE", "secret")
    assert "'secret' is not a trust level" in fails(example_repo, "memory", "search", "x")


def test_bad_requests_get_clear_errors(example_repo: Path) -> None:
    assert "nothing to search for" in fails(example_repo, "memory", "search", "  ?! ")
    assert "no memory note 01M5C9EDKFBFGEPRV2W147SA60" in fails(
        example_repo, "memory", "show", "01M5C9EDKFBFGEPRV2W147SA60"
    )
    assert "no memory note" in fails(example_repo, "memory", "forget", "nonsense")
    ran = run_cli("--repo", str(example_repo), "memory", "add", "--title", "t")
    assert ran.exit_code == 2
    assert "--file F, or -" in ran.stderr


def test_forget_leaves_search_but_not_history(example_repo: Path) -> None:
    out = cli(example_repo, "memory", "forget", CONFIDENTIAL_NOTE, "--reason", "moved to the vault")
    assert out.startswith(f"forgot {CONFIDENTIAL_NOTE}")
    assert search(example_repo, "staging") == []
    error = fails(example_repo, "memory", "show", CONFIDENTIAL_NOTE)
    assert "was forgotten by Test User" in error
    assert "moved to the vault" in error
    assert "git log -p gitgw" in error
    log = git(
        "log", "--format=%H", "gitgw", "--", f"memory/{CONFIDENTIAL_NOTE}.md", cwd=example_repo
    )
    assert len(log.split()) == 2  # added, then removed by the forgetting commit
    assert "already" not in fails(example_repo, "memory", "forget", CONFIDENTIAL_NOTE)
    assert cli(example_repo, "verify").startswith("ok:")


def machines(tmp_path: Path, server: GitServer) -> tuple[Path, Path]:
    """Two machines in step through `server`: `a` seeded with the example, `b` a clone."""
    url = server.create()
    a, b = tmp_path / "a", tmp_path / "b"
    cli(tmp_path, "init", "--example", str(a))
    git("remote", "add", "origin", url, cwd=a)
    cli(a, "sync")
    git("init", "--quiet", str(b))
    git("remote", "add", "origin", url, cwd=b)
    cli(b, "sync")
    return a, b


def test_notes_and_forgetting_travel_between_machines(
    tmp_path: Path, git_daemon: GitServer
) -> None:
    a, b = machines(tmp_path, git_daemon)
    note_id = add(a, "Ports", "The proxy listens on 8741.\n")
    cli(a, "sync")
    cli(b, "sync")
    assert [h["id"] for h in search(b, "proxy listens")] == [note_id]
    cli(b, "memory", "forget", note_id)
    cli(b, "sync")
    cli(a, "sync")
    assert search(a, "proxy listens") == []
    assert "was forgotten" in fails(a, "memory", "show", note_id)


def test_an_edit_on_two_machines_keeps_both_versions(tmp_path: Path, git_daemon: GitServer) -> None:
    a, b = machines(tmp_path, git_daemon)
    cli(a, "memory", "edit", PUBLIC_NOTE, "--file", "-", input="Run `make check` (from a).\n")
    cli(b, "memory", "edit", PUBLIC_NOTE, "--title", "Checks", "--file", "-",
        input="Run `tox` (from b).\n")  # fmt: skip
    cli(a, "sync")
    out = cli(b, "sync")
    assert f"conflict: memory/{PUBLIC_NOTE}.md changed on both sides; kept yours" in out
    cli(a, "sync")
    for machine in (a, b):
        shown = json.loads(cli(machine, "memory", "show", PUBLIC_NOTE, "--json"))["data"]
        assert "(from b)" in shown["body"]  # the version of the machine that merged
        (conflict,) = shown["conflicts"]
        with StateRepo.discover(machine) as repo:
            kept = repo.read(conflict["kept_at"])
        assert kept is not None
        assert b"(from a)" in kept  # nothing dropped
        ran = run_cli("--repo", str(machine), "memory", "show", PUBLIC_NOTE)
        assert "conflict: another version" in ran.stderr
    assert head(a) == head(b)


def test_a_note_deleted_on_one_machine_and_edited_on_another_keeps_the_edit(
    tmp_path: Path, git_daemon: GitServer
) -> None:
    a, b = machines(tmp_path, git_daemon)
    path = f"memory/{PUBLIC_NOTE}.md"
    cli(a, "memory", "edit", PUBLIC_NOTE, "--file", "-", input="Run `make check` (from a).\n")
    with StateRepo.discover(b) as repo:
        repo.commit({path: None}, "b: delete the note with plain git")
    cli(a, "sync")
    out = cli(b, "sync")
    assert f"conflict: {path} was deleted here and changed on origin" in out
    ran = run_cli("--repo", str(b), "memory", "show", PUBLIC_NOTE)
    assert ran.exit_code == 0, ran.stderr
    assert "(from a)" in ran.stdout
    assert "the note was deleted on one machine while it changed on another" in ran.stderr


def test_two_edits_at_once_on_one_clone_keep_both(example_repo: Path) -> None:
    # Two `gitgw memory edit` processes started together: one sets the title, the other
    # the tags. Each applies its change to the note as it is when it commits.
    note = add(example_repo, "Original", "A short body.")
    for trial in range(3):
        start = time.time() + 1.5  # both past their imports, then at once
        wait = f"import time, sys; time.sleep(max(0, {start} - time.time()));"
        run = wait + " from gitgw.cli import main; sys.exit(main(sys.argv[1:]))"
        edits = [
            ["memory", "edit", note, "--title", f"Title {trial}"],
            ["memory", "edit", note, "--tag", f"tag-{trial}"],
        ]
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", run, "--repo", str(example_repo), *argv],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for argv in edits
        ]
        errors = [process.communicate(timeout=60)[1] for process in processes]
        assert [process.returncode for process in processes] == [0, 0], errors
        with StateRepo.discover(example_repo) as repo:
            view = memory.find(Store(repo), note)
        assert (view.note.title, view.note.tags) == (f"Title {trial}", [f"tag-{trial}"])
