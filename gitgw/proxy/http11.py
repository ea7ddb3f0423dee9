"""The plain HTTP/1.1 requests the fast lane serves itself, and its responses' bytes.

The fast lane (`gitgw.proxy.fastlane`) answers only the most common request there is,
and only in its plainest form: `POST /v1/chat/completions HTTP/1.1` with one
`Content-Length` and one `Host`, no field given twice, none that changes how the
request is framed, decoded or kept (`Transfer-Encoding`, `Content-Encoding`, `Expect`,
`Upgrade`, `Proxy-Connection`, a `Connection` other than `keep-alive`), header names
that are tokens, values of printable ASCII, every line ending in CRLF. `read_head`
says whether the bytes so far start such a request (`Head`), may still become one
(`MORE`), or are anything else (`OTHER`): those go, as received, to aiohttp's server,
whose parser judges them as it judges every request. A head is read here only in forms
that parser reads the same way (the tests send random heads the fast lane accepts to a
real aiohttp server and compare what each read).
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass
from enum import Enum
from http import HTTPStatus
from typing import Final

from aiohttp import web

__all__ = ["HEAD_LIMIT", "MORE", "OTHER", "Head", "read_head", "response_bytes"]

HEAD_LIMIT = 8190  # bytes before the blank line; aiohttp's own limit for one line
_MAX_FIELDS = 100
_TARGET = b"POST /v1/chat/completions HTTP/1.1"
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f-\xff]")  # controls (not tab), non-ASCII
# Fields that change how a request is framed, decoded or kept: aiohttp's server reads it.
_OTHER_FIELDS = frozenset(
    {b"transfer-encoding", b"content-encoding", b"expect", b"upgrade", b"te", b"trailer"}
    | {b"proxy-connection"}  # llhttp reads `Proxy-Connection: close` as `Connection: close`
)


class _Verdict(Enum):
    MORE = "more"  # not all of the head has arrived yet
    OTHER = "other"  # not a request the fast lane serves: aiohttp's server takes it


MORE: Final = _Verdict.MORE
OTHER: Final = _Verdict.OTHER


@dataclass(frozen=True)
class Head:
    """A request head the fast lane serves."""

    size: int  # bytes, the blank line included: the body starts here
    content_length: int
    authorization: str | None
    trust: str | None  # x-gitgw-trust


def read_head(buffer: bytes | bytearray) -> Head | _Verdict:
    """The head at the start of `buffer` if it is one the fast lane serves."""
    end = buffer.find(b"\r\n\r\n", 0, HEAD_LIMIT + 4)
    if end < 0:
        if len(buffer) >= HEAD_LIMIT + 4:
            return OTHER
        # A request line that is already not the one served need not wait for more.
        return MORE if _TARGET.startswith(bytes(buffer[: len(_TARGET)])) else OTHER
    lines = bytes(buffer[:end]).split(b"\r\n")
    if lines[0] != _TARGET or len(lines) > _MAX_FIELDS:
        return OTHER
    fields = _fields(lines[1:])
    if fields is None or b"host" not in fields:  # HTTP/1.1 requires Host
        return OTHER
    length = fields.get(b"content-length")
    if length is None or not length.isdigit() or len(length) > 15:
        return OTHER
    authorization, trust = fields.get(b"authorization"), fields.get(b"x-gitgw-trust")
    return Head(
        end + 4,
        int(length),
        None if authorization is None else authorization.decode("ascii"),
        None if trust is None else trust.decode("ascii"),
    )


def _fields(lines: list[bytes]) -> dict[bytes, bytes] | None:
    # Each field by its lower-case name; None for anything the fast lane leaves alone.
    found: dict[bytes, bytes] = {}
    for line in lines:
        name, colon, raw = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            return None  # no colon, white space before it, obs-fold, a bare CR or LF
        value = raw.strip(b" \t")
        if _BAD_VALUE.search(value):
            return None
        name = name.lower()
        if name in _OTHER_FIELDS or name in found:  # a field given twice: aiohttp decides
            return None
        if name == b"connection" and value.lower() != b"keep-alive":
            return None  # close, upgrade: aiohttp's server handles the connection
        found[name] = value
    return found


_date: tuple[int, bytes] = (0, b"")


def _date_field() -> bytes:
    # The Date field, formatted once a second (an origin server with a clock sends it).
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, email.utils.formatdate(now, usegmt=True).encode("ascii"))
    return _date[1]


_STATUS_LINES: dict[int, str] = {}
_LEFT_OUT = frozenset({"content-length", "transfer-encoding", "date", "connection"})


def _status_line(status: int) -> str:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {reason}\r\n"
    return line


def response_bytes(response: web.Response) -> bytes:
    """A complete (not streamed) response as HTTP/1.1 bytes, ready to write."""
    body = response.body
    assert isinstance(body, bytes | bytearray)
    head = [_status_line(response.status)]
    for name, value in response.headers.items():
        if name.lower() not in _LEFT_OUT:
            if "\r" in value or "\n" in value:
                raise ValueError(f"a line break in the {name} header")
            head.append(f"{name}: {value}\r\n")
    head.append(f"Content-Length: {len(body)}\r\nDate: ")
    return "".join(head).encode("latin-1") + _date_field() + b"\r\n\r\n" + body
