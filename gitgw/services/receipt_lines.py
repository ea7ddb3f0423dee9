"""Receipts as the proxy writes them: lines of a batch file, built without a model.

A busy proxy writes thousands of receipts a second, so it does not build a pydantic
`Receipt` for each and let the writer dump it again: it builds the receipt's JSON data
directly and writes it as its canonical JSON (keys sorted), with the digest of exactly
those bytes appended (`sha256:` + SHA-256 of the canonical JSON, the rule every record
follows). The lines of one hand-over make one batch file,
`receipts/<yyyy>/<mm>/<dd>/<hh>/<batch-id>.jsonl`. Every read (`gitgw verify`, `receipts
show`, the index) validates each line against the `Receipt` model, and the proxy's
tests read every receipt they cause back through it.

No prompt text is written unless `proxy.capture_content` is on, and even then not for a
request that holds a secret. Free text that reaches a receipt (a reason, a detail that
quotes a model name the client sent) is checked by the same secrets guard `gitgw verify`
runs, and withheld if it would be flagged: nothing written here can fail verification.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from json.encoder import encode_basestring
from typing import Any

from pydantic_core import from_json

from gitgw._canonical import canonical_json, format_time
from gitgw._clock import Clock
from gitgw.concepts.context import part_text, role_of
from gitgw.concepts.secrets import scan
from gitgw.records import kind_named
from gitgw.services.gateway_request import ENDPOINT, Attempt, Loaded, Outcome, Prepared

__all__ = ["WITHHELD", "batch_file", "fallback_line", "guard_text", "receipt_line"]

WITHHELD = "(withheld: gitgw's secrets guard flagged this text)"
_RECEIPT = kind_named("receipt")


def guard_text(receipt_id: str, field: str, text: str | None) -> str | None:
    """`text`, unless the secrets guard `gitgw verify` runs would flag it in a receipt."""
    if text is None:
        return None
    line = json.dumps({field: text}, ensure_ascii=False).encode("utf-8")
    return WITHHELD if scan(_RECEIPT.path(id=receipt_id), line) else text


def _rejections(
    receipt_id: str, prepared: Prepared | None, failed: Sequence[Attempt]
) -> list[dict[str, str]]:
    reasons = []
    if prepared is not None and prepared.plan is not None:
        reasons = [(r.provider, r.model, f"{r.kind}: {r.reason}") for r in prepared.plan.rejected]
    reasons.extend((a.provider, a.model, a.reason) for a in failed)
    return [
        {"provider": p, "model": m, "reason": guard_text(receipt_id, "reason", r) or WITHHELD}
        for p, m, r in reasons
    ]


def _context(prepared: Prepared) -> list[dict[str, Any]]:
    # Content is captured only when asked, never for a request holding a secret, and
    # never for a part the secrets guard would flag: no secret enters the branch.
    capture = prepared.capture and not any(
        rule.startswith("secret.") for rule in prepared.classification.rules
    )
    parts = []
    for message in prepared.messages:
        text, _form = part_text(message)
        part: dict[str, Any] = {
            "role": role_of(message),
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "chars": len(text),
        }
        if capture and guard_text(prepared.receipt_id, "content", text) != WITHHELD:
            part["content"] = text
        parts.append(part)
    return parts


_USAGE = re.compile(rb'"usage"\s*:\s*(\{[^{}]*\})')


def _load_usage(text: bytes) -> Any:
    # pydantic-core's parser costs a seventh of json.loads on bytes this small; the one
    # text it refuses that json reads (an unpaired surrogate escape) goes to json.
    try:
        return from_json(text)
    except ValueError:
        return json.loads(text)


def _usage(value: Any, answer: bytes | None) -> dict[str, int] | None:
    if value is None and answer is not None:
        found = _USAGE.search(answer)  # the usage object alone, not the whole answer
        try:
            value = _load_usage(found.group(1)) if found else None
        except ValueError:
            return None
    if not isinstance(value, dict):
        return None
    counts = {
        key: value[key]
        for key in ("prompt_tokens", "completion_tokens", "total_tokens")
        if type(value.get(key)) is int and value[key] >= 0
    }
    return counts or None


_second: tuple[int, str] = (-1, "")


def _time(moment: datetime) -> str:
    # format_time's text, with the part up to the second cached (strftime is slow). The
    # cache is read once: threads (the proxy's loop, the daemon's runs) build receipts.
    global _second
    stamp = int(moment.timestamp())
    cached = _second
    if stamp != cached[0]:
        cached = _second = (stamp, format_time(moment)[:-4])
    return f"{cached[1]}{moment.microsecond // 1000:03d}Z"


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None}


def _unprepared_data(loaded: Loaded, outcome: Outcome, clock: Clock) -> dict[str, Any]:
    # The receipt of a request that could not be prepared (what `Receipt` would dump).
    config = loaded.config
    receipt_id = outcome.receipt_id or clock.new_id()
    return _drop_none(
        {
            "schema_version": 1,
            "id": receipt_id,
            "created": format_time(clock.now()),
            "client": outcome.client,
            "level": config.trust.default_level,
            "rules": [],
            "rejected": _rejections(receipt_id, None, outcome.failed),
            "consent": [],
            "context": [],
            "latency_ms": outcome.latency_ms,
            "overhead_ms": outcome.overhead_ms,
            "outcome": outcome.outcome,
            "detail": guard_text(receipt_id, "detail", outcome.detail),
            "offline": config.mode == "offline",
            "config_commit": loaded.commit,
        }
    )


def receipt_line(loaded: Loaded, prepared: Prepared | None, outcome: Outcome, clock: Clock) -> str:
    """One sealed line of a batch file: the receipt's canonical JSON (keys sorted), then
    the digest of exactly those bytes."""
    if prepared is None:
        canonical = canonical_json(_unprepared_data(loaded, outcome, clock)).decode("utf-8")
    else:
        canonical = _prepared_json(prepared, outcome)
    return _sealed(canonical)


def _sealed(canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return canonical[:-1] + f',"digest":"sha256:{digest}"}}'


def fallback_line(
    loaded: Loaded, prepared: Prepared | None, outcome: Outcome, clock: Clock, error: Exception
) -> str:
    """The receipt of a request whose full receipt could not be built (a bug: every
    request must leave one): its id, time, level, rule names and outcome, nothing that
    came from the request's own text."""
    config = loaded.config
    data: dict[str, Any] = {
        "schema_version": 1,
        "id": outcome.receipt_id or clock.new_id(),
        "created": format_time(prepared.created if prepared is not None else clock.now()),
        "level": config.trust.default_level,
        "rules": [],
        "outcome": outcome.outcome,
        "detail": f"the full receipt could not be built ({type(error).__name__})",
        "offline": config.mode == "offline",
        "config_commit": loaded.commit,
    }
    if prepared is not None:
        data["level"] = prepared.classification.level
        data["rules"] = list(prepared.classification.rules)
        if prepared.client is not None:
            data["client"] = prepared.client
    return _sealed(canonical_json(data).decode("utf-8"))


