"""The batching writer: many producers, one committer, acknowledgement only when durable."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gitgw._clock import default_clock
from gitgw.concepts.store import Store
from gitgw.errors import GitgwError, InvalidRecord
from gitgw.records import Receipt, parse_file
from gitgw.state import BatchWriter, StateRepo
from tests.conftest import git


def test_many_threads_each_told_the_commit_that_holds_their_record(state_repo: Path) -> None:
    with StateRepo.discover(state_repo) as repo, BatchWriter(repo) as writer:
        results: dict[str, str] = {}

        def produce(n: int) -> None:
            for i in range(50):
                path = f"runs/t{n}/{i:03d}.yaml"
                results[path] = writer.submit({path: f"{n} {i}\n".encode()}).result(30)

        threads = [threading.Thread(target=produce, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert writer.stats.submissions == 400
        assert writer.stats.commits < 400  # batched
        for path, commit in results.items():
            assert git("cat-file", "-p", f"{commit}:{path}", cwd=state_repo)
    git("fsck", "--strict", "--no-progress", cwd=state_repo)


def test_a_failed_batch_fails_its_callers_and_the_writer_goes_on(state_repo: Path) -> None:
    with StateRepo.discover(state_repo) as repo:
        repo.commit({"runs/taken.yaml": b"first\n"}, "first")
        with BatchWriter(repo, add_only=lambda path: True) as writer:
            clash = writer.submit({"runs/taken.yaml": b"second\n"})
            with pytest.raises(InvalidRecord, match="already exists"):
                clash.result(30)
            assert writer.submit({"runs/next.yaml": b"ok\n"}).result(30)
        assert repo.read("runs/taken.yaml") == b"first\n"
        assert repo.read("runs/next.yaml") == b"ok\n"


def test_close_commits_what_is_queued_and_then_refuses(state_repo: Path) -> None:
    with StateRepo.discover(state_repo) as repo:
        writer = BatchWriter(repo)
        futures = [writer.submit({f"runs/c/{i}.yaml": b"x\n"}) for i in range(100)]
        writer.close()
        assert all(f.done() for f in futures)
        assert len(list(repo.walk("runs/c"))) == 100
        with pytest.raises(GitgwError, match="closed"):
            writer.submit({"runs/late.yaml": b"x\n"})


def test_receipts_are_batched_one_file_per_commit(state_repo: Path) -> None:
    clock = default_clock()
    with StateRepo.discover(state_repo) as repo:
        store = Store(repo)
        with store.writer() as writer:
            futures = [
                writer.submit_item(
                    "receipts",
                    Receipt(id=clock.new_id(), created=clock.now(), level="internal", outcome="ok"),
                )
                for _ in range(300)
            ]
            commits = {f.result(30) for f in futures}
            with pytest.raises(GitgwError, match="no stream named"):
                writer.submit_item("nonsense", object())
        batches = [p for p, _ in repo.walk("receipts")]
        assert len(batches) == len(commits)
        lines = sum(len(parse_file(p, repo.read(p) or b"").records) for p in batches)
        assert lines == 300


def _objects(repo_path: Path, which: str = "count") -> int:
    # `count`: loose objects; `in-pack`: objects in packs.
    counts = git("count-objects", "-v", cwd=repo_path)
    line = next(line for line in counts.splitlines() if line.startswith(f"{which}:"))
    return int(line.split()[1])


def _write_day(writer: BatchWriter, start: int, commits: int) -> None:
    # One directory gaining a file per commit, as a day of receipt batches does.
    for n in range(start, start + commits):
        path = f"runs/2026/11/26/{n:05d}.yaml"
        writer.submit({path: f"run {n}\n".encode()}).result(30)


def test_a_busy_writer_has_git_pack_what_it_wrote(state_repo: Path) -> None:
    with StateRepo.discover(state_repo) as repo:
        writer = BatchWriter(repo, gc_every=200)
        _write_day(writer, 0, 60)  # about 7 objects a commit: past 200, a gc starts
        writer.housekeeper.wait(120)
        assert writer.housekeeper.runs >= 1
        packed = _objects(state_repo, "in-pack")
        # git removes the fan-out directories it emptied: the writer writes on regardless.
        _write_day(writer, 60, 10)
        writer.close()
    assert packed >= 200  # what was written before the gc began is in a pack now
    assert list((state_repo / ".git" / "objects" / "pack").glob("*.pack"))
    with StateRepo.discover(state_repo) as repo:
        files = [path for path, _ in repo.walk("runs/2026/11/26")]
    assert len(files) == 70
    git("fsck", "--strict", "--no-progress", cwd=state_repo)


def test_gc_auto_0_keeps_the_writer_from_packing(state_repo: Path) -> None:
    git("config", "gc.auto", "0", cwd=state_repo)
    with StateRepo.discover(state_repo) as repo:
        writer = BatchWriter(repo, gc_every=100)
        _write_day(writer, 0, 40)
        writer.close()
    assert writer.housekeeper.runs == 0
    assert not list((state_repo / ".git" / "objects" / "pack").glob("*.pack"))
    assert _objects(state_repo) > 100
