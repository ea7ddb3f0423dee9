"""One error shape for every proxy response, and the one middleware that makes it.

Every error the proxy sends is OpenAI-shaped, so OpenAI SDKs raise their usual
exception with gitgw's message in it:

    {"error": {"message": "...", "type": "invalid_request_error", "code": "missing_messages"}}

A `RequestError` keeps its status and code; a `GitgwError` is a 400; aiohttp's own
HTTP errors (an unknown path, a wrong method) keep their status; anything unexpected is
a 500 whose message says where the details were logged, never the details themselves.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from gitgw.errors import GitgwError
from gitgw.services.gateway import RequestError

__all__ = [
    "error_body",
    "error_middleware",
    "error_response",
    "error_type",
    "unexpected_error",
]

log = logging.getLogger("gitgw.proxy")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    502: "upstream_error",
    503: "service_unavailable",
}


def error_type(status: int) -> str:
    """The OpenAI error `type` for an HTTP status."""
    return _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(message: str, code: str, kind: str) -> dict[str, dict[str, str]]:
    """The error object itself, as a response or a stream event carries it."""
    return {"error": {"message": message, "type": kind, "code": code}}


def error_response(
    status: int,
    message: str,
    code: str,
    *,
    kind: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """An OpenAI-shaped JSON error response."""
    body = error_body(message, code, kind or error_type(status))
    return web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        content_type="application/json",
        headers=headers,
    )


def unexpected_error() -> web.Response:
    """The 500 for a failure nobody expected: the details go to the log, not the client."""
    return error_response(
        500,
        "gitgw failed unexpectedly; the details are in the proxy's log",
        "internal_error",
        kind="api_error",
    )


def message_of(error: GitgwError) -> str:
    """An error's message with its hint, as one sentence for a client to read."""
    return f"{error.message}; {error.hint}" if error.hint else error.message


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the one JSON error shape."""
    try:
        return await handler(request)
    except RequestError as exc:
        return error_response(exc.status, message_of(exc), exc.code, kind=exc.kind)
    except GitgwError as exc:
        return error_response(400, message_of(exc), "invalid_request")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        message = f"{request.method} {request.path}: {exc.reason.lower()}"
        if exc.status == 404:
            message += "; gitgw serves /v1/chat/completions, /v1/models, /health/* and /metrics"
        return error_response(exc.status, message, code)
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return unexpected_error()
