"""The keep-alive client for plain-HTTP upstreams, against servers that answer in ways a
model server may: interim answers before the real one, an IPv6 loopback address."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gitgw.proxy.pool import BrokenAnswer, HttpPool


class _Server:
    """A server that reads each request, writes `answer` and closes the connection."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def start(self, host: str) -> int:
        self.server = await asyncio.start_server(self.handle, host, 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )  # fmt: skip
        self.requests.append(head + await reader.readexactly(length))
        writer.write(self.answer)
        writer.close()
        await writer.wait_closed()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        await asyncio.sleep(0.05)  # the handlers' transports finish closing


async def _post(host: str, answer: bytes) -> tuple[int, bytes, bytes]:
    server = _Server(answer)
    port = await server.start(host)
    pool = HttpPool(1.0, 2.0)
    try:
        response = await pool.post(host, port, "/v1/chat/completions", b"{}", {"X-A": "b"})
        body = await response.read()
        response.release()
        return response.status, body, server.requests[0]
    finally:
        await pool.close()
        await server.stop()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"


def test_interim_answers_are_skipped_for_the_final_one() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    status, body, _request = asyncio.run(_post("127.0.0.1", interim + OK))
    assert (status, body) == (200, b"{}")


def test_the_pool_works_on_uvloop() -> None:
    """An application may serve gitgw's proxy app on uvloop, whose transports are no
    subclass of asyncio's."""
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        status, body, _request = runner.run(_post("127.0.0.1", OK))
    assert (status, body) == (200, b"{}")


def test_an_answer_that_ends_after_an_interim_one_is_broken_not_retried() -> None:
    async def post_once() -> None:
        server = _Server(b"HTTP/1.1 100 Continue\r\n\r\n")
        port = await server.start("127.0.0.1")
        pool = HttpPool(1.0, 1.0)
        try:
            with pytest.raises(BrokenAnswer, match="closed the connection mid-answer"):
                await pool.post("127.0.0.1", port, "/v1/chat/completions", b"{}", {})
            assert len(server.requests) == 1  # sent once: the upstream had seen it
        finally:
            await pool.close()
            await server.stop()

    asyncio.run(post_once())


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_an_ipv6_upstream_gets_a_bracketed_host_header() -> None:
    status, _body, request = asyncio.run(_post("::1", OK))
    assert status == 200
    host = next(line for line in request.split(b"\r\n") if line.startswith(b"Host:"))
    assert host.startswith(b"Host: [::1]:")


def test_on_sent_runs_once_the_request_has_reached_the_upstream() -> None:
    # The proxy builds earlier receipts in `on_sent`: it must run after the request is
    # written, while the upstream works, never before (it would delay the request).
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    body = b'{"model": "m", "messages": []}'
    accepted: list[socket.socket] = []
    seen: list[bytes] = []

    def on_sent() -> None:
        # The loop is held here, so it writes nothing more: the request must be there.
        connection = listener.accept()[0]  # connected before the request was written
        accepted.append(connection)
        connection.settimeout(0.5)
        data = b""
        while not data.endswith(body):
            data += connection.recv(65536)
        seen.append(data)
        connection.sendall(OK)

    async def main() -> tuple[int, bytes]:
        pool = HttpPool(1.0, 2.0)
        try:
            response = await pool.post("127.0.0.1", port, "/v1/x", body, {}, on_sent)
            answer = await response.read()
            response.release()
            return response.status, answer
        finally:
            await pool.close()

    try:
        assert asyncio.run(main()) == (200, b"{}")
    finally:
        for connection in accepted:
            connection.close()
        listener.close()
    assert len(seen) == 1
    assert seen[0].startswith(b"POST /v1/x HTTP/1.1\r\n")
