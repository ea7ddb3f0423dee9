"""One chat completion request through the gateway: parsed, classified, planned, receipted.

`prepare_request` turns a raw body into a `Prepared` request, or raises `RequestError`
(an HTTP status, an OpenAI-style error code, a message and a hint) for a body that
cannot be served at all. A request that can be parsed but may not be served (trust or
consent, an unknown model, every allowed model down) is prepared with a `refusal`, so
its receipt still carries its level, rules and context digests.

What is classified is every string the upstream would receive except the model name:
the messages of every role and turn, tool calls and tool results, content parts, tool
definitions and any other field. A secret anywhere in the body raises the level.

`gitgw.services.receipt_lines` writes down what happened (`Outcome`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from gitgw.concepts.router import ConsentCheck, Health, Plan, Refusal, Route, UnknownModel, plan
from gitgw.concepts.trust import MAX_DEPTH, Classification, Classifier, request_texts
from gitgw.errors import GitgwError
from gitgw.records import GatewayConfig
from gitgw.records.config import ProviderConfig
from gitgw.records.receipt import Usage
from gitgw.services.request_body import parse_body, with_model

__all__ = [
    "ENDPOINT",
    "Attempt",
    "Loaded",
    "Outcome",
    "Prepared",
    "RequestError",
    "because",
    "prepare_request",
    "too_large",
    "unsupported_protocol",
]

ENDPOINT = "/v1/chat/completions"
OutcomeKind = Literal["ok", "refused", "upstream_error", "client_error", "interrupted"]


@dataclass(frozen=True)
class Loaded:
    """A configuration the gateway serves with, and what was built from it."""

    config: GatewayConfig
    commit: str  # the state branch's head when this configuration was read
    blob: bytes | None  # the blob id of gitgw.yaml, to notice a change cheaply
    classifier: Classifier
    tokens: Mapping[str, str]  # token SHA-256 -> client name
    unset_tokens: tuple[str, ...] = ()  # clients whose token_env variable is not set


class RequestError(GitgwError):
    """A request that cannot be served: its HTTP status and OpenAI-style error code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        hint: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message, hint)
        self.status = status
        self.code = code
        self.kind = kind


@dataclass
class Prepared:
    """A parsed, classified and planned request, and what its receipt needs."""

    receipt_id: str
    created: datetime
    body: dict[str, Any]
    raw: bytes  # the body as the client sent it
    unique_keys: bool  # no JSON object in it repeats a key (see request_body)
    model: str
    stream: bool
    client: str | None
    classification: Classification
    plan: Plan | None
    refusal: Refusal | None
    consent: list[str]  # consent entries relied on before any route (the client's grant)
    config_commit: str
    capture: bool
    offline: bool

    def upstream_body(self, model: str) -> bytes:
        """The body to send upstream: the client's, with `model` set to `model`."""
        return with_model(self.raw, self.body, self.unique_keys, model)

    @property
    def messages(self) -> list[Any]:
        """The request's messages."""
        messages = self.body["messages"]
        assert isinstance(messages, list)
        return messages


@dataclass(frozen=True)
class Attempt:
    """A candidate passed over at run time (a missing key, a failure), and why."""

    provider: str
    model: str
    reason: str


@dataclass
class Outcome:
    """What happened to a request, for its receipt."""

    outcome: OutcomeKind
    route: Route | None = None
    failed: list[Attempt] = field(default_factory=list)
    usage: Any = None  # the upstream's `usage` object, as it sent it
    answer: bytes | None = None  # a plain answer's body: its usage is read when receipted
    latency_ms: float | None = None
    overhead_ms: float | None = None
    detail: str | None = None
    client: str | None = None  # for a request that could not be prepared
    receipt_id: str | None = None  # for a request that could not be prepared


def because(classification: Classification) -> str:
    """Why a request has its level, by rule names (never the matched values)."""
    detected = "detected by " + ", ".join(classification.rules) if classification.rules else ""
    if classification.declared and classification.declared == classification.level:
        declared = f"declared {classification.declared} by the client"
        return f"{declared}; {detected}" if detected else declared
    return detected or "the default level"


def unsupported_protocol(provider: ProviderConfig) -> str | None:
    """Why the proxy skips a candidate of `provider` for the protocol it speaks, or None
    (it speaks only OpenAI's to upstreams)."""
    if provider.protocol == "openai":
        return None
    return f"protocol: the proxy speaks only OpenAI to upstreams, not {provider.protocol}"


