"""The fast lane: plain chat completions answered by gitgw's own protocol, everything
else handed to aiohttp's server with its bytes intact. Real sockets against a real proxy.

Which lane answered shows in the `Server` field: aiohttp's server always sends one, the
fast lane never does.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from aiohttp import web

from gitgw.proxy import ProxySettings
from gitgw.proxy.http11 import HEAD_LIMIT, MORE, OTHER, Head, read_head
from gitgw.proxy.serve import Serving, start
from gitgw.services.gateway import Gateway
from gitgw.state import StateRepo
from tests.fakeupstream import (
    HELLO,
    BackgroundLoop,
    FakeUpstream,
    Proxy,
    receipts_on_branch,
    wait_receipt,
    write_config,
)

TARGET = b"POST /v1/chat/completions HTTP/1.1\r\n"
HOSTED = TARGET + b"Host: x\r\n"


def chat(model: str = "local", *, fields: bytes = b"", **extra: Any) -> bytes:
    """A plain chat completion request's bytes."""
    body = json.dumps({"model": model, "messages": HELLO, **extra}).encode()
    head = b"Host: x\r\nContent-Type: application/json\r\n" + fields
    return TARGET + head + b"Content-Length: %d\r\n\r\n" % len(body) + body


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def fast(self) -> bool:
        """Answered by the fast lane (aiohttp's server names itself in `Server`)."""
        return "server" not in self.headers

    def json(self) -> Any:
        return json.loads(self.body)


def read_response(stream: BinaryIO) -> Response:
    """One HTTP/1.1 response from `stream` (Content-Length or chunked)."""
    status_line = stream.readline()
    assert status_line.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), status_line
    headers: dict[str, str] = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while size := int(stream.readline().strip(), 16):
            body += stream.read(size)
            stream.readline()
        stream.readline()
    else:
        body = stream.read(int(headers.get("content-length", "0")))
    return Response(int(status_line.split()[1]), headers, body)


@pytest.fixture
def conn(proxy: Proxy) -> Iterator[tuple[socket.socket, BinaryIO]]:
    """A raw connection to the proxy, and a buffered reader on it."""
    port = proxy.serving.port
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
        sock.makefile("rb") as reader,
    ):
        yield sock, reader


@contextmanager
def own_proxy(
    loop: BackgroundLoop,
    state_repo: Path,
    upstreams: tuple[FakeUpstream, FakeUpstream],
    settings: ProxySettings | None = None,
) -> Iterator[Serving]:
    """A proxy the test starts itself, and may stop itself (else it is stopped after)."""
    local, hosted = upstreams
    write_config(state_repo, local.base_url, hosted.base_url)
    gateway = Gateway(StateRepo.discover(state_repo))
    serving = loop.run(start(gateway, "127.0.0.1", 0, settings or ProxySettings()))
    try:
        yield serving
    finally:
        if not serving.lanes.stopped:
            loop.run(serving.stop())
        gateway.close()


# -- the head reader --------------------------------------------------------------------


def test_a_plain_head_is_read_with_what_the_gateway_needs() -> None:
    data = TARGET + b"Host: x\r\nAuthorization: Bearer t0k\r\nX-Gitgw-Trust:  confidential \r\n"
    data += b"Content-Length: 12\r\nConnection: keep-alive\r\n\r\n{...}"
    head = read_head(data)
    assert head == Head(data.index(b"{"), 12, "Bearer t0k", "confidential")


@pytest.mark.parametrize("prefix", [b"", b"PO", TARGET[:-2], TARGET + b"Content-Le"])
def test_a_head_still_arriving_waits_for_more(prefix: bytes) -> None:
    assert read_head(prefix) is MORE


