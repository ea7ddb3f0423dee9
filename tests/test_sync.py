"""`gitgw sync` between machines, through real Git servers on loopback.

Every test that needs a server runs against both `git daemon` (git://) and `git
http-backend` (smart HTTP): C git's receive-pack decides whether a push lands, as it
would on a forge.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gitgw._clock import default_clock
from gitgw.concepts.store import Store
from gitgw.records import ConsentEntry, render, render_batch
from gitgw.state import PathConflict, StateRepo, merge_heads, remote_url
from tests.conftest import git, run_cli
from tests.gitservers import GitServer, unused_port
from tests.test_receipts import make_receipt

BRANCH = "gitgw"
AWS_KEY = "AKIA" + "IOSFODNN7" + "EXAMPLE"


# -- machines, records and checks ------------------------------------------------------


def machine(tmp_path: Path, name: str, url: str, *, init: bool) -> Path:
    """A machine's repository with `origin` at `url`: a fresh state branch, or none."""
    path = tmp_path / name
    if init:
        ran = run_cli("init", str(path))
        assert ran.exit_code == 0, ran.stderr
    else:
        git("init", "--quiet", str(path))
    git("remote", "add", "origin", url, cwd=path)
    return path


def sync(path: Path) -> dict[str, Any]:
    """Run `gitgw sync --json` in `path`; it must succeed. The result's data."""
    ran = run_cli("--repo", str(path), "sync", "--json")
    assert ran.exit_code == 0, ran.stderr
    data: dict[str, Any] = json.loads(ran.stdout)["data"]
    return data


def pair(tmp_path: Path, server: GitServer) -> tuple[Path, Path]:
    """Two machines in step: `a` made the state branch and pushed it, `b` synced it in."""
    url = server.create()
    a = machine(tmp_path, "a", url, init=True)
    b = machine(tmp_path, "b", url, init=False)
    assert sync(a)["action"] == "pushed"
    assert sync(b)["action"] == "fast-forward"
    assert head(a) == head(b) == server_head(server)
    return a, b


def pair_with_a_pushed_record(tmp_path: Path, server: GitServer) -> tuple[Path, Path, str]:
    """`pair`, then a consent grant added on `a` and pushed; the record's path."""
    a, b = pair(tmp_path, server)
    record = add_consent(a)
    assert sync(a)["action"] == "pushed"
    return a, b, record


def add_consent(path: Path, subject: str = "provider:openai") -> str:
    """Add one consent grant on `path`'s state branch; the record's path."""
    clock = default_clock()
    entry = ConsentEntry(
        id=clock.new_id(), action="grant", subject=subject, level="internal",
        actor="tester", created=clock.now(),
    )  # fmt: skip
    with StateRepo.discover(path) as repo:
        Store(repo).add(entry, message=f"grant {subject}")
    return render(entry)[0]


def head(path: Path) -> str | None:
    """The state branch's commit id in `path`, or None."""
    with StateRepo.discover(path) as repo:
        return repo.head()


def server_head(server: GitServer) -> str:
    """The state branch's commit id in the server's bare repository."""
    return git("--git-dir", str(server.path()), "rev-parse", f"refs/heads/{BRANCH}").strip()


def drop_the_last_commit_on(server: GitServer, clone: Path) -> None:
    """Someone rewrites the server's branch with plain git, in `clone`: its last commit
    replaced by an empty one on the commit before (a force push)."""
    git("clone", "-q", "--branch", BRANCH, server.url(), str(clone))
    git("reset", "-q", "--hard", "HEAD~1", cwd=clone)
    git("commit", "-q", "--allow-empty", "-m", "a new commit on the old base", cwd=clone)
    git("push", "-q", "--force", "origin", BRANCH, cwd=clone)


def files(path: Path) -> set[str]:
    """Every path on the state branch in `path`."""
    return set(git("ls-tree", "-r", "--name-only", BRANCH, cwd=path).split())


def read(path: Path, name: str) -> bytes | None:
    """The bytes of `name` on the state branch in `path`."""
    with StateRepo.discover(path) as repo:
        return repo.read(name)


def assert_sound(*paths: Path) -> None:
    """`gitgw verify` passes and `git fsck` finds nothing wrong in each repository."""
    for path in paths:
        ran = run_cli("--repo", str(path), "verify")
        assert ran.exit_code == 0, ran.stderr
        assert ran.stdout.startswith("ok:"), ran.stdout
        git("fsck", "--strict", "--no-progress", cwd=path)  # git raises on any error


# -- tests ------------------------------------------------------------------------------