def too_large(size: int, limit: int) -> RequestError:
    """The error for a body over `proxy.max_body_bytes` (`size`: as much as was read)."""
    return RequestError(
        413,
        "request_too_large",
        f"the request body is over {limit} bytes (at least {size})",
        "send less context, or raise proxy.max_body_bytes in gitgw.yaml",
    )


def _too_deep() -> RequestError:
    return RequestError(
        400,
        "nested_too_deeply",
        f"the request body nests objects and lists more than {MAX_DEPTH} levels deep",
        "send a flatter body",
    )


def _parse(body: bytes) -> tuple[dict[str, Any], bool]:
    try:
        data, unique = parse_body(body)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise RequestError(
            400,
            "invalid_json",
            f"the request body is not valid JSON: {exc}",
            'send a JSON object such as {"model": "chat", "messages": [...]}',
        ) from None
    except RecursionError:  # JSON's parser recurses once per level
        raise _too_deep() from None
    if not isinstance(data, dict):
        raise RequestError(400, "invalid_request", "the request body must be a JSON object")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(
            400,
            "missing_messages",
            "the request has no `messages`"
            if messages is None
            else "`messages` must be a non-empty list",
            'add "messages": [{"role": "user", "content": "..."}]',
        )
    for number, message in enumerate(messages, 1):
        if not isinstance(message, dict):
            raise RequestError(
                400,
                "invalid_message",
                f"message {number} is not a JSON object",
                'each message looks like {"role": "user", "content": "..."}',
            )
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError(
            400,
            "missing_model",
            "the request names no `model`",
            "ask for an alias from gitgw.yaml (GET /v1/models lists them)",
        )
    return data, unique


def prepare_request(
    loaded: Loaded,
    body: bytes,
    client: str | None,
    declared: str | None,
    consent: ConsentCheck,
    health: Health,
    *,
    receipt_id: str,
    created: datetime,
) -> Prepared:
    """The prepared request for `body`, or `RequestError` when it cannot be read."""
    config = loaded.config
    data, unique = _parse(body)
    content = {key: value for key, value in data.items() if key != "model"}
    try:
        texts = request_texts((content,))
    except GitgwError:
        raise _too_deep() from None
    try:
        classification = loaded.classifier.classify(texts.main, declared, texts.minor)
    except GitgwError as exc:
        raise RequestError(400, "invalid_trust_level", exc.message, exc.hint) from None
    prepared = Prepared(
        receipt_id=receipt_id,
        created=created,
        body=data,
        raw=body,
        unique_keys=unique,
        model=data["model"],
        stream=data.get("stream") is True,
        client=client,
        classification=classification,
        plan=None,
        refusal=None,
        consent=[],
        config_commit=loaded.commit,
        capture=config.proxy.capture_content,
        offline=config.mode == "offline",
    )
    level = classification.level
    if client is not None:
        decision = consent(f"client:{client}", level)
        if not decision.allowed:
            prepared.refusal = Refusal(
                403,
                "consent_refused",
                f"client {client} may not send this {level} request ({because(classification)}):"
                f" {decision.reason}; to allow it: gitgw consent grant client:{client} "
                f"--level {level}",
            )
            return prepared
        if decision.entry is not None:
            prepared.consent.append(decision.entry.id)
    try:
        prepared.plan = plan(config, prepared.model, classification, consent, health)
    except UnknownModel as exc:
        prepared.refusal = Refusal(404, "model_not_found", f"{exc.message}; {exc.hint}")
        return prepared
    refusal = prepared.plan.refusal
    if refusal is not None and refusal.status == 503:
        refusal = Refusal(
            503,
            refusal.code,
            f"{refusal.message}; the request is {level} ({because(classification)}): start "
            f"one of those models, or ask for another model that may receive {level}",
        )
    prepared.refusal = refusal
    return prepared


def _usage(value: Any, answer: bytes | None = None) -> Usage | None:
    if value is None and answer is not None:
        try:
            parsed = json.loads(answer)
        except ValueError:
            return None
        value = parsed.get("usage") if isinstance(parsed, dict) else None
    if not isinstance(value, dict):
        return None
    counts = {
        key: value[key]
        for key in ("prompt_tokens", "completion_tokens", "total_tokens")
        if isinstance(value.get(key), int) and value[key] >= 0
    }
    return Usage(**counts) if counts else None
