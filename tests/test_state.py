"""The state branch engine: commits through the object store, never the work tree;
concurrent and killed writers; a checked-out branch; stale locks."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gitgw.errors import BranchCheckedOut, InvalidRecord, NotARepository, StateBranchMissing
from gitgw.state import StateRepo, changes_along, commits_oldest_first
from gitgw.state.pack_index import shared_offset_table
from gitgw.state.pack_objects import MAX_DEPTH as MAX_DELTA_DEPTH
from gitgw.state.pack_objects import BaseCache, read_object
from tests.conftest import git, run_cli


def _tree_listing(repo: Path, ref: str = "gitgw") -> list[str]:
    return git("ls-tree", "-r", "--name-only", ref, cwd=repo).split()


def test_commit_read_list_walk(state_repo: Path) -> None:
    with StateRepo.discover(state_repo) as repo:
        before = repo.require_head()
        head = repo.commit({"runs/2026/11/26/A.yaml": b"a\n", "consent/x.yaml": b"b\n"}, "two")
        assert repo.commit_info(head).parents == (before,)
        assert repo.read("runs/2026/11/26/A.yaml") == b"a\n"
        assert repo.read("runs/2026/11/26/missing.yaml") is None
        assert repo.read("runs") is None  # a directory is not a file
        assert repo.listdir("") == ["README.md", "consent/", "gitgw.yaml", "runs/"]
        assert [p for p, _ in repo.walk("runs")] == ["runs/2026/11/26/A.yaml"]
        repo.commit({"consent/x.yaml": None}, "delete")
        assert repo.read("consent/x.yaml") is None
        assert repo.listdir("") == ["README.md", "gitgw.yaml", "runs/"]
    # What git itself sees: the same files, and a repository fsck calls sound.
    assert _tree_listing(state_repo) == ["README.md", "gitgw.yaml", "runs/2026/11/26/A.yaml"]
    git("fsck", "--strict", "--no-progress", cwd=state_repo)


def test_a_busy_writers_tree_cache_stays_bounded(state_repo: Path) -> None:
    # Each commit caches a new version of the directory it adds to: 400 commits into one
    # directory are 80,200 entries of versions, over the cache's budget of 50,000 (a
    # busy proxy's hour directory once held hundreds of megabytes this way).
    with StateRepo.discover(state_repo) as repo:
        for number in range(400):
            repo.commit({f"receipts/2026/11/26/13/{number:04d}.jsonl": b"{}\n"}, "a batch")
        assert repo.trees.cached_entries <= 50_000
        # What was evicted is read again when needed; the newest version is all there.
        assert len(repo.listdir("receipts/2026/11/26/13")) == 400
    git("fsck", "--strict", "--no-progress", cwd=state_repo)


def test_add_only_paths_cannot_be_overwritten(state_repo: Path) -> None:
    with StateRepo.discover(state_repo) as repo:
        repo.commit({"runs/r.yaml": b"one\n"}, "add", add_only=lambda p: True)
        repo.commit({"runs/r.yaml": b"one\n"}, "same again", add_only=lambda p: True)
        with pytest.raises(InvalidRecord, match="already exists"):
            repo.commit({"runs/r.yaml": b"two\n"}, "overwrite", add_only=lambda p: True)
        assert repo.read("runs/r.yaml") == b"one\n"


def test_init_inside_a_code_repository_leaves_its_work_alone(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    git("init", "-q", cwd=code)
    (code / "app.py").write_text("print('hi')\n")
    git("add", "app.py", cwd=code)
    git("commit", "-qm", "app", cwd=code)
    (code / "app.py").write_text("print('changed, not staged')\n")
    (code / "new.txt").write_text("untracked\n")
    git("add", "new.txt", cwd=code)
    before = (
        git("rev-parse", "HEAD", cwd=code),
        git("symbolic-ref", "HEAD", cwd=code),
        git("status", "--porcelain", cwd=code),
        (code / ".git" / "index").read_bytes(),
        (code / "app.py").read_text(),
    )
    ran = run_cli("init", str(code))
    assert ran.exit_code == 0, ran.stderr
    after = (
        git("rev-parse", "HEAD", cwd=code),
        git("symbolic-ref", "HEAD", cwd=code),
        git("status", "--porcelain", cwd=code),
        (code / ".git" / "index").read_bytes(),
        (code / "app.py").read_text(),
    )
    assert after == before
    assert _tree_listing(code) == ["README.md", "gitgw.yaml"]
    # gitgw finds the repository around the current directory, like git.
    os.chdir(code)
    assert run_cli("status").exit_code == 0


def test_init_takes_the_root_repo_option_as_the_hint_suggests(tmp_path: Path) -> None:
    target = tmp_path / "state"
    ran = run_cli("--repo", str(target), "status")
    assert "run `gitgw init` there" in ran.stderr
    ran = run_cli("--repo", str(target), "init")
    assert ran.exit_code == 0, ran.stderr
    assert run_cli("--repo", str(target), "status").exit_code == 0
    assert not (Path.cwd() / ".git").exists()  # not here


def test_init_refuses_an_existing_state_branch(state_repo: Path) -> None:
    head = git("rev-parse", "gitgw", cwd=state_repo)
    ran = run_cli("init", "--example", str(state_repo))
    assert ran.exit_code == 1
    assert "already has a state branch 'gitgw'" in ran.stderr
    assert "hint:" in ran.stderr
    assert git("rev-parse", "gitgw", cwd=state_repo) == head
    # Another name is fine.
    assert run_cli("init", "--branch", "other", str(state_repo)).exit_code == 0


def test_init_in_a_subdirectory_of_a_code_repository_names_its_top(tmp_path: Path) -> None:
    code = tmp_path / "code"
    (code / "src").mkdir(parents=True)
    git("init", "-q", cwd=code)
    ran = run_cli("init", str(code / "src"))
    assert ran.exit_code == 1
    assert f"{code / 'src'} is inside the Git repository at {code}" in ran.stderr
    assert f"gitgw init {code}" in ran.stderr
    assert not (code / "src" / ".git").exists()  # no repository nested in its files
    ran = run_cli("init", str(code / "new" / "dir"))  # nor in a directory not made yet
    assert f"{code / 'new' / 'dir'} is inside the Git repository at {code}" in ran.stderr
    assert not (code / "new").exists()
    assert run_cli("init", str(code)).exit_code == 0


def test_init_hints_are_commands_that_run_as_given(tmp_path: Path) -> None:
    code = tmp_path / "my code"
    code.mkdir()
    git("init", "-q", cwd=code)
    ran = run_cli("init", str(code / "a dir"))
    assert ran.exit_code == 1
    # The paths are quoted, so the commands in the hint run as they are shown.
    assert f"`gitgw init '{code}'`" in ran.stderr
    assert f"`git init '{code / 'a dir'}'`" in ran.stderr
    ran = run_cli("init", str(code))
    assert ran.exit_code == 0, ran.stderr
    assert f"next: gitgw --repo '{code}' status" in ran.stdout
    # A state branch of another name is made with that name.
    ran = run_cli("--repo", str(code), "--branch", "team", "status")
    assert "create one with `gitgw --branch team init`" in ran.stderr


def test_init_of_an_empty_path_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)  # `gitgw init "$UNSET"` in a script must not mean "here"
    ran = run_cli("init", "")
    assert ran.exit_code == 2
    assert "the path is empty" in ran.stderr
    assert list(here.iterdir()) == []


def test_a_branch_checked_out_with_no_commit_yet_gets_a_hint_that_works(tmp_path: Path) -> None:
    git("init", "-q", "--initial-branch", "state", str(tmp_path / "code"))
    ran = run_cli("init", "--branch", "state", str(tmp_path / "code"))
    assert ran.exit_code == 1
    assert "checked out in" in ran.stderr
    assert "it has no commit yet, so use another state branch with --branch" in ran.stderr
    assert "switch --detach" not in ran.stderr  # which git cannot do on an unborn branch
    assert git("for-each-ref", "refs/heads", cwd=tmp_path / "code") == ""


def test_init_in_a_clone_whose_remote_has_the_state_branch_says_to_sync(
    state_repo: Path, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    git("clone", "-q", "--no-checkout", str(state_repo), str(clone))  # refs/remotes/origin/gitgw
    ran = run_cli("init", str(clone))
    assert ran.exit_code == 1
    assert "origin already has a state branch 'gitgw'" in ran.stderr
    assert "gitgw sync --remote origin" in ran.stderr
    assert git("for-each-ref", "refs/heads/gitgw", cwd=clone) == ""
    ran = run_cli("--repo", str(clone), "sync")  # which takes it
    assert ran.exit_code == 0, ran.stderr
    assert git("rev-parse", "gitgw", cwd=clone) == git("rev-parse", "gitgw", cwd=state_repo)
    # A branch name with a slash in it names the same remote.
    assert run_cli("init", "--branch", "team/state", str(state_repo)).exit_code == 0
    git("fetch", "-q", "origin", cwd=clone)
    ran = run_cli("init", "--branch", "team/state", str(clone))
    assert "origin already has a state branch 'team/state'" in ran.stderr
    assert "gitgw --branch team/state sync --remote origin`" in ran.stderr


def test_clear_errors_without_a_repository_or_a_state_branch(tmp_path: Path) -> None:
    ran = run_cli("--repo", str(tmp_path), "status")
    assert ran.exit_code == 1
    assert f"not a Git repository: {tmp_path}" in ran.stderr
    assert "gitgw init" in ran.stderr
    with pytest.raises(NotARepository):
        StateRepo.discover(tmp_path)
    git("init", "-q", str(tmp_path / "plain"))
    ran = run_cli("--repo", str(tmp_path / "plain"), "verify")
    assert ran.exit_code == 1
    assert "has no state branch 'gitgw'" in ran.stderr
    with StateRepo.discover(tmp_path / "plain") as repo, pytest.raises(StateBranchMissing):
        repo.require_head()
    # Writes make no state branch (it would have no gitgw.yaml); reads say there is none.
    plain = str(tmp_path / "plain")
    for argv in (
        ["memory", "add", "--title", "t", "-"],
        ["handoff", "create", "--to", "codex", "--title", "t"],
        ["memory", "search", "anything"],
        ["handoff", "list"],
    ):
        ran = run_cli("--repo", plain, *argv, input="text\n")
        assert ran.exit_code == 1, argv
        assert "has no state branch 'gitgw'" in ran.stderr, argv
    assert git("for-each-ref", "refs/heads", cwd=tmp_path / "plain") == ""


def test_repo_may_be_a_directory_inside_the_repository_as_for_git_c(state_repo: Path) -> None:
    inside = state_repo / "some" / "dir"
    inside.mkdir(parents=True)
    ran = run_cli("--repo", str(inside), "status", "--json")
    assert ran.exit_code == 0, ran.stderr
    assert json.loads(ran.stdout)["data"]["repository"] == str(state_repo)


def test_a_checked_out_state_branch_is_never_moved(state_repo: Path) -> None:
    git("switch", "-q", "gitgw", cwd=state_repo)
    head = git("rev-parse", "gitgw", cwd=state_repo)
    with StateRepo.discover(state_repo) as repo:
        with pytest.raises(BranchCheckedOut, match="checked out in") as refused:
            repo.commit({"runs/x.yaml": b"x\n"}, "write")
        assert repo.read("gitgw.yaml") is not None  # reading is fine
    # The hint's command works, and then so does the write.
    hint = refused.value.hint or ""
    assert f"git -C {state_repo} switch --detach" in hint
    git("-C", str(state_repo), "switch", "--detach", "-q")
    with StateRepo.discover(state_repo) as repo:
        repo.commit({"runs/x.yaml": b"x\n"}, "write")
    git("switch", "-q", "gitgw", cwd=state_repo)
    head = git("rev-parse", "gitgw", cwd=state_repo)
    ran = run_cli("--repo", str(state_repo), "status")
    assert ran.exit_code == 0
    assert "checked out" in ran.stdout
    assert git("rev-parse", "gitgw", cwd=state_repo) == head
    assert git("status", "--porcelain", cwd=state_repo) == ""


def test_a_checked_out_state_branch_is_never_moved_through_its_git_directory(
    state_repo: Path,
) -> None:
    # Given its `.git` directory, dulwich opens a repository as a bare one: its work
    # tree's checkout still counts.
    git("switch", "-q", "gitgw", cwd=state_repo)
    head = git("rev-parse", "gitgw", cwd=state_repo)
    ran = run_cli("--repo", str(state_repo / ".git"), "memory", "add", "--title", "t", "-")
    assert ran.exit_code == 1
    assert f"checked out in {state_repo}" in ran.stderr
    assert git("rev-parse", "gitgw", cwd=state_repo) == head
    assert git("status", "--porcelain", cwd=state_repo) == ""


@pytest.mark.parametrize(
    ("setup", "argv", "expected"),
    [
        (["init", "-q", "--object-format=sha256"], ["init"], "names its objects by SHA-256"),
        (["init", "-q"], ["init", "--branch", "HEAD"], "'HEAD' is not a branch name Git accepts"),
        (["init", "-q"], ["init", "--branch", "x"], "the ref refs/heads/x/y exists"),
        (["init", "-q"], ["init", "--branch", "main/x"], "the ref refs/heads/main exists"),
    ],
    ids=["sha256", "HEAD", "x beside x/y", "main/x beside main"],
)
def test_init_refuses_what_would_damage_the_repository(
    tmp_path: Path, setup: list[str], argv: list[str], expected: str
) -> None:
    code = tmp_path / "code"
    git(*setup, "-b", "main", str(code))
    git("commit", "-q", "--allow-empty", "-m", "work", cwd=code)
    git("branch", "x/y", cwd=code)
    git("pack-refs", "--all", cwd=code)  # as `git gc` leaves them
    refs = git("for-each-ref", cwd=code)
    objects = sorted(str(p) for p in (code / ".git" / "objects").rglob("*"))
    ran = run_cli("--repo", str(code), *argv)
    assert ran.exit_code == 1, ran.stdout
    assert expected in ran.stderr
    assert "Traceback" not in ran.stderr
    assert git("for-each-ref", cwd=code) == refs
    assert sorted(str(p) for p in (code / ".git" / "objects").rglob("*")) == objects
    git("fsck", "--no-progress", cwd=code)


@pytest.mark.parametrize(
    ("make", "target", "reason"),
    [
        (lambda root: (root / "file").write_text("x\n"), "file/sub", "Not a directory"),
        (lambda root: (root / "stray" / ".git").mkdir(parents=True), "stray", "File exists"),
    ],
    ids=["a file in the way", "an empty .git directory"],
)
def test_init_where_no_repository_can_be_made_is_a_clear_error(
    tmp_path: Path, make: Callable[[Path], object], target: str, reason: str
) -> None:
    make(tmp_path)
    ran = run_cli("init", str(tmp_path / target))
    assert ran.exit_code == 1
    assert f"cannot make a Git repository at {tmp_path / target}: {reason}" in ran.stderr


def test_init_refuses_a_git_file_naming_a_missing_directory(tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / ".git").write_text(f"gitdir: {tmp_path / 'gone'}\n")
    ran = run_cli("init", str(moved))
    assert ran.exit_code == 1
    assert f"points at {tmp_path / 'gone'}, which holds none" in ran.stderr
    assert not (tmp_path / "gone").exists()


def test_from_a_linked_worktree_the_checkout_named_is_the_main_one(
    state_repo: Path, tmp_path: Path
) -> None:
    git("worktree", "add", "-q", "-b", "feature", str(tmp_path / "wt"), "gitgw", cwd=state_repo)
    git("switch", "-q", "gitgw", cwd=state_repo)
    ran = run_cli("--repo", str(tmp_path / "wt"), "status")
    assert ran.exit_code == 0
    assert f"the branch is checked out in {state_repo};" in ran.stdout


def test_a_state_branch_checked_out_in_a_linked_worktree_is_never_moved(
    state_repo: Path, tmp_path: Path
) -> None:
    git("worktree", "add", "-q", str(tmp_path / "wt"), "gitgw", cwd=state_repo)
    with StateRepo.discover(state_repo) as repo, pytest.raises(BranchCheckedOut, match="wt"):
        repo.commit({"runs/x.yaml": b"x\n"}, "write")


def test_a_stale_ref_lock_left_by_a_dead_writer_is_broken(state_repo: Path) -> None:
    lock = state_repo / ".git" / "refs" / "heads" / "gitgw.lock"
    lock.write_text("left by a killed process\n")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    with StateRepo.discover(state_repo) as repo:
        repo.commit({"runs/after-lock.yaml": b"x\n"}, "write")
        assert repo.read("runs/after-lock.yaml") == b"x\n"
    assert not lock.exists()


def test_a_writer_waits_for_a_live_lock_instead_of_failing(state_repo: Path) -> None:
    lock = state_repo / ".git" / "refs" / "heads" / "gitgw.lock"
    lock.write_text("held by a live writer\n")
    release = threading.Timer(1.0, lock.unlink)
    release.start()
    with StateRepo.discover(state_repo) as repo:
        started = time.monotonic()
        repo.commit({"runs/after-wait.yaml": b"x\n"}, "write")
        assert time.monotonic() - started >= 0.9
        assert repo.retries > 0
        assert repo.read("runs/after-wait.yaml") == b"x\n"
    release.join()


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from gitgw.state import StateRepo
    repo = StateRepo.discover(Path(sys.argv[1]))
    name = sys.argv[2]
    for i in range(int(sys.argv[3])):
        repo.commit({f"runs/{name}/{i:04d}.yaml": f"{name} {i}\\n".encode()}, f"{name} {i}")
    print(repo.retries)
    repo.close()
    """
)