def test_two_machines_exchange_records_both_ways(tmp_path: Path, git_server: GitServer) -> None:
    a, b = pair(tmp_path, git_server)
    from_a = add_consent(a, "provider:openai")
    assert sync(a)["action"] == "pushed"
    assert sync(b)["action"] == "fast-forward"
    from_b = add_consent(b, "provider:anthropic")
    assert sync(b)["action"] == "pushed"
    assert sync(a)["action"] == "fast-forward"

    assert head(a) == head(b) == server_head(git_server)
    assert {from_a, from_b, "gitgw.yaml", "README.md"} <= files(a) == files(b)
    assert_sound(a, b)
    git("--git-dir", str(git_server.path()), "fsck", "--strict", "--no-progress")
    assert sync(a)["action"] == "up-to-date"


def test_concurrent_additions_merge_as_union(tmp_path: Path, git_server: GitServer) -> None:
    a, b = pair(tmp_path, git_server)
    from_a = {add_consent(a, f"provider:a{n}") for n in range(3)}
    from_b = {add_consent(b, f"provider:b{n}") for n in range(3)}
    a_head, b_head = head(a), head(b)
    assert sync(a)["action"] == "pushed"

    merged = sync(b)
    assert merged["action"] == "merged+pushed"
    assert merged["conflicts"] == []
    assert sync(a)["action"] == "fast-forward"

    assert head(a) == head(b) == server_head(git_server) == merged["head"]
    parents = git("rev-list", "--parents", "-n", "1", BRANCH, cwd=b).split()[1:]
    assert parents == [b_head, a_head]  # ours first, as git itself records a merge
    assert from_a | from_b <= files(a) == files(b)
    assert not any(name.startswith("conflicts/") for name in files(b))
    assert_sound(a, b)


def test_config_edited_on_both_sides_keeps_both(tmp_path: Path, git_server: GitServer) -> None:
    a, b = pair(tmp_path, git_server)
    original = read(a, "gitgw.yaml")
    assert original is not None
    assert b"default_level: internal" in original
    theirs = original.replace(b"default_level: internal", b"default_level: public")
    ours = original.replace(b"default_level: internal", b"default_level: confidential")
    record = add_consent(a)
    with StateRepo.discover(a) as repo:
        Store(repo).put("gitgw.yaml", theirs, "a: public by default")
    with StateRepo.discover(b) as repo:
        Store(repo).put("gitgw.yaml", ours, "b: confidential by default")
    a_head, b_head = head(a), head(b)
    assert sync(a)["action"] == "pushed"

    ran = run_cli("--repo", str(b), "sync")
    assert ran.exit_code == 0, ran.stderr
    assert "merged+pushed" in ran.stdout
    conflict_lines = [line for line in ran.stdout.splitlines() if line.startswith("conflict:")]
    assert len(conflict_lines) == 1, ran.stdout
    kept_at = conflict_lines[0].rsplit(" ", 1)[1]
    assert conflict_lines[0].startswith("conflict: gitgw.yaml changed on both sides; kept yours")
    assert kept_at.startswith("conflicts/")
    assert kept_at.endswith("/files/gitgw.yaml")

    # Ours stays in place, theirs is kept aside, and a record says what happened.
    assert read(b, "gitgw.yaml") == ours
    assert read(b, kept_at) == theirs
    record_path = kept_at.split("/files/")[0] + "/conflict.yaml"
    with StateRepo.discover(b) as repo:
        conflict = Store(repo).read(record_path)
    assert conflict is not None
    (found,) = conflict.records
    assert (found.path, found.ours, found.theirs, found.kept_at) == (  # type: ignore[attr-defined]
        "gitgw.yaml", b_head, a_head, kept_at,
    )  # fmt: skip

    # The other machine takes the same result: nothing lost on either side, and it is
    # told that its own version was the one set aside.
    ran = run_cli("--repo", str(a), "sync")
    assert ran.exit_code == 0, ran.stderr
    assert ran.stdout.startswith("fast-forward:")
    assert (
        "conflict: gitgw.yaml was changed on two machines, and a sync elsewhere kept one "
        f"version in place; the other is at {kept_at}"
    ) in ran.stdout
    assert head(a) == head(b)
    assert read(a, kept_at) == theirs
    assert read(a, "gitgw.yaml") == ours
    assert record in files(a)
    assert record_path in files(a)
    assert_sound(a, b)


WORKFLOW = "workflows/review.yaml"


def commit_files(path: Path, changes: dict[str, bytes | None], message: str) -> None:
    """Commit `changes` (path → bytes, or None to delete) on `path`'s state branch."""
    with StateRepo.discover(path) as repo:
        repo.commit(changes, message)


