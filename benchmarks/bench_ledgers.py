"""How fast the three ledgers answer: consent checks and folds, recording receipts,
listing and auditing a million receipts.

    python -m benchmarks.bench_ledgers [--quick] [--dir DIR] [--keep]

Targets (from the ledgers' issue), each printed with its figure and PASS or FAIL:

- a consent check from memory takes at most 10 µs;
- folding 100,000 consent entries takes at most 1 s (a process start: load through the
  derived index, then fold);
- recording a receipt costs the caller at most 50 µs (the commit happens in the batch);
- `gitgw receipts list` over 1,000,000 receipts answers in at most 2 s, using the
  rebuildable index under `.git/gitgw/`.

Where a baseline makes sense it is measured in the same run: `git ls-tree` + `git
cat-file --batch` reading the same files (what a tool without an index must do). The
large branches are built with `git fast-import` in one commit (a million receipts are
1,000 batch files of 1,000 lines), never by committing a million times.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from benchmarks._support import Table, git, init_repo, median, run_suite
from gitgw._canonical import compute_digest, format_time
from gitgw._clock import Clock
from gitgw._yaml import dump_record
from gitgw.cli import cli
from gitgw.concepts.audit import audit
from gitgw.concepts.consent import ConsentLedger, fold, grant
from gitgw.concepts.context import context_parts
from gitgw.concepts.index import Index
from gitgw.concepts.receipts import RECEIPTS_INDEX, ReceiptLog, query
from gitgw.concepts.store import Store
from gitgw.records import Receipt, kind_named, parse_file
from gitgw.records.receipt import Route, Usage
from gitgw.state import StateRepo

BASE = datetime(2025, 1, 1, tzinfo=UTC)
CHECK_TARGET_US = 10.0
FOLD_TARGET_S = 1.0
RECORD_TARGET_US = 50.0
LIST_TARGET_S = 2.0
LEVELS = ("public", "internal", "confidential", "restricted")
CONFIG = (
    b"schema_version: 1\nproviders:\n"
    b"  ollama: {base_url: 'http://127.0.0.1:11434/v1', location: local, max_trust: restricted}\n"
    b"  openai: {base_url: 'https://api.openai.com/v1', location: hosted, max_trust: internal}\n"
)


@dataclass(frozen=True)
class Sizes:
    """How much each scenario builds."""

    consent: int
    subjects: int
    receipt_files: int
    receipts_per_file: int
    records: int  # receipts handed to the writer in the recording benchmark


FULL = Sizes(
    consent=100_000, subjects=1_000, receipt_files=1_000, receipts_per_file=1_000, records=20_000
)
QUICK = Sizes(
    consent=10_000, subjects=200, receipt_files=100, receipts_per_file=1_000, records=2_000
)


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds `action` took, and what it returned."""
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(rng: random.Random, at: datetime) -> str:
    """A ULID for `at` with random bits from `rng` (deterministic fixtures)."""
    value = (int(at.timestamp() * 1000) << 80) | rng.getrandbits(80)
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def fast_import(repo: Path, files: Iterable[tuple[str, bytes]], message: str) -> None:
    """Commit `files` as the state branch's first commit, in one pack."""
    proc = subprocess.Popen(
        ["git", "-C", str(repo), "fast-import", "--quiet"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    out = proc.stdin
    stamp = int(BASE.timestamp())
    text = message.encode() + b"\n"
    out.write(
        b"commit refs/heads/gitgw\ncommitter bench <bench@example.invalid> %d +0000\n" % stamp
    )
    out.write(b"data %d\n%s" % (len(text), text))
    for path, data in [("gitgw.yaml", CONFIG), *files]:
        out.write(b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(data), data))
    out.close()
    errors = proc.stderr.read() if proc.stderr else b""
    if proc.wait() != 0:
        raise RuntimeError(f"git fast-import failed: {errors.decode(errors='replace')}")


def git_read_all(repo: Path, prefix: str) -> tuple[int, bytes]:
    """The baseline read: `git ls-tree -r` piped into `git cat-file --batch`."""
    listing = git(repo, "ls-tree", "-r", "--object-only", "gitgw", prefix)
    out = git(repo, "cat-file", "--batch", data=listing)
    return listing.count(b"\n"), out


# -- consent -------------------------------------------------------------------------------


def consent_files(sizes: Sizes) -> Iterator[tuple[str, bytes]]:
    """`sizes.consent` entries over `sizes.subjects` subjects, each naming the entry it
    supersedes, as `gitgw consent grant/revoke` writes them."""
    rng = random.Random(7)
    last: dict[str, str] = {}
    kind = kind_named("consent")
    for n in range(sizes.consent):
        at = BASE + timedelta(minutes=10 * n)
        subject = f"provider:p{rng.randrange(sizes.subjects)}"
        data: dict[str, Any] = {"schema_version": 1, "id": ulid(rng, at)}
        if rng.random() < 0.1:
            data |= {"action": "revoke", "subject": subject}
        else:
            data |= {
                "action": "grant",
                "subject": subject,
                "level": rng.choice(LEVELS),
                "purpose": "benchmark",
            }
        data |= {"actor": "alice@example.invalid", "created": format_time(at)}
        if subject in last:
            data["supersedes"] = last[subject]
        last[subject] = data["id"]
        data["digest"] = compute_digest(data)
        yield kind.path(id=data["id"]), dump_record(data).encode()


def bench_consent(root: Path, sizes: Sizes, table: Table) -> None:
    repo_path = init_repo(root / "consent")
    print(
        f"consent: building {sizes.consent:,} entries over {sizes.subjects:,} subjects", flush=True
    )
    files = list(consent_files(sizes))
    parse_file(*files[0])
    parse_file(*files[-1])
    fast_import(repo_path, files, f"{sizes.consent} consent entries")
    with StateRepo.discover(repo_path) as repo:
        seconds, _ = timed(lambda: git_read_all(repo_path, "consent"))
        table.add("consent: git ls-tree + cat-file of every entry (baseline)", f"{seconds:.2f} s")
        cold, ledger = timed(lambda: ConsentLedger(repo))
        table.add(
            "consent: first load, building the index (read + check every file)", f"{cold:.2f} s"
        )
        entries = ledger.history()
        assert len(entries) == sizes.consent
        pure, _ = timed(lambda: fold(entries))
        table.add(
            f"consent: fold {len(entries):,} entries in memory",
            f"{pure:.3f} s",
            f"<= {FOLD_TARGET_S:.0f} s",
            pure <= FOLD_TARGET_S,
        )
        warm = median([timed(lambda: ConsentLedger(repo))[0] for _ in range(3)])
        table.add(
            f"consent: load + fold {len(entries):,} entries (index warm; process start)",
            f"{warm:.3f} s",
            f"<= {FOLD_TARGET_S:.0f} s",
            warm <= FOLD_TARGET_S,
        )
        rng = random.Random(3)
        pairs = [
            (f"provider:p{rng.randrange(sizes.subjects)}", rng.choice(LEVELS))
            for _ in range(100_000)
        ]
        fresh = ConsentLedger(repo)
        first = []
        for subject, level in pairs[:2_000]:
            started = time.perf_counter_ns()
            fresh.check(subject, level)
            first.append((time.perf_counter_ns() - started) / 1000)
        for subject, level in pairs:  # warm every pair
            ledger.check(subject, level)
        samples = []
        for subject, level in pairs:
            started = time.perf_counter_ns()
            ledger.check(subject, level)
            samples.append((time.perf_counter_ns() - started) / 1000)
        check = ledger.check
        loop, _ = timed(lambda: [check(s, lvl) for s, lvl in pairs])
        per_call = median(samples)
        table.add(
            "consent: check from memory, median per call",
            f"{per_call:.2f} µs",
            f"<= {CHECK_TARGET_US:.0f} µs",
            per_call <= CHECK_TARGET_US,
        )
        table.add(
            "consent: check, mean over 100,000 calls in a loop", f"{loop / len(pairs) * 1e6:.2f} µs"
        )
        table.add(
            "consent: first check of a (subject, level) pair, median",
            f"{median(first):.2f} µs",
            f"<= {CHECK_TARGET_US:.0f} µs",
            median(first) <= CHECK_TARGET_US,
        )
        grant(repo, "provider:p1", "internal")
        seconds, moved = timed(ledger.refresh)
        assert moved
        table.add(
            "consent: refresh after one new entry (tree diff of consent/)",
            f"{seconds * 1000:.2f} ms",
        )


# -- recording receipts ---------------------------------------------------------------------


def make_receipts(count: int) -> list[Receipt]:
    """`count` realistic receipts, built as the proxy will build them."""
    clock = Clock()
    messages = [
        {"role": "system", "content": "You review code."},
        {"role": "user", "content": "Please review this diff. " * 20},
    ]
    receipts = []
    for _ in range(count):
        now = clock.now()
        receipts.append(
            Receipt(
                id=clock.new_id(now),
                created=now,
                client="claude-code",
                level="internal",
                route=Route(
                    provider="ollama",
                    model="llama3.1",
                    endpoint="/v1/chat/completions",
                    location="local",
                ),
                context=context_parts(messages),
                usage=Usage(prompt_tokens=180, completion_tokens=60, total_tokens=240),
                latency_ms=812.4,
                overhead_ms=1.2,
                outcome="ok",
            )
        )
    return receipts


def bench_record(root: Path, sizes: Sizes, table: Table) -> None:
    repo_path = root / "record"
    result = CliRunner().invoke(cli, ["init", str(repo_path)])
    assert result.exit_code == 0, result.output
    print(f"receipts: recording {sizes.records:,} through the batching writer", flush=True)
    build, receipts = timed(lambda: make_receipts(sizes.records))
    with StateRepo.discover(repo_path) as repo, ReceiptLog(Store(repo)) as log:
        samples, futures = [], []
        began = time.perf_counter()
        for receipt in receipts:
            started = time.perf_counter_ns()
            futures.append(log.record(receipt))
            samples.append((time.perf_counter_ns() - started) / 1000)
        commits = {f.result(timeout=300) for f in futures}
        durable = time.perf_counter() - began
    per_call = median(samples)
    samples.sort()
    table.add(
        "receipts: record() cost to the caller, median",
        f"{per_call:.2f} µs",
        f"<= {RECORD_TARGET_US:.0f} µs",
        per_call <= RECORD_TARGET_US,
    )
    table.add(
        "receipts: record() cost, 99th percentile", f"{samples[int(len(samples) * 0.99)]:.2f} µs"
    )
    table.add(
        "receipts: building one Receipt model (caller's own work, for scale)",
        f"{build / sizes.records * 1e6:.1f} µs",
    )
    table.add(
        "receipts: all durable (committed)",
        f"{sizes.records / durable:,.0f} receipts/s in {len(commits)} commits",
    )


# -- a million receipts ------------------------------------------------------------------------

_PROVIDERS = (
    ("ollama", "local"),
    ("ollama", "local"),
    ("ollama", "local"),
    ("openai", "hosted"),
    ("openai", "hosted"),
    ("anthropic", "hosted"),
)


# One receipt's canonical JSON (keys sorted, compact): its digest is the SHA-256 of this
# text, and the file's line is this text with the digest added (`parse_file` checks one).
_CANONICAL = (
    '{"client":"%s","consent":[%s],"context":[{"chars":%d,"role":"user","sha256":"%064x",'
    '"tokens":%d}],"created":"%s","id":"%s","latency_ms":512.5,"level":"%s","outcome":"ok",'
    '"overhead_ms":1.1,"route":{"endpoint":"/v1/chat/completions","location":"%s","model":'
    '"m","provider":"%s"},"schema_version":1,"usage":{"completion_tokens":%d,'
    '"prompt_tokens":%d,"total_tokens":%d}}'
)


def receipt_files(sizes: Sizes, grants: dict[str, str]) -> Iterator[tuple[str, bytes]]:
    """Batch files of receipts over 30 days: local and hosted routes, all four levels,
    hosted calls citing their provider's grant (one in 50 citing none)."""
    rng = random.Random(11)
    total = sizes.receipt_files * sizes.receipts_per_file
    step = timedelta(days=30) / total
    kind = kind_named("receipt")
    clients = ("claude-code", "codex", "ci-bot")
    n = 0
    for _ in range(sizes.receipt_files):
        lines = []
        for _ in range(sizes.receipts_per_file):
            at = BASE + timedelta(days=1) + step * n
            n += 1
            provider, location = rng.choice(_PROVIDERS)
            if location == "local":
                level = LEVELS[min(rng.randrange(5), 3)]
            else:
                level = LEVELS[rng.randrange(2)]
            cited = location == "hosted" and rng.random() > 0.02
            prompt, completion = rng.randrange(20, 4000), rng.randrange(5, 800)
            canonical = _CANONICAL % (
                clients[n % 3],
                f'"{grants[provider]}"' if cited else "",
                prompt * 4,
                rng.getrandbits(256),
                prompt,
                format_time(at),
                ulid(rng, at),
                level,
                location,
                provider,
                completion,
                prompt,
                prompt + completion,
            )
            digest = hashlib.sha256(canonical.encode()).hexdigest()
            lines.append(f'{canonical[:-1]},"digest":"sha256:{digest}"}}')
        batch_id = ulid(rng, at + timedelta(milliseconds=1))
        yield kind.path(id=batch_id), ("\n".join(lines) + "\n").encode()


def _cli(repo: Path, *args: str) -> float:
    started = time.perf_counter()
    result = CliRunner().invoke(cli, ["--repo", str(repo), *args])
    seconds = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    return seconds


def bench_million(root: Path, sizes: Sizes, table: Table) -> None:
    total = sizes.receipt_files * sizes.receipts_per_file
    repo_path = init_repo(root / "receipts")
    rng = random.Random(5)
    grants = {p: ulid(rng, BASE) for p in ("ollama", "openai", "anthropic")}
    consent = []
    for provider, entry_id in grants.items():
        data = {
            "schema_version": 1,
            "id": entry_id,
            "action": "grant",
            "subject": f"provider:{provider}",
            "level": "internal",
            "actor": "alice",
            "created": format_time(BASE),
        }
        data["digest"] = compute_digest(data)
        consent.append((kind_named("consent").path(id=entry_id), dump_record(data).encode()))
    print(
        f"receipts: generating {total:,} receipts in {sizes.receipt_files:,} batch files",
        flush=True,
    )
    seconds, batches = timed(lambda: list(receipt_files(sizes, grants)))
    print(f"  generated in {seconds:.1f} s ({sum(len(d) for _, d in batches) / 1e6:,.0f} MB)")
    assert len(parse_file(*batches[0]).records) == sizes.receipts_per_file
    seconds, _ = timed(lambda: fast_import(repo_path, consent + batches, f"{total} receipts"))
    print(f"  committed with git fast-import in {seconds:.1f} s", flush=True)
    batches.clear()  # 0.6 GB: let it go before the timed part

    def baseline() -> int:
        # Without an index: read every batch with git, parse the lines that can match.
        _, out = git_read_all(repo_path, "receipts")
        rows = []
        for line in out.splitlines():
            if b'"provider":"openai"' in line:
                data = json.loads(line)
                rows.append((data["created"], data["id"]))
        rows.sort(reverse=True)
        return len(rows[:50])

    seconds, _ = timed(baseline)
    table.add(
        f"receipts list --provider openai, no index: git ls-tree + cat-file + parse "
        f"{total:,} (baseline)",
        f"{seconds:.2f} s",
    )
    with StateRepo.discover(repo_path) as repo:

        def build() -> None:
            with Index(repo, RECEIPTS_INDEX).connect():
                pass

        seconds, _ = timed(build)
        table.add(
            f"receipts: build the index from scratch ({total:,} receipts)",
            f"{seconds:.1f} s ({total / seconds:,.0f} receipts/s)",
        )
        seconds, listing = timed(lambda: query(repo, provider="openai"))
        assert listing.total > 0
        table.add("receipts: query(provider=openai), library", f"{seconds * 1000:.0f} ms")
        seconds, result = timed(lambda: audit(repo, since=BASE))
        table.add(
            f"audit over {total:,} receipts ({result.reached:,} reached hosted, "
            f"{len(result.violations):,} violations)",
            f"{seconds:.2f} s",
        )
    since = format_time(BASE + timedelta(days=20))
    for args in (
        ("receipts", "list"),
        ("receipts", "list", "--provider", "openai"),
        ("receipts", "list", "--level", "restricted", "--since", since),
        ("receipts", "list", "--provider", "anthropic", "--level", "internal", "--json"),
    ):
        seconds = median([_cli(repo_path, *args) for _ in range(3)])
        table.add(
            f"gitgw {' '.join(args[:2])} {' '.join(args[2:])} over {total:,}".rstrip(),
            f"{seconds:.2f} s",
            f"<= {LIST_TARGET_S:.0f} s",
            seconds <= LIST_TARGET_S,
        )


def main(argv: list[str] | None = None) -> int:
    return run_suite("ledgers", [bench_consent, bench_record, bench_million], QUICK, FULL, argv)


if __name__ == "__main__":
    raise SystemExit(main())
