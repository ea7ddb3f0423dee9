"""Canonical JSON and content digests.

A record's digest is ``sha256:`` + the hex SHA-256 of its canonical JSON: the parsed
content without the ``digest`` key, keys sorted, no insignificant white space, UTF-8.
Anyone can recompute it from the file alone, in any language, whatever the file's
layout on disk (YAML, JSON lines or front matter).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

__all__ = ["canonical_json", "compute_digest", "format_time", "sha256_hex"]

DIGEST_PREFIX = "sha256:"


def format_time(moment: datetime) -> str:
    """The one text form of a time in gitgw's files: UTC, milliseconds, a trailing Z."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _default(value: object) -> Any:
    # A hand-edited YAML file may hold unquoted times; they hash as gitgw writes them.
    if isinstance(value, datetime):
        return format_time(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


# One encoder for every call: json.dumps with these options would build a new one each
# time, which costs as much as encoding a small record.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default
)


# What `_ENCODER.encode` runs, built once: `encode` makes a new C encoder on every call,
# which costs a third of encoding a record. Without the check for circular references:
# for content parsed from a file, which cannot hold any (`verify`). None where json has
# no C encoder (another interpreter): `parsed_digest` is then `compute_digest`.
_ENCODE_PARSED: Callable[[Any, int], Any] | None
try:
    import _json
except ImportError:
    _ENCODE_PARSED = None
else:
    _ENCODE_PARSED = _json.make_encoder(
        None, _default, _json.encode_basestring, None, ":", ",", True, False, True
    )


def canonical_json(data: Any) -> bytes:
    """`data` as canonical JSON bytes (sorted keys, compact, UTF-8)."""
    return _ENCODER.encode(data).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def compute_digest(content: dict[str, Any]) -> str:
    """The digest of a record's content; any existing ``digest`` key is left out."""
    if "digest" in content:
        content = {key: value for key, value in content.items() if key != "digest"}
    return DIGEST_PREFIX + sha256_hex(canonical_json(content))


def parsed_digest(content: dict[str, Any]) -> str:
    """`compute_digest(content)` for content parsed from JSON or gitgw's record layout
    (no cycles, no ``digest`` key): the same text hashed, one encoder for every call."""
    if _ENCODE_PARSED is None:
        return compute_digest(content)
    return DIGEST_PREFIX + sha256_hex("".join(_ENCODE_PARSED(content, 0)).encode("utf-8"))


__all__ += ["DIGEST_PREFIX", "parsed_digest"]