def workflow(review: str) -> bytes:
    """A valid workflow file whose one step reviews `review`."""
    return (Path(__file__).parents[1] / "example-repo" / "workflows" / "review-handoffs.yaml")\
        .read_bytes().replace(b"name: review", f"name: {review}".encode())  # fmt: skip


@pytest.mark.parametrize("deleted_by", ["the merging machine", "the other machine"])
def test_a_file_deleted_on_one_side_and_changed_on_the_other_is_reported(
    tmp_path: Path, git_server: GitServer, deleted_by: str
) -> None:
    a, b = pair(tmp_path, git_server)
    commit_files(a, {WORKFLOW: workflow("first")}, "a: add a workflow")
    sync(a)
    sync(b)
    # a pushes first; b merges. One of them deletes the workflow, the other changes it.
    changed = workflow("second")
    deleter, changer = (b, a) if deleted_by == "the merging machine" else (a, b)
    commit_files(deleter, {WORKFLOW: None}, "delete the workflow")
    commit_files(changer, {WORKFLOW: changed}, "change the workflow")
    assert sync(a)["action"] == "pushed"

    ran = run_cli("--repo", str(b), "sync")
    assert ran.exit_code == 0, ran.stderr
    assert "merged+pushed" in ran.stdout
    told = [line for line in ran.stdout.splitlines() if line.startswith("conflict:")]
    if deleter == b:
        assert told == [
            f"conflict: {WORKFLOW} was deleted here and changed on origin; their change is "
            "back in place (delete it again if it should go)"
        ]
    else:
        assert told == [f"conflict: {WORKFLOW} was deleted on origin and changed here; kept yours"]
    assert read(b, WORKFLOW) == changed  # the change is never dropped

    (record_path,) = [name for name in files(b) if name.endswith("/conflict.yaml")]
    with StateRepo.discover(b) as repo:
        (conflict,) = Store(repo).read(record_path).records  # type: ignore[union-attr]
    assert (conflict.path, conflict.kept_at, conflict.deleted) == (  # type: ignore[attr-defined]
        WORKFLOW, None, "ours" if deleter == b else "theirs",
    )  # fmt: skip

    # The other machine is told too when it takes the merge in.
    ran = run_cli("--repo", str(a), "sync")
    assert ran.exit_code == 0, ran.stderr
    assert ran.stdout.startswith("fast-forward:")
    assert ran.stdout.splitlines()[1:] == [
        f"conflict: {WORKFLOW} was deleted on one machine and changed on another, and a "
        "sync elsewhere kept the change (delete it again if it should go)"
    ]
    assert read(a, WORKFLOW) == changed
    assert_sound(a, b)


def test_a_directory_that_replaced_a_changed_file_is_reported_by_the_merge(
    tmp_path: Path,
) -> None:
    # sync's checks refuse such a layout before it merges; the merge reports it all the
    # same rather than drop the directory.
    path = machine(tmp_path, "m", "unused", init=True)
    commit_files(path, {"notes/plan": b"v1\n"}, "base")
    base = head(path)
    commit_files(path, {"notes/plan": None}, "theirs: delete the file")
    commit_files(path, {"notes/plan/one": b"1\n"}, "theirs: a directory in its place")
    theirs = head(path)
    assert base is not None
    assert theirs is not None
    git("update-ref", f"refs/heads/{BRANCH}", base, cwd=path)
    commit_files(path, {"notes/plan": b"v2\n"}, "ours")
    with StateRepo.discover(path) as repo:
        merged = merge_heads(repo, repo.require_head(), theirs)
        their_dir = repo.trees.lookup(repo.tree_of(theirs), "notes/plan")
        assert their_dir is not None
        assert merged.conflicts == [
            PathConflict("notes/plan", their_dir[1].decode(), theirs_tree=True)
        ]
        ours = repo.trees.lookup(merged.tree, "notes/plan")
        assert ours is not None
        assert repo.trees.blob(ours[1]) == b"v2\n"


_RACE_HOOK = """#!/bin/sh
# On the first push only, move the state branch to the commit another machine pushed
# to refs/heads/pending, as if its push had landed first: the running push is now stale.
cat >/dev/null
if [ ! -e "{marker}" ]; then
    touch "{marker}"
    pending=$(git rev-parse refs/heads/pending) || exit 1
    # git forbids ref updates from the quarantine of the push being received.
    (unset GIT_QUARANTINE_PATH; git update-ref refs/heads/{branch} "$pending") || exit 1
fi
exit 0
"""


