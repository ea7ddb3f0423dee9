"""Receipts as the proxy writes them: lines of a batch file, built without a model.

A busy proxy writes thousands of receipts a second, so it does not build a pydantic
`Receipt` for each and let the writer dump it again: it builds the receipt's JSON data
directly and writes it as its canonical JSON (keys sorted), with the digest of exactly
those bytes appended (`sha256:` + SHA-256 of the canonical JSON, the rule every record
follows). The lines of one hand-over make one batch file,
`receipts/<yyyy>/<mm>/<dd>/<batch-id>.jsonl`. Every read (`gitgw verify`, `receipts
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
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gitgw._canonical import canonical_json, format_time
from gitgw._clock import Clock
from gitgw.concepts.context import part_text
from gitgw.concepts.secrets import scan
from gitgw.records import kind_named
from gitgw.services.gateway_request import ENDPOINT, Attempt, Loaded, Outcome, Prepared

__all__ = ["WITHHELD", "batch_file", "guard_text", "receipt_data", "receipt_line"]

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
        role = message.get("role")
        part: dict[str, Any] = {
            "role": role if isinstance(role, str) else "",
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "chars": len(text),
        }
        if capture and guard_text(prepared.receipt_id, "content", text) != WITHHELD:
            part["content"] = text
        parts.append(part)
    return parts


_USAGE = re.compile(rb'"usage"\s*:\s*(\{[^{}]*\})')


def _usage(value: Any, answer: bytes | None) -> dict[str, int] | None:
    if value is None and answer is not None:
        found = _USAGE.search(answer)  # the usage object alone, not the whole answer
        try:
            value = json.loads(found.group(1)) if found else None
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
    # format_time's text, with the part up to the second cached (strftime is slow).
    global _second
    stamp = int(moment.timestamp())
    if stamp != _second[0]:
        _second = (stamp, format_time(moment)[:-4])
    return f"{_second[1]}{moment.microsecond // 1000:03d}Z"


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None}


def receipt_data(
    loaded: Loaded, prepared: Prepared | None, outcome: Outcome, clock: Clock
) -> dict[str, Any]:
    """The receipt of one request as JSON data (what `Receipt` would dump, None left out)."""
    if prepared is None:
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
    route = outcome.route
    consent = list(prepared.consent)
    if route is not None and route.consent is not None:
        consent.insert(0, route.consent)
    where = None
    if route is not None:
        where = {
            "provider": route.provider,
            "model": route.model,
            "endpoint": ENDPOINT,
            "location": route.config.location,
        }
    return _drop_none(
        {
            "schema_version": 1,
            "id": prepared.receipt_id,
            "created": _time(prepared.created),
            "client": prepared.client,
            "level": prepared.classification.level,
            "rules": list(prepared.classification.rules),
            "route": where,
            "rejected": _rejections(prepared.receipt_id, prepared, outcome.failed),
            "consent": consent,
            "context": _context(prepared),
            "usage": _usage(outcome.usage, outcome.answer),
            "latency_ms": outcome.latency_ms,
            "overhead_ms": outcome.overhead_ms,
            "outcome": outcome.outcome,
            "detail": guard_text(prepared.receipt_id, "detail", outcome.detail),
            "offline": prepared.offline,
            "config_commit": prepared.config_commit,
        }
    )


def receipt_line(data: dict[str, Any]) -> str:
    """One sealed line of a batch file: the canonical JSON of the data (keys sorted),
    then its digest. One encoding serves both: the digest covers exactly those bytes."""
    canonical = canonical_json(data)
    digest = hashlib.sha256(canonical).hexdigest()
    return canonical.decode("utf-8")[:-1] + f',"digest":"sha256:{digest}"}}'


def batch_file(lines: Sequence[str], batch_id: str) -> tuple[str, bytes]:
    """The path and bytes of one batch file holding `lines`."""
    return _RECEIPT.path(id=batch_id), ("\n".join(lines) + "\n").encode("utf-8")
