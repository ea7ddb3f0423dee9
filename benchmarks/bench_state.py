"""How fast the state branch is: appends, the batching writer, and `verify`.

    python -m benchmarks.bench_state [--quick] [--only append|writer|verify]
                                     [--profile append|writer|verify] [--dir DIR] [--keep]

Every figure is compared with raw git plumbing (`hash-object`, `mktree`, `commit-tree`,
`update-ref`, `rev-list`, `cat-file`) doing the same work in the same run, and checked
against the targets:

- appending one record costs at most 5 ms with 100,000 records on the branch, and at most
  1.5 times what it costs with 1,000;
- the batching writer sustains at least 5,000 receipts a second from 8 producer threads,
  each receipt acknowledged only once the branch holds it;
- `verify` checks at least 20,000 records a second of history.

benchmarks/README.md says what each scenario builds and why; docs/performance.md has
the figures.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import random
import resource
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

from benchmarks._support import (
    BASE_TIME,
    PackedBranch,
    PlumbingBranch,
    Records,
    check_sample,
    config_files,
    fmt_ms,
    fmt_rate,
    git,
    git_version,
    init_repo,
    isolate_environment,
    median,
    p90,
    print_table,
    probe_disk,
    repack,
)
from gitgw.concepts.checks import check_file, is_add_only
from gitgw.concepts.secrets import check_secrets
from gitgw.concepts.store import Store
from gitgw.records import Parsed, Receipt, Run, parse_file, render
from gitgw.records.fast_check import verify_file
from gitgw.services.verify import verify
from gitgw.state import BatchWriter, StateRepo, changes_of, commits_oldest_first

RECORDS_PER_DAY = 275  # a busy gateway: 100,000 runs a year
APPEND_TARGET = 0.005
GROWTH_TARGET = 1.5
WRITER_TARGET = 5_000
VERIFY_TARGET = 20_000
# A first verify of the long histories takes seconds, and this kind of machine moves such
# a figure by a quarter from one minute to the next: each is the median of three runs,
# alternating with git's.
VERIFY_RUNS = 3


@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does."""

    small: int  # records on the branch for the small append case
    large: int  # ... and for the large one
    appends: int  # timed gitgw appends per case (after one untimed first append)
    git_appends: int  # timed git plumbing appends per case
    git_appends_wide: int  # ... when the shard holds the large count (mktree is slow)
    writer: tuple[tuple[int, int, int], ...]  # (producers, in flight each, receipts each)
    git_commits: int  # writer commits git replays
    verify_commits: int


FULL = Sizes(
    small=1_000,
    large=100_000,
    appends=200,
    git_appends=200,
    git_appends_wide=30,
    writer=((8, 256, 2_500), (8, 1, 150), (64, 1, 100)),
    git_commits=200,
    verify_commits=1_000,
)
QUICK = Sizes(
    small=1_000,
    large=10_000,
    appends=50,
    git_appends=20,
    git_appends_wide=5,
    writer=((8, 256, 250), (8, 1, 30), (64, 1, 10)),
    git_commits=30,
    verify_commits=100,
)


@dataclass
class Results:
    """The summary table, and the notes printed as the scenarios run."""

    rows: list[list[str]] = field(default_factory=list)

    def row(
        self, measure: str, ours: str, theirs: str, ratio: str, target: str, ok: bool | None
    ) -> None:
        verdict = "-" if ok is None else "PASS" if ok else "FAIL"
        self.rows.append([measure, ours, theirs, ratio, target, verdict])

    @staticmethod
    def note(text: str) -> None:
        print(f"  {text}", flush=True)


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}" if theirs else "-"


# -- appending one record ----------------------------------------------------------------


def _build_runs(path: Path, records: Records, count: int, days: int) -> datetime:
    """A branch of `count` run records spread evenly over `days` day shards, in one commit.

    Returns a moment in the last day shard, where new records land."""
    branch = PackedBranch(init_repo(path), "gitgw")
    files = config_files()
    span = days * 86_400
    for i in range(count):
        run_path, data = records.run_file(BASE_TIME + timedelta(seconds=span * i / count))
        files[run_path] = data
    check_sample(list(files.items())[1:201])
    branch.commit(files, f"fixture: {count} runs over {days} day(s)", BASE_TIME)
    branch.finish()
    return BASE_TIME + timedelta(days=days - 1, hours=12)