def test_concurrent_writers_in_separate_processes_lose_nothing(state_repo: Path) -> None:
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(state_repo), f"w{n}", "40"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    retries = [int(w.communicate(timeout=120)[0]) for w in writers]
    assert all(w.returncode == 0 for w in writers)
    files = [f for f in _tree_listing(state_repo) if f.startswith("runs/")]
    assert len(files) == 160
    assert len(git("rev-list", "gitgw", cwd=state_repo).split()) == 161
    git("fsck", "--strict", "--no-progress", cwd=state_repo)
    assert sum(retries) >= 0  # contention is expected and handled; the count is informational


_ACKNOWLEDGER = textwrap.dedent(
    """
    import sys, itertools, time
    from pathlib import Path
    from gitgw.state import BatchWriter, StateRepo
    repo = StateRepo.discover(Path(sys.argv[1]))
    writer = BatchWriter(repo)
    pending = []
    for i in itertools.count():
        path = f"runs/killed/{i:06d}.yaml"
        pending.append((path, writer.submit({path: b"record %d\\n" % i})))
        time.sleep(0.0005)  # a busy producer, not an infinite one
        while pending and pending[0][1].done():
            done_path, future = pending.pop(0)
            future.result()
            print(done_path, flush=True)  # acknowledged: the caller was told it is durable
    """
)


