"""Reading a request body with a size limit, before any of it is trusted or parsed."""

from __future__ import annotations

from aiohttp import web

__all__ = ["BodyTooLarge", "read_body"]


class BodyTooLarge(Exception):
    """A body over the limit; `size` is how much of it was seen (at least)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, or `BodyTooLarge` as soon as it is known to exceed `limit`:
    from Content-Length when the client sends one, else while reading (chunked)."""
    length = request.content_length
    if length is not None and length > limit:
        raise BodyTooLarge(length)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size)
        chunks.append(chunk)