def test_push_race_is_retried(tmp_path: Path, git_server: GitServer) -> None:
    a, b = pair(tmp_path, git_server)
    from_b = add_consent(b, "provider:anthropic")
    git("push", "--quiet", "origin", f"refs/heads/{BRANCH}:refs/heads/pending", cwd=b)
    pending = head(b)
    marker = tmp_path / "raced"
    hook = git_server.path() / "hooks" / "pre-receive"
    hook.write_text(_RACE_HOOK.format(marker=marker, branch=BRANCH))
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    from_a = add_consent(a, "provider:openai")
    base = server_head(git_server)

    result = sync(a)
    assert marker.exists()  # the hook did move the branch under the first push
    assert result["attempts"] == 2
    assert result["action"] == "merged+pushed"
    assert result["remote_before"] == base
    assert git("rev-list", "--parents", "-n", "1", BRANCH, cwd=a).split()[2] == pending

    assert sync(b)["action"] == "fast-forward"
    assert head(a) == head(b) == server_head(git_server)
    assert {from_a, from_b} <= files(a) == files(b)
    assert_sound(a, b)


@pytest.mark.parametrize("scheme", ["git", "http"])
def test_unreachable_remote_leaves_local_state(tmp_path: Path, scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{unused_port()}/state.git"
    a = machine(tmp_path, "a", url, init=True)
    add_consent(a)
    before = head(a)

    ran = run_cli("--repo", str(a), "sync")
    assert ran.exit_code == 1
    assert ran.stderr.startswith(f"gitgw: error: cannot reach {url}"), ran.stderr
    assert "\nhint: " in ran.stderr
    assert "Traceback" not in ran.stderr
    assert head(a) == before
    assert git("for-each-ref", "refs/remotes", cwd=a) == ""


@contextmanager
def misbehaving_server(
    answer: bytes | None, connected: threading.Event | None = None
) -> Iterator[int]:
    """A loopback server that accepts every connection (setting `connected`) and then
    answers `answer` (an HTTP response) to whatever it is sent, or, for None, never
    answers at all."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                held.append(conn)
                if connected is not None:
                    connected.set()
                if answer is not None:
                    conn.recv(65536)
                    conn.sendall(answer)
                    conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        for conn in held:
            conn.close()


_UNAUTHORIZED = (
    b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="git"\r\n'
    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
)
_WEB_PAGE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 19\r\n"
    b"Connection: close\r\n\r\n<html>hello</html>\n"
)


# dulwich's HTTP client leaves the connection of a refused request to the collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (_UNAUTHORIZED, "asks for credentials, and none it takes were given"),
        (_WEB_PAGE, "it does not answer as a Git server"),
    ],
    ids=["credentials needed", "a web page"],
)
def test_a_server_that_does_not_serve_the_branch_is_a_clear_error(
    tmp_path: Path, answer: bytes, expected: str
) -> None:
    with misbehaving_server(answer) as port:
        url = f"http://alice:hunter2@127.0.0.1:{port}/state.git"
        a = machine(tmp_path, "a", url, init=True)
        before = head(a)
        ran = run_cli("--repo", str(a), "sync")
        gc.collect()  # here, not in a later test
    assert ran.exit_code == 1, ran.stdout
    assert expected in ran.stderr
    assert "hunter2" not in ran.stderr  # the credentials a URL carries are never shown
    assert f"http://***@127.0.0.1:{port}/state.git" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert head(a) == before
    status = run_cli("--repo", str(a), "status")
    assert "hunter2" not in status.stdout
    assert f"origin (http://***@127.0.0.1:{port}/state.git)" in status.stdout


# dulwich leaves the connection of a read that timed out for the collector to close.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("scheme", ["git", "http"])
def test_a_server_that_never_answers_is_given_up_on(
    tmp_path: Path, scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITGW_SYNC_TIMEOUT", "0.5")
    with misbehaving_server(None) as port:
        a = machine(tmp_path, "a", f"{scheme}://127.0.0.1:{port}/state.git", init=True)
        began = time.monotonic()
        ran = run_cli("--repo", str(a), "sync")
        gc.collect()  # here, not in a later test
    assert ran.exit_code == 1
    assert "cannot reach" in ran.stderr
    assert time.monotonic() - began < 15  # urllib3 tries a read three times
    assert "Traceback" not in ran.stderr


def test_ctrl_c_during_a_sync_exits_130(tmp_path: Path) -> None:
    connected = threading.Event()
    with misbehaving_server(None, connected) as port:
        a = machine(tmp_path, "a", f"git://127.0.0.1:{port}/state.git", init=True)
        syncing = subprocess.Popen(
            [sys.executable, "-m", "gitgw", "--repo", str(a), "sync"],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert connected.wait(30)  # started, and waiting for the server
        syncing.send_signal(signal.SIGINT)
        _, stderr = syncing.communicate(timeout=30)
    assert syncing.returncode == 130, stderr
    assert stderr.strip().endswith("gitgw: interrupted")


@pytest.mark.parametrize("age", [0, 3600], ids=["held now", "left by a killed fetch"])
def test_a_lock_on_the_tracking_ref_does_not_stop_a_sync(
    tmp_path: Path, git_server: GitServer, age: int
) -> None:
    a, _b = pair(tmp_path, git_server)
    add_consent(a)
    lock = a / ".git" / "refs" / "remotes" / "origin" / f"{BRANCH}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("")
    os.utime(lock, (time.time() - age, time.time() - age))
    assert sync(a)["action"] == "pushed"
    tracking = git("for-each-ref", "--format=%(objectname)", f"refs/remotes/origin/{BRANCH}", cwd=a)
    if age:  # a stale lock is broken and the tracking ref set
        assert not lock.exists()
        assert tracking.strip() == head(a)
    else:  # a live one is left to its holder
        assert lock.exists()


def test_a_server_that_cannot_move_its_branch_is_named_not_called_busy(
    tmp_path: Path, git_server: GitServer
) -> None:
    a, _b = pair(tmp_path, git_server)
    record = add_consent(a)
    before = server_head(git_server)
    lock = git_server.path() / "refs" / "heads" / f"{BRANCH}.lock"  # left by a crash there
    lock.write_text("")

    ran = run_cli("--repo", str(a), "sync")
    assert ran.exit_code == 1, ran.stdout
    first, hint = ran.stderr.strip().splitlines()[:2]
    assert first.startswith(
        "gitgw: error: origin did not take the push, and its state branch did not move: "
    ), ran.stderr
    assert first.endswith("failed to update ref"), first  # the server's own words
    assert f"refs/heads/{BRANCH}.lock" in hint
    assert "kept moving" not in ran.stderr
    assert server_head(git_server) == before
    assert record in files(a)  # local state intact

    lock.unlink()
    assert sync(a)["action"] == "pushed"
    assert server_head(git_server) == head(a)


def test_local_history_a_sync_would_refuse_to_take_in_is_not_pushed(
    tmp_path: Path, git_server: GitServer
) -> None:
    a, b, record = pair_with_a_pushed_record(tmp_path, git_server)
    assert sync(b)["action"] == "fast-forward"
    # On a, someone edits the record with plain git (no hook on this server to refuse it).
    worktree = tmp_path / "edit"
    git("worktree", "add", "-q", str(worktree), BRANCH, cwd=a)
    edited = worktree / record
    edited.write_text(edited.read_text().replace('"internal"', '"restricted"'))
    git("commit", "-qam", "quietly raise the level", cwd=worktree)
    git("worktree", "remove", "--force", str(worktree), cwd=a)
    served = server_head(git_server)
    ran = run_cli("--repo", str(a), "sync")
    assert ran.exit_code == 1
    assert ran.stderr.startswith("gitgw: error: refusing to push to origin: the local history")
    assert f"{record}: add-only record was modified" in ran.stderr
    assert server_head(git_server) == served  # nothing reached the others
    assert sync(b)["action"] == "up-to-date"


def test_a_push_a_server_hook_refuses_says_the_hooks_reasons(
    tmp_path: Path, git_server: GitServer
) -> None:
    url = git_server.create()
    hook = git_server.path() / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'policy: state pushes are frozen until Monday' >&2\nexit 1\n")
    hook.chmod(0o755)
    a = machine(tmp_path, "a", url, init=True)
    ran = run_cli("--repo", str(a), "sync")
    assert ran.exit_code == 1
    assert "refused the push" in ran.stderr
    assert "\nremote: policy: state pushes are frozen until Monday" in ran.stderr


@pytest.mark.parametrize(
    ("configured", "used"),
    [
        ("hub:/srv/git/state.git", "hub:/srv/git/state.git"),  # git's short form for ssh
        ("git@hub:state.git", "git@hub:state.git"),
        ("../hub/state.git", None),  # a path, relative to the repository
    ],
)
def test_a_configured_remote_is_used_as_git_reads_it(
    tmp_path: Path, configured: str, used: str | None
) -> None:
    a = machine(tmp_path, "a", configured, init=True)
    with StateRepo.discover(a) as repo:
        url, name = remote_url(repo, "origin")
    assert name == "origin"
    assert url == (used or str((a / configured).resolve()))


def test_a_remote_pointed_at_a_new_server_is_no_rewrite(
    tmp_path: Path, git_server: GitServer
) -> None:
    a, _b = pair(tmp_path, git_server)
    old = git("remote", "get-url", "origin", cwd=a).strip()
    new = git_server.create("moved.git")  # a migration: the same remote, a new, empty hub
    git("remote", "set-url", "origin", new, cwd=a)
    assert sync(a)["action"] == "pushed"
    assert git("--git-dir", str(git_server.path("moved.git")), "rev-parse", BRANCH).strip() == head(
        a
    )
    # Back on the old hub, what gitgw knew of it still holds: a rewrite there is refused.
    rewriter = tmp_path / "rewriter"
    git("clone", "-q", "--branch", BRANCH, old, str(rewriter))
    git("commit", "-q", "--amend", "--allow-empty", "-m", "rewritten", cwd=rewriter)
    git("push", "-q", "--force", "origin", BRANCH, cwd=rewriter)
    git("remote", "set-url", "origin", old, cwd=a)
    ran = run_cli("--repo", str(a), "sync")
    assert ran.exit_code == 1
    assert "was rewritten" in ran.stderr


def test_a_remote_that_is_only_ahead_is_no_rewrite(tmp_path: Path, git_server: GitServer) -> None:
    a, b, _record = pair_with_a_pushed_record(tmp_path, git_server)
    assert sync(b)["action"] == "fast-forward"
    add_consent(b)
    assert sync(b)["action"] == "pushed"
    git("fetch", "-q", "origin", cwd=a)  # as an editor does: the tracking ref moves ahead
    ran = run_cli("--repo", str(a), "verify")
    assert ran.exit_code == 0, ran.stderr


def test_a_remote_rewritten_without_changing_a_record_is_named(
    tmp_path: Path, git_server: GitServer
) -> None:
    a, _b, record = pair_with_a_pushed_record(tmp_path, git_server)
    drop_the_last_commit_on(git_server, tmp_path / "rewriter")
    git("fetch", "-q", "origin", cwd=a)
    ran = run_cli("--repo", str(a), "verify")
    assert ran.exit_code == 1
    assert f"{record}: add-only record deleted by a rewrite of history on origin" in ran.stderr


def test_a_record_deleted_by_commits_the_remote_is_ahead_with_is_named(
    tmp_path: Path, git_server: GitServer
) -> None:
    a, _b, record = pair_with_a_pushed_record(tmp_path, git_server)
    # Someone deletes the record in a new commit on the server, a fast-forward.
    clone = tmp_path / "deleter"
    git("clone", "-q", "--branch", BRANCH, git_server.url(), str(clone))
    git("rm", "-q", record, cwd=clone)
    git("commit", "-qm", "remove the evidence", cwd=clone)
    git("push", "-q", "origin", BRANCH, cwd=clone)
    git("fetch", "-q", "origin", cwd=a)  # not merged yet: the walk has not seen it
    ran = run_cli("--repo", str(a), "verify")
    assert ran.exit_code == 1
    assert f"{record}: add-only record was deleted on origin" in ran.stderr


def test_a_force_push_known_only_to_the_tracking_refs_reflog_is_named(
    tmp_path: Path, git_server: GitServer
) -> None:
    _a, _b, record = pair_with_a_pushed_record(tmp_path, git_server)
    # c fetches the head holding the record, without a branch of its own yet.
    c = tmp_path / "c"
    git("init", "-q", str(c))
    git("remote", "add", "origin", git_server.url(), cwd=c)
    git("fetch", "-q", "origin", cwd=c)
    # The server's branch is rewritten to drop the record; c fetches that and only then
    # makes its state branch, at the new head: its own reflog never held the old one.
    drop_the_last_commit_on(git_server, tmp_path / "rewriter")
    git("fetch", "-q", "origin", cwd=c)
    git("branch", "-q", BRANCH, f"origin/{BRANCH}", cwd=c)
    ran = run_cli("--repo", str(c), "verify")
    assert ran.exit_code == 1, ran.stdout
    assert f"{record}: add-only record deleted by a rewrite of history on origin" in ran.stderr


def test_rewritten_remote_history_is_refused(tmp_path: Path, git_server: GitServer) -> None:
    a, b, record = pair_with_a_pushed_record(tmp_path, git_server)
    assert sync(b)["action"] == "fast-forward"
    a_before, b_before = head(a), head(b)

    # Someone rewrites the branch with plain git: amend the commit that added the record.
    clone = tmp_path / "rewriter"
    url = git_server.url()
    git("clone", "--quiet", "--branch", BRANCH, "--single-branch", url, str(clone))
    assert git("show", "--name-only", "--format=", "HEAD", cwd=clone).split() == [record]
    target = clone / record
    text = target.read_text()
    assert 'level: "internal"' in text
    target.write_text(text.replace('level: "internal"', 'level: "restricted"'))
    git("commit", "--quiet", "--all", "--amend", "--no-edit", cwd=clone)
    git("push", "--quiet", "--force", "origin", BRANCH, cwd=clone)
    assert server_head(git_server) not in (a_before, b_before)

    # b knew the old remote head; a pushed it and holds the record with its first content.
    for path, before in ((b, b_before), (a, a_before)):
        for _ in range(2):  # and a second try does not slip through either
            ran = run_cli("--repo", str(path), "sync")
            assert ran.exit_code == 1, ran.stdout
            assert ran.stderr.startswith("gitgw: error: refusing to merge"), ran.stderr
            assert "rewritten" in ran.stderr
            assert head(path) == before
        ran = run_cli("--repo", str(path), "verify")
        assert ran.exit_code == 1, ran.stdout
        assert f"{record}: add-only record modified by a rewrite of history" in ran.stderr


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("modify", "add-only record was modified"),
        ("invalid", "is not a path gitgw knows"),
        ("secret", "gitgw.yaml: line 3: possible secret (AWS Access Key)"),
        ("broken config", "gitgw.yaml: does not match the config schema"),
        ("second config", "gitgw.yaml: the tree holds this name twice"),
    ],
)
def test_incoming_commits_that_break_the_rules_are_not_taken_in(
    tmp_path: Path, git_server: GitServer, change: str, reason: str
) -> None:
    _a, b, record = pair_with_a_pushed_record(tmp_path, git_server)
    b_before = head(b)
    # A plain git push to a server without gitgw's pre-receive hook: a new commit on top.
    clone = tmp_path / "careless"
    git("clone", "--quiet", "--branch", BRANCH, "--single-branch", git_server.url(), str(clone))
    config = clone / "gitgw.yaml"
    if change == "modify":
        target = clone / record
        target.write_text(target.read_text().replace('"internal"', '"restricted"'))
    elif change == "secret":  # a mutable file: checked at every version that comes in
        lines = config.read_text().splitlines(keepends=True)
        config.write_text("".join([*lines[:2], f"# aws key {AWS_KEY}\n", *lines[2:]]))
    elif change == "broken config":
        config.write_text(config.read_text() + "bogus: true\n")
    elif change != "second config":
        (clone / "notes.txt").write_text("scratch\n")
    if change == "second config":  # one git shows, another gitgw reads: a public default
        other = tmp_path / "other.yaml"
        other.write_text(config.read_text().replace("internal", "public"))
        blob = git("hash-object", "-w", str(other), cwd=clone).strip()
        listing = git("ls-tree", "HEAD", cwd=clone) + f"100644 blob {blob}\tgitgw.yaml\n"
        tree = subprocess.run(
            ["git", "mktree"], cwd=clone, input=listing, capture_output=True, text=True, check=True
        ).stdout.strip()
        commit = git("commit-tree", tree, "-p", "HEAD", "-m", "a second config", cwd=clone)
        git("update-ref", f"refs/heads/{BRANCH}", commit.strip(), cwd=clone)
    else:
        git("add", "--all", cwd=clone)
        git("commit", "--quiet", "-m", "a hand edit", cwd=clone)
    git("push", "--quiet", "origin", BRANCH, cwd=clone)

    ran = run_cli("--repo", str(b), "sync")
    assert ran.exit_code == 1, ran.stdout
    assert ran.stderr.startswith("gitgw: error: refusing to take in the state branch"), ran.stderr
    assert reason in ran.stderr
    assert head(b) == b_before


def test_a_first_sync_of_a_long_history_checks_it_on_every_core(
    tmp_path: Path, git_server: GitServer
) -> None:
    # Enough receipts that the check is shared among processes (a separate `gitgw`, with
    # no threads, forks them), with a secret in the last commit, pushed with plain git.
    url = git_server.create()
    a = machine(tmp_path, "a", url, init=True)
    clock = default_clock()
    start = datetime(2026, 3, 1, tzinfo=UTC)
    for day in range(40):
        at = start + timedelta(days=day)
        batch = [make_receipt(clock, created=at + timedelta(seconds=n)) for n in range(25)]
        path, data = render_batch(batch, clock.new_id(at + timedelta(minutes=1)))
        commit_files(a, {path: data}, f"25 receipts on day {day}")
    leak = ConsentEntry(
        id=clock.new_id(), action="grant", subject="provider:openai", level="internal",
        actor="tester", created=clock.now(), reason=f"key {AWS_KEY}",
    )  # fmt: skip
    leaked_at, data = render(leak)
    commit_files(a, {leaked_at: data}, "a grant with a key in it")
    git("push", "-q", "origin", BRANCH, cwd=a)

    b = machine(tmp_path, "b", url, init=False)
    syncing = subprocess.run(
        [sys.executable, "-m", "gitgw", "--repo", str(b), "sync"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert syncing.returncode == 1, syncing.stdout
    assert "refusing to take in the state branch of origin: 1 problem(s)" in syncing.stderr
    assert f"{leaked_at}: line " in syncing.stderr
    assert "possible secret (AWS Access Key)" in syncing.stderr
    assert AWS_KEY not in syncing.stderr
    assert head(b) is None  # nothing taken in


def test_an_old_version_of_a_mutable_file_is_history_not_a_problem(
    tmp_path: Path, git_server: GitServer
) -> None:
    # Mutable files are judged as they are at the head that comes in, as verify judges
    # them: a version a later commit replaced (or one today's rules would refuse) is history.
    a, b = pair(tmp_path, git_server)
    good = read(a, "gitgw.yaml")
    assert good is not None
    commit_files(a, {"gitgw.yaml": good + b"bogus: true\n"}, "a broken config")
    commit_files(a, {"gitgw.yaml": good + b"# fixed\n"}, "fixed again")
    assert sync(a)["action"] == "pushed"
    assert sync(b)["action"] == "fast-forward"
    assert head(a) == head(b)


def test_a_locked_branch_in_a_repository_reached_by_its_path_is_named(tmp_path: Path) -> None:
    server = tmp_path / "server.git"
    git("init", "--quiet", "--bare", str(server))
    a = machine(tmp_path, "a", str(server), init=True)
    assert sync(a)["action"] == "pushed"
    add_consent(a)
    lock = server / "refs" / "heads" / f"{BRANCH}.lock"
    lock.write_text("")
    ran = run_cli("--repo", str(a), "sync")
    assert ran.exit_code == 1, ran.stdout
    assert "origin did not take the push, and its state branch did not move: its branch is " \
        "locked" in ran.stderr  # fmt: skip
    lock.unlink()
    assert sync(a)["action"] == "pushed"


def test_credentials_in_a_remote_url_reach_no_message_and_no_commit(
    tmp_path: Path, git_http: GitServer
) -> None:
    a, b = pair(tmp_path, git_http)
    with_credentials = git_http.url().replace("http://", "http://alice:hunter2@")
    add_consent(a, "provider:a")
    add_consent(b, "provider:b")
    assert sync(a)["action"] == "pushed"
    ran = run_cli("--repo", str(b), "sync", "--remote", with_credentials)  # a merge
    assert ran.exit_code == 0, ran.stderr
    assert ran.stdout.startswith("merged+pushed: http://***@127.0.0.1:")
    assert "hunter2" not in git("log", "--format=%B", BRANCH, cwd=b)
    assert "hunter2" not in ran.stdout + ran.stderr


def test_a_receipt_given_again_in_an_incoming_batch_is_not_taken_in(
    tmp_path: Path, git_server: GitServer
) -> None:
    # A batch from elsewhere that repeats a receipt's id with other content (its digest
    # made anew) would stand for the receipt this branch holds: verify names it, and
    # sync does not take it in.
    a, b = pair(tmp_path, git_server)
    clock = default_clock()
    first = make_receipt(clock)
    kept_at, data = render_batch([first], clock.new_id())
    commit_files(a, {kept_at: data}, "a receipt")
    assert sync(a)["action"] == "pushed"
    assert sync(b)["action"] == "fast-forward"
    b_before = head(b)
    forged = first.model_copy(update={"level": "public"})
    again, data = render_batch([forged], clock.new_id())
    commit_files(a, {again: data}, "the same receipt, changed")
    assert sync(a)["action"] == "pushed"  # a pushes what its own check does not compare

    ran = run_cli("--repo", str(b), "sync")
    assert ran.exit_code == 1, ran.stdout
    assert f"{again}: record {first.id} is given again (first in {kept_at})" in ran.stderr
    assert head(b) == b_before


def test_no_state_branch_anywhere(tmp_path: Path, git_server: GitServer) -> None:
    a = machine(tmp_path, "a", git_server.create(), init=False)
    ran = run_cli("--repo", str(a), "sync")
    assert ran.exit_code == 1
    assert ran.stderr.startswith("gitgw: error: neither "), ran.stderr
    assert f"has a state branch '{BRANCH}'" in ran.stderr
    assert "hint: " in ran.stderr
    assert "gitgw init" in ran.stderr
    assert head(a) is None
    assert git("--git-dir", str(git_server.path()), "for-each-ref") == ""