def _wait_for_orphaned_git(repo: Path) -> None:
    # A killed writer's housekeeping (`git repack`, then `git gc`, each in a session of
    # its own) goes on without it, and fsck would race it: wait for it, two minutes at most.
    git_dir = str(repo / ".git").encode()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        busy = (repo / ".git" / "gc.pid").exists()
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                busy = busy or git_dir in cmdline.read_bytes()
            except OSError:  # the process ended meanwhile
                continue
        if not busy:
            return
        time.sleep(0.1)


@pytest.mark.parametrize("delay", [0.4, 0.9, 1.5])
def test_a_writer_killed_mid_batch_leaves_every_acknowledged_record(
    state_repo: Path, delay: float
) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", _ACKNOWLEDGER, str(state_repo)], stdout=subprocess.PIPE, text=True
    )
    time.sleep(delay)
    writer.send_signal(signal.SIGKILL)
    acknowledged = writer.communicate(timeout=30)[0].split()
    assert acknowledged, "the writer acknowledged nothing before it was killed"
    _wait_for_orphaned_git(state_repo)
    git("fsck", "--strict", "--no-progress", cwd=state_repo)
    on_branch = set(_tree_listing(state_repo))
    assert set(acknowledged) <= on_branch
    # The branch still takes writes after the kill.
    with StateRepo.discover(state_repo) as repo:
        repo.commit({"runs/after-kill.yaml": b"x\n"}, "after")


