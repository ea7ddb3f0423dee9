"""Context digests: how one message of a model call is named by its SHA-256.

A receipt and a run record never need the prompt to prove what it was: each message
(a *context part*) is recorded by role, digest and size. The digest covers exactly one
text, chosen by the message's shape (OpenAI chat shape, `{"role": ..., ...}`):

- **text form**: the message is only a role and a string `content`. The digest is the
  SHA-256 of that string's UTF-8 bytes, so `printf '%s' "$text" | sha256sum` agrees.
- **json form**: anything else (a list of content parts, `tool_calls`, a `name`,
  `tool_call_id`, a null content). The digest is the SHA-256 of the canonical JSON of
  the message without its `role` key: keys sorted, no insignificant white space,
  UTF-8, non-ASCII characters as themselves (`gitgw._canonical.canonical_json`).

An output (a completion's `choices[i].message`) is first reduced by `output_message`
to its role, `content`, `tool_calls`, `function_call` and `refusal`, leaving out those
that are null or empty, so fields an upstream adds (`annotations: []`) do not change
the digest of the same answer.

`chars` is the number of Unicode code points of that same text. The proxy, workflows
and `gitgw receipts verify --context` all use these functions, so a digest computed
anywhere matches one computed anywhere else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gitgw._canonical import canonical_json
from gitgw.errors import GitgwError
from gitgw.records.receipt import ContextPart
from gitgw.records.run import RunPart

__all__ = [
    "STANDARD_ROLES",
    "Form",
    "Mismatch",
    "compare_context",
    "context_parts",
    "message_digest",
    "message_of",
    "output_message",
    "part_text",
    "run_parts",
]

Form = Literal["text", "json"]


def _check(message: object, number: int) -> Mapping[str, Any]:
    if not isinstance(message, Mapping):
        raise GitgwError(
            f"message {number} is not a JSON object",
            'each message looks like {"role": "user", "content": "..."}',
        )
    return message


def part_text(message: Mapping[str, Any]) -> tuple[str, Form]:
    """The exact text a message's digest covers, and which form it takes."""
    payload = {key: value for key, value in message.items() if key != "role"}
    content = payload.get("content")
    if payload.keys() == {"content"} and isinstance(content, str):
        return content, "text"
    return canonical_json(payload).decode("utf-8"), "json"


_OUTPUT_KEYS = ("role", "content", "tool_calls", "function_call", "refusal")


def output_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A completion's message reduced to what its digest covers (see the module docs)."""
    return {key: message[key] for key in _OUTPUT_KEYS if message.get(key) not in (None, [], {})} | {
        "role": message.get("role") or "assistant"
    }


def message_digest(message: Mapping[str, Any]) -> str:
    """The hex SHA-256 of one message, as receipts and run records write it."""
    return hashlib.sha256(part_text(message)[0].encode("utf-8")).hexdigest()


# The roles OpenAI's chat format defines. A receipt or run record names one of these as
# it is; any other value of `role` (a client may send anything, a secret included) is
# recorded as "other": free text never reaches the branch through a role.
STANDARD_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def role_of(message: Mapping[str, Any]) -> str:
    """The role a receipt records for `message`: a standard role as it is, "other" for any
    other value, "" when there is none."""
    role = message.get("role")
    if role is None:
        return ""
    return role if type(role) is str and role in STANDARD_ROLES else "other"


def _recorded_roles(message: Mapping[str, Any]) -> tuple[str, ...]:
    # Receipts written before roles were limited to the standard ones hold the role as
    # it was sent ("" for one that was not a string): they still match their messages.
    role = message.get("role")
    return role_of(message), role if isinstance(role, str) else ""


def context_parts(
    messages: Sequence[object],
    *,
    capture: bool = False,
    tokens: Sequence[int | None] | None = None,
) -> list[ContextPart]:
    """One receipt context part per message; the text itself only when `capture` is on.

    `tokens`, when the caller knows them (from a tokenizer or the upstream), gives a
    count per message.
    """
    parts = []
    for number, raw in enumerate(messages, 1):
        message = _check(raw, number)
        text, _form = part_text(message)
        parts.append(
            ContextPart(
                role=role_of(message),
                sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                chars=len(text),
                tokens=tokens[number - 1] if tokens is not None else None,
                content=text if capture else None,
            )
        )
    return parts


def run_parts(messages: Sequence[object], *, capture: bool = False) -> list[RunPart]:
    """One run-record part per message; with `capture`, enough to send it again."""
    parts = []
    for number, raw in enumerate(messages, 1):
        message = _check(raw, number)
        text, form = part_text(message)
        role = message.get("role")
        parts.append(
            RunPart(
                # Captured, the part must give the same message back to run it again.
                role=role if capture and isinstance(role, str) else role_of(message),
                sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                chars=len(text),
                form="json" if form == "json" else None,
                content=text if capture else None,
            )
        )
    return parts


def message_of(part: RunPart) -> dict[str, Any]:
    """The message a captured run part was made from (the inverse of `run_parts`)."""
    if part.content is None:
        raise GitgwError(f"the {part.role} part {part.sha256[:12]} was not captured")
    if part.form != "json":
        return {"role": part.role, "content": part.content}
    payload = json.loads(part.content)
    if not isinstance(payload, dict):
        raise GitgwError(f"the {part.role} part {part.sha256[:12]} is not a JSON object")
    return {"role": part.role, **payload}


@dataclass(frozen=True)
class Mismatch:
    """A context part that does not match the message given for it."""

    number: int  # 1-based position in the context
    role: str
    reason: str


def compare_context(parts: Sequence[ContextPart], messages: Sequence[object]) -> list[Mismatch]:
    """How `messages` differ from the recorded `parts` (empty when every digest matches)."""
    problems = []
    for number, (part, raw) in enumerate(zip(parts, messages, strict=False), 1):
        message = _check(raw, number)
        text, _form = part_text(message)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if part.role not in _recorded_roles(message):
            reason = f"role is {role_of(message)!r}, the receipt says {part.role!r}"
            problems.append(Mismatch(number, part.role, reason))
        elif digest != part.sha256:
            problems.append(
                Mismatch(
                    number,
                    part.role,
                    f"digest {digest[:12]}… ({len(text)} chars) differs from the receipt's "
                    f"{part.sha256[:12]}… ({part.chars} chars)",
                )
            )
    if len(messages) != len(parts):
        problems.append(
            Mismatch(
                min(len(messages), len(parts)) + 1,
                "-",
                f"the context has {len(messages)} message(s), the receipt {len(parts)}",
            )
        )
    return problems
