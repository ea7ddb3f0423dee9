"""One POST to an upstream, over the plain-HTTP pool or the application's ClientSession.

`post` picks the way by the upstream's scheme: `http://` goes through the keep-alive
pool (`gitgw.proxy.pool`), anything else through aiohttp's `ClientSession`. Either way
the caller gets an `Answer` (status, content type, `read`, `readany`, `release`) and,
on failure, an `UpstreamFailure` that says what went wrong in words a client can act
on, and whether the upstream answered something broken (a 502) or nothing (a 503).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from gitgw.proxy.keys import POOL, SESSION, SETTINGS
from gitgw.proxy.pool import BrokenAnswer

__all__ = ["Answer", "UpstreamFailure", "post"]


class Answer(Protocol):
    """What the routing code needs of an upstream's answer."""

    status: int

    @property
    def content_type(self) -> str: ...

    async def read(self) -> bytes: ...

    async def readany(self) -> bytes: ...

    def release(self) -> None: ...


class UpstreamFailure(Exception):
    """A call that failed in a way that lets the next candidate be tried."""

    def __init__(self, reason: str, kind: str, bad_answer: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # unreachable | timeout | broken | status | garbage
        self.bad_answer = bad_answer


class _SessionAnswer:
    """An aiohttp `ClientResponse` seen as an `Answer`."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status

    @property
    def content_type(self) -> str:
        return self._response.content_type

    async def read(self) -> bytes:
        return await self._response.read()

    async def readany(self) -> bytes:
        return await self._response.content.readany()

    def release(self) -> None:
        self._response.release()


@lru_cache(maxsize=256)
def _target(base_url: str) -> tuple[str, str, int, str, str]:
    url = base_url.rstrip("/") + "/chat/completions"
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname or "", port, path, url


FAILURES = (TimeoutError, aiohttp.ClientError, OSError, BrokenAnswer)


def failure(exc: BaseException, base_url: str, timeout: float) -> UpstreamFailure:
    """The `UpstreamFailure` for an exception raised while calling `base_url`."""
    _scheme, host, port, _path, _url = _target(base_url)
    where = f"{host}:{port}"
    if isinstance(exc, TimeoutError):
        return UpstreamFailure(f"timeout: no answer within {timeout:g}s", "timeout")
    if isinstance(exc, BrokenAnswer | aiohttp.ClientPayloadError):
        return UpstreamFailure(f"broken answer: {exc}", "broken", bad_answer=True)
    if isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, aiohttp.ClientConnectorError)
        and isinstance(exc.os_error, ConnectionRefusedError)
    ):
        return UpstreamFailure(f"unreachable: connection refused at {where}", "unreachable")
    if isinstance(exc, aiohttp.ClientConnectorError):
        detail = exc.os_error.strerror or exc.os_error
        return UpstreamFailure(f"unreachable: cannot connect to {where} ({detail})", "unreachable")
    text = str(exc).strip() or type(exc).__name__
    return UpstreamFailure(f"unreachable: {where}: {text}", "unreachable")


async def post(
    app: web.Application,
    base_url: str,
    payload: bytes,
    headers: Mapping[str, str],
    on_sent: Callable[[], object] | None = None,
) -> Answer:
    """POST `payload` to the chat completions endpoint under `base_url`.

    `on_sent` runs on the loop once a plain-HTTP request is written (an HTTPS session
    writes its body on a task of its own, so there it is not run).
    """
    scheme, host, port, path, url = _target(base_url)
    if scheme == "http":
        return await app[POOL].post(host, port, path, payload, headers, on_sent)
    response = await app[SESSION].post(url, data=payload, headers=headers)
    return _SessionAnswer(response)


def read_timeout(app: web.Application) -> float:
    """Seconds without a byte before an upstream counts as hung."""
    return app[SETTINGS].read_timeout_s