def _deltas(repo: Path) -> list[tuple[int, int]]:
    """(offset, delta depth) of each deltified object in the repository's one pack."""
    (index,) = (repo / ".git" / "objects" / "pack").glob("*.idx")
    found = []
    for line in git("verify-pack", "-v", str(index), cwd=repo).splitlines():
        fields = line.split()  # sha type size size-in-pack offset [depth base]
        if len(fields) == 7 and fields[1] in ("blob", "tree", "commit"):
            found.append((int(fields[4]), int(fields[5])))
    return found


@pytest.mark.parametrize("indexed", [False, True], ids=["index lookups", "offset table"])
@pytest.mark.parametrize("bases", ["offset", "id"])
def test_objects_read_straight_from_packs_are_the_objects_git_reads(
    state_repo: Path, indexed: bool, bases: str
) -> None:
    """Whole objects and deltas (after a repack; bases named by offset, as git packs by
    default, or by id, as in packs made without `repack.useDeltaBaseOffset`) are read
    from the pack by gitgw itself, and give every object exactly as git does, found
    through the pack's index or through the table `verify` reads it into."""
    with StateRepo.discover(state_repo) as repo:
        body = "a line of notes\n" * 40
        for n in range(12):  # similar files, so that the repack stores deltas
            repo.commit({"README.md": f"# notes\n\n{body}{n}\n".encode()}, f"edit {n}")
    use_offsets = "true" if bases == "offset" else "false"
    git("-c", f"repack.useDeltaBaseOffset={use_offsets}", "repack", "-adf", "-q", cwd=state_repo)
    deltas = _deltas(state_repo)
    assert deltas  # the test reads deltas, not only whole objects ...
    (index,) = (state_repo / ".git" / "objects" / "pack").glob("*.idx")
    data, offsets = index.with_suffix(".pack").read_bytes(), shared_offset_table(str(index))
    assert all(read_object(data, at, offsets, BaseCache(), "p") for at, _ in deltas)  # itself
    listing = git("rev-list", "--objects", "--all", cwd=state_repo)
    shas = [line.split()[0] for line in listing.splitlines() if line.strip()]
    batch = ["git", "cat-file", "--batch"]
    wanted = ("\n".join(shas) + "\n").encode()
    expected = subprocess.run(batch, cwd=state_repo, input=wanted, capture_output=True).stdout
    with StateRepo.discover(state_repo) as repo:
        if indexed:
            repo.trees.index_packs()
        read = []
        for sha in shas:
            type_num, raw = repo.trees.raw(sha.encode())
            kind = {1: "commit", 2: "tree", 3: "blob", 4: "tag"}[type_num]
            read.append(f"{sha} {kind} {len(raw)}\n".encode() + raw + b"\n")
        with pytest.raises(KeyError):
            repo.trees.raw(b"0" * 40)  # in no pack and not loose
    assert b"".join(read) == expected


