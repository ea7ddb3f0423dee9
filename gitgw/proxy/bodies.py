"""Reading a request body with a size limit, before any of it is trusted or parsed."""

from __future__ import annotations

from aiohttp import web

__all__ = ["BodyTooLarge", "UnreadableBody", "read_body"]


class UnreadableBody(Exception):
    """A body aiohttp could not read: a broken chunk or content encoding."""


class BodyTooLarge(Exception):
    """A body over the limit; `size` is how much of it was seen (at least)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, or `BodyTooLarge` as soon as it is known to exceed `limit`:
    from Content-Length when the client sends one, else while reading (chunked).
    `UnreadableBody` when its chunks or its content encoding are broken."""
    length = request.content_length
    if length is not None and length > limit:
        raise BodyTooLarge(length)
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = await request.content.readany()
        except web.RequestPayloadError as exc:
            raise UnreadableBody(str(exc.__cause__ or exc).strip()) from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size)
        chunks.append(chunk)