@pytest.mark.parametrize(
    "data",
    [
        b"GET /v1/models HTTP/1.1\r\n\r\n",
        b"GET /v1/mo",  # known to be another request before the head is all there
        b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nContent-Length: 2\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.0\r\nContent-Length: 2\r\n\r\n",
        b"post /v1/chat/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n",
        HOSTED + b"\r\n",  # no Content-Length
        TARGET + b"Content-Length: 2\r\n\r\n",  # no Host
        HOSTED + b"Host: y\r\nContent-Length: 2\r\n\r\n",
        HOSTED + b"Accept: a\r\naccept: b\r\nContent-Length: 2\r\n\r\n",
        HOSTED + b"Content-Length: 2\r\nProxy-Connection: close\r\n\r\n",
        HOSTED + b"Content-Length: 2\r\nContent-Encoding: gzip\r\n\r\n",
        HOSTED + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        HOSTED + b"Transfer-Encoding: chunked\r\n\r\n",
        HOSTED + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n",
        HOSTED + b"Content-Length: +2\r\n\r\n",
        HOSTED + b"Content-Length: 2, 2\r\n\r\n",
        HOSTED + b"Content-Length: 0x2\r\n\r\n",
        HOSTED + b"Content-Length : 2\r\n\r\n",  # white space before the colon
        HOSTED + b"Content-Length: 2\r\nX-A: 1\r\n folded\r\n\r\n",  # obs-fold
        HOSTED + b"Content-Length: 2\r\nX-A: 1\nX-B: 2\r\n\r\n",  # a bare LF
        HOSTED + b"Content-Length: 2\r\nX-A: 1\rX-B: 2\r\n\r\n",  # a bare CR
        HOSTED + b"Content-Length: 2\r\nX-A: a\x00b\r\n\r\n",
        HOSTED + b"Content-Length: 2\r\nX-A: caf\xc3\xa9\r\n\r\n",
        HOSTED + b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n",
        HOSTED + b"Content-Length: 2\r\nConnection: close\r\n\r\n",
        HOSTED + b"Content-Length: 2\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        HOSTED + b"Content-Length: 2\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n",
        HOSTED + b"Content-Length: 2\r\nx-gitgw-trust: public\r\nX-Gitgw-Trust: public\r\n\r\n",
        HOSTED + b"Content-Length: 2\r\n" + b"X-Pad: a\r\n" * 200 + b"\r\n",
        HOSTED + b"X-Pad: " + b"a" * HEAD_LIMIT + b"\r\n",  # no end of the head in sight
    ],
)
def test_anything_unusual_is_left_to_aiohttp(data: bytes) -> None:
    assert read_head(data) is OTHER


_HOSTS = [b"Host: x\r\n", b"Host:x\r\n", b"host: \tx \r\n", b"HOST: a b\r\n"]
_LENGTHS = [b"Content-Length: 5\r\n", b"Content-Length:5\r\n", b"content-length:\t7\t\r\n"]
_LENGTHS += [b"Content-Length: 05\r\n", b"Content-Length: 5 \r\n", b"Content-Length: 0\r\n"]
_FIELDS = [
    *[b"Authorization: Bearer a\r\n", b"Authorization:   Bearer  a  \r\n"],
    *[b"Authorization:\r\n", b"X-Gitgw-Trust: internal\r\n", b"x-gitgw-trust:\tpublic\r\n"],
    *[b"Connection: keep-alive\r\n", b"Connection: Keep-Alive\r\n", b"Connection: close\r\n"],
    *[b"Proxy-Connection: close\r\n", b"Transfer-Encoding: chunked\r\n", b"X-Empty:\r\n"],
    *[b"Content-Encoding: identity\r\n", b"Accept: */*\r\n", b"X-Tab: a\tb\r\n"],
    *[b"X!#$%&'*+-.^_`|~: v\r\n", b"X-Obs: \x80\r\n", b"X-Ctl: \x01\r\n", b"X-A : b\r\n"],
    *[b"X-Fold: a\r\n b\r\n", b" X-Lead: a\r\n", b"X-LF: a\nX-B: c\r\n", b"X-CR: a\rb\r\n"],
    *[b"Expect: 100-continue\r\n", b"Upgrade: h2c\r\n", b"Content-Type: text/plain\r\n"],
    *[b"X-Long: " + b"v" * 4000 + b"\r\n", b"Te: trailers\r\n", b"X-Del: a\x7fb\r\n"],
]