@pytest.mark.parametrize("indexed", [False, True], ids=["index lookups", "offset table"])
def test_blobs_read_many_at_a_time_are_the_blobs_git_reads(state_repo: Path, indexed: bool) -> None:
    """`blobs` (verify's bulk read) gives each blob as git does: whole or a delta, in one
    pack or another, or loose; an id that is no blob fails as `blob` fails."""
    with StateRepo.discover(state_repo) as repo:
        body = "a line of notes\n" * 40
        for n in range(12):  # similar files, so that the repack stores deltas
            repo.commit({f"notes/{n}.md": f"# notes\n\n{body}{n}\n".encode()}, f"edit {n}")
    git("repack", "-adf", "-q", cwd=state_repo)
    assert _deltas(state_repo)
    with StateRepo.discover(state_repo) as repo:
        repo.commit({"notes/second.md": b"in a second pack\n"}, "second")
    git("repack", "-d", "-q", cwd=state_repo)  # the loose objects into a pack of their own
    assert len(list((state_repo / ".git" / "objects" / "pack").glob("*.pack"))) == 2
    with StateRepo.discover(state_repo) as repo:
        repo.commit({"notes/late.md": b"written after the repack: a loose object\n"}, "late")
    listing = git("rev-list", "--objects", "--all", cwd=state_repo).split("\n")
    shas = [line.split()[0] for line in listing if line.strip()]
    check = ["git", "cat-file", "--batch-check"]
    wanted = "\n".join(shas) + "\n"
    kinds = subprocess.run(check, cwd=state_repo, input=wanted, capture_output=True, text=True)
    typed = [line.split()[:2] for line in kinds.stdout.splitlines()]
    blobs = [sha for sha, kind in typed if kind == "blob"]
    tree = next(sha for sha, kind in typed if kind == "tree")
    expected = [
        subprocess.run(["git", "cat-file", "blob", sha], cwd=state_repo, capture_output=True).stdout
        for sha in blobs
    ]
    assert len(blobs) > 12
    with StateRepo.discover(state_repo) as repo:
        if indexed:
            repo.trees.index_packs()
        assert list(repo.blobs(blobs)) == expected
        with pytest.raises(KeyError):
            list(repo.blobs([blobs[0], "0" * 40]))  # in no pack and not loose
        with pytest.raises(ValueError, match="is not a blob"):
            list(repo.blobs([tree]))


