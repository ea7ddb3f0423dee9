"""How much the proxy adds: latency, throughput, memory, start-up, classification.

    python -m benchmarks.bench_proxy [--quick] [--no-litellm] [--duration S] [--dir DIR]

A fake upstream (an aiohttp app answering one fixed chat completion, in a process of its
own) listens on 127.0.0.1. The same requests then go, in the same run, to it directly,
through `gitgw proxy` (its own process, serving a state branch: every request is
classified, routed and leaves a receipt on the branch) and through the LiteLLM proxy
(installed by this script in its own virtual environment, benchmarks/.venv-litellm;
skipped with a message when it cannot be installed, or with --no-litellm).

For scale, a fourth server is measured alongside: a bare relay, an aiohttp server that
passes each request to the upstream through gitgw's upstream client and does nothing
else. It is the floor under gitgw's design on the machine at hand, and the report says
how much of gitgw's added latency and lost throughput is gitgw's own work on top of it.

Load comes from `wrk` (latency at concurrency 1, requests per second at concurrency 16)
and `hey` (a fixed number of requests, for the memory soak): Debian packages, installed
with `apt-get update && apt-get install -y wrk hey`. Only 127.0.0.1 is ever used.

Targets (the exit code is 1 when one is missed):

- latency gitgw adds, p50 at concurrency 1: at most 0.5 ms, and at most 1/10 of LiteLLM's;
- requests a second at concurrency 16: at least 10 times LiteLLM's, at least 25% of direct;
- resident memory after 100,000 requests: at most 80 MB, and not growing;
- ready to serve (GET /health/ready answers 200) at most 1 s after the process starts
  (the median of several starts, with gitgw's bytecode compiled as an installed package
  has it: the script compiles it first, since PYTHONDONTWRITEBYTECODE would otherwise
  make every start compile gitgw's modules again);
- classifying a 4 KB conversation: at most 100 µs.

Timings on a shared machine are rough: rounds are interleaved and medians reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._support import isolate_environment, print_table

ROOT = Path(__file__).resolve().parent.parent
LITELLM_VENV = ROOT / "benchmarks" / ".venv-litellm"
HOST = "127.0.0.1"
MODEL = "bench"
REQUEST = {
    "model": MODEL,
    "messages": [
        {"role": "system", "content": "You are a concise assistant for a software team."},
        {"role": "user", "content": "Summarize the release notes for version 2.4 in one line."},
    ],
    "max_tokens": 64,
}
ANSWER = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "bench-upstream",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Version 2.4 speeds up sync."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 42, "completion_tokens": 9, "total_tokens": 51},
}
INSTALL = "apt-get update && apt-get install -y wrk hey"
MASTER_KEY = "sk-bench-master-key-0123456789"  # LiteLLM refuses to start without one; the
# others ignore the header (gitgw checks tokens only when gitgw.yaml has clients)


# -- the fake upstream (run as `python -m benchmarks.bench_proxy --upstream PORT`) ---------


def serve_upstream(port: int) -> None:
    """A fast fake upstream: one fixed chat completion, as fast as aiohttp answers."""
    from aiohttp import web

    body = json.dumps(ANSWER).encode()

    async def completions(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/json")

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "bench-upstream"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_get("/v1/models", models)
    web.run_app(app, host=HOST, port=port, access_log=None, print=None)


def serve_relay(port: int, upstream_port: int) -> None:
    """A bare relay: each request read and passed to the upstream through gitgw's
    upstream client (`HttpPool`), the answer returned; nothing classified, routed or
    receipted. What an aiohttp proxy costs on this machine before any work of its own."""
    from aiohttp import web

    from gitgw.proxy.pool import HttpPool

    headers = {"Content-Type": "application/json", "User-Agent": "gitgw"}
    pools: list[HttpPool] = []

    async def completions(request: web.Request) -> web.Response:
        body = await request.read()
        answer = await pools[0].post(HOST, upstream_port, "/v1/chat/completions", body, headers)
        try:
            data = await answer.read()
        finally:
            answer.release()
        return web.Response(body=data, status=answer.status, content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    async def pool(app: web.Application) -> AsyncIterator[None]:
        pools.append(HttpPool(5.0, 120.0))
        yield
        await pools[0].close()

    app = web.Application()
    app.cleanup_ctx.append(pool)
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_get("/health", health)
    web.run_app(app, host=HOST, port=port, access_log=None, print=None)


# -- processes and probes -----------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> float:
    """Seconds from now until `url` answers 200 (the process must stay alive)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"the process serving {url} exited with {process.returncode}")
        try:
            if get(url, 0.5)[0] == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{url} was not ready within {timeout:.0f}s")