class AppendCase:
    """One fixture branch and the single-record appends timed on it, by gitgw and by git."""

    def __init__(self, root: Path, records: Records, count: int, days: int) -> None:
        self.records, self.count, self.days = records, count, days
        self.path = root / f"append-{count}-{days}"
        began = time.perf_counter()
        self.last_day = _build_runs(self.path, records, count, days)
        self.fixture = git(self.path, "rev-parse", "gitgw").decode().strip()
        Results.note(
            f"built {count:,} runs in {days} day shard(s) in {time.perf_counter() - began:.1f}s"
        )
        self.times: list[float] = []
        self.cpu: list[float] = []  # this process's CPU time per append: load-independent
        self.git_times: list[float] = []
        self.render_check = 0.0
        self._runs: list[Run] = []
        self._repo: StateRepo | None = None
        self._store: Store | None = None
        self._plumbing: PlumbingBranch | None = None
        self._git_runs: list[tuple[str, bytes]] = []

    def open(self, appends: int) -> None:
        """One Store, as a long-running gateway holds it, and the new records to add."""
        moments = [self.last_day + timedelta(milliseconds=250 * i) for i in range(appends)]
        self._runs = [self.records.run(at) for at in moments]
        shard = f"runs/{self.last_day:%Y/%m/%d}/"
        assert all(render(run)[0].startswith(shard) for run in self._runs), "not the last shard"
        self._repo = StateRepo.discover(self.path)
        self._store = Store(self._repo)

    def append(self, number: int) -> None:
        """`Store.add` of one new run: render, every check, commit, CAS of the ref."""
        assert self._store is not None
        began, cpu = time.perf_counter(), time.process_time()
        self._store.add(self._runs[number], message="gitgw: add 1 record(s)")
        self.times.append(time.perf_counter() - began)
        self.cpu.append(time.process_time() - cpu)

    def close(self) -> None:
        """Close the Store, then time rendering and checking the same records alone."""
        assert self._repo is not None
        self._repo.close()
        began = time.perf_counter()
        for run in self._runs[1:]:
            check_file(*render(run))
        self.render_check = (time.perf_counter() - began) / (len(self._runs) - 1)

    def open_git(self, appends: int) -> None:
        """Git starts from the fixture as it was before gitgw's appends, in the same shard."""
        self._plumbing = PlumbingBranch(self.path, "bench-git", self.fixture)
        self._git_runs = [
            self.records.run_file(self.last_day + timedelta(hours=1, milliseconds=250 * i))
            for i in range(appends)
        ]
        assert all(p.startswith(f"runs/{self.last_day:%Y/%m/%d}/") for p, _ in self._git_runs)
        self._plumbing.prepare(run_path for run_path, _ in self._git_runs)

    def append_git(self, number: int) -> None:
        """The same append with one git process a step."""
        assert self._plumbing is not None
        run_path, data = self._git_runs[number]
        began = time.perf_counter()
        self._plumbing.commit({run_path: data}, "git: add 1 record")
        self.git_times.append(time.perf_counter() - began)

    def remove(self) -> None:
        """Delete the fixture."""
        shutil.rmtree(self.path)


