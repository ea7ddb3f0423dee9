"""One model call through the trust router, outside the proxy: workflows and request files.

`complete(gateway, body)` does what the proxy does for a plain (not streamed) chat
completion, synchronously and over httpx: the body is classified and planned by the same
`Gateway.prepare`, the routes are tried in order with the same fallback rules (a
candidate whose key variable is not set is skipped; a connection error, a timeout or an
error status marks the provider in `Health` and moves on), and every call, answered or
refused, leaves a receipt queued on the gateway. It never raises for a refusal or an
upstream failure: the result says what happened, so a workflow step can fail with the
reason and a request file can be answered with it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from gitgw.errors import GitgwError
from gitgw.services.gateway import Attempt, Gateway, Outcome, RequestError
from gitgw.services.gateway_request import because
from gitgw.services.upstream import DEFAULT_TIMEOUT, chat_completion

__all__ = ["CallResult", "complete"]


@dataclass(frozen=True)
class CallResult:
    """What one call came to: its receipt, and the answer or why there is none."""

    outcome: Literal["ok", "refused", "error"]
    receipt: str
    level: str | None = None
    provider: str | None = None
    model: str | None = None
    answer: dict[str, Any] | None = None
    error: str | None = None

    @property
    def content(self) -> str | None:
        """The first choice's message text (None when there is no answer)."""
        if self.answer is None:
            return None
        try:
            content = self.answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return None
        return content if isinstance(content, str) else None


def complete(
    gateway: Gateway,
    body: dict[str, Any],
    *,
    client: str | None = None,
    declared: str | None = None,
    transport: httpx.BaseTransport | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> CallResult:
    """Send one chat completion `body` (`model`, `messages`, any parameters) through the
    router; the receipt is queued on `gateway` (its `flush()` makes it durable)."""
    started = time.perf_counter()
    raw = json.dumps({**body, "stream": False}, ensure_ascii=False).encode("utf-8")
    try:
        prepared = gateway.prepare(raw, client, declared)
    except RequestError as exc:
        receipt = gateway.record(None, Outcome("client_error", detail=exc.message, client=client))
        return CallResult("error", receipt, error=exc.message)
    level = prepared.classification.level
    refusal = prepared.refusal
    if refusal is not None:
        outcome = Outcome(
            "client_error" if refusal.status == 404 else "refused", detail=refusal.message
        )
        receipt = gateway.record(prepared, outcome)
        return CallResult("refused", receipt, level, error=refusal.message)
    assert prepared.plan is not None
    failed: list[Attempt] = []
    upstream_s = 0.0
    for route in prepared.plan.routes:
        env = route.config.api_key_env
        key = gateway.key_of(env)
        if env and not key:
            failed.append(Attempt(route.provider, route.model, f"key: {env} is not set"))
            continue
        sent = time.perf_counter()
        try:
            result = chat_completion(
                route.provider,
                route.config,
                {**prepared.body, "model": route.model},
                api_key=key,
                transport=transport,
                timeout=timeout,
            )
        except GitgwError as exc:
            upstream_s += time.perf_counter() - sent
            gateway.health.failed(route.provider)
            failed.append(Attempt(route.provider, route.model, exc.message))
            continue
        upstream_s += time.perf_counter() - sent
        gateway.health.succeeded(route.provider)
        outcome = Outcome(
            "ok",
            route=route,
            failed=failed,
            usage=result.body.get("usage"),
            latency_ms=result.latency_ms,
            overhead_ms=(time.perf_counter() - started - upstream_s) * 1000,
        )
        receipt = gateway.record(prepared, outcome)
        return CallResult("ok", receipt, level, route.provider, route.model, result.body)
    tried = "; ".join(f"{a.provider}/{a.model}: {a.reason}" for a in failed) or "no route"
    message = (
        f"no model could serve {prepared.model!r} ({tried}); the request is {level} "
        f"({because(prepared.classification)})"
    )
    receipt = gateway.record(prepared, Outcome("upstream_error", failed=failed, detail=message))
    return CallResult("error", receipt, level, error=message)
