"""Real servers for the proxy's tests: fake OpenAI-compatible upstreams (aiohttp apps on
127.0.0.1 that record every request they receive), a background event loop to run them
and the proxy in, and a state repository whose gitgw.yaml points at them."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import openai
import pytest
from aiohttp import web

from gitgw.concepts.consent import grant
from gitgw.concepts.store import Store
from gitgw.proxy import ProxySettings
from gitgw.proxy.serve import Serving, start
from gitgw.records import Receipt
from gitgw.services.gateway import Gateway
from gitgw.state import StateRepo

T = TypeVar("T")


class BackgroundLoop:
    """An event loop on a thread of its own, so synchronous tests (and the synchronous
    `openai` client) can talk to servers running in it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def completion(model: str, content: str, **extra: Any) -> dict[str, Any]:
    """A chat completion as an OpenAI-compatible server answers it."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "stop"}
    choice.update(extra.pop("choice", {}))
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [choice],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        **extra,
    }


@dataclass
class FakeUpstream:
    """An OpenAI-compatible upstream that records what it receives.

    `mode`: ok | slow (answers after 0.3 s) | large (an answer of 200 KB) | status:NNN |
    garbage | hang | drop (a stream that stops midway) | empty-stream (a stream that
    closes before its first byte) | slow-stream (a stream of 40 words, 50 ms apart;
    `closed_early` says whether its client went away meanwhile).
    """

    name: str
    mode: str = "ok"
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0
    closed_early: bool = False

    scheme: str = "http"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/v1"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        app.router.add_get("/v1/models", self.models)
        return app

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append(body)
        self.headers.append(dict(request.headers))
        if self.mode.startswith("status:"):
            status = int(self.mode.split(":")[1])
            error = {"error": {"message": f"{self.name} says {status}", "type": "x"}}
            return web.json_response(error, status=status)
        if self.mode == "garbage":
            return web.Response(body=b"<html>not json</html>", content_type="text/html")
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "slow":
            await asyncio.sleep(0.3)
        if body.get("stream"):
            return await self.stream(request, body)
        if self.mode == "large":
            return web.json_response(completion(body["model"], "word " * 40_000))
        return web.json_response(self.answer(body))

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        model = body["model"]
        if body.get("tools"):
            name = body["tools"][0]["function"]["name"]
            call = {"id": "call_1", "type": "function",
                    "function": {"name": name, "arguments": '{"city": "Paris"}'}}  # fmt: skip
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            return completion(model, "", choice={"message": message, "finish_reason": "tool_calls"})
        if body.get("logprobs"):
            logprobs = {"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105],
                                     "top_logprobs": []}]}  # fmt: skip
            return completion(model, "Hi", choice={"logprobs": logprobs})
        if (body.get("response_format") or {}).get("type") == "json_object":
            return completion(model, '{"answer": 42}')
        return completion(model, f"hello from {self.name}")

    async def stream(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if self.mode == "empty-stream":
            return response
        model = body["model"]

        def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
            chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
                     "model": model, "choices": [{"index": 0, "delta": delta,
                                                  "finish_reason": finish}]}  # fmt: skip
            return f"data: {json.dumps(chunk)}\n\n".encode()

        await response.write(event({"role": "assistant", "content": ""}))
        if self.mode == "slow-stream":
            try:
                for _ in range(40):
                    await asyncio.sleep(0.05)
                    await response.write(event({"content": "word "}))
            except ConnectionResetError:
                self.closed_early = True
                return response
        for word in ("hello ", "from ", self.name):
            await response.write(event({"content": word}))
            if self.mode == "drop":
                request.transport.close()  # type: ignore[union-attr]
                return response
        await response.write(event({}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            counts = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
            usage = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
                     "model": model, "choices": [], "usage": counts}  # fmt: skip
            await response.write(f"data: {json.dumps(usage)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def start(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port, ssl_context=tls).start()
        self.port = int(self.runner.addresses[0][1])
        self.scheme = "https" if tls is not None else "http"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


CONFIG = """\
# gitgw.yaml for the proxy tests: a local and a hosted fake upstream.
schema_version: 1
mode: online
providers:
  local:
    base_url: {local}
    location: local
    max_trust: restricted
  hosted:
    base_url: {hosted}
    api_key_env: HOSTED_KEY
    location: hosted
    max_trust: internal
models:
  chat:
    max_trust: internal
    candidates:
      - provider: local
        model: llama-local
      - provider: hosted
        model: gpt-hosted
  hosted-first:
    candidates:
      - provider: hosted
        model: gpt-hosted
      - provider: local
        model: llama-local
  local:
    candidates:
      - provider: local
        model: llama-local
  hosted:
    candidates:
      - provider: hosted
        model: gpt-hosted
