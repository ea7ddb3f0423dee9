"""What the benchmarks share: an isolated environment, git plumbing, realistic record files,
fixture branches written straight into a pack, and statistics.

Fixture branches are never built through gitgw's own commits: the objects are written
into one pack by `PackedBranch` and indexed by `git index-pack`, so a branch of 100,000
records takes seconds. Every record file is valid (schema, digest and place pass
gitgw's checks); `verify` proves it on every fixture it walks.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from gitgw._canonical import canonical_json
from gitgw._yaml import dump_document, dump_record, load_record
from gitgw.records import (
    ConsentEntry,
    GatewayConfig,
    Receipt,
    Run,
    kind_named,
    parse_file,
    render,
)
from gitgw.records.receipt import ContextPart, Route, Usage
from gitgw.records.run import RunPart

S = TypeVar("S")  # a benchmark's sizes

IDENTITY = "gitgw-bench <bench@example.invalid>"
BASE_TIME = datetime(2025, 1, 1, tzinfo=UTC)
CONFIG_PATH = "gitgw.yaml"


def isolate_environment(home: Path) -> None:
    """Run git and gitgw with no outside configuration and a fixed identity."""
    for name in list(os.environ):
        if name.startswith(("GIT_", "GITGW_", "XDG_")):
            del os.environ[name]
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").write_text("[gc]\n\tauto = 0\n[init]\n\tdefaultBranch = main\n")
    os.environ.update(
        {
            "HOME": str(home),
            "GITGW_HOME": str(home / "gitgw-home"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "gitgw-bench",
            "GIT_AUTHOR_EMAIL": "bench@example.invalid",
            "GIT_COMMITTER_NAME": "gitgw-bench",
            "GIT_COMMITTER_EMAIL": "bench@example.invalid",
            "GITGW_ACTOR": IDENTITY,
        }
    )


def git(repo: Path, *args: str, data: bytes | None = None) -> bytes:
    """Run one git command in `repo` and return its standard output."""
    done = subprocess.run(
        ["git", "-C", str(repo), *args], input=data, capture_output=True, check=False
    )
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"git {' '.join(args)} failed: {message}")
    return done.stdout


def git_version() -> str:
    """The version of the git found on PATH."""
    out = subprocess.run(["git", "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip().removeprefix("git version ")


def init_repo(path: Path) -> Path:
    """A new, empty, non-bare repository (its checked-out branch is `main`, unborn)."""
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


# -- statistics --------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    """The median of `values`."""
    return statistics.median(values)


def p90(values: Sequence[float]) -> float:
    """The 90th percentile of `values` (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, -(-9 * len(ordered) // 10) - 1)]


# -- record files ------------------------------------------------------------------------

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class _Template:
    """A record file with holes: the bytes gitgw would render, without a model per record.

    Built from a real rendered record whose varying values are replaced by `@@name@@`
    markers; filling the holes with JSON texts gives the file, and the digest is computed
    over the canonical JSON filled the same way, exactly as `compute_digest` does.
    """

    def __init__(self, data: dict[str, Any], layout: Callable[[dict[str, Any]], str]) -> None:
        data = {key: value for key, value in data.items() if key != "digest"}
        self._canonical = self._holes(canonical_json(data).decode("utf-8"))
        self._text = self._holes(layout({**data, "digest": "@@digest@@"}))

    @staticmethod
    def _holes(text: str) -> str:
        return re.sub(r'"@@(\w+)@@"', r"%(\1)s", text.replace("%", "%%"))

    def fill(self, values: dict[str, str]) -> str:
        """The file's text; `values` are JSON texts (quoted strings, numbers)."""
        digest = hashlib.sha256((self._canonical % values).encode("utf-8")).hexdigest()
        return self._text % {**values, "digest": f'"sha256:{digest}"'}


def _compact(data: dict[str, Any]) -> str:
    # A receipt batch line, as `render_batch` writes it.
    import json

    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


class Records:
    """Realistic, valid records with deterministic ids and content.

    `run()`, `consent()` and `receipt()` give pydantic models (what gitgw's callers hold);
    the `*_file` methods give the bytes `render` would give for such records, from a
    template, about ten times faster, for building large fixtures.
    """

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self._run = self._template(render(self.run(BASE_TIME))[1], dump_record)
        self._consent = self._template(render(self.consent(BASE_TIME))[1], dump_record)
        receipt = self.receipt(BASE_TIME).sealed()
        self._receipt = self._template(_compact(receipt).encode(), _compact, json_text=True)

    @staticmethod
    def _template(
        data: bytes, layout: Callable[[dict[str, Any]], str], json_text: bool = False
    ) -> _Template:
        import json

        loaded = json.loads(data) if json_text else load_record(data.decode("utf-8"))
        marked = _mark(loaded, "")
        return _Template(marked, layout)

    def sha(self) -> str:
        """A random SHA-256 in hex."""
        return f"{self.rng.getrandbits(256):064x}"

    def new_id(self, at: datetime) -> str:
        """A ULID for the time `at`, exactly (a clock would keep ids monotonic, and move an
        earlier time forward to the latest it has given)."""
        return self.fast_id(at)

    def fast_id(self, at: datetime) -> str:
        """A ULID for the time `at`: 48 bits of milliseconds, 80 random bits."""
        value = (int(at.timestamp() * 1000) << 80) | self.rng.getrandbits(80)
        chars = []
        for _ in range(26):
            chars.append(_CROCKFORD[value & 31])
            value >>= 5
        return "".join(reversed(chars))

    # -- models --------------------------------------------------------------------------

    def run(self, at: datetime) -> Run:
        """A finished model call, as the run ledger records it."""
        return Run(
            id=self.new_id(at),
            kind="call",
            status="succeeded",
            provider="ollama",
            model="llama3.1:8b",
            params={"temperature": 0.2, "max_tokens": 1024},
            inputs=[
                RunPart(role="system", sha256=self.sha(), chars=self.rng.randint(200, 2000)),
                RunPart(role="user", sha256=self.sha(), chars=self.rng.randint(20, 8000)),
            ],
            outputs=[
                RunPart(role="assistant", sha256=self.sha(), chars=self.rng.randint(20, 4000))
            ],
            receipts=[self.new_id(at)],
            config_commit=self.sha()[:40],
            started=at,
            finished=at + timedelta(milliseconds=self.rng.randint(200, 9000)),
        )

    def consent(self, at: datetime) -> ConsentEntry:
        """A grant of a hosted provider up to `internal`."""
        return ConsentEntry(
            id=self.new_id(at),
            action="grant",
            subject=f"provider:hosted-{self.rng.randint(1, 5)}",
            level="internal",
            purpose="code review of internal repositories",
            actor="alice@example.invalid",
            created=at,
            reason="team decision",
        )

    def receipt(self, at: datetime) -> Receipt:
        """A receipt of one routed call: digests, sizes and rule names, never content."""
        prompt, completion = self.rng.randint(50, 6000), self.rng.randint(10, 2000)
        return Receipt(
            id=self.new_id(at),
            created=at,
            client="cli-alice",
            level="internal",
            rules=["default-level"],
            route=Route(provider="ollama", model="llama3.1:8b", endpoint="/v1/chat/completions"),
            context=[
                ContextPart(role="system", sha256=self.sha(), chars=812, tokens=190),
                ContextPart(role="user", sha256=self.sha(), chars=prompt * 4, tokens=prompt),
            ],
            usage=Usage(
                prompt_tokens=prompt + 190,
                completion_tokens=completion,
                total_tokens=prompt + 190 + completion,
            ),
            latency_ms=round(self.rng.uniform(150, 9000), 1),
            overhead_ms=round(self.rng.uniform(0.3, 2.5), 2),
            outcome="ok",
            config_commit=self.sha()[:40],
        )

    # -- rendered files, fast ------------------------------------------------------------

    def _common(self, at: datetime) -> dict[str, str]:
        stamp = f'"{at:%Y-%m-%dT%H:%M:%S}.{at.microsecond // 1000:03d}Z"'
        return {"id": f'"{self.fast_id(at)}"', "time": stamp}

    def run_file(self, at: datetime) -> tuple[str, bytes]:
        """The path and bytes of a new run record at `at`."""
        values = self._common(at)
        for hole in ("inputs_0_sha256", "inputs_1_sha256", "outputs_0_sha256"):
            values[hole] = f'"{self.sha()}"'
        for hole, low, high in (("inputs_0", 200, 2000), ("inputs_1", 20, 8000)):
            values[hole + "_chars"] = str(self.rng.randint(low, high))
        values["outputs_0_chars"] = str(self.rng.randint(20, 4000))
        values["receipts_0"] = f'"{self.fast_id(at)}"'
        values["config_commit"] = f'"{self.sha()[:40]}"'
        finished = at + timedelta(milliseconds=self.rng.randint(200, 9000))
        values["finished"] = f'"{finished:%Y-%m-%dT%H:%M:%S}.{finished.microsecond // 1000:03d}Z"'
        path = f"runs/{at:%Y/%m/%d}/{values['id'][1:-1]}.yaml"
        return path, self._run.fill(values).encode("utf-8")

    def consent_file(self, at: datetime) -> tuple[str, bytes]:
        """The path and bytes of a new consent grant at `at`."""
        values = self._common(at)
        values["subject"] = f'"provider:hosted-{self.rng.randint(1, 5)}"'
        path = f"consent/{at:%Y/%m}/{values['id'][1:-1]}.yaml"
        return path, self._consent.fill(values).encode("utf-8")

    def receipt_batch_file(self, at: datetime, lines: int) -> tuple[str, bytes]:
        """The path and bytes of a receipt batch of `lines` receipts written at `at`."""
        out = []
        for _ in range(lines):
            values = self._common(at)
            prompt, completion = self.rng.randint(50, 6000), self.rng.randint(10, 2000)
            values["context_0_sha256"] = f'"{self.sha()}"'
            values["context_1_sha256"] = f'"{self.sha()}"'
            values["context_1_chars"] = str(prompt * 4)
            values["context_1_tokens"] = str(prompt)
            values["usage_prompt_tokens"] = str(prompt + 190)
            values["usage_completion_tokens"] = str(completion)
            values["usage_total_tokens"] = str(prompt + 190 + completion)
            values["latency_ms"] = str(round(self.rng.uniform(150, 9000), 1))
            values["config_commit"] = f'"{self.sha()[:40]}"'
            out.append(self._receipt.fill(values))
        batch_id = self.fast_id(at)
        path = kind_named("receipt").path(id=batch_id)
        return path, ("\n".join(out) + "\n").encode("utf-8")


# Which values of a template vary from record to record, by their place in the record.
_HOLES = {
    "id",
    "inputs_0_sha256",
    "inputs_1_sha256",
    "outputs_0_sha256",
    "inputs_0_chars",
    "inputs_1_chars",
    "outputs_0_chars",
    "receipts_0",
    "config_commit",
    "finished",
    "subject",
    "context_0_sha256",
    "context_1_sha256",
    "context_1_chars",
    "context_1_tokens",
    "usage_prompt_tokens",
    "usage_completion_tokens",
    "usage_total_tokens",
    "latency_ms",
}
_TIMES = {"started", "created"}


def _mark(value: Any, where: str) -> Any:
    # Replace the varying values of a rendered record with @@hole@@ markers.
    if isinstance(value, dict):
        return {key: _mark(item, f"{where}_{key}" if where else key) for key, item in value.items()}
    if isinstance(value, list):
        return [_mark(item, f"{where}_{i}") for i, item in enumerate(value)]
    if where in _HOLES:
        return f"@@{where}@@"
    if where in _TIMES:
        return "@@time@@"
    return value


def config_files() -> dict[str, bytes]:
    """The files of a fresh state branch: the default configuration."""
    text = "# gitgw configuration\n" + dump_document(GatewayConfig().to_data())
    return {CONFIG_PATH: text.encode("utf-8")}


def check_sample(files: Iterable[tuple[str, bytes]]) -> int:
    """Fully check generated files with gitgw's own parser; returns how many records."""
    count = 0
    for path, data in files:
        count += len(parse_file(path, data).records)
    return count


# -- fixture branches, written straight into a pack -------------------------------------

_FILE_MODE, _DIR_MODE = 0o100644, 0o40000


def _pack_header(type_num: int, size: int) -> bytes:
    byte = (type_num << 4) | (size & 0x0F)
    size >>= 4
    out = bytearray()
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


class PackedBranch:
    """Commits of one branch written into a single pack, then indexed by `git index-pack`.

    Like gitgw, it rebuilds only the trees along the paths a commit changes. The result is
    an ordinary packed repository (undeltified objects, as after a repack without delta
    search); `repack()` runs `git repack -adf` for git's own deltified layout.
    """

    def __init__(self, repo: Path, branch: str) -> None:
        self.repo = repo
        self.ref = f"refs/heads/{branch}"
        self.head: str | None = None
        self._body: list[bytes] = []
        self._count = 0
        self._dirs: dict[str, dict[bytes, tuple[int, bytes]]] = {"": {}}
        self.objects = 0

    def _add(self, type_num: int, raw: bytes) -> bytes:
        name = (b"blob", b"tree", b"commit")[(3, 2, 1).index(type_num)]
        sha = hashlib.sha1(b"%s %d\0%s" % (name, len(raw), raw)).digest()
        self._body.append(_pack_header(type_num, len(raw)) + zlib.compress(raw, 1))
        self._count += 1
        return sha

    def commit(self, files: Mapping[str, bytes], message: str, when: datetime) -> str:
        """Add `files` as one commit on top of the branch."""
        dirty: set[str] = set()
        for path, data in files.items():
            directory, _, name = path.rpartition("/")
            blob = self._add(3, data)
            self._entries(directory)[name.encode()] = (_FILE_MODE, blob)
            while True:
                dirty.add(directory)
                if not directory:
                    break
                directory = directory.rpartition("/")[0]
        tree = b""
        for directory in sorted(dirty, key=lambda d: (-d.count("/") if d else 1, d)):
            tree = self._tree(self._dirs[directory])
            if directory:
                parent, _, name = directory.rpartition("/")
                self._entries(parent)[name.encode()] = (_DIR_MODE, tree)
        stamp = int(when.timestamp())
        raw = b"tree %s\n" % tree.hex().encode()
        if self.head:
            raw += b"parent %s\n" % self.head.encode()
        person = IDENTITY.encode()
        raw += b"author %s %d +0000\ncommitter %s %d +0000\n\n" % (person, stamp, person, stamp)
        raw += message.encode("utf-8") + b"\n"
        self.head = self._add(1, raw).hex()
        return self.head

    def _entries(self, directory: str) -> dict[bytes, tuple[int, bytes]]:
        found = self._dirs.get(directory)
        if found is None:
            found = self._dirs[directory] = {}
        return found

    def _tree(self, entries: dict[bytes, tuple[int, bytes]]) -> bytes:
        def key(name: bytes) -> bytes:
            return name + b"/" if entries[name][0] == _DIR_MODE else name

        raw = b"".join(
            b"%o %s\0%s" % (entries[name][0], name, entries[name][1])
            for name in sorted(entries, key=key)
        )
        return self._add(2, raw)

    def finish(self) -> str:
        """Write the pack into the repository and point the branch at the last commit."""
        assert self.head is not None
        pack = b"PACK" + struct.pack(">II", 2, self._count) + b"".join(self._body)
        pack += hashlib.sha1(pack).digest()
        git(self.repo, "index-pack", "--stdin", data=pack)
        git(self.repo, "update-ref", self.ref, self.head)
        self.objects = self._count
        self._body.clear()
        return self.head


def repack(repo: Path) -> None:
    """Repack everything with git's default delta search, as `git gc` would."""
    git(repo, "repack", "-adfq")


class PlumbingBranch:
    """A branch written by raw git plumbing, one subprocess a step, as a script would.

    A commit runs `git hash-object -w` for each file, `git mktree` for each changed tree
    from the deepest up, `git commit-tree`, and `git update-ref <ref> <new> <old>`. The
    entries of the trees it touches are kept in memory between commits (as gitgw keeps
    its tree cache), so no `git ls-tree` is needed on the timed path.
    """

    def __init__(self, repo: Path, branch: str, start: str) -> None:
        self.repo = repo
        self.ref = f"refs/heads/{branch}"
        self.head = start
        git(repo, "update-ref", self.ref, start)
        self._entries: dict[str, dict[str, str]] = {}

    def prepare(self, paths: Iterable[str]) -> None:
        """Load the entries of every directory along `paths` (not timed)."""
        for path in paths:
            parts = path.split("/")[:-1]
            for depth in range(len(parts) + 1):
                self._load("/".join(parts[:depth]))

    def _load(self, directory: str) -> dict[str, str]:
        found = self._entries.get(directory)
        if found is None:
            found = {}
            try:
                listing = git(self.repo, "ls-tree", f"{self.head}:{directory}")
            except RuntimeError:
                listing = b""  # a directory that does not exist yet
            for line in listing.decode().splitlines():
                meta, name = line.split("\t", 1)
                found[name] = meta
            self._entries[directory] = found
        return found

    def commit(self, files: Mapping[str, bytes], message: str) -> str:
        """Commit `files` on top of the branch and move the ref (compare-and-swap)."""
        touched: set[str] = set()
        for path, data in files.items():
            blob = git(self.repo, "hash-object", "-w", "--stdin", data=data).strip().decode()
            directory, _, name = path.rpartition("/")
            self._load(directory)[name] = f"100644 blob {blob}"
            while True:
                touched.add(directory)
                if not directory:
                    break
                directory = directory.rpartition("/")[0]
        tree = ""
        for directory in sorted(touched, key=lambda d: (-d.count("/") if d else 1, d)):
            listing = "".join(
                f"{meta}\t{name}\n" for name, meta in self._load(directory).items()
            ).encode()
            tree = git(self.repo, "mktree", data=listing).strip().decode()
            if directory:
                parent, _, name = directory.rpartition("/")
                self._load(parent)[name] = f"040000 tree {tree}"
        new = git(self.repo, "commit-tree", tree, "-p", self.head, "-m", message)
        new_head = new.strip().decode()
        git(self.repo, "update-ref", self.ref, new_head, self.head)
        self.head = new_head
        return new_head


# -- output ------------------------------------------------------------------------------


def fmt_ms(seconds: float) -> str:
    """Seconds as milliseconds, for the table."""
    return f"{seconds * 1000:.2f} ms"


def fmt_rate(rate: float, unit: str) -> str:
    """A rate, for the table."""
    return f"{rate:,.0f} {unit}/s"


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A plain text table."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def probe_disk(directory: Path, count: int = 40) -> tuple[float, float]:
    """Median seconds to create a small file (write, then rename into place, as a loose
    object is written) and to fsync one, in a fresh directory under `directory`."""
    probe = directory / "disk-probe"
    probe.mkdir()
    creates, syncs = [], []
    for i in range(count):
        began = time.perf_counter()
        fd = os.open(probe / f"tmp{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        os.write(fd, b"x" * 400)
        os.close(fd)
        os.replace(probe / f"tmp{i}", probe / f"obj{i}")
        creates.append(time.perf_counter() - began)
    fd = os.open(probe / "synced", os.O_WRONLY | os.O_CREAT)
    for _ in range(count // 2):
        os.write(fd, b"x" * 41)
        began = time.perf_counter()
        os.fsync(fd)
        syncs.append(time.perf_counter() - began)
    os.close(fd)
    for entry in probe.iterdir():
        entry.unlink()
    probe.rmdir()
    return median(creates), median(syncs)


@dataclass
class Table:
    """A benchmark's summary: one row per figure, printed as it is measured."""

    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    failed: int = 0

    def add(self, figure: str, value: str, target: str = "-", ok: bool | None = None) -> None:
        verdict = "-" if ok is None else "PASS" if ok else "FAIL"
        self.failed += ok is False
        self.rows.append((figure, value, target, verdict))
        print(f"  {figure}: {value}  (target {target}: {verdict})", flush=True)


def run_suite(
    name: str,
    steps: Sequence[Callable[[Path, S, Table], None]],
    quick: S,
    full: S,
    argv: list[str] | None = None,
) -> int:
    """Parse --quick/--dir/--keep, run `steps` in a fresh isolated directory, print the
    summary table; exit code 1 when a target is missed."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.bench_{name}")
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    parser.add_argument("--dir", type=Path, help="where to build (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the built repositories")
    args = parser.parse_args(argv)
    sizes = quick if args.quick else full
    root = Path(args.dir or tempfile.mkdtemp(prefix=f"gitgw-bench-{name}-"))
    root.mkdir(parents=True, exist_ok=True)
    isolate_environment(root / "home")
    table = Table()
    started = time.perf_counter()
    try:
        for step in steps:
            step(root, sizes, table)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(
        f"\n{name} ({'quick' if args.quick else 'full'}, "
        f"{time.perf_counter() - started:.0f} s; python {sys.version.split()[0]})\n"
    )
    widths = [max(len(row[i]) for row in table.rows) for i in range(4)]
    for row in [("figure", "value", "target", "verdict"), *table.rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 1 if table.failed else 0


@contextlib.contextmanager
def git_daemon(root: Path) -> Iterator[str]:
    """`git daemon` on a free loopback port serving `root`, with pushes enabled."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", f"--base-path={root}", "--export-all",
         "--enable=receive-pack", "--listen=127.0.0.1", f"--port={port}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("git daemon did not start") from None
                time.sleep(0.05)
        yield f"git://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