def bench_append(root: Path, sizes: Sizes, results: Results) -> None:
    """Single-record appends at 1,000 and 100,000 records: sharded by day, and one shard.

    The appends to the small and the large branch alternate, so that both see the same
    machine: on a shared machine the load drifts over a run, and the growth ratio is a
    comparison of the two."""
    records = Records(seed=1)
    # The targets are for the layout gitgw writes (day shards); one shard shows what
    # sharding avoids, with no target of its own.
    layouts: tuple[tuple[str, Callable[[int], int], bool], ...] = (
        (f"≈{RECORDS_PER_DAY}/day", lambda n: max(1, -(-n // RECORDS_PER_DAY)), True),
        ("all in one shard", lambda n: 1, False),
    )
    for label, days_of, targeted in layouts:
        print(f"append, {label}:", flush=True)
        small = AppendCase(root, records, sizes.small, days_of(sizes.small))
        large = AppendCase(root, records, sizes.large, days_of(sizes.large))
        for case in (small, large):
            case.open(sizes.appends + 1)
        for number in range(sizes.appends + 1):
            for case in (small, large):
                case.append(number)
        wide = large.days == 1 and large.count > 10_000  # mktree of 100,000 entries is slow
        git_appends = sizes.git_appends_wide if wide else sizes.git_appends
        for case in (small, large):
            case.close()
            case.open_git(git_appends)
        for number in range(git_appends):
            for case in (small, large):
                case.append_git(number)
        for case in (small, large):
            times, first = case.times[1:], case.times[0]
            ours, theirs = median(times), median(case.git_times)
            judged = targeted and case.count == sizes.large
            results.row(
                f"append 1 run at {case.count:,} ({label}): median (p90)",
                f"{fmt_ms(ours)} ({fmt_ms(p90(times))})",
                f"{fmt_ms(theirs)} ({fmt_ms(p90(case.git_times))})",
                _ratio(ours, theirs),
                "≤ 5 ms" if judged else "-",
                ours <= APPEND_TARGET if judged else None,
            )
            Results.note(
                f"{case.count:,} runs, {case.days} shard(s): {len(times)} appends, median "
                f"{fmt_ms(ours)}, p90 {fmt_ms(p90(times))} (CPU {fmt_ms(median(case.cpu[1:]))}"
                f"), first append in a fresh handle {fmt_ms(first)}; render + checks alone "
                f"{fmt_ms(case.render_check)}; git {len(case.git_times)} appends, median "
                f"{fmt_ms(theirs)}"
            )
            case.remove()
        growth = median(large.times[1:]) / median(small.times[1:])
        git_growth = median(large.git_times) / median(small.git_times)
        results.row(
            f"append cost at {sizes.large:,} ÷ at {sizes.small:,} ({label})",
            f"{growth:.2f}×",
            f"{git_growth:.2f}×",
            "-",
            "≤ 1.5×" if targeted else "-",
            growth <= GROWTH_TARGET if targeted else None,
        )


# -- the batching writer -----------------------------------------------------------------


def _produce(
    writer: BatchWriter,
    items: list[Receipt],
    window: int,
    acks: list[tuple[str, str]],
    gate: threading.Barrier,
) -> None:
    # Hand receipts to the writer, keeping at most `window` unacknowledged.
    gate.wait()
    pending: deque[tuple[str, Future[str]]] = deque()
    for receipt in items:
        pending.append((receipt.id, writer.submit_item("receipts", receipt)))
        if len(pending) >= window:
            receipt_id, future = pending.popleft()
            acks.append((receipt_id, future.result()))
    while pending:
        receipt_id, future = pending.popleft()
        acks.append((receipt_id, future.result()))


@dataclass
class WriterFigures:
    """One writer run and git's replay of its batches."""

    receipts: int
    seconds: float
    cpu: float
    commits: int
    largest_batch: int
    retries: int
    git_receipts: int
    git_commits: int
    git_seconds: float


def _check_acknowledged(
    repo: StateRepo, acks: list[list[tuple[str, str]]]
) -> tuple[list[tuple[dict[str, bytes], int]], str]:
    """Prove every acknowledged receipt is in the commit its future named, and that
    commit is on the branch; return each commit's files (oldest first) and the start."""
    history = commits_oldest_first(repo, repo.require_head())
    held: dict[str, set[str]] = {}
    batches: list[tuple[dict[str, bytes], int]] = []
    for commit in history[1:]:
        files: dict[str, bytes] = {}
        ids: set[str] = set()
        for change in changes_of(repo, commit):
            assert change.old is None, change
            assert change.new is not None, change
            data = repo.blob(change.new)
            files[change.path] = data
            ids.update(json.loads(line)["id"] for line in data.splitlines())
        held[commit] = ids
        batches.append((files, len(ids)))
    for per_producer in acks:
        for receipt_id, commit in per_producer:
            assert receipt_id in held[commit], "a receipt was acknowledged before its commit"
    submitted = sum(len(per) for per in acks)
    assert sum(n for _, n in batches) == submitted, "a receipt is missing or doubled"
    return batches, history[0]


def _writer_case(
    root: Path, records: Records, producers: int, window: int, each: int, sizes: Sizes
) -> WriterFigures:
    path = root / f"writer-{producers}-{window}"
    branch = PackedBranch(init_repo(path), "gitgw")
    branch.commit(config_files(), "gitgw: create the state branch", BASE_TIME)
    branch.finish()
    now = datetime.now(UTC)
    work = [[records.receipt(now) for _ in range(each)] for _ in range(producers)]
    acks: list[list[tuple[str, str]]] = [[] for _ in range(producers)]
    with StateRepo.discover(path) as repo:
        writer = Store(repo).writer()
        gate = threading.Barrier(producers + 1)
        threads = [
            threading.Thread(target=_produce, args=(writer, work[k], window, acks[k], gate))
            for k in range(producers)
        ]
        for thread in threads:
            thread.start()
        gate.wait()
        began, cpu = time.perf_counter(), time.process_time()
        for thread in threads:
            thread.join()
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
        stats = writer.stats
        writer.close()
        batches, start = _check_acknowledged(repo, acks)

    plumbing = PlumbingBranch(path, "bench-git", start)
    chosen = batches[: sizes.git_commits]
    plumbing.prepare(batch_path for files, _ in chosen for batch_path in files)
    began = time.perf_counter()
    for files, _ in chosen:
        plumbing.commit(files, "git: add a receipt batch")
    git_elapsed = time.perf_counter() - began
    shutil.rmtree(path)
    return WriterFigures(
        receipts=producers * each,
        seconds=elapsed,
        cpu=cpu,
        commits=stats.commits,
        largest_batch=stats.largest_batch,
        retries=stats.retries,
        git_receipts=sum(n for _, n in chosen),
        git_commits=len(chosen),
        git_seconds=git_elapsed,
    )


def bench_writer(root: Path, sizes: Sizes, results: Results) -> None:
    """Producer threads hand receipts to one writer and wait for their commits."""
    records = Records(seed=2)
    for producers, window, each in sizes.writer:
        label = f"{producers} producers, ≤{window} in flight each"
        print(f"writer, {label}:", flush=True)
        fig = _writer_case(root, records, producers, window, each, sizes)
        rate = fig.receipts / fig.seconds
        git_rate = fig.git_receipts / fig.git_seconds
        judged = producers >= 8 and window > 1
        results.row(
            f"writer, {label}",
            fmt_rate(rate, "receipts"),
            fmt_rate(git_rate, "receipts"),
            _ratio(git_rate, rate),
            f"≥ {WRITER_TARGET:,}/s" if judged else "-",
            rate >= WRITER_TARGET if judged else None,
        )
        Results.note(
            f"{fig.receipts:,} receipts in {fig.seconds:.2f}s ({fig.cpu:.2f}s of CPU, "
            f"{fig.cpu / fig.receipts * 1e6:.0f} µs a receipt): {fig.commits} commits "
            f"({fig.receipts / max(fig.commits, 1):.0f} receipts a commit, largest batch "
            f"{fig.largest_batch}), {fig.retries} CAS retries; every acknowledgement checked "
            f"against its commit. git replayed {fig.git_commits} of the same commits "
            f"({fig.git_receipts:,} receipts) in {fig.git_seconds:.2f}s"
        )


# -- verify ------------------------------------------------------------------------------


Commits = Iterator[tuple[datetime, dict[str, bytes], int]]  # (time, files, records)


def _write_history(path: Path, commits: Commits) -> int:
    """A new state branch holding `commits`, written into one pack; its records."""
    branch = PackedBranch(init_repo(path), "gitgw")
    branch.commit(config_files(), "gitgw: create the state branch", BASE_TIME)
    count = 0
    for i, (at, files, records) in enumerate(commits):
        if i < 3:
            check_sample(files.items())
        count += records
        branch.commit(files, f"gitgw: add {records} record(s)", at)
    branch.finish()
    return count


def _mixed_history(records: Records, commits: int) -> Commits:
    """`commits` commits of 20–100 records each over 60 days (about 65% runs, 35%
    receipts in batch files of 5–20 lines, a consent entry in one commit in five)."""
    rng = random.Random(3)
    span = 60 * 86_400
    for i in range(commits):
        at = BASE_TIME + timedelta(seconds=span * (i + 1) / (commits + 1))
        wanted = rng.randint(20, 100)
        receipts = wanted * 35 // 100
        consent = 1 if rng.random() < 0.2 else 0
        files: dict[str, bytes] = {}
        for _ in range(wanted - receipts - consent):
            files.update([records.run_file(at)])
        if consent:
            files.update([records.consent_file(at)])
        while receipts > 0:
            size = min(rng.randint(5, 20), receipts)
            files.update([records.receipt_batch_file(at, size)])
            receipts -= size
        yield at, files, wanted


def _verify_breakdown(path: Path) -> tuple[float, float, float, int]:
    """Where verify's time goes: walking the history and reading every added add-only
    file; parsing it (format, schema, digest, place); and the secrets guard."""
    with StateRepo.discover(path) as repo:
        began = time.perf_counter()
        files = [
            (change.path, repo.blob(change.new))
            for commit in commits_oldest_first(repo, repo.require_head())
            for change in changes_of(repo, commit)
            if change.new is not None and change.old is None and is_add_only(change.path)
        ]
        walk = time.perf_counter() - began
    began = time.perf_counter()
    records = sum(verify_file(file_path, data) for file_path, data in files)  # what verify runs
    check = time.perf_counter() - began
    parsed: list[Parsed] = [parse_file(file_path, data) for file_path, data in files]
    began = time.perf_counter()
    for (file_path, data), result in zip(files, parsed, strict=True):
        check_secrets(file_path, data, result)
    secrets = time.perf_counter() - began
    return walk, check, secrets, records


def _cpu_seconds() -> float:
    # This process's CPU time and that of its finished children: verify shares the
    # checking of files out among worker processes on a history this long.
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _verify_warm(path: Path, expected: int, git_elapsed: float, results: Results) -> None:
    """verify again after a first run proved every file (the history is walked in full)."""
    with StateRepo.discover(path) as repo:
        verify(repo)  # proves every file; the next run parses none of them again
    with StateRepo.discover(path) as repo:
        began = time.perf_counter()
        report = verify(repo)
        elapsed = time.perf_counter() - began
    assert report.ok, report.problems[:5]
    assert report.records == expected, (report.records, expected)
    assert report.cached == report.files - 1  # all but gitgw.yaml, checked at the head
    rate = report.records / elapsed
    results.row(
        f"verify {report.commits:,} commits, {report.records:,} records (warm: files proven)",
        fmt_rate(rate, "records"),
        fmt_rate(report.records / git_elapsed, "records"),
        _ratio(elapsed, git_elapsed),
        f"≥ {VERIFY_TARGET:,}/s",
        rate >= VERIFY_TARGET,
    )


def _proxy_history(records: Records, commits: int) -> Commits:
    """A history as a busy proxy leaves it: each commit one receipt batch of 40–80 lines
    (a hand-over every half second at about 120 requests a second), a run in one commit
    in ten."""
    rng = random.Random(5)
    for i in range(commits):
        at = BASE_TIME + timedelta(seconds=i / 2)
        size = rng.randint(40, 80)
        files = dict([records.receipt_batch_file(at, size)])
        if rng.random() < 0.1:
            files.update([records.run_file(at)])
            size += 1
        yield at, files, size


def _verify_cold(path: Path, expected: int, label: str, results: Results) -> float:
    """A first verify (every file parsed), against git reading the same objects, each
    `VERIFY_RUNS` times in turn; the medians compared. git's median time."""
    times: list[float] = []
    cpus: list[float] = []
    git_times: list[float] = []
    for _ in range(VERIFY_RUNS):
        with StateRepo.discover(path) as repo:  # a fresh handle: nothing cached
            began, cpu = time.perf_counter(), _cpu_seconds()
            report = verify(repo, cache=False)  # cold: every file parsed and checked
            times.append(time.perf_counter() - began)
            cpus.append(_cpu_seconds() - cpu)
        assert report.ok, report.problems[:5]
        assert report.records == expected, (report.records, expected)
        began = time.perf_counter()
        listing = git(path, "rev-list", "--objects", "refs/heads/gitgw")
        wanted = b"".join(line[:40] + b"\n" for line in listing.splitlines())
        raw = git(path, "cat-file", "--batch", data=wanted)
        git_times.append(time.perf_counter() - began)
    elapsed, cpu, git_elapsed = median(times), median(cpus), median(git_times)
    rate, git_rate = report.records / elapsed, report.records / git_elapsed
    results.row(
        f"verify {report.commits:,} commits, {report.records:,} records ({label})",
        fmt_rate(rate, "records"),
        fmt_rate(git_rate, "records"),
        _ratio(elapsed, git_elapsed),
        f"≥ {VERIFY_TARGET:,}/s",
        rate >= VERIFY_TARGET,
    )
    each = ", ".join(f"{report.records / t:,.0f}" for t in times)
    Results.note(
        f"{label}: verify checked {report.files:,} files ({report.records:,} records) "
        f"in {elapsed:.2f}s, the median of {each} records/s ({cpu:.2f}s of CPU, worker "
        f"processes included: {report.records / cpu:,.0f} records per CPU second); "
        "git rev-list --objects | cat-file --batch read "
        f"{len(wanted) // 41:,} objects ({len(raw) / 1e6:.0f} MB) in {git_elapsed:.2f}s, "
        "parsing nothing"
    )
    return git_elapsed


def _timed(what: str, build: Callable[[], int]) -> int:
    """Build a history, saying how long it took; its number of records."""
    began = time.perf_counter()
    records = build()
    print(
        f"verify: built {what}, {records:,} records in {time.perf_counter() - began:.1f}s",
        flush=True,
    )
    return records


def bench_verify(root: Path, sizes: Sizes, results: Results) -> None:
    """`gitgw verify` over long histories, against git reading the same objects: a mix
    heavy in run records (one file each), and the receipt batches a busy proxy writes."""
    path = root / "verify"
    expected = _timed(
        f"{sizes.verify_commits:,} commits",
        lambda: _write_history(path, _mixed_history(Records(seed=4), sizes.verify_commits)),
    )
    _verify_cold(path, expected, "runs and receipts, one pack", results)
    walk, parse, secrets, records = _verify_breakdown(path)
    per = 1e6 / records
    Results.note(
        f"where verify's time goes, per record: walk history + read objects "
        f"{walk * per:.0f} µs, parse + schema + digest + place {parse * per:.0f} µs, "
        f"secrets guard {secrets * per:.0f} µs"
    )
    began = time.perf_counter()
    repack(path)
    Results.note(f"git repack -adf took {time.perf_counter() - began:.1f}s")
    git_elapsed = _verify_cold(path, expected, "runs and receipts, repacked by git", results)
    _verify_warm(path, expected, git_elapsed, results)
    shutil.rmtree(path)

    path = root / "verify-proxy"
    expected = _timed(
        f"{sizes.verify_commits:,} commits of receipt batches",
        lambda: _write_history(path, _proxy_history(Records(seed=6), sizes.verify_commits)),
    )
    _verify_cold(path, expected, "a proxy's receipt batches, one pack", results)
    shutil.rmtree(path)


# -- main --------------------------------------------------------------------------------

SCENARIOS: dict[str, Callable[[Path, Sizes, Results], None]] = {
    "append": bench_append,
    "writer": bench_writer,
    "verify": bench_verify,
}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios and print the table; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_state")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append", help="repeatable")
    parser.add_argument("--profile", choices=sorted(SCENARIOS), help="cProfile one scenario")
    parser.add_argument("--dir", type=Path, help="where to build the repositories")
    parser.add_argument("--keep", action="store_true", help="keep the repositories")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    chosen = [args.profile] if args.profile else args.only or list(SCENARIOS)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up when stopped
    root = Path(tempfile.mkdtemp(prefix="gitgw-bench-", dir=args.dir))
    isolate_environment(root / "home")
    create, sync = probe_disk(root)
    # The first check in a process loads the secrets guard's detectors; no case pays it.
    sample_path, sample = Records(seed=9).run_file(BASE_TIME)
    began = time.perf_counter()
    check_file(sample_path, sample)
    first_check = time.perf_counter() - began
    print(
        f"gitgw state benchmarks ({'quick' if args.quick else 'full'} sizes) in {root}\n"
        f"Python {platform.python_version()}, dulwich {version('dulwich')}, "
        f"pydantic {version('pydantic')}, git {git_version()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}\n"
        f"disk: new small file {fmt_ms(create)}, fsync {fmt_ms(sync)} (medians); "
        f"first record check in a process {first_check:.2f}s (loads the detectors)\n",
        flush=True,
    )
    results = Results()
    began = time.perf_counter()
    try:
        for name in chosen:
            if args.profile:
                profiler = cProfile.Profile()
                profiler.runcall(SCENARIOS[name], root, sizes, results)
                pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
            else:
                SCENARIOS[name](root, sizes, results)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    header = ["measure", "gitgw", "git plumbing", "gitgw÷git (time)", "target", "result"]
    print_table(header, results.rows)
    print(
        f"\n{time.perf_counter() - began:.0f}s in all; load average at the end "
        f"{os.getloadavg()[0]:.1f}"
    )
    return 1 if any(row[-1] == "FAIL" for row in results.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