def test_every_head_the_fast_lane_reads_aiohttp_reads_the_same(loop: BackgroundLoop) -> None:
    """Random heads from tricky pieces: whatever the fast lane would answer, aiohttp's
    server (which answers everything else) takes with the same length and values."""

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        headers = request.headers
        seen = [len(body), headers.get("Authorization"), headers.get("X-Gitgw-Trust")]
        return web.json_response(seen)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", echo)
    runner = web.AppRunner(app, access_log=None)
    loop.run(runner.setup())
    loop.run(web.TCPSite(runner, "127.0.0.1", 0).start())
    port = runner.addresses[0][1]
    rng = random.Random(11)
    read = 0
    try:
        for _ in range(600):
            lines = [rng.choice(_HOSTS), rng.choice(_LENGTHS)]
            lines += rng.sample(_FIELDS + _HOSTS + _LENGTHS, rng.randint(0, 4))
            rng.shuffle(lines)
            head = TARGET + b"".join(lines) + b"\r\n"
            found = read_head(head)
            if not isinstance(found, Head):
                continue
            read += 1
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(head + b"y" * found.content_length)
                with sock.makefile("rb") as reader:
                    answer = read_response(reader)
            assert answer.status == 200, head
            assert answer.json() == [found.content_length, found.authorization, found.trust]
    finally:
        loop.run(runner.cleanup())
    assert read >= 150  # the pieces do make heads the fast lane reads


# -- on the wire ------------------------------------------------------------------------


def test_plain_requests_are_answered_in_the_fast_lane_with_receipts(
    conn: tuple[socket.socket, BinaryIO], proxy: Proxy, state_repo: Path, local: FakeUpstream
) -> None:
    sock, reader = conn
    ids = []
    for _ in range(3):  # one connection, kept alive
        sock.sendall(chat())
        answer = read_response(reader)
        assert (answer.status, answer.fast) == (200, True)
        assert answer.headers["content-type"] == "application/json"
        assert float(answer.headers["x-gitgw-overhead-ms"]) >= 0
        assert answer.json()["choices"][0]["message"]["content"] == "hello from local"
        assert "date" in answer.headers
        ids.append(answer.headers["x-gitgw-receipt"])
    assert len(set(ids)) == 3
    assert len(local.received) == 3
    receipt = wait_receipt(proxy, state_repo, ids[-1])
    assert receipt.outcome == "ok"
    assert receipt.route is not None
    assert receipt.route.provider == "local"
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    metrics = read_response(reader)
    assert not metrics.fast  # and the connection went over to aiohttp's server
    assert 'gitgw_requests_total{outcome="ok",status="200"} 3.0' in metrics.body.decode()


def test_pipelined_requests_are_answered_in_order_across_the_hand_over(
    conn: tuple[socket.socket, BinaryIO], local: FakeUpstream
) -> None:
    sock, reader = conn
    models = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
    sock.sendall(chat(user="first") + chat(user="second") + models + chat(user="third"))
    answers = [read_response(reader) for _ in range(4)]
    assert [a.status for a in answers] == [200, 200, 200, 200]
    assert [a.fast for a in answers] == [True, True, False, False]
    assert answers[2].json()["object"] == "list"
    assert [body["user"] for body in local.received] == ["first", "second", "third"]


def test_a_head_and_body_arriving_piece_by_piece_are_served(
    conn: tuple[socket.socket, BinaryIO], local: FakeUpstream
) -> None:
    sock, reader = conn
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for byte in chat():
        sock.send(bytes([byte]))
    answer = read_response(reader)
    assert (answer.status, answer.fast) == (200, True)
    assert len(local.received) == 1


