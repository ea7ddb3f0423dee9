"""The trust router: which models may serve a request, in which order, and why not the others.

Planning is pure and fast: it reads the configuration, the request's classification,
consent answers and provider health, all from memory. For a requested alias (or a
direct `provider/model`), each candidate is checked in order:

1. **Mode**: offline mode removes every hosted provider.
2. **Trust**: the request's level must not exceed the provider's `max_trust`.
3. **Consent**: a hosted provider also needs a `provider:NAME` grant covering the level.
4. **Health**: a provider that failed recently is skipped until its cool-down ends.

What remains is tried in order by the caller. When nothing remains, the plan carries a
refusal that says which level was detected, by which rules, and what would allow the
request (a local model, a consent grant): 403 when trust or consent ruled everything
out, 503 when every allowed model is down. A request above the alias's own `max_trust`
is refused, or rerouted to a local alias when `trust.on_violation` is `reroute`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from gitgw.concepts.trust import Classification
from gitgw.errors import GitgwError
from gitgw.records import level_rank
from gitgw.records.config import Candidate, GatewayConfig, ProviderConfig

__all__ = [
    "ConsentAnswer",
    "Health",
    "Plan",
    "Refusal",
    "Route",
    "UnknownModel",
    "plan",
    "plan_exact",
]


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


class ConsentAnswer(Protocol):
    """What the consent ledger says about one subject and level."""

    @property
    def allowed(self) -> bool: ...
    @property
    def entry(self) -> _Identified | None: ...
    @property
    def reason(self) -> str: ...


ConsentCheck = Callable[[str, str], ConsentAnswer]


class UnknownModel(GitgwError):
    """The client asked for a model that is neither an alias nor `provider/model`."""


@dataclass(frozen=True)
class Route:
    """One candidate allowed to serve the request."""

    provider: str
    model: str
    config: ProviderConfig
    consent: str | None = None  # the consent entry relied on, for hosted providers


@dataclass(frozen=True)
class Rejection:
    """A candidate ruled out, and why."""

    provider: str
    model: str
    reason: str
    kind: str  # mode | trust | consent | health


@dataclass(frozen=True)
class Refusal:
    """Why nothing may serve the request: an HTTP status and a message that teaches."""

    status: int  # 403 (trust or consent) or 503 (every allowed model is down)
    code: str
    message: str


@dataclass
class Plan:
    """The routes to try in order, the candidates ruled out, and a refusal if none remain."""

    model: str
    alias: str | None
    level: str
    rules: tuple[str, ...]
    routes: list[Route] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    refusal: Refusal | None = None
    rerouted_from: str | None = None


class Health:
    """Providers that failed recently, skipped until a cool-down passes (in memory)."""

    def __init__(self, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._down_until: dict[str, float] = {}

    def failed(self, provider: str) -> None:
        """Mark `provider` as failing now."""
        self._down_until[provider] = self._clock() + self.cooldown_s

    def succeeded(self, provider: str) -> None:
        """Mark `provider` as working again."""
        self._down_until.pop(provider, None)

    def cooling(self, provider: str) -> float:
        """Seconds left in `provider`'s cool-down (0 when it is healthy)."""
        until = self._down_until.get(provider)
        return 0.0 if until is None else max(0.0, until - self._clock())


def _candidates(config: GatewayConfig, model: str) -> tuple[str | None, list[Candidate]]:
    alias = config.models.get(model)
    if alias is not None:
        return model, list(alias.candidates)
    provider, _, upstream = model.partition("/")
    if upstream and provider in config.providers:
        return None, [Candidate(provider=provider, model=upstream)]
    known = ", ".join(sorted(config.models)) or "none"
    raise UnknownModel(
        f"unknown model {model!r}",
        f"ask for an alias ({known}) or PROVIDER/MODEL with a provider from gitgw.yaml",
    )


