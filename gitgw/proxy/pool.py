"""Keep-alive HTTP/1.1 connections to plain-HTTP upstreams: the proxy's fast path.

Local models (Ollama, LM Studio, llama.cpp, vLLM) are reached over plain HTTP, usually on
loopback, and they carry the traffic that may not leave the machine. For them the cost
of the client matters: aiohttp's `ClientSession` spends about 0.3 ms of CPU on each
call, as much as everything else the proxy does for a request. This pool speaks just
enough HTTP/1.1 for an OpenAI-compatible upstream (one POST, a response framed by
`Content-Length`, chunked transfer encoding or the end of the connection) over asyncio
streams, and keeps connections open between calls. Upstreams reached over HTTPS (hosted
providers) go through the application's `ClientSession` instead, with its TLS, redirect
and proxy handling.

A connection is reused only when its previous response was read to the end and the
upstream did not ask to close it. A call on a reused connection that fails before any
byte of the answer arrives (the upstream closed it while it was idle) is made again on a
new connection: the upstream never saw the first attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

__all__ = ["BrokenAnswer", "HttpPool", "PoolResponse"]

_CHUNK = 65536
_HEAD_LIMIT = 65536


class BrokenAnswer(Exception):
    """The upstream's answer broke off or is not HTTP."""


@dataclass
class _Connection:
    key: tuple[str, int]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


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
        parts: list[bytes] = []
        while True:
            part = await self.readany()
            if not part:
                return b"".join(parts)
            parts.append(part)

    async def readany(self) -> bytes:
        """The next piece of the body as it arrives; b"" at its end."""
        if self._done or self._connection is None:
            return b""
        reader = self._connection.reader
        try:
            async with asyncio.timeout(self._timeout):
                if self._chunked:
                    return await self._next_chunk(reader)
                if self._remaining is not None:
                    data = await reader.read(min(self._remaining, _CHUNK))
                    if not data:
                        raise BrokenAnswer("the upstream closed the connection mid-answer")
                    self._remaining -= len(data)
                    self._done = self._remaining == 0
                    return data
                data = await reader.read(_CHUNK)  # framed by the end of the connection
                self._done = not data
                return data
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            self._keep = False
            raise BrokenAnswer(f"the upstream's answer broke off ({exc})") from None
        except BaseException:
            self._keep = False
            raise

    async def _next_chunk(self, reader: asyncio.StreamReader) -> bytes:
        while True:
            line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";", 1)[0].strip() or b"x", 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailers
                self._done = True
                return b""
            data = await reader.readexactly(size + 2)
            if data[-2:] != b"\r\n":
                raise BrokenAnswer("a chunk of the answer is not terminated")
            if size:
                return data[:-2]

    def release(self) -> None:
        """Give the connection back (if the answer was read to its end), else close it."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._done and self._keep:
            self._pool.give_back(connection)
        else:
            connection.writer.close()


class HttpPool:
    """Open connections to plain-HTTP upstreams, reused between calls."""

    def __init__(self, connect_timeout: float, read_timeout: float, max_idle: int = 64) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle = max_idle
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._closed = False

    async def post(
        self, host: str, port: int, path: str, body: bytes, headers: dict[str, str]
    ) -> PoolResponse:
        """POST `body` to http://host:port/path; the answer once its head has arrived."""
        head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        connection = self._take((host, port))
        if connection is not None:
            try:
                return await self._exchange(connection, request)
            except (ConnectionError, asyncio.IncompleteReadError, BrokenAnswer) as exc:
                if not _before_any_byte(exc):
                    raise
                # closed while idle: the upstream never saw this request; try once more
        connection = await self._connect((host, port))
        try:
            return await self._exchange(connection, request)
        except asyncio.IncompleteReadError:
            raise BrokenAnswer("the upstream closed the connection without answering") from None

    async def _connect(self, key: tuple[str, int]) -> _Connection:
        async with asyncio.timeout(self.connect_timeout):
            reader, writer = await asyncio.open_connection(key[0], key[1], limit=_HEAD_LIMIT)
        return _Connection(key, reader, writer)

    async def _exchange(self, connection: _Connection, request: bytes) -> PoolResponse:
        try:
            connection.writer.write(request)
            async with asyncio.timeout(self.read_timeout):
                head = await connection.reader.readuntil(b"\r\n\r\n")
        except BaseException:
            connection.writer.close()
            raise
        lines = head[:-4].decode("latin-1").split("\r\n")
        try:
            _version, code, *_reason = lines[0].split(" ", 2)
            status = int(code)
        except ValueError:
            connection.writer.close()
            raise BrokenAnswer(f"not an HTTP answer: {lines[0][:60]!r}") from None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return PoolResponse(self, connection, status, headers, self.read_timeout)

    def _take(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.writer.is_closing() or connection.reader.at_eof():
                connection.writer.close()
                continue
            return connection
        return None

    def give_back(self, connection: _Connection) -> None:
        """Keep `connection` for the next call to the same upstream."""
        idle = self._idle.setdefault(connection.key, [])
        if self._closed or len(idle) >= self.max_idle:
            connection.writer.close()
        else:
            idle.append(connection)

    async def close(self) -> None:
        """Close every idle connection (those in use close when released)."""
        self._closed = True
        writers = [c.writer for idle in self._idle.values() for c in idle]
        self._idle.clear()
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _before_any_byte(exc: BaseException) -> bool:
    if isinstance(exc, asyncio.IncompleteReadError):
        return not exc.partial
    return isinstance(exc, ConnectionError)
