"""The proxy's endpoints: chat completions, models, health and metrics.

Every chat completion response, answered or refused, carries `x-gitgw-receipt` (the
id of its receipt) and `x-gitgw-overhead-ms` (gitgw's own time). The receipt is queued
after the response has been sent (`Gateway.record`), built while a later request waits
for its upstream, and the handler never waits for it to be committed.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from gitgw.proxy.bodies import BodyTooLarge, UnreadableBody, read_body
from gitgw.proxy.errors import error_response, message_of
from gitgw.proxy.keys import GATEWAY, METRICS
from gitgw.proxy.upstream import OVERHEAD_HEADER, RECEIPT_HEADER, Call, call_routes
from gitgw.records import level_rank
from gitgw.services.gateway import Gateway, Outcome, Prepared, RequestError
from gitgw.services.gateway_request import too_large

__all__ = ["chat_completions", "finish", "live", "metrics", "models", "ready"]

_KINDS = {403: "permission_error", 404: "invalid_request_error", 503: "service_unavailable"}
TRUST_HEADER = "x-gitgw-trust"


async def _send(request: web.Request, response: web.StreamResponse) -> None:
    if not response.prepared:
        await response.prepare(request)
    await response.write_eof()


def finish(
    app: web.Application,
    gateway: Gateway,
    prepared: Prepared | None,
    outcome: Outcome,
    started: float,
    status: int,
    call: Call | None = None,
) -> None:
    """Queue the request's receipt and count it (once the answer has been sent)."""
    metrics = app[METRICS]
    elapsed = time.perf_counter() - started
    if call is not None:
        sent = call.sent_overhead_ms
        outcome.overhead_ms = round(sent if sent is not None else call.overhead_ms(), 3)
    outcome.latency_ms = round(elapsed * 1000, 3)
    gateway.record(prepared, outcome)
    metrics.request_done(status, outcome.outcome, elapsed, outcome.overhead_ms or 0.0)


async def _reject(
    request: web.Request, gateway: Gateway, error: RequestError, started: float, client: str | None
) -> web.StreamResponse:
    receipt_id = gateway.new_receipt_id()
    overhead = (time.perf_counter() - started) * 1000
    headers = {RECEIPT_HEADER: receipt_id, OVERHEAD_HEADER: f"{overhead:.3f}"}
    response = error_response(
        error.status, message_of(error), error.code, kind=error.kind, headers=headers
    )
    await _send(request, response)
    outcome = Outcome(
        "client_error",
        detail=f"HTTP {error.status} ({error.code}): {error.message}",
        client=client,
        receipt_id=receipt_id,
        overhead_ms=round(overhead, 3),
    )
    finish(request.app, gateway, None, outcome, started, error.status)
    return response


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """`POST /v1/chat/completions`: classify, route, relay, receipt."""
    started = time.perf_counter()
    gateway = request.app[GATEWAY]
    client = None
    try:
        client = gateway.authenticate(request.headers.get("Authorization"))
        limit = gateway.config.proxy.max_body_bytes
        try:
            body = await read_body(request, limit)
        except BodyTooLarge as exc:
            raise too_large(exc.size, limit) from None
        except UnreadableBody as exc:
            raise RequestError(
                400,
                "invalid_body",
                f"the request body cannot be read: {exc}",
                "send the body as plain JSON (no Content-Encoding), whole or in well-formed chunks",
            ) from None
        prepared = gateway.prepare(body, client, request.headers.get(TRUST_HEADER))
    except RequestError as error:
        return await _reject(request, gateway, error, started, client)
    call = Call(request.app, prepared, started, request)
    refusal = prepared.refusal
    if refusal is not None:
        response: web.StreamResponse = error_response(
            refusal.status,
            refusal.message,
            refusal.code,
            kind=_KINDS.get(refusal.status),
            headers=call.headers(),
        )
        outcome = Outcome(
            "client_error" if refusal.status == 404 else "refused", detail=refusal.message
        )
        if refusal.status != 404:
            level = prepared.classification.level
            request.app[METRICS].refusals.labels(level, refusal.code).inc()
    else:
        try:
            response, outcome = await call_routes(call)
        except asyncio.CancelledError:  # the server is shutting down: still leave a receipt
            outcome = Outcome("interrupted", failed=call.failed, detail="the proxy shut down")
            finish(request.app, gateway, prepared, outcome, started, 499, call)
            raise
    try:
        await _send(request, response)
    except ConnectionResetError:
        if outcome.outcome != "interrupted":  # a stream says itself where it broke off
            outcome.outcome = "interrupted"
            outcome.detail = "the client disconnected before the answer was sent"
    finish(request.app, gateway, prepared, outcome, started, response.status, call)
    return response


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(data).encode("utf-8"), content_type="application/json"
    )


async def models(request: web.Request) -> web.StreamResponse:
    """`GET /v1/models`: the aliases, and the upstream models the caller may use now."""
    gateway = request.app[GATEWAY]
    client = gateway.authenticate(request.headers.get("Authorization"))
    config = gateway.config
    data: list[dict[str, Any]] = []
    for name, alias in config.models.items():
        levels: list[str] = [config.providers[c.provider].max_trust for c in alias.candidates]
        cap: str = alias.max_trust or max(levels, key=level_rank)
        entry = {"id": name, "object": "model", "created": 0, "owned_by": "gitgw"}
        data.append(entry | {"max_trust": cap, "description": alias.description})
    seen: set[str] = set()
    for alias in config.models.values():
        for candidate in alias.candidates:
            name = f"{candidate.provider}/{candidate.model}"
            provider = config.providers[candidate.provider]
            if name in seen or not _usable(gateway, candidate.provider, client):
                continue
            seen.add(name)
            entry = {"id": name, "object": "model", "created": 0, "owned_by": candidate.provider}
            data.append(entry | {"max_trust": provider.max_trust, "location": provider.location})
    return _json({"object": "list", "data": data})


def _usable(gateway: Gateway, provider_name: str, client: str | None) -> bool:
    provider = gateway.config.providers[provider_name]
    if provider.location == "local":
        return True
    if gateway.config.mode == "offline":
        return False
    if client is not None and not gateway.consent.check(f"client:{client}", "public").allowed:
        return False
    return gateway.consent.check(f"provider:{provider_name}", "public").allowed


async def live(request: web.Request) -> web.StreamResponse:
    """`GET /health/live`: the process answers."""
    return _json({"status": "live"})


async def ready(request: web.Request) -> web.StreamResponse:
    """`GET /health/ready`: a configuration is loaded and receipts are being written.

    No model is called: provider health is what recent requests found.
    """
    gateway = request.app[GATEWAY]
    metrics = request.app[METRICS]
    loaded = gateway.loaded
    providers = {
        name: {"location": p.location, "cooling_s": round(gateway.health.cooling(name), 1)}
        for name, p in loaded.config.providers.items()
    }
    problem = gateway.problem
    receipts = metrics.last_receipt_error
    body = {
        "status": "ready" if receipts is None else "not ready",
        "config_commit": loaded.commit,
        "mode": loaded.config.mode,
        "config_problem": None if problem is None else f"{problem.commit[:12]}: {problem.message}",
        "receipts_error": receipts,
        "providers": providers,
        "clients_without_token": list(loaded.unset_tokens),
    }
    return _json(body, 200 if receipts is None else 503)


async def metrics(request: web.Request) -> web.StreamResponse:
    """`GET /metrics`: Prometheus text."""
    return web.Response(
        body=request.app[METRICS].render(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


__all__ += ["TRUST_HEADER"]