def plan_exact(
    config: GatewayConfig,
    candidate: Candidate,
    classification: Classification,
    consent: ConsentCheck,
) -> Plan:
    """The route to exactly `candidate` (no alias looked up, no reroute), judged as
    `plan` judges each candidate: what a replay of a recorded call may use."""
    name = f"{candidate.provider}/{candidate.model}"
    result = Plan(name, None, classification.level, classification.rules)
    _consider(config, candidate, classification, consent, None, result)
    if not result.routes:
        result.refusal = _refusal(config, result, classification)
    return result


def plan(
    config: GatewayConfig,
    model: str,
    classification: Classification,
    consent: ConsentCheck,
    health: Health | None = None,
) -> Plan:
    """The routes for a request for `model` at `classification`'s level."""
    alias, candidates = _candidates(config, model)
    level = classification.level
    result = Plan(model, alias, level, classification.rules)
    cap = config.models[alias].max_trust if alias else None
    if cap is not None and level_rank(level) > level_rank(cap):
        target = config.trust.reroute_alias
        if config.trust.on_violation == "reroute" and target and target != alias:
            rerouted = plan(config, target, classification, consent, health)
            rerouted.rerouted_from = alias
            return rerouted
        result.refusal = Refusal(
            403,
            "trust_level_exceeded",
            f"this request is {level} ({_because(classification)}), above what model "
            f"{model!r} accepts ({cap}); {_local_hint(config, level)}",
        )
        return result
    for candidate in candidates:
        _consider(config, candidate, classification, consent, health, result)
    if not result.routes:
        result.refusal = _refusal(config, result, classification)
    return result


def _consider(
    config: GatewayConfig,
    candidate: Candidate,
    classification: Classification,
    consent: ConsentCheck,
    health: Health | None,
    result: Plan,
) -> None:
    provider = config.providers[candidate.provider]
    level = classification.level

    def reject(kind: str, reason: str) -> None:
        result.rejected.append(Rejection(candidate.provider, candidate.model, reason, kind))

    if provider.location == "hosted" and config.mode == "offline":
        return reject("mode", "offline mode: hosted providers are off")
    if level_rank(level) > level_rank(provider.max_trust):
        return reject(
            "trust", f"{level} is above {candidate.provider}'s max_trust ({provider.max_trust})"
        )
    grant: str | None = None
    if provider.location == "hosted":
        answer = consent(f"provider:{candidate.provider}", level)
        if not answer.allowed:
            return reject("consent", answer.reason)
        grant = answer.entry.id if answer.entry is not None else None
    cooling = health.cooling(candidate.provider) if health is not None else 0.0
    if cooling > 0:
        return reject("health", f"failed recently; cooling down for {cooling:.0f}s more")
    result.routes.append(Route(candidate.provider, candidate.model, provider, grant))
    return None


def _because(classification: Classification) -> str:
    if classification.rules:
        return "detected by " + ", ".join(classification.rules)
    if classification.declared:
        return f"declared {classification.declared}"
    return "the default level"


def _local_hint(config: GatewayConfig, level: str) -> str:
    local = [
        name
        for name, alias in config.models.items()
        if all(
            config.providers[c.provider].location == "local"
            and level_rank(config.providers[c.provider].max_trust) >= level_rank(level)
            for c in alias.candidates
        )
    ]
    if local:
        return f"ask for a local model that may see it: {', '.join(sorted(local))}"
    return "add a local provider with max_trust " + level + " to gitgw.yaml"


def _refusal(config: GatewayConfig, result: Plan, classification: Classification) -> Refusal:
    kinds = {r.kind for r in result.rejected}
    reasons = "; ".join(f"{r.provider}/{r.model}: {r.reason}" for r in result.rejected)
    if "health" in kinds:  # a model allowed to see it exists, and it is down
        return Refusal(
            503,
            "upstream_unavailable",
            f"every model allowed to serve {result.model!r} is down ({reasons})",
        )
    hints = [_local_hint(config, result.level)]
    for rejection in result.rejected:
        if rejection.kind == "consent":
            hints.append(
                f"or grant consent: gitgw consent grant provider:{rejection.provider} "
                f"--level {result.level}"
            )
            break
    return Refusal(
        403,
        "trust_refused",
        f"no model may receive this {result.level} request ({_because(classification)}): "
        f"{reasons}; {' '.join(hints)}",
    )