def test_deltas_deeper_than_gitgw_reads_are_read_by_dulwich(state_repo: Path) -> None:
    rng = random.Random(1)
    lines = [f"line {rng.getrandbits(64):016x}\n" for _ in range(60)]
    versions = []
    with StateRepo.discover(state_repo) as repo:
        for n in range(400):  # each version one line away from the next: chains of deltas
            lines[rng.randrange(60)] = f"line {n} {rng.getrandbits(64):016x}\n"
            versions.append("".join(lines).encode())
            repo.commit({"README.md": versions[-1]}, f"edit {n}")
    git("repack", "-adf", "-q", "--depth=4095", "--window=10", cwd=state_repo)
    assert max(depth for _, depth in _deltas(state_repo)) > MAX_DELTA_DEPTH
    (pack,) = (state_repo / ".git" / "objects" / "pack").glob("*.pack")
    data = pack.read_bytes()
    fresh = BaseCache  # no bases kept from one read to the next
    unread = [o for o, _ in _deltas(state_repo) if read_object(data, o, None, fresh(), "p") is None]
    assert unread  # the deepest are left to dulwich ...
    with StateRepo.discover(state_repo) as repo:
        newest_first = git("log", "--format=%H", "gitgw", cwd=state_repo).split()
        for commit, version in zip(newest_first, reversed(versions), strict=False):
            blob = git("rev-parse", f"{commit}:README.md", cwd=state_repo).strip()
            assert repo.trees.blob(blob.encode()) == version  # ... which reads them


