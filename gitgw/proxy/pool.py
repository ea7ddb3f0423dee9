"""Keep-alive HTTP/1.1 connections to plain-HTTP upstreams: the proxy's fast path.

Local models (Ollama, LM Studio, llama.cpp, vLLM) are reached over plain HTTP, usually on
loopback, and they carry the traffic that may not leave the machine. For them the cost
of the client matters: aiohttp's `ClientSession` spends about 0.3 ms of CPU on each
call, as much as everything else the proxy does for a request. This pool speaks just
enough HTTP/1.1 for an OpenAI-compatible upstream (one POST, a response framed by
`Content-Length`, chunked transfer encoding or the end of the connection) and keeps
connections open between calls. Upstreams reached over HTTPS (hosted providers) go
through the application's `ClientSession` instead, with its TLS, redirect and proxy
handling.

Each connection is an `asyncio.Protocol` that gathers what arrives in one buffer, and a
call waits on a future only when the buffer does not yet hold what it needs (usually
once: a small answer's head and body arrive together). asyncio's streams cost a future,
a timeout context and a buffer copy per read, a third of the proxy's time per request.

A connection is reused only when its previous response was read to the end and the
upstream did not ask to close it. A call on a reused connection that fails before any
byte of the answer arrives (the upstream closed it while it was idle) is made again on a
new connection: the upstream never saw the first attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import cast

__all__ = ["BrokenAnswer", "HttpPool", "PoolResponse"]

_CHUNK = 65536  # the most one read returns
_HEAD_LIMIT = 65536  # an answer's status line and headers
_PAUSE_AT = 1 << 20  # stop reading from the upstream while this much waits unread


class BrokenAnswer(Exception):
    """The upstream's answer broke off or is not HTTP."""


