"""Calling the planned routes in order, plain and streaming, with fallback.

Each route is tried in turn. A candidate whose key variable is not set is skipped
(never called without its key). A connection error, a timeout, a 429, a 5xx or an
answer that is not a chat completion marks the provider in `Health` and moves on to
the next route. Any other status is the upstream's answer to the client (a 400 for a
bad tool schema, say) and is passed through as it is.

A stream falls back only before its first byte reaches the client. After that, an
upstream that fails or stops without finishing gets the client a final error event
(`data: {"error": {...}}`, which OpenAI SDKs raise) and a terminated stream, and the
receipt says `interrupted`.

The body sent upstream is the client's, with only `model` replaced by the route's
upstream model name; the answer comes back byte for byte, usage included.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gitgw.concepts.router import Route
from gitgw.proxy.errors import error_body, error_response
from gitgw.proxy.keys import GATEWAY, METRICS
from gitgw.proxy.transport import FAILURES, Answer, UpstreamFailure, failure, post, read_timeout
from gitgw.services.gateway import Attempt, Outcome, Prepared
from gitgw.services.gateway_request import because, unsupported_protocol

__all__ = ["Call", "call_routes"]

RECEIPT_HEADER = "x-gitgw-receipt"
OVERHEAD_HEADER = "x-gitgw-overhead-ms"
_RETRYABLE = frozenset({408, 429})
_HEADERS = {"Content-Type": "application/json", "User-Agent": "gitgw"}  # never changed


@dataclass
class Call:
    """One request on its way through the routes."""

    app: web.Application
    prepared: Prepared
    started: float
    request: web.Request | None = None  # aiohttp's request, which a stream is sent on
    # (the fast lane hands streaming requests to aiohttp's server, so it never needs one)
    upstream_s: float = 0.0  # time spent waiting for upstreams (not gitgw's overhead)
    failed: list[Attempt] = field(default_factory=list)
    bad_answer: bool = False
    sent_overhead_ms: float | None = None  # gitgw's time when the headers went out

    def overhead_ms(self) -> float:
        """gitgw's own time so far, in milliseconds."""
        return (time.perf_counter() - self.started - self.upstream_s) * 1000

    def headers(self) -> dict[str, str]:
        """The headers every response carries (the overhead is taken now)."""
        self.sent_overhead_ms = self.overhead_ms()
        return {
            RECEIPT_HEADER: self.prepared.receipt_id,
            OVERHEAD_HEADER: f"{self.sent_overhead_ms:.3f}",
        }


def _is_completion(data: bytes) -> bool:
    # A cheap look, not a parse: the body goes to the client as it is, and its usage is
    # read off the request path when the receipt is built.
    return data.lstrip()[:1] == b"{" and b'"choices"' in data


class _Stream:
    """Watches server-sent events go by: the end marker, a finish reason, usage."""

    def __init__(self) -> None:
        self._partial = b""
        self.done = False
        self.finished = False
        self.usage: Any = None

    def feed(self, chunk: bytes) -> None:
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.done = True
            elif b'"usage"' in payload or b"finish_reason" in payload:
                self._inspect(payload)

    def _inspect(self, payload: bytes) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        if isinstance(event.get("usage"), dict):
            self.usage = event["usage"]
        choices = event.get("choices")
        if isinstance(choices, list) and any(
            isinstance(c, dict) and c.get("finish_reason") for c in choices
        ):
            self.finished = True


async def call_routes(call: Call) -> tuple[web.StreamResponse, Outcome]:
    """Try the prepared routes in order; the response (a stream is already sent)."""
    app = call.app
    gateway, metrics = app[GATEWAY], app[METRICS]
    plan = call.prepared.plan
    assert plan is not None
    for route in plan.routes:
        env = route.config.api_key_env
        key = gateway.key_of(env)
        if env and not key:
            call.failed.append(Attempt(route.provider, route.model, f"key: {env} is not set"))
            metrics.fallbacks.labels(route.provider, "key").inc()
            continue
        reason = unsupported_protocol(route.config)
        if reason is not None:
            call.failed.append(Attempt(route.provider, route.model, reason))
            metrics.fallbacks.labels(route.provider, "protocol").inc()
            continue
        try:
            return await _attempt(call, route, key)
        except UpstreamFailure as failed:
            gateway.health.failed(route.provider)
            call.failed.append(Attempt(route.provider, route.model, failed.reason))
            call.bad_answer = call.bad_answer or failed.bad_answer
            metrics.fallbacks.labels(route.provider, failed.kind).inc()
    return _all_failed(call), Outcome(
        "upstream_error", failed=call.failed, detail="no candidate could serve the request"
    )