def test_a_pack_cut_short_or_declaring_too_much_is_left_to_dulwich(state_repo: Path) -> None:
    with StateRepo.discover(state_repo) as repo:
        for n in range(6):
            repo.commit({"README.md": ("a line of notes\n" * 40 + f"{n}\n").encode()}, f"{n}")
    git("repack", "-adf", "-q", cwd=state_repo)
    (pack,) = (state_repo / ".git" / "objects" / "pack").glob("*.pack")
    data = pack.read_bytes()
    deltas = _deltas(state_repo)
    assert deltas
    for at, _ in deltas:  # cut inside the header, inside the base's offset, in the data
        for cut in (at + 1, at + 2, at + 12):
            assert read_object(data[:cut], at, None, BaseCache(), "p") is None
    huge = bytes([0xB0 | 0x0F]) + b"\xff" * 12 + b"\x01" + b"x" * 20  # a blob of 2**90 bytes
    assert read_object(huge, 0, None, BaseCache(), "p") is None
    with StateRepo.discover(state_repo) as repo:  # the branch still reads through dulwich
        assert repo.read("README.md", repo.require_head()) is not None


def _git_changes(repo: Path, old: str, new: str) -> list[tuple[str, str | None, str | None]]:
    # git's own diff of two commits: (path, old blob, new blob), None where there is none.
    listing = git("diff-tree", "-r", "--no-renames", "--no-commit-id", old, new, cwd=repo)
    changes = []
    for line in listing.splitlines():
        fields, path = line.split("\t", 1)
        _, _, old_id, new_id, _ = fields.split()
        changes.append((path, None if set(old_id) == {"0"} else old_id, new_id))
        if set(new_id) == {"0"}:
            changes[-1] = (path, old_id, None)
    return changes


