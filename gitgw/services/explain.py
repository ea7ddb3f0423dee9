"""`gitgw route explain`: the proxy's decision for one request, without sending it.

The request is parsed, classified and planned exactly as the proxy does it (the same
`prepare_request`), against the configuration and consent on the state branch now.
The result names the level, the rules that matched (by name, never the matched
values), every candidate in order with why it is allowed or rejected, and the route
that would be taken. Provider health is not known outside a running proxy, so every
provider counts as up; a candidate whose key variable is not set is skipped, as the
proxy skips it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from gitgw.concepts.router import Health, Plan, Refusal
from gitgw.records.config import Candidate, GatewayConfig
from gitgw.services.gateway import Gateway
from gitgw.services.gateway_request import (
    RequestError,
    because,
    prepare_request,
    too_large,
    unsupported_protocol,
)

__all__ = ["CandidateVerdict", "Explanation", "explain"]


@dataclass(frozen=True)
class CandidateVerdict:
    """One candidate and what the router made of it."""

    provider: str
    model: str
    location: str
    max_trust: str
    verdict: str  # allowed | rejected | skipped | not considered
    reason: str


@dataclass
class Explanation:
    """What the proxy would do with one request."""

    model: str
    alias: str | None
    level: str
    because: str
    rules: list[str]
    declared: str | None
    client: str | None
    mode: str
    config_commit: str
    rerouted_from: str | None = None
    candidates: list[CandidateVerdict] = field(default_factory=list)
    route: str | None = None  # provider/model that would be called first
    fallbacks: list[str] = field(default_factory=list)  # then these, if it fails
    refusal: dict[str, object] | None = None  # status, code, message


def _candidates(config: GatewayConfig, model: str) -> list[Candidate]:
    alias = config.models.get(model)
    if alias is not None:
        return list(alias.candidates)
    provider, _, upstream = model.partition("/")
    return [Candidate(provider=provider, model=upstream)] if provider in config.providers else []


def explain(
    gateway: Gateway,
    body: bytes,
    *,
    client: str | None = None,
    declared: str | None = None,
) -> Explanation:
    """The decision the proxy would take for `body` (raises `RequestError` if unreadable,
    too large, or named for a client gitgw.yaml does not have, as the proxy would)."""
    loaded = gateway.loaded
    config = loaded.config
    if client is not None and client not in config.clients:
        known = ", ".join(sorted(config.clients)) or "none"
        raise RequestError(
            401, "invalid_api_key", f"gitgw.yaml has no client {client!r}", f"clients: {known}"
        )
    limit = config.proxy.max_body_bytes
    if len(body) > limit:
        raise too_large(len(body), limit)
    prepared = prepare_request(
        loaded,
        body,
        client,
        declared,
        gateway.consent.check,
        Health(),
        receipt_id="-",
        created=gateway.clock.now(),
    )
    classification = prepared.classification
    plan = prepared.plan
    result = Explanation(
        model=prepared.model,
        alias=plan.alias if plan is not None else None,
        level=classification.level,
        because=because(classification),
        rules=list(classification.rules),
        declared=classification.declared,
        client=client,
        mode=config.mode,
        config_commit=loaded.commit,
        rerouted_from=plan.rerouted_from if plan is not None else None,
    )
    planned = plan.model if plan is not None else prepared.model
    allowed = {(r.provider, r.model) for r in plan.routes} if plan is not None else set()
    rejected = {(r.provider, r.model): r for r in plan.rejected} if plan is not None else {}
    callable_routes = []
    for candidate in _candidates(config, planned):
        provider = config.providers[candidate.provider]
        key = (candidate.provider, candidate.model)
        if key in rejected:
            verdict, reason = "rejected", f"{rejected[key].kind}: {rejected[key].reason}"
        elif key in allowed:
            env = provider.api_key_env
            unspoken = unsupported_protocol(provider)  # as the proxy's `call_routes` skips it
            if env and not os.environ.get(env):
                verdict, reason = "skipped", f"key: {env} is not set"
            elif unspoken is not None:
                verdict, reason = "skipped", unspoken
            else:
                assert plan is not None
                verdict, reason = "allowed", _allowed_reason(provider.location, env, plan, key)
                callable_routes.append(f"{candidate.provider}/{candidate.model}")
        else:
            verdict, reason = "not considered", _not_considered(config, prepared.refusal, planned)
        result.candidates.append(
            CandidateVerdict(
                candidate.provider,
                candidate.model,
                provider.location,
                provider.max_trust,
                verdict,
                reason,
            )
        )
    refusal = prepared.refusal
    if refusal is not None:
        result.refusal = {
            "status": refusal.status,
            "code": refusal.code,
            "message": refusal.message,
        }
    elif not callable_routes:
        result.refusal = {
            "status": 503,
            "code": "upstream_unavailable",
            "message": "every allowed candidate would be skipped for a missing key",
        }
    else:
        result.route, result.fallbacks = callable_routes[0], callable_routes[1:]
    return result


def _not_considered(config: GatewayConfig, refusal: Refusal | None, model: str) -> str:
    if refusal is not None and refusal.code == "trust_level_exceeded":
        cap = config.models[model].max_trust
        return f"refused first: alias {model} accepts up to {cap} (its max_trust)"
    if refusal is not None and refusal.code == "consent_refused":
        return "refused first: the client may not send this level"
    return "refused before candidates were checked"


def _allowed_reason(location: str, env: str | None, plan: Plan, key: tuple[str, str]) -> str:
    route = next(r for r in plan.routes if (r.provider, r.model) == key)
    parts = [f"{location}, may receive {plan.level}"]
    if route.consent:
        parts.append(f"consent {route.consent}")
    if env:
        parts.append(f"key from {env}")
    return "; ".join(parts)