def _all_failed(call: Call) -> web.Response:
    prepared = call.prepared
    level = prepared.classification.level
    tried = "; ".join(f"{a.provider}/{a.model}: {a.reason}" for a in call.failed)
    unset = [a.reason.split()[1] for a in call.failed if a.reason.startswith("key:")]
    fix = f"set {' or '.join(unset)} where the proxy runs, " if unset else ""
    message = (
        f"no model could serve {prepared.model!r} ({tried}); the request is {level} "
        f"({because(prepared.classification)}): {fix}start one of those models, or ask "
        f"for another model that may receive {level}"
    )
    status, code = (
        (502, "upstream_bad_response") if call.bad_answer else (503, "upstream_unavailable")
    )
    return error_response(status, message, code, headers=call.headers())


async def _attempt(call: Call, route: Route, key: str | None) -> tuple[web.StreamResponse, Outcome]:
    app = call.app
    base = route.config.base_url
    payload = call.prepared.upstream_body(route.model)
    headers = _HEADERS if not key else {**_HEADERS, "Authorization": f"Bearer {key}"}
    started = time.perf_counter()
    try:
        # Earlier requests' receipts are built while this one is with the upstream, once
        # it is written (that time counts as the upstream's in `x-gitgw-overhead-ms`).
        answer = await post(app, base, payload, headers, app[GATEWAY].seal_if_free)
    except FAILURES as exc:
        call.upstream_s += time.perf_counter() - started
        raise failure(exc, base, read_timeout(app)) from None
    try:
        status = answer.status
        if call.prepared.stream and status == 200 and answer.content_type == "text/event-stream":
            return await _relay_stream(call, route, answer, started)
        try:
            data = await answer.read()
        except FAILURES as exc:
            raise failure(exc, base, read_timeout(app)) from None
        finally:
            call.upstream_s += time.perf_counter() - started
    finally:
        answer.release()
    if status in _RETRYABLE or status >= 500:
        raise UpstreamFailure(f"upstream: answered {status}", "status")
    if status != 200:
        return _passed_through(call, route, status, data, answer.content_type)
    if not _is_completion(data):
        raise UpstreamFailure("bad answer: not a chat completion", "garbage", bad_answer=True)
    app[GATEWAY].health.succeeded(route.provider)
    out = web.Response(body=data, content_type="application/json", headers=call.headers())
    return out, Outcome("ok", route=route, failed=call.failed, answer=data)


def _passed_through(
    call: Call, route: Route, status: int, data: bytes, content_type: str
) -> tuple[web.StreamResponse, Outcome]:
    outcome = Outcome(
        "upstream_error",
        route=route,
        failed=call.failed,
        detail=f"{route.provider} answered {status}; passed through to the client",
    )
    if content_type == "application/json":
        return web.Response(
            status=status, body=data, content_type=content_type, headers=call.headers()
        ), outcome
    message = (
        f"{route.provider}/{route.model} answered {status}: {data[:200].decode('utf-8', 'replace')}"
    )
    return error_response(status, message, "upstream_error", headers=call.headers()), outcome


async def _relay_stream(
    call: Call, route: Route, answer: Answer, started: float
) -> tuple[web.StreamResponse, Outcome]:
    app = call.app
    assert call.request is not None
    base = route.config.base_url
    try:
        first = await answer.readany()
    except FAILURES as exc:
        raise failure(exc, base, read_timeout(app)) from None
    finally:
        call.upstream_s += time.perf_counter() - started
    if not first:
        reason = "broken answer: the stream ended before its first byte"
        raise UpstreamFailure(reason, "broken", bad_answer=True)
    app[GATEWAY].health.succeeded(route.provider)
    out = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **call.headers()}
    )
    await out.prepare(call.request)
    watch = _Stream()
    outcome = Outcome("ok", route=route, failed=call.failed)
    try:
        problem = None
        chunk = first
        while chunk:
            watch.feed(chunk)
            await out.write(chunk)  # a client that went away raises ConnectionResetError
            try:
                chunk = await answer.readany()
            except FAILURES as exc:
                problem = failure(exc, base, read_timeout(app)).reason
                break
        if problem is None and not (watch.done or watch.finished):
            problem = "the upstream closed the stream before it finished"
        if problem is not None:
            outcome.outcome, outcome.detail = "interrupted", f"{route.provider}: {problem}"
            message = (
                f"{route.provider}/{route.model} stopped mid-stream ({problem}); "
                "the answer is incomplete"
            )
            event = json.dumps(error_body(message, "upstream_interrupted", "upstream_error"))
            await out.write(f"data: {event}\n\n".encode())
        await out.write_eof()
    except ConnectionResetError:
        outcome.outcome, outcome.detail = "interrupted", "the client disconnected mid-stream"
    outcome.usage = watch.usage
    return out, outcome