class _Connection(asyncio.Protocol):
    """One connection to an upstream: what it sent that was not read yet, and its end."""

    def __init__(self, key: tuple[str, int]) -> None:
        self.key = key
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.ended = False  # the upstream closed its side (or the connection was lost)
        self.error: Exception | None = None  # why the connection was lost, if it failed
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        # The read timeout: a deadline per wait, and one timer that only checks it. A
        # timer created and cancelled per wait cost more than the rest of a wait does.
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio's side ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream connection's transport: asyncio's own, or another loop's (uvloop's is
        # no subclass of asyncio.Transport) with the same methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _PAUSE_AT and self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the pool's side --------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Open, idle and with nothing unread (a stray byte would be the next answer's)."""
        return not self.ended and not self.buffer and self.transport is not None

    async def more(self, timeout: float) -> None:
        """Wait until more bytes arrive or the upstream closes; TimeoutError after
        `timeout` seconds without either."""
        if self.ended:
            return
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + timeout
        if self._timer is None:
            self._timer = loop.call_at(self._deadline, self._check_deadline, loop)
        waiter = self._waiter = loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _check_deadline(self, loop: asyncio.AbstractEventLoop) -> None:
        # Set to the deadline of some earlier wait: a wait that began since has a later
        # one, so look again then; a connection not waiting needs no timer at all.
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if loop.time() >= self._deadline:
            waiter.set_exception(TimeoutError())
        else:
            self._timer = loop.call_at(self._deadline, self._check_deadline, loop)

    def take(self, size: int) -> bytes:
        """The first `size` buffered bytes, removed from the buffer."""
        if size >= len(self.buffer):  # the usual case: everything there is
            data = bytes(self.buffer)
            self.buffer.clear()
        else:
            data = bytes(self.buffer[:size])
            del self.buffer[:size]
        if self._paused and len(self.buffer) < _PAUSE_AT // 2 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    def close(self) -> None:
        """Close the connection (an answer not read to its end cannot be reused)."""
        self.ended = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.close()


class PoolResponse:
    """An upstream's answer: status and headers at once, the body as it is read."""

    def __init__(
        self,
        pool: HttpPool,
        connection: _Connection,
        status: int,
        headers: dict[str, str],
        read_timeout: float,
    ) -> None:
        self._pool = pool
        self._connection: _Connection | None = connection
        self.status = status
        self.headers = headers
        self._timeout = read_timeout
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._remaining: int | None = None
        if not self._chunked and length is not None:
            try:
                self._remaining = int(length)
            except ValueError:
                raise BrokenAnswer(f"bad Content-Length {length!r}") from None
        self._keep = headers.get("connection", "").lower() != "close" and (
            self._chunked or self._remaining is not None
        )
        self._done = status in (204, 304) or self._remaining == 0

    @property
    def content_type(self) -> str:
        """The media type, without parameters (`application/json`)."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    async def read(self) -> bytes:
        """The whole body."""
        first = await self.readany()
        if self._done or not first:  # the usual case: all of it was already there
            return first
        parts = [first]
        while part := await self.readany():
            parts.append(part)
        return b"".join(parts)

    async def readany(self) -> bytes:
        """The next piece of the body as it arrives; b"" at its end."""
        connection = self._connection
        if self._done or connection is None:
            return b""
        try:
            if self._chunked:
                return await self._next_chunk(connection)
            while not connection.buffer:
                if connection.ended:
                    if self._remaining is not None:
                        raise BrokenAnswer("the upstream closed the connection mid-answer")
                    self._done = True  # framed by the end of the connection
                    return b""
                await connection.more(self._timeout)
            if self._remaining is None:
                return connection.take(_CHUNK)
            data = connection.take(min(self._remaining, _CHUNK))
            self._remaining -= len(data)
            self._done = self._remaining == 0
            return data
        except BaseException:
            self._keep = False
            raise

    async def _next_chunk(self, connection: _Connection) -> bytes:
        while True:
            line = await self._line(connection)
            try:
                size = int(line.split(b";", 1)[0].strip() or b"x", 16)
            except ValueError:
                reason = f"the upstream's answer broke off (bad chunk size {line[:20]!r})"
                raise BrokenAnswer(reason) from None
            if size == 0:
                while await self._line(connection):
                    pass  # trailers, up to the empty line
                self._done = True
                return b""
            while len(connection.buffer) < size + 2:
                await self._wait(connection)
            data = connection.take(size + 2)
            if data[-2:] != b"\r\n":
                raise BrokenAnswer("a chunk of the answer is not terminated")
            return data[:-2]

    async def _line(self, connection: _Connection) -> bytes:
        while (end := connection.buffer.find(b"\r\n")) < 0:
            if len(connection.buffer) > _HEAD_LIMIT:
                raise BrokenAnswer("the upstream's answer broke off (a line too long)")
            await self._wait(connection)
        return connection.take(end + 2)[:-2]

    async def _wait(self, connection: _Connection) -> None:
        if connection.ended:
            raise BrokenAnswer("the upstream's answer broke off (the connection closed)")
        await connection.more(self._timeout)

    def release(self) -> None:
        """Give the connection back (if the answer was read to its end), else close it."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._done and self._keep:
            self._pool.give_back(connection)
        else:
            connection.close()


class HttpPool:
    """Open connections to plain-HTTP upstreams, reused between calls."""

    def __init__(self, connect_timeout: float, read_timeout: float, max_idle: int = 64) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle = max_idle
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._closed = False

    async def post(
        self,
        host: str,
        port: int,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        on_sent: Callable[[], object] | None = None,
    ) -> PoolResponse:
        """POST `body` to http://host:port/path; the answer once its head has arrived.

        `on_sent` is scheduled on the event loop once the request is written: work that
        can be done while the upstream works on it.
        """
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # IPv6: [::1]
        head = [f"POST {path} HTTP/1.1", f"Host: {authority}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        connection = self._take((host, port))
        if connection is not None:
            try:
                return await self._exchange(connection, request, on_sent)
            except _NoAnswer:
                pass  # closed while idle: the upstream never saw this request; once more
        connection = await self._connect((host, port))
        try:
            return await self._exchange(connection, request, on_sent)
        except _NoAnswer as nothing:
            if nothing.error is not None:
                raise nothing.error from None
            raise BrokenAnswer("the upstream closed the connection without answering") from None

    async def _connect(self, key: tuple[str, int]) -> _Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout):
            _transport, connection = await loop.create_connection(
                lambda: _Connection(key), key[0], key[1]
            )
        return connection

    async def _exchange(
        self, connection: _Connection, request: bytes, on_sent: Callable[[], object] | None
    ) -> PoolResponse:
        assert connection.transport is not None
        connection.transport.write(request)
        if on_sent is not None:
            asyncio.get_running_loop().call_soon(on_sent)
        answered = False  # an interim answer came: the upstream has seen the request
        while True:
            lines = await self._head(connection, answered)
            try:
                _version, code, *_reason = lines[0].split(" ", 2)
                status = int(code)
            except ValueError:
                connection.close()
                raise BrokenAnswer(f"not an HTTP answer: {lines[0][:60]!r}") from None
            if not 100 <= status < 200 or status == 101:
                break
            answered = True  # 100 Continue, 103 Early Hints: the answer follows (RFC 9110)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        try:
            return PoolResponse(self, connection, status, headers, self.read_timeout)
        except BrokenAnswer:
            connection.close()
            raise

    async def _head(self, connection: _Connection, answered: bool) -> list[str]:
        """The lines of the next answer head on `connection`, once it has arrived."""
        try:
            buffer = connection.buffer
            while (end := buffer.find(b"\r\n\r\n")) < 0:
                if connection.ended:
                    if not buffer and not answered:
                        raise _NoAnswer(connection.error)
                    raise BrokenAnswer("the upstream closed the connection mid-answer")
                if len(buffer) > _HEAD_LIMIT:
                    raise BrokenAnswer("the answer's head is over 64 KiB")
                await connection.more(self.read_timeout)
        except BaseException:
            connection.close()
            raise
        return connection.take(end + 4)[:-4].decode("latin-1").split("\r\n")

    def _take(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.usable:
                return connection
            connection.close()
        return None

    def give_back(self, connection: _Connection) -> None:
        """Keep `connection` for the next call to the same upstream."""
        idle = self._idle.setdefault(connection.key, [])
        if self._closed or len(idle) >= self.max_idle or not connection.usable:
            connection.close()
        else:
            idle.append(connection)

    async def close(self) -> None:
        """Close every idle connection (those in use close when released)."""
        self._closed = True
        connections = [c for idle in self._idle.values() for c in idle]
        self._idle.clear()
        for connection in connections:
            connection.close()
        await asyncio.sleep(0)  # let the transports finish closing


class _NoAnswer(Exception):
    """The connection closed before any byte of the answer arrived."""

    def __init__(self, error: Exception | None) -> None:
        super().__init__("no answer")
        self.error = error