def test_the_history_walk_finds_the_changes_git_finds(state_repo: Path) -> None:
    """Commits that append entries after all of a directory's (records added in time
    order, which the walk reads by their tail alone), insert before them, change and
    delete files, and add and drop directories: the walk through history finds each
    commit's changes as `git diff-tree` does."""
    chooser = random.Random(7)
    names = [f"{n:04d}" for n in range(0, 4000, 7)]
    with StateRepo.discover(state_repo) as repo:
        existing: list[str] = []
        for number in range(60):
            changes: dict[str, bytes | None] = {}
            if number % 3 == 0:  # appended after every entry of its directory
                changes.update(
                    {f"runs/d{number % 2}/{names[number * 4 + k]}.yaml": b"a" for k in range(3)}
                )
            elif number % 3 == 1 and existing:  # a change, a deletion and an insertion
                changes[chooser.choice(existing)] = f"changed {number}".encode()
                changes[chooser.choice(existing)] = None
                changes[f"runs/d{number % 2}/{names[chooser.randrange(number)]}x.yaml"] = b"b"
            else:  # a new directory, and one emptied
                changes[f"runs/e{number}/only.yaml"] = b"c"
                changes.update(
                    {path: None for path in existing if path.startswith(f"runs/e{number - 3}/")}
                )
            repo.commit(changes, f"change {number}")
            existing = [path for path, _ in repo.walk("runs")]
        head = repo.require_head()
    with StateRepo.discover(state_repo) as repo:  # a reader with nothing cached, as verify is
        commits = commits_oldest_first(repo, head)
        walked = list(changes_along(repo, commits))
    for parent, commit, changes in zip(commits[:-1], commits[1:], walked[1:], strict=True):
        assert sorted(changes) == sorted(_git_changes(state_repo, parent, commit)), commit


def test_tree_diffs_read_appended_and_malformed_trees_as_their_entries(state_repo: Path) -> None:
    """A tree that is another and a tail (the walk parses only the tail), and trees that
    are not well formed: an entry given twice, bytes that are no entry. Each diff is
    what comparing the two trees' entries gives."""

    def entry(name: bytes, number: int) -> bytes:
        return b"100644 " + name + b"\0" + number.to_bytes(20, "big")

    a, b, c = entry(b"a", 1), entry(b"b", 2), entry(b"c", 3)
    trees = {
        "old": a + b,
        "appended": a + b + c,
        "given twice": a + b + b,
        "junk after": a + b + b"junk",
        "replaced": a + c,
        "changed": a + entry(b"b", 4),
    }
    ids = {name: f"{number:040x}".encode() for number, name in enumerate(trees, 1)}
    blob = {number: f"{number:040x}".encode() for number in range(1, 5)}
    with StateRepo.discover(state_repo) as repo:
        repo.trees.preloaded = {ids[name]: (2, raw) for name, raw in trees.items()}

        def diff(old: str, new: str) -> list[tuple[str, bytes | None, bytes | None]]:
            return sorted(repo.trees.diff(ids[old], ids[new]))

        assert diff("old", "appended") == [("c", None, blob[3])]
        assert diff("old", "given twice") == []
        assert diff("old", "junk after") == []
        assert diff("old", "replaced") == [("b", blob[2], None), ("c", None, blob[3])]
        assert diff("old", "changed") == [("b", blob[2], blob[4])]
        assert diff("appended", "old") == [("c", blob[3], None)]