trust:
  default_level: internal
  rules:
    - name: customer-ids
      level: confidential
      pattern: '\\bCUST-[0-9]{{6}}\\b'
{clients}proxy:
  max_body_bytes: 20000
  capture_content: {capture}
"""

TEST_SETTINGS = ProxySettings(connect_timeout_s=1.0, read_timeout_s=1.0, refresh_interval_s=0.1)


def write_config(
    repo_path: Path, local: str, hosted: str, *, clients: str = "", capture: bool = False
) -> str:
    """Put the test gitgw.yaml on the state branch; the commit id."""
    text = CONFIG.format(
        local=local, hosted=hosted, clients=clients, capture="true" if capture else "false"
    )
    with StateRepo.discover(repo_path) as repo:
        return Store(repo).put("gitgw.yaml", text.encode(), "test config")


def grant_hosted(repo_path: Path, level: str = "internal") -> None:
    """Consent for the hosted fake upstream up to `level`."""
    with StateRepo.discover(repo_path) as repo:
        grant(repo, "provider:hosted", level, actor="test")


@dataclass
class Proxy:
    """A proxy served on a real port, and what it serves from."""

    gateway: Gateway
    serving: Serving

    @property
    def url(self) -> str:
        return self.serving.url


def start_proxy(loop: BackgroundLoop, repo_path: Path, host: str = "127.0.0.1") -> Proxy:
    gateway = Gateway(StateRepo.discover(repo_path))
    gateway.health.cooldown_s = 0.5
    serving = loop.run(start(gateway, host, 0, TEST_SETTINGS))
    return Proxy(gateway, serving)


def stop_proxy(loop: BackgroundLoop, proxy: Proxy) -> None:
    loop.run(proxy.serving.stop())
    proxy.gateway.close()


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    """Poll `condition()` until it is true (the proxy refreshes every 0.1 s in tests)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@contextmanager
def running_loop() -> Iterator[BackgroundLoop]:
    background = BackgroundLoop()
    try:
        yield background
    finally:
        background.close()


@contextmanager
def running_upstreams(loop: BackgroundLoop) -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    """A local and a hosted fake upstream."""
    local, hosted = FakeUpstream("local"), FakeUpstream("hosted")
    loop.run(local.start())
    loop.run(hosted.start())
    try:
        yield local, hosted
    finally:
        loop.run(local.stop())
        loop.run(hosted.stop())


@contextmanager
def running_proxy(loop: BackgroundLoop, repo_path: Path) -> Iterator[Proxy]:
    proxy = start_proxy(loop, repo_path)
    try:
        yield proxy
    finally:
        stop_proxy(loop, proxy)


def receipts_on_branch(repo_path: Path) -> dict[str, Receipt]:
    """Every receipt on the state branch, by id."""
    found: dict[str, Receipt] = {}
    with StateRepo.discover(repo_path) as repo:
        for _path, parsed in Store(repo).iter_kind("receipt"):
            for record in parsed.records:
                assert isinstance(record, Receipt)
                found[record.id] = record
    return found


def receipt_files(repo_path: Path) -> bytes:
    """The bytes of every receipt batch file on the state branch."""
    with StateRepo.discover(repo_path) as repo:
        return b"".join(repo.blob(blob) for _path, blob in repo.walk("receipts"))


def wait_receipt(proxy: Proxy, repo_path: Path, receipt_id: str) -> Receipt:
    """The receipt `receipt_id`, once the writer has put it on the branch."""
    deadline = time.monotonic() + 10
    while True:
        proxy.gateway.flush(10)
        found = receipts_on_branch(repo_path).get(receipt_id)
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"receipt {receipt_id} never reached the branch")
        time.sleep(0.05)


# -- fixtures shared by the proxy tests (registered as a plugin in tests/conftest.py) -----

KEY = "sk-hosted-key-value-never-logged-0123456789"
HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def loop() -> Iterator[BackgroundLoop]:
    with running_loop() as background:
        yield background


@pytest.fixture
def upstreams(loop: BackgroundLoop) -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    with running_upstreams(loop) as pair:
        yield pair


@pytest.fixture
def local(upstreams: tuple[FakeUpstream, FakeUpstream]) -> FakeUpstream:
    return upstreams[0]


@pytest.fixture
def hosted(upstreams: tuple[FakeUpstream, FakeUpstream]) -> FakeUpstream:
    return upstreams[1]


@pytest.fixture
def proxy(
    state_repo: Path,
    loop: BackgroundLoop,
    local: FakeUpstream,
    hosted: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Proxy]:
    monkeypatch.setenv("HOSTED_KEY", KEY)
    write_config(state_repo, local.base_url, hosted.base_url)
    grant_hosted(state_repo)
    with running_proxy(loop, state_repo) as served:
        yield served


@pytest.fixture
def client(proxy: Proxy) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=proxy.url, api_key="unused", max_retries=0, timeout=10) as sdk:
        yield sdk