# The receipt of a prepared request is the proxy's per-request cost after the answer: so
# its canonical JSON is written directly, in key order, with the JSON encoder's own
# string and number forms (`encode_basestring` is what `canonical_json` uses for a str,
# `repr` for a float or an int), rather than built as a dict and encoded with sorted
# keys, which cost more (see docs/performance.md). Every line is read back through the `Receipt`
# model and its digest recomputed by the proxy's tests, which any difference would fail.
_str = encode_basestring


def _strs(values: Iterable[str]) -> str:
    return "[" + ",".join([_str(value) for value in values]) + "]"


def _number(value: float | int) -> str:
    if type(value) is float and not math.isfinite(value):
        return canonical_json(value).decode("ascii")  # NaN and infinities as json writes them
    return repr(value)


def _prepared_json(prepared: Prepared, outcome: Outcome) -> str:
    receipt_id = prepared.receipt_id
    out: list[str] = []  # "key":value pairs, keys in sorted order
    if prepared.client is not None:
        out.append(f'"client":{_str(prepared.client)}')
    out.append(f'"config_commit":{_str(prepared.config_commit)}')
    route = outcome.route
    consent = list(prepared.consent)
    if route is not None and route.consent is not None:
        consent.insert(0, route.consent)
    out.append(f'"consent":{_strs(consent)}')
    out.append(f'"context":[{",".join(_context_json(prepared))}]')
    out.append(f'"created":"{_time(prepared.created)}"')
    detail = guard_text(receipt_id, "detail", outcome.detail)
    if detail is not None:
        out.append(f'"detail":{_str(detail)}')
    out.append(f'"id":{_str(receipt_id)}')
    if outcome.latency_ms is not None:
        out.append(f'"latency_ms":{_number(outcome.latency_ms)}')
    out.append(f'"level":{_str(prepared.classification.level)}')
    out.append(f'"offline":{"true" if prepared.offline else "false"}')
    out.append(f'"outcome":{_str(outcome.outcome)}')
    if outcome.overhead_ms is not None:
        out.append(f'"overhead_ms":{_number(outcome.overhead_ms)}')
    rejected = [
        f'{{"model":{_str(r["model"])},"provider":{_str(r["provider"])},'
        f'"reason":{_str(r["reason"])}}}'
        for r in _rejections(receipt_id, prepared, outcome.failed)
    ]
    out.append(f'"rejected":[{",".join(rejected)}]')
    if route is not None:
        location = route.config.location
        where = f'"location":{_str(location)},' if location is not None else ""
        out.append(
            f'"route":{{"endpoint":"{ENDPOINT}",{where}"model":{_str(route.model)},'
            f'"provider":{_str(route.provider)}}}'
        )
    out.append(f'"rules":{_strs(prepared.classification.rules)}')
    out.append('"schema_version":1')
    usage = _usage(outcome.usage, outcome.answer)
    if usage is not None:
        counts = ",".join(f'"{key}":{value!r}' for key, value in sorted(usage.items()))
        out.append(f'"usage":{{{counts}}}')
    return "{" + ",".join(out) + "}"


def _context_json(prepared: Prepared) -> Iterator[str]:
    for part in _context(prepared):
        content = part.get("content")
        captured = f'"content":{_str(content)},' if content is not None else ""
        yield (
            f'{{"chars":{part["chars"]!r},{captured}"role":{_str(part["role"])},'
            f'"sha256":"{part["sha256"]}"}}'
        )


def batch_file(lines: Sequence[str], batch_id: str) -> tuple[str, bytes]:
    """The path and bytes of one batch file holding `lines`."""
    return _RECEIPT.path(id=batch_id), ("\n".join(lines) + "\n").encode("utf-8")
