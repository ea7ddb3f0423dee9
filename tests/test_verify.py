"""`gitgw verify` against history altered with plain git: modified, deleted, amended,
force-pushed, invalid and unknown files."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from gitgw._clock import default_clock
from gitgw._yaml import load_record
from gitgw.concepts.store import Store
from gitgw.errors import InvalidRecord
from gitgw.records import ConsentEntry, Handoff, Receipt, kind_named, render, render_batch
from gitgw.records.layout import parse_file
from gitgw.records.run import Run
from gitgw.services.verify import verify
from gitgw.state import StateRepo
from tests.conftest import git, run_cli


def _grant(subject: str = "provider:openai") -> ConsentEntry:
    clock = default_clock()
    return ConsentEntry(
        id=clock.new_id(),
        action="grant",
        subject=subject,
        level="internal",
        actor="alice",
        created=clock.now(),
    )


def _add(repo_path: Path, *entries: ConsentEntry) -> list[str]:
    with StateRepo.discover(repo_path) as repo:
        Store(repo).add(*entries, message="grant")
    return [render(e)[0] for e in entries]


@pytest.fixture
def clone(state_repo: Path, tmp_path: Path) -> Path:
    """A plain git clone of the state branch, checked out, as a person would make."""
    path = tmp_path / "clone"
    git("clone", "-q", "--branch", "gitgw", str(state_repo), str(path))
    return path


def _push(clone: Path, *extra: str) -> None:
    git("push", "-q", *extra, "origin", "HEAD:gitgw", cwd=clone)


def _verify(repo: Path) -> tuple[int, dict[str, object]]:
    ran = run_cli("--repo", str(repo), "verify", "--json")
    envelope = json.loads(ran.stdout)
    assert envelope["schema_version"] == 1
    return ran.exit_code, envelope["data"]


def _problems(data: dict[str, object]) -> list[tuple[str, str]]:
    problems = data["problems"]
    assert isinstance(problems, list)
    return [(p["path"], p["reason"]) for p in problems]


def _reasons_both_ways(state_repo: Path) -> dict[str, str]:
    """Each problem's reason by path, from a verify in this process; one whose checks go
    to worker processes must report the same."""
    with StateRepo.discover(state_repo) as repo:
        here = verify(repo, cache=False, workers=1)
    with StateRepo.discover(state_repo) as repo:
        shared = verify(repo, cache=False, workers=2, parallel_from=0)
    assert shared.problems == here.problems
    assert (shared.files, shared.records) == (here.files, here.records)
    return {problem.path: problem.reason for problem in here.problems}


def test_shared_checks_report_what_one_process_reports(state_repo: Path) -> None:
    """Enough files for many chunks of work: the worker takes them from the front and
    this process, once its walk is done, from the back; together they report every
    problem one process alone reports, in the same order."""
    clock = default_clock()
    with StateRepo.discover(state_repo) as repo:
        for commit in range(20):
            files = {}
            for n in range(10):  # each a receipt batch: a heavy file, so few make a chunk
                path = kind_named("receipt").path(id=clock.new_id())
                files[path] = b"not a receipt %d %d\n" % (commit, n)
            repo.commit(files, f"bad batches {commit}")
    reasons = _reasons_both_ways(state_repo)
    assert len(reasons) == 200


def test_an_intact_branch_verifies(state_repo: Path) -> None:
    _add(state_repo, _grant(), _grant("client:codex"))
    code, data = _verify(state_repo)
    assert code == 0
    assert data["ok"] is True
    assert data["records"] == 2
    ran = run_cli("--repo", str(state_repo), "verify")
    assert ran.stdout.startswith("ok: 2 commits")


def test_a_record_modified_in_a_later_commit_is_named(state_repo: Path, clone: Path) -> None:
    [path] = _add(state_repo, _grant())
    git("pull", "-q", cwd=clone)
    record = clone / path
    record.write_text(record.read_text().replace('"alice"', '"mallory"'))
    git("commit", "-qam", "quietly change who granted it", cwd=clone)
    _push(clone)
    tampering = git("rev-parse", "HEAD", cwd=clone).strip()
    code, data = _verify(state_repo)
    assert code == 1
    reasons = dict(_problems(data))
    assert "add-only record was modified" in reasons[path]
    assert any(p["commit"] == tampering for p in data["problems"])  # type: ignore[attr-defined,index]


def test_a_deleted_record_is_named(state_repo: Path, clone: Path) -> None:
    [path] = _add(state_repo, _grant())
    git("pull", "-q", cwd=clone)
    git("rm", "-q", path, cwd=clone)
    git("commit", "-qm", "remove the evidence", cwd=clone)
    _push(clone)
    code, data = _verify(state_repo)
    assert code == 1
    assert "add-only record was deleted" in dict(_problems(data))[path]


def test_an_amended_commit_is_caught_through_the_recorded_heads(
    state_repo: Path, clone: Path
) -> None:
    # The rewrite even recomputes the digest, so the files alone look perfect.
    [path] = _add(state_repo, _grant())
    git("pull", "-q", cwd=clone)
    forged = _grant()
    forged_path, forged_bytes = render(forged.model_copy(update={"id": Path(path).stem}))
    (clone / forged_path).write_bytes(forged_bytes)
    git("commit", "-q", "--amend", "-am", "grant (rewritten)", cwd=clone)
    _push(clone, "--force")
    code, data = _verify(state_repo)
    assert code == 1
    assert "modified by a rewrite of history" in dict(_problems(data))[path]


def test_a_branch_reset_to_drop_a_commit_is_caught(state_repo: Path) -> None:
    [path] = _add(state_repo, _grant())
    git("branch", "-f", "gitgw", "gitgw~1", cwd=state_repo)
    code, data = _verify(state_repo)
    assert code == 1
    assert "deleted by a rewrite of history" in dict(_problems(data))[path]


def test_a_record_changed_by_a_merge_onto_an_older_commit_is_named(
    state_repo: Path, clone: Path
) -> None:
    # A merge whose first parent predates the record, whose second is the head, and whose
    # tree holds a new version: a fast-forward, so no force push is needed.
    [path] = _add(state_repo, _grant())
    git("pull", "-q", cwd=clone)
    record = clone / path
    record.write_text(record.read_text().replace('"alice"', '"mallory"'))
    git("add", path, cwd=clone)
    tree = git("write-tree", cwd=clone).strip()
    merge = git("commit-tree", tree, "-p", "HEAD~1", "-p", "HEAD", "-m", "merge", cwd=clone)
    git("push", "-q", "origin", f"{merge.strip()}:refs/heads/gitgw", cwd=clone)
    assert "add-only record was modified" in _reasons_both_ways(state_repo)[path]


def test_a_record_added_again_on_a_side_branch_and_merged_is_named(
    state_repo: Path, clone: Path
) -> None:
    from gitgw.services.verify import check_incoming

    [path] = _add(state_repo, _grant())
    known = git("rev-parse", "gitgw", cwd=state_repo).strip()
    git("pull", "-q", cwd=clone)
    original = (clone / path).read_text()
    git("checkout", "-q", "-b", "side", "HEAD~1", cwd=clone)
    (clone / path).parent.mkdir(parents=True, exist_ok=True)
    (clone / path).write_text(original.replace('"alice"', '"mallory"'))
    git("add", path, cwd=clone)
    git("commit", "-qm", "the same record, on a side branch", cwd=clone)
    git("checkout", "-q", "gitgw", cwd=clone)
    git("merge", "-q", "-s", "ours", "--no-edit", "side", cwd=clone)  # a tree as it was,
    (clone / path).write_text(original.replace('"alice"', '"mallory"'))  # then the side's
    git("commit", "-q", "--amend", "-a", "--no-edit", cwd=clone)
    _push(clone)
    assert "add-only record was added again, changed" in _reasons_both_ways(state_repo)[path]
    with StateRepo.discover(state_repo) as repo:  # what sync and the daemon check
        incoming = check_incoming(repo, [known], repo.require_head())
    assert [(p.path, p.reason) for p in incoming] == [
        (path, "add-only record is already on the branch, changed")
    ]


def test_a_rewrite_is_caught_after_the_old_commits_are_pruned(state_repo: Path) -> None:
    [path] = _add(state_repo, _grant())
    assert _verify(state_repo)[0] == 0  # this machine has seen the head with the record
    git("update-ref", "refs/heads/gitgw", "gitgw~1", cwd=state_repo)
    git("reflog", "expire", "--expire=now", "--all", cwd=state_repo)
    git("gc", "-q", "--prune=now", cwd=state_repo)
    code, data = _verify(state_repo)
    assert code == 1
    [(where, reason)] = _problems(data)
    assert where == "(history)"
    assert "commits are gone (pruned)" in reason
    assert path not in dict(_problems(data))


def test_a_torn_line_in_the_record_of_heads_is_skipped(state_repo: Path) -> None:
    _add(state_repo, _grant())
    assert _verify(state_repo)[0] == 0
    witness = state_repo / ".git" / "gitgw" / "witness" / "gitgw"
    with witness.open("a") as record:
        record.write("0d75417876")  # a full disk cut the last line short
    code, data = _verify(state_repo)
    assert (code, _problems(data)) == (0, [])
    # The head that verify recorded after it is a whole line of its own.
    assert witness.read_text().split()[-1] == git("rev-parse", "gitgw", cwd=state_repo).strip()


def test_invalid_and_unknown_files_are_named_and_other_commands_still_work(
    state_repo: Path, clone: Path
) -> None:
    (clone / "notes.txt").write_text("not a gitgw file\n")
    (clone / "gitgw.yaml").write_text("mode: sideways\n")
    git("add", "-A", cwd=clone)
    git("commit", "-qm", "hand edits", cwd=clone)
    _push(clone)
    code, data = _verify(state_repo)
    assert code == 1
    problems = dict(_problems(data))
    assert problems["notes.txt"] == "is not a path gitgw knows"
    assert "does not match the config schema: mode" in problems["gitgw.yaml"]
    ran = run_cli("--repo", str(state_repo), "status")
    assert ran.exit_code == 0
    assert "1 file(s) gitgw does not know, e.g. notes.txt" in ran.stdout
    assert "warning     gitgw.yaml: does not match the config schema: mode" in ran.stdout
    text = run_cli("--repo", str(state_repo), "verify")
    assert text.exit_code == 1
    assert "notes.txt: is not a path gitgw knows [commit " in text.stderr
    assert text.stdout.startswith("FAILED: 2 problem(s)")


def test_a_second_run_skips_proven_files_but_still_catches_tampering(
    state_repo: Path, clone: Path
) -> None:
    [path] = _add(state_repo, _grant())
    first = _verify(state_repo)[1]
    assert first["cached"] == 0
    second = _verify(state_repo)[1]
    assert second["cached"] == second["files"] - 2  # all but the two mutable files at the head
    assert second["records"] == first["records"]
    git("pull", "-q", cwd=clone)
    (clone / path).write_text((clone / path).read_text().replace('"alice"', '"eve"'))
    git("commit", "-qam", "edit a proven record", cwd=clone)
    _push(clone)
    code, data = _verify(state_repo)
    assert code == 1
    assert "add-only record was modified" in dict(_problems(data))[path]
    fresh = run_cli("--repo", str(state_repo), "verify", "--no-cache", "--json")
    assert json.loads(fresh.stdout)["data"]["cached"] == 0


def test_a_file_name_holding_a_line_break_cannot_prove_another_file(
    state_repo: Path, clone: Path
) -> None:
    # An invalid record, and a conflict copy whose name (git allows any byte but NUL and
    # "/") spells a line of verify's cache of proven files after a character
    # `str.splitlines` breaks at, claiming that record was proven.
    path, data = render(_grant())
    bad = data.replace(b'"alice"', b'"mallory"')  # its digest no longer matches
    blob = hashlib.sha1(b"blob %d\0" % len(bad) + bad).hexdigest()
    copy = f"conflicts/{default_clock().new_id()}/files/x\x1c{blob} 1 {path}"
    for name, content in ((path, bad), (copy, b"anything\n")):
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        (clone / name).write_bytes(content)
    git("add", "-A", cwd=clone)
    git("commit", "-qm", "an invalid record and an odd name", cwd=clone)
    _push(clone)
    for _ in range(2):  # the second run reads the cache the first one wrote
        code, found = _verify(state_repo)
        assert code == 1
        assert dict(_problems(found))[path] == "digest does not match its content"


def _commit_entries(repo: Path, entries: dict[str, tuple[str, str]], message: str) -> str:
    """Commit onto the state branch, with plain git, the tree entries (mode, object id)
    given by path: what a person's tools might write."""
    env = {**os.environ, "GIT_INDEX_FILE": str(repo / ".git" / "index.crafted")}

    def plumbing(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    plumbing("read-tree", "gitgw")
    for path, (mode, sha) in entries.items():
        plumbing("update-index", "--add", "--cacheinfo", f"{mode},{sha},{path}")
    tree = plumbing("write-tree")
    commit = plumbing("commit-tree", tree, "-p", "gitgw", "-m", message)
    plumbing("update-ref", "refs/heads/gitgw", commit)
    return commit


@pytest.mark.parametrize(
    ("mode", "reasons"),
    [
        ("100755", ["add-only record was modified"]),
        ("120000", ["add-only record was deleted", "is a symbolic link or a submodule"]),
        ("160000", ["add-only record was deleted", "is a symbolic link or a submodule"]),
    ],
)
def test_a_record_given_another_mode_is_named(
    state_repo: Path, mode: str, reasons: list[str]
) -> None:
    # The same object id under a new mode: an executable, a link whose target is the
    # record's text, or a submodule named by that id (which gitgw must not read as a
    # directory, nor git check out as a file).
    [path] = _add(state_repo, _grant())
    blob = git("rev-parse", f"gitgw:{path}", cwd=state_repo).strip()
    commit = _commit_entries(state_repo, {path: (mode, blob)}, "a new mode")
    code, data = _verify(state_repo)
    assert code == 1
    found = [(p["reason"], p["commit"]) for p in data["problems"] if p["path"] == path]  # type: ignore[index,union-attr]
    assert len(found) == len(reasons)
    for (reason, where), expected in zip(found, reasons, strict=True):
        assert reason.startswith(expected)
        assert where == commit
    assert run_cli("--repo", str(state_repo), "status").exit_code == 0


def test_a_name_a_tree_holds_twice_is_named(state_repo: Path) -> None:
    # Git's fsck refuses such a tree, but git itself reads the first entry of the two,
    # so verify may not vouch for the second: it names the tree's fault.
    path, good = render(_grant())
    bad = good.replace(b'"alice"', b'"mallory"')
    folder, name = path.rsplit("/", 1)
    ids = [
        git("hash-object", "-w", str(_written(state_repo, d)), cwd=state_repo).strip()
        for d in (bad, good)
    ]
    raw = b"".join(b"100644 " + name.encode() + b"\0" + bytes.fromhex(i) for i in ids)
    tree = _write_object(state_repo, b"tree", raw)
    # The folders above it, each the branch's with that one entry replaced.
    while folder:
        parent, _, base = folder.rpartition("/")
        where = f"gitgw:{parent}" if parent else "gitgw"
        listing = git("ls-tree", where, cwd=state_repo, check=False)  # none yet: ""
        kept = [line for line in listing.splitlines() if line.split("\t", 1)[1] != base]
        mktree = subprocess.run(
            ["git", "mktree"],
            cwd=state_repo,
            input="\n".join([*kept, f"040000 tree {tree}\t{base}"]) + "\n",
            capture_output=True,
            text=True,
            check=True,
        )
        tree, folder = mktree.stdout.strip(), parent
    commit = git("commit-tree", tree, "-p", "gitgw", "-m", "one name, twice", cwd=state_repo)
    commit = commit.strip()
    git("update-ref", "refs/heads/gitgw", commit, cwd=state_repo)
    code, data = _verify(state_repo)
    assert code == 1
    assert (path, "the tree holds this name twice") in _problems(data)
    assert any(p["commit"] == commit for p in data["problems"])  # type: ignore[attr-defined,index]


def test_a_second_config_beside_the_first_is_named(state_repo: Path) -> None:
    # A valid second gitgw.yaml after the first: git shows one, gitgw reads the other.
    listing = git("ls-tree", "gitgw", cwd=state_repo)
    config = git("show", "gitgw:gitgw.yaml", cwd=state_repo)
    other = config.replace("default_level: internal", "default_level: public")
    assert other != config
    blob = git("hash-object", "-w", str(_written(state_repo, other.encode())), cwd=state_repo)
    tree = subprocess.run(
        ["git", "mktree"],
        cwd=state_repo,
        input=listing + f"100644 blob {blob.strip()}\tgitgw.yaml\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    commit = git("commit-tree", tree, "-p", "gitgw", "-m", "a second config", cwd=state_repo)
    git("update-ref", "refs/heads/gitgw", commit.strip(), cwd=state_repo)
    code, data = _verify(state_repo)
    assert code == 1
    assert _problems(data) == [("gitgw.yaml", "the tree holds this name twice")]


def test_a_file_entry_naming_a_tree_is_a_problem_not_a_crash(state_repo: Path) -> None:
    path, _ = render(_grant())
    tree = git("rev-parse", "gitgw^{tree}", cwd=state_repo).strip()
    _commit_entries(state_repo, {path: ("100644", tree)}, "a file that is a tree")
    code, data = _verify(state_repo)
    assert code == 1
    assert dict(_problems(data))[path] == (
        f"cannot be read: its object {tree} is missing or not a file"
    )


def test_a_shallow_clone_is_told_its_history_is_incomplete(
    state_repo: Path, tmp_path: Path
) -> None:
    _add(state_repo, _grant())
    _add(state_repo, _grant())
    shallow = tmp_path / "shallow"
    git("clone", "-q", "--depth", "1", "--branch", "gitgw", f"file://{state_repo}", str(shallow))
    ran = run_cli("--repo", str(shallow), "verify")
    assert ran.exit_code == 1
    assert "history is incomplete (a shallow or partial clone?)" in ran.stderr
    assert "git fetch --unshallow" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert run_cli("--repo", str(shallow), "status").exit_code == 0


def _written(repo: Path, data: bytes) -> Path:
    path = repo / ".git" / "crafted-blob"
    path.write_bytes(data)
    return path


def _write_object(repo: Path, kind: bytes, raw: bytes) -> str:
    """A loose object written as is, past git's own checks."""
    data = kind + b" %d\0" % len(raw) + raw
    sha = hashlib.sha1(data).hexdigest()
    target = repo / ".git" / "objects" / sha[:2] / sha[2:]
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(zlib.compress(data))
    return sha


def test_a_repository_verify_cannot_write_to_is_verified_all_the_same(
    state_repo: Path,
) -> None:
    # Where gitgw keeps its records is not writable (here: a file in the way): the proven
    # files and the head seen cannot be recorded, and the verdict is the same.
    _add(state_repo, _grant())
    shutil.rmtree(state_repo / ".git" / "gitgw", ignore_errors=True)
    (state_repo / ".git" / "gitgw").write_text("in the way\n")
    for _ in range(2):
        code, data = _verify(state_repo)
        assert (code, data["cached"]) == (0, 0)


def test_a_branch_whose_config_was_deleted_is_named(state_repo: Path, clone: Path) -> None:
    git("rm", "-q", "gitgw.yaml", cwd=clone)
    git("commit", "-qm", "no config", cwd=clone)
    _push(clone)
    deleting = git("rev-parse", "HEAD", cwd=clone).strip()
    code, data = _verify(state_repo)
    assert code == 1
    [problem] = data["problems"]  # type: ignore[misc]
    assert problem == {
        "path": "gitgw.yaml",
        "commit": deleting,
        "reason": "is missing: every command that needs the config refuses to run",
    }


def test_a_config_of_megabytes_is_refused_without_parsing_it(state_repo: Path, clone: Path) -> None:
    config = clone / "gitgw.yaml"
    config.write_text(config.read_text() + "# a comment\n" * 200_000)  # 2.4 MB
    git("commit", "-qam", "a long config", cwd=clone)
    _push(clone)
    began = time.monotonic()
    code, data = _verify(state_repo)
    ran = run_cli("--repo", str(state_repo), "status")
    assert time.monotonic() - began < 5  # the YAML parser would take about 12 s each
    assert code == 1
    reason = dict(_problems(data))["gitgw.yaml"]
    assert re.fullmatch(r"is [\d,]+ bytes; a YAML document over 1,048,576 is refused", reason)
    assert "warning     gitgw.yaml: is " in ran.stdout


def test_a_receipt_given_again_in_another_batch_is_named(state_repo: Path) -> None:
    # A batch's receipts are named by their ids: a new batch holding an old receipt's id
    # with other content (its digest made anew) would stand for it in every reader.
    clock = default_clock()
    first = Receipt(id=clock.new_id(), created=clock.now(), level="internal", outcome="ok")
    other = Receipt(id=clock.new_id(), created=clock.now(), level="internal", outcome="ok")
    with StateRepo.discover(state_repo) as repo:
        Store(repo).commit_files(dict([render_batch([first, other], clock.new_id())]), "batch")
    assert _verify(state_repo)[0] == 0  # and the batch is proven, its ids kept
    forged = first.model_copy(update={"level": "public"})
    fresh = Receipt(id=clock.new_id(), created=clock.now(), level="internal", outcome="ok")
    again, data = render_batch([forged, fresh, fresh], clock.new_id())  # and twice in one
    with StateRepo.discover(state_repo) as repo:
        repo.commit({again: data}, "the same receipt, changed")
    original = next(
        path
        for path in git("ls-tree", "-r", "--name-only", "gitgw", cwd=state_repo).split()
        if path.endswith(".jsonl") and path != again
    )
    for cache in (True, False):  # the first batch proven before, and read anew
        for workers in (1, 2):
            with StateRepo.discover(state_repo) as repo:
                report = verify(repo, cache=cache, workers=workers, parallel_from=0)
            assert [(p.path, p.reason) for p in report.problems] == [
                (again, f"record {first.id} is given again (first in {original})"),
                (again, f"record {fresh.id} is given again (first in {again})"),
            ]


def test_a_code_branch_named_like_the_state_branch_is_no_remotes_state(
    state_repo: Path, tmp_path: Path
) -> None:
    # `origin`'s code branch `feature/gitgw`, rebased and force-pushed as branches are:
    # its tracking ref ends like the state branch's, but names no remote `origin/feature`.
    hub = tmp_path / "hub.git"
    git("init", "-q", "--bare", str(hub))
    git("remote", "add", "origin", str(hub), cwd=state_repo)
    code = tmp_path / "code"
    git("init", "-q", "-b", "feature/gitgw", str(code))
    git("commit", "-q", "--allow-empty", "-m", "work", cwd=code)
    git("push", "-q", str(hub), "feature/gitgw", cwd=code)
    git("fetch", "-q", "origin", cwd=state_repo)
    git("commit", "-q", "--amend", "--allow-empty", "-m", "work, rebased", cwd=code)
    git("push", "-q", "--force", str(hub), "feature/gitgw", cwd=code)
    git("fetch", "-q", "origin", cwd=state_repo)
    code, data = _verify(state_repo)
    assert (code, data["problems"]) == (0, [])


def test_a_submodule_in_place_of_the_config_is_named_not_a_crash(state_repo: Path) -> None:
    commit = git("rev-parse", "gitgw", cwd=state_repo).strip()
    _commit_entries(state_repo, {"gitgw.yaml": ("160000", commit)}, "a submodule")
    ran = run_cli("--repo", str(state_repo), "verify")
    assert ran.exit_code == 1
    assert "unexpected error" not in ran.stderr
    assert "gitgw.yaml: is a symbolic link or a submodule" in ran.stderr


def test_secrets_in_history_are_found_on_request(state_repo: Path, clone: Path) -> None:
    handoff_id = "01M8B1B85J709A7SXXVSJKPWBZ"
    handoff = Handoff.model_validate(
        {
            "id": handoff_id,
            "from": {"agent": "a"},
            "to": "b",
            "title": "deploy",
            "created": "2026-11-20T10:00:00.000Z",
        }
    )
    path, data = render(handoff, "Use AKIAIOSFODNN7EXAMPLE to deploy.\n")
    (clone / path).parent.mkdir(parents=True)
    (clone / path).write_bytes(data)  # plain git, past gitgw's own guard
    git("add", "-A", cwd=clone)
    git("commit", "-qm", "a handoff with a key in it", cwd=clone)
    _push(clone)
    assert _verify(state_repo)[0] == 0  # the format is fine
    ran = run_cli("--repo", str(state_repo), "verify", "--secrets")
    assert ran.exit_code == 1
    assert path in ran.stderr
    assert "AKIAIOSFODNN7EXAMPLE" not in ran.stderr + ran.stdout


def test_files_checked_in_other_processes_give_the_same_report(
    state_repo: Path, clone: Path
) -> None:
    """Every kind of verdict, reached in this process and in worker processes alike."""

    added = _add(state_repo, _grant("provider:kept"), _grant("provider:gone"))
    git("pull", "-q", cwd=clone)
    git("rm", "-q", added[1], cwd=clone)  # deleted: an add-only problem
    files = {}
    for name, mutate in [
        ("relaid", None),  # valid, re-laid out by hand: key order, spacing, quoting
        ("tampered", lambda t: t.replace('"alice"', '"mallory"')),
        ("bad-digest", lambda t: t.replace("sha256:", "sha256:0")),
        ("schema", lambda t: t.replace('"grant"', '"maybe"')),
    ]:
        path, data = render(_grant(f"provider:{name}"))
        text = data.decode()
        if mutate is None:
            content = load_record(text)
            text = "".join(f"{k}:   {json.dumps(v)}\n" for k, v in reversed(content.items()))
            text = text.replace('"internal"', "internal")  # a plain YAML scalar
        else:
            text = mutate(text)
        files[name] = path
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        (clone / path).write_text(text)
    (clone / "notes.txt").write_text("not a gitgw file\n")
    git("add", "-A", cwd=clone)
    git("commit", "-qm", "hand edits", cwd=clone)
    _push(clone)
    reasons = _reasons_both_ways(state_repo)
    assert files["relaid"] not in reasons
    assert reasons[files["tampered"]] == "digest does not match its content"
    assert "does not match the consent schema: digest" in reasons[files["bad-digest"]]
    assert "does not match the consent schema: action" in reasons[files["schema"]]
    assert "add-only record was deleted" in reasons[added[1]]
    assert reasons["notes.txt"] == "is not a path gitgw knows"


def test_runs_and_receipts_get_the_verdicts_of_the_full_check(
    state_repo: Path, clone: Path
) -> None:
    """Runs and receipt batches take verify's fast check: each bad file still gets the
    reason the full check gives, in this process and in worker processes alike."""

    clock = default_clock()

    def run(**fields: object) -> tuple[str, bytes]:
        return render(
            Run.model_validate(
                {"id": clock.new_id(), "kind": "call", "status": "started"}
                | {"started": clock.now(), **fields}
            )
        )

    def batch(count: int) -> tuple[str, bytes]:
        receipts = [
            Receipt(id=clock.new_id(), created=clock.now(), level="internal", outcome="ok")
            for _ in range(count)
        ]
        return render_batch(receipts, clock.new_id())

    files: dict[str, tuple[str, bytes]] = {"good": run(provider="é \u2028"), "batch": batch(3)}
    path, data = run()
    files["tampered"] = path, data.replace(b'"started"', b'"failed"')
    path, data = run()
    year = path.split("/")[1]
    files["misplaced"] = path.replace(f"/{year}/", f"/{int(year) - 1}/"), data
    path, data = run()
    files["naive"] = path, data.replace(b'Z"', b'"')
    path, data = batch(2)
    lines = data.split(b"\n")
    files["bad-line"] = path, lines[0] + b"\n" + lines[1].replace(b'"ok"', b'"refused"') + b"\n"
    path, data = batch(2)
    hour = path.split("/")[4]
    files["other-hour"] = path.replace(f"/{hour}/", f"/{(int(hour) + 1) % 24:02d}/"), data
    # Hostile files once crashed verify (an exception other than InvalidRecord): a time
    # past the year 9999 in UTC, and a value nested deeper than the parser recurses.
    path, data = run()
    files["past-9999"] = (
        path,
        re.sub(rb"started: .*", b'started: "9999-12-31T23:30:00-01:00"', data),
    )
    path, data = run()
    files["deep"] = path, data.replace(b"params: {}", b"params: " + b"[" * 1100 + b"]" * 1100)
    for path, data in files.values():
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        (clone / path).write_bytes(data)
    git("add", "-A", cwd=clone)
    git("commit", "-qm", "runs and receipts", cwd=clone)
    _push(clone)
    reasons = _reasons_both_ways(state_repo)
    expected = {}
    for name, (path, data) in files.items():
        try:
            parse_file(path, data)
        except InvalidRecord as exc:
            expected[path] = exc.reason
        else:
            assert name in ("good", "batch")
    assert {path: reasons.get(path) for path in expected} == expected
    assert len(expected) == len(files) - 2
    assert files["good"][0] not in reasons
    assert files["batch"][0] not in reasons
    assert "years 1 to 9999" in reasons[files["past-9999"][0]]
    assert reasons[files["deep"][0]] == "cannot be parsed: a value is nested too deeply"