@dataclass
class Server:
    """A process serving HTTP, and when it became ready."""

    name: str
    base: str  # .../v1
    process: subprocess.Popen[bytes]
    ready_s: float

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kb = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
        return kb / 1024


@contextmanager
def spawn(
    name: str, argv: list[str], base: str, ready_path: str, log: Path, timeout: float = 60
) -> Iterator[Server]:
    env = dict(os.environ)
    with log.open("wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            try:
                wait_until_ready(base.removesuffix("/v1") + ready_path, process, timeout)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}; its log is {log}") from None
            yield Server(name, base, process, time.perf_counter() - started)
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- load ---------------------------------------------------------------------------------


@dataclass
class Load:
    """What one wrk run measured."""

    p50_ms: float
    p99_ms: float
    rps: float


def _ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if found is None:
        raise RuntimeError(f"cannot read wrk's latency {text!r}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
    return float(found.group(1)) * scale[found.group(2)]


def wrk(url: str, script: Path, connections: int, seconds: float) -> Load:
    threads = min(connections, 2)
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    out = subprocess.run(
        [*argv, "-s", str(script), url], capture_output=True, text=True, check=True
    ).stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    if bad or errors:
        raise RuntimeError(f"{url} answered errors under load:\n{out}")
    try:
        p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
        p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    except (AttributeError, RuntimeError) as exc:
        raise RuntimeError(f"cannot read wrk's output for {url} ({exc}):\n{out}") from None
    return Load(p50, p99, rps)


def hey(url: str, body: Path, count: int, connections: int = 16) -> float:
    argv = ["hey", "-n", str(count), "-c", str(connections), "-m", "POST"]
    argv += ["-T", "application/json", "-H", f"Authorization: Bearer {MASTER_KEY}"]
    argv += ["-D", str(body), url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    codes = re.findall(r"\[(\d+)\]\s+(\d+) responses", out)
    if any(code != "200" for code, _n in codes):
        raise RuntimeError(f"{url} answered errors:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


# -- the three targets --------------------------------------------------------------------


def gitgw_state(root: Path, upstream: str, port: int) -> Path:
    from gitgw.concepts.store import Store
    from gitgw.services.init import init_state
    from gitgw.state import StateRepo

    repo = root / "state"
    init_state(repo, "gitgw", example=False)
    config = f"""\
schema_version: 1
mode: online
providers:
  fake:
    base_url: {upstream}
    location: local
    max_trust: restricted
models:
  {MODEL}:
    candidates:
      - provider: fake
        model: bench-upstream
proxy:
  port: {port}
"""
    with StateRepo.discover(repo) as state:
        Store(state).put("gitgw.yaml", config.encode(), "bench config")
    return repo


def litellm_ready(quiet: bool) -> Path | None:
    """The LiteLLM executable, installing it first if needed; None if it cannot be."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    print(f"installing LiteLLM into {LITELLM_VENV} (once) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        pip = [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"]
        subprocess.run(pip, check=True, capture_output=quiet)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"skipping LiteLLM: it could not be installed ({exc})")
        return None
    return exe if exe.exists() else None


def litellm_config(root: Path, upstream: str) -> Path:
    path = root / "litellm.yaml"
    path.write_text(
        f"""\
model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/bench-upstream
      api_base: {upstream}
      api_key: not-a-real-key
litellm_settings:
  telemetry: false
general_settings:
  master_key: {MASTER_KEY}
"""
    )
    return path


# -- classification -----------------------------------------------------------------------


def conversation_4kb() -> list[dict[str, object]]:
    """A realistic 4 KB coding conversation: system, user, assistant with a tool call,
    a tool result with code, and a follow-up; no sensitive data."""
    code = (
        "def merge(base, ours, theirs):\n"
        "    # three-way merge of two trees against their common base\n"
        "    result = dict(base)\n"
        "    for path in set(ours) | set(theirs):\n"
        "        if ours.get(path) == theirs.get(path):\n"
        "            result[path] = ours.get(path)\n"
    )
    messages: list[dict[str, object]] = [
        {"role": "system", "content": "You are a careful reviewer of Python code. " * 4},
        {"role": "user", "content": "Review this function and suggest improvements:\n" + code},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "read_file", "arguments": '{"path": "merge.py"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": code * 6},
        {"role": "user", "content": "Also explain the complexity in plain words, please."},
    ]
    size = len(json.dumps(messages))
    messages[-1]["content"] = str(messages[-1]["content"]) + " Thanks!" * ((4096 - size) // 8)
    return messages


def _split(texts: Any) -> tuple[list[str], None, list[str]]:
    return texts.main, None, texts.minor  # classify(main, declared, minor), as the proxy


def bench_classification(rounds: int) -> tuple[float, int]:
    """Median µs to classify a request carrying the 4 KB conversation, as the proxy
    does (the whole body but `model`: the messages and the usual parameters), and the
    conversation's size in bytes."""
    from gitgw.concepts.trust import Classifier, request_texts
    from gitgw.records.config import TrustConfig

    messages = conversation_4kb()
    body = {"messages": messages, "max_tokens": 4096, "temperature": 0.2, "stream": False}
    classifier = Classifier(TrustConfig())
    per_call = []
    for _ in range(rounds):
        number = 2000
        seconds = timeit.timeit(
            lambda: classifier.classify(*_split(request_texts((body,)))), number=number
        )
        per_call.append(seconds / number * 1e6)
    return statistics.median(per_call), len(json.dumps(messages))


# -- the run ------------------------------------------------------------------------------


@dataclass
class Figures:
    """Everything measured, per target name."""

    c1: dict[str, list[Load]] = field(default_factory=dict)
    c16: dict[str, list[Load]] = field(default_factory=dict)
    ready: dict[str, float] = field(default_factory=dict)
    starts: list[float] = field(default_factory=list)  # gitgw's fresh starts, seconds
    rss: list[tuple[int, float]] = field(default_factory=list)  # (requests served, MB)
    overhead_header_ms: float | None = None
    receipts_written: float | None = None
    classify_us: float = 0.0
    classify_bytes: int = 0


def _median(loads: list[Load], attr: str) -> float:
    return statistics.median(getattr(load, attr) for load in loads)


def _metric(base: str, name: str) -> float | None:
    text = get(base.removesuffix("/v1") + "/metrics")[1].decode()
    found = re.search(rf"^{name} ([\d.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def _sample_overhead(base: str, count: int = 200) -> float:
    data = json.dumps(REQUEST).encode()
    values = []
    for _ in range(count):
        request = urllib.request.Request(
            base + "/chat/completions", data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request) as answer:
            values.append(float(answer.headers["x-gitgw-overhead-ms"]))
    return statistics.median(values)


def run(args: argparse.Namespace, root: Path) -> Figures:
    figures = Figures()
    script = root / "post.lua"
    body = root / "body.json"
    body.write_text(json.dumps(REQUEST))
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = [[{json.dumps(REQUEST)}]]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {MASTER_KEY}"\n'
    )
    up_port, gw_port, ll_port, relay_port = free_port(), free_port(), free_port(), free_port()
    upstream = f"http://{HOST}:{up_port}/v1"
    repo = gitgw_state(root, upstream, gw_port)
    python = sys.executable
    litellm = None if args.no_litellm else litellm_ready(args.quick)
    seconds = args.duration
    rounds = 1 if args.quick else 3
    up_argv = [python, "-m", "benchmarks.bench_proxy", "--upstream", str(up_port)]
    gw_argv = [python, "-m", "gitgw", "--repo", str(repo), "proxy", "--port", str(gw_port)]
    relay_argv = [python, "-m", "benchmarks.bench_proxy", "--relay", str(relay_port)]
    relay_argv += ["--upstream", str(up_port)]
    relay_base = f"http://{HOST}:{relay_port}/v1"
    figures.starts = _starts(gw_argv, root, 3 if args.quick else 7)
    with (
        spawn("upstream", up_argv, upstream, "/v1/models", root / "upstream.log") as direct,
        spawn("relay", relay_argv, relay_base, "/health", root / "relay.log") as relay,
    ):
        servers = [direct, relay]
        with spawn("gitgw", gw_argv, f"http://{HOST}:{gw_port}/v1", "/health/ready",
                   root / "gitgw.log") as gitgw:  # fmt: skip
            figures.ready["gitgw"] = gitgw.ready_s
            servers.append(gitgw)
            ll_ctx = None
            if litellm is not None:
                env_argv = [str(litellm), "--config", str(litellm_config(root, upstream))]
                env_argv += ["--host", HOST, "--port", str(ll_port), "--num_workers", "1"]
                ll_ctx = spawn("litellm", env_argv, f"http://{HOST}:{ll_port}/v1",
                               "/health/readiness", root / "litellm.log", timeout=180)  # fmt: skip
            with ll_ctx if ll_ctx is not None else _nothing() as ll:
                if ll is not None:
                    figures.ready["litellm"] = ll.ready_s
                    servers.append(ll)
                _load(servers, script, seconds, rounds, figures)
            figures.overhead_header_ms = _sample_overhead(gitgw.base)
            _soak(gitgw, body, args.soak, figures)
            time.sleep(1.0)
            figures.receipts_written = _metric(gitgw.base, "gitgw_receipts_written_total")
    figures.classify_us, figures.classify_bytes = bench_classification(5)
    return figures


def _starts(gw_argv: list[str], root: Path, count: int) -> list[float]:
    """Seconds from process start to ready, for `count` fresh starts of gitgw's proxy
    (its bytecode compiled first, as an installed package has it)."""
    package = ROOT / "gitgw"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    port = free_port()
    argv = [*gw_argv[:-1], str(port)]  # the same command on a port of its own
    base = f"http://{HOST}:{port}/v1"
    seconds = []
    for n in range(count):
        with spawn("gitgw", argv, base, "/health/ready", root / f"start-{n}.log") as started:
            seconds.append(started.ready_s)
    print("gitgw starts, ready after: " + ", ".join(f"{s:.2f}" for s in seconds) + " s")
    return seconds


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def _load(servers: list[Server], script: Path, seconds: float, rounds: int, fig: Figures) -> None:
    for server in servers:  # warm up: connections, caches, the JIT-less interpreter's paths
        wrk(server.base + "/chat/completions", script, 4, 3)
    for round_number in range(1, rounds + 1):
        for server in servers:
            url = server.base + "/chat/completions"
            one = wrk(url, script, 1, seconds)
            many = wrk(url, script, 16, seconds)
            fig.c1.setdefault(server.name, []).append(one)
            fig.c16.setdefault(server.name, []).append(many)
            print(
                f"round {round_number}  {server.name:8}  c=1 p50 {one.p50_ms:.3f} ms  "
                f"p99 {one.p99_ms:.3f} ms  |  c=16 {many.rps:,.0f} req/s",
                flush=True,
            )


def _soak(gitgw: Server, body: Path, total: int, figures: Figures) -> None:
    url = gitgw.base + "/chat/completions"
    served = 0
    figures.rss.append((0, gitgw.rss_mb()))
    steps = 5
    for _ in range(steps):
        hey(url, body, total // steps)
        served += total // steps
        figures.rss.append((served, gitgw.rss_mb()))
        print(f"soak  {served:>7,} requests  rss {figures.rss[-1][1]:.1f} MB", flush=True)


def report(fig: Figures) -> int:
    rows: list[tuple[str, str, str, str]] = []
    missed = 0

    def check(name: str, value: str, target: str, ok: bool | None) -> None:
        nonlocal missed
        verdict = "-" if ok is None else ("PASS" if ok else "FAIL")
        missed += ok is False
        rows.append((name, value, target, verdict))

    direct_p50 = _median(fig.c1["upstream"], "p50_ms")
    added = {n: _median(v, "p50_ms") - direct_p50 for n, v in fig.c1.items() if n != "upstream"}
    added99 = {
        n: _median(v, "p99_ms") - _median(fig.c1["upstream"], "p99_ms")
        for n, v in fig.c1.items()
        if n != "upstream"
    }
    rps = {n: _median(v, "rps") for n, v in fig.c16.items()}
    for name in fig.c1:
        p50, p99 = _median(fig.c1[name], "p50_ms"), _median(fig.c1[name], "p99_ms")
        check(f"{name}: c=1 latency p50 / p99", f"{p50:.3f} / {p99:.3f} ms", "", None)
        check(f"{name}: c=16 throughput", f"{rps[name]:,.0f} req/s", "", None)
    check("gitgw adds, p50 (c=1)", f"{added['gitgw']:.3f} ms", "<= 0.5 ms", added["gitgw"] <= 0.5)
    check("gitgw adds, p99 (c=1)", f"{added99['gitgw']:.3f} ms", "", None)
    if "litellm" in added:
        ratio = added["gitgw"] / added["litellm"] if added["litellm"] > 0 else float("inf")
        check("LiteLLM adds, p50 (c=1)", f"{added['litellm']:.3f} ms", "", None)
        check("gitgw / LiteLLM added p50", f"{ratio:.3f}", "<= 0.1", ratio <= 0.1)
        times = rps["gitgw"] / rps["litellm"]
        check("gitgw / LiteLLM throughput", f"{times:.1f}x", ">= 10x", times >= 10)
    share = rps["gitgw"] / rps["upstream"]
    check("gitgw / direct throughput", f"{share:.0%}", ">= 25%", share >= 0.25)
    # The floor: what a bare aiohttp relay through gitgw's upstream client costs here.
    check("bare relay adds, p50 (c=1)", f"{added['relay']:.3f} ms", "", None)
    check("gitgw adds over the bare relay, p50", f"{added['gitgw'] - added['relay']:.3f} ms", "",
          None)  # fmt: skip
    floor = rps["relay"] / rps["upstream"]
    check("bare relay / direct throughput", f"{floor:.0%}", "", None)
    check("gitgw / bare relay throughput", f"{rps['gitgw'] / rps['relay']:.0%}", "", None)
    if fig.overhead_header_ms is not None:
        check("x-gitgw-overhead-ms, median", f"{fig.overhead_header_ms:.3f} ms", "", None)
    served, last = fig.rss[-1]
    middle = fig.rss[len(fig.rss) // 2][1]
    growth = last - middle
    check(f"gitgw rss after {served:,} requests", f"{last:.1f} MB", "<= 80 MB", last <= 80)
    check("gitgw rss growth, second half", f"{growth:+.1f} MB", "<= +2 MB", growth <= 2.0)
    if fig.receipts_written is not None:
        check("receipts written to the branch", f"{fig.receipts_written:,.0f}", "", None)
    if fig.starts:
        ready = statistics.median(fig.starts)
        spread = f"{min(fig.starts):.2f}-{max(fig.starts):.2f}"
        check(f"gitgw: ready after start, median of {len(fig.starts)}",
              f"{ready:.2f} s ({spread})", "<= 1 s", ready <= 1.0)  # fmt: skip
    for name, ready in fig.ready.items():
        check(f"{name}: ready after start (the process measured)", f"{ready:.2f} s", "", None)
    check(
        f"classify a {fig.classify_bytes:,}-byte conversation",
        f"{fig.classify_us:.1f} µs",
        "<= 100 µs",
        fig.classify_us <= 100,
    )
    print()
    print_table(("measure", "value", "target", "verdict"), rows)
    print("\ntimings are rough: a shared 2-core machine; rerun before drawing conclusions")
    return 1 if missed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (about a minute)")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out")
    parser.add_argument("--duration", type=float, help="seconds per wrk run [10, quick 3]")
    parser.add_argument("--soak", type=int, help="requests in the memory soak [100,000]")
    parser.add_argument("--dir", type=Path, help="work under DIR instead of a temporary one")
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--relay", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.relay:
        serve_relay(args.relay, args.upstream)
        return 0
    if args.upstream:
        serve_upstream(args.upstream)
        return 0
    missing = [tool for tool in ("wrk", "hey") if shutil.which(tool) is None]
    if missing:
        print(f"needs {' and '.join(missing)}: {INSTALL}", file=sys.stderr)
        return 2
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.soak = args.soak or (20_000 if args.quick else 100_000)
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, {platform.platform()}")
    base = args.dir or Path(tempfile.mkdtemp(prefix="gitgw-bench-proxy-"))
    base.mkdir(parents=True, exist_ok=True)
    isolate_environment(base / "home")
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # never fetched over the network
    os.environ["LITELLM_LOG"] = "ERROR"
    try:
        figures = run(args, base)
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    return report(figures)


if __name__ == "__main__":
    raise SystemExit(main())