def test_a_chunked_body_is_served_by_aiohttp(
    conn: tuple[socket.socket, BinaryIO], local: FakeUpstream
) -> None:
    sock, reader = conn
    body = json.dumps({"model": "local", "messages": HELLO}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    sock.sendall(TARGET + b"Host: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
    answer = read_response(reader)
    assert (answer.status, answer.fast) == (200, False)
    assert answer.headers["x-gitgw-receipt"]
    assert len(local.received) == 1


def test_a_body_framed_two_ways_is_refused_and_goes_nowhere(
    conn: tuple[socket.socket, BinaryIO], local: FakeUpstream, hosted: FakeUpstream
) -> None:
    sock, reader = conn
    body = json.dumps({"model": "local", "messages": HELLO}).encode()
    head = TARGET + b"Host: x\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n"
    sock.sendall(head % len(body) + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    answer = read_response(reader)
    assert answer.status == 400
    assert local.received == []
    assert hosted.received == []


def test_requests_the_gateway_refuses_are_answered_by_aiohttp_with_receipts(
    conn: tuple[socket.socket, BinaryIO], proxy: Proxy, state_repo: Path, hosted: FakeUpstream
) -> None:
    sock, reader = conn
    secret = [{"role": "user", "content": "customer CUST-123456 called"}]
    sock.sendall(chat("hosted", messages=secret))
    refused = read_response(reader)
    assert (refused.status, refused.fast) == (403, False)
    assert "confidential" in refused.json()["error"]["message"]
    sock.sendall(TARGET + b"Host: x\r\nContent-Length: 5\r\n\r\n{nope")
    broken = read_response(reader)
    assert (broken.status, broken.json()["error"]["code"]) == (400, "invalid_json")
    assert hosted.received == []
    for answer in (refused, broken):
        receipt = wait_receipt(proxy, state_repo, answer.headers["x-gitgw-receipt"])
        assert receipt.outcome in ("refused", "client_error")


def test_a_body_over_the_limit_is_refused_before_it_is_sent(
    conn: tuple[socket.socket, BinaryIO], local: FakeUpstream
) -> None:
    sock, reader = conn
    sock.sendall(TARGET + b"Host: x\r\nContent-Length: 900000\r\n\r\n")
    answer = read_response(reader)
    assert (answer.status, answer.json()["error"]["code"]) == (413, "request_too_large")
    assert local.received == []


def test_a_streaming_request_is_streamed_by_aiohttp(
    conn: tuple[socket.socket, BinaryIO], local: FakeUpstream
) -> None:
    sock, reader = conn
    sock.sendall(chat(stream=True))
    answer = read_response(reader)
    assert (answer.status, answer.fast) == (200, False)
    assert answer.headers["content-type"] == "text/event-stream"
    assert answer.body.endswith(b"data: [DONE]\n\n")
    assert len(local.received) == 1  # prepared twice, sent once


def test_a_client_gone_before_its_answer_leaves_an_interrupted_receipt(
    proxy: Proxy, state_repo: Path, local: FakeUpstream
) -> None:
    local.mode = "slow"
    with socket.create_connection(("127.0.0.1", proxy.serving.port), timeout=10) as sock:
        sock.sendall(chat(user="gone"))
        deadline = time.monotonic() + 5
        while not local.received and time.monotonic() < deadline:
            time.sleep(0.01)
    before = set(receipts_on_branch(state_repo))
    deadline = time.monotonic() + 10
    while True:
        proxy.gateway.flush(10)
        new = [r for i, r in receipts_on_branch(state_repo).items() if i not in before]
        if new or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [(r.outcome, r.detail) for r in new] == [
        ("interrupted", "the client disconnected before the answer was sent")
    ]


def test_stopping_lets_a_request_in_progress_finish(
    loop: BackgroundLoop, state_repo: Path, upstreams: tuple[FakeUpstream, FakeUpstream]
) -> None:
    local = upstreams[0]
    local.mode = "slow"
    with (
        own_proxy(loop, state_repo, upstreams) as serving,
        socket.create_connection(("127.0.0.1", serving.port), timeout=10) as sock,
    ):
        idle = socket.create_connection(("127.0.0.1", serving.port), timeout=10)
        sock.sendall(chat())
        while not local.received:
            time.sleep(0.01)
        stopping = asyncio.run_coroutine_threadsafe(serving.stop(), loop.loop)
        with sock.makefile("rb") as reader:
            answer = read_response(reader)
            assert (answer.status, answer.fast) == (200, True)
            assert reader.read() == b""  # then the connection is closed
        assert idle.recv(1) == b""  # and an idle one at once
        idle.close()
        stopping.result(10)
    receipt = receipts_on_branch(state_repo)[answer.headers["x-gitgw-receipt"]]
    assert receipt.outcome == "ok"


def test_an_idle_connection_is_closed_after_the_keepalive_time(
    loop: BackgroundLoop, state_repo: Path, upstreams: tuple[FakeUpstream, FakeUpstream]
) -> None:
    with (
        own_proxy(loop, state_repo, upstreams, ProxySettings(keepalive_s=0.3)) as serving,
        socket.create_connection(("127.0.0.1", serving.port), timeout=10) as sock,
    ):
        sock.sendall(chat())
        with sock.makefile("rb") as reader:
            assert read_response(reader).status == 200
            began = time.monotonic()
            assert reader.read() == b""
        assert 0.2 < time.monotonic() - began < 5
        with socket.create_connection(("127.0.0.1", serving.port), timeout=10) as sock:
            sock.sendall(chat()[:20])  # a request begun and never finished
            assert sock.recv(1) == b""


def test_a_client_that_does_not_read_stops_the_lane_taking_requests(
    proxy: Proxy, local: FakeUpstream
) -> None:
    local.mode = "large"  # 200 KB answers, which a client not reading leaves unsent
    health = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", proxy.serving.port), timeout=20) as sock:
        sock.sendall(chat() * 100 + health)
        time.sleep(1.5)
        # It waits for the client to read, once the kernel's buffers on both sides are
        # full (about 10 MB here); without waiting it would have made all 100 calls.
        assert 0 < len(local.received) < 80
        with sock.makefile("rb") as reader:
            answers = [read_response(reader) for _ in range(101)]
    assert [a.status for a in answers] == [200] * 101
    assert answers[-1].json() == {"status": "live"}  # handed over once writing resumed
    assert len(local.received) == 100


def test_stopping_waits_for_a_request_whose_client_has_gone(
    loop: BackgroundLoop, state_repo: Path, upstreams: tuple[FakeUpstream, FakeUpstream]
) -> None:
    local = upstreams[0]
    local.mode = "slow"
    with (
        own_proxy(loop, state_repo, upstreams) as serving,
        socket.create_connection(("127.0.0.1", serving.port), timeout=10) as sock,
    ):
        sock.sendall(chat())
        while not local.received:
            time.sleep(0.01)
        sock.close()  # the client goes away before its answer comes
        loop.run(serving.stop())
    assert [(r.outcome, r.detail) for r in receipts_on_branch(state_repo).values()] == [
        ("interrupted", "the client disconnected before the answer was sent")
    ]


def test_stopping_lets_a_request_still_arriving_finish(
    loop: BackgroundLoop, state_repo: Path, upstreams: tuple[FakeUpstream, FakeUpstream]
) -> None:
    with (
        own_proxy(loop, state_repo, upstreams) as serving,
        socket.create_connection(("127.0.0.1", serving.port), timeout=10) as sock,
    ):
        request = chat()
        sock.sendall(request[:-10])
        time.sleep(0.1)
        stopping = asyncio.run_coroutine_threadsafe(serving.stop(), loop.loop)
        time.sleep(0.2)
        sock.sendall(request[-10:])
        with sock.makefile("rb") as reader:
            assert read_response(reader).status == 200
            assert reader.read() == b""
        stopping.result(10)


def test_a_body_that_cannot_be_decoded_is_a_clear_error(
    conn: tuple[socket.socket, BinaryIO], local: FakeUpstream
) -> None:
    sock, reader = conn
    body = json.dumps({"model": "local", "messages": HELLO}).encode()
    head = HOSTED + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body)
    sock.sendall(head + body)
    answer = read_response(reader)
    assert answer.status == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid_body"
    assert "cannot be read" in error["message"]
    assert local.received == []


def test_stopping_does_not_wait_for_a_client_that_does_not_read(
    loop: BackgroundLoop, state_repo: Path, upstreams: tuple[FakeUpstream, FakeUpstream]
) -> None:
    local = upstreams[0]
    local.mode = "large"
    with (
        own_proxy(loop, state_repo, upstreams) as serving,
        socket.create_connection(("127.0.0.1", serving.port), timeout=10) as sock,
    ):
        sock.sendall(chat() * 100)
        time.sleep(1.0)
        began = time.monotonic()
        loop.run(serving.stop())
        assert time.monotonic() - began < 5
