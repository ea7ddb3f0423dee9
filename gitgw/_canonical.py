"""Canonical JSON and content digests.

A record's digest is ``sha256:`` + the hex SHA-256 of its canonical JSON: the parsed
content without the ``digest`` key, keys sorted, no insignificant white space, UTF-8.
Anyone can recompute it from the file alone, in any language, whatever the file's
layout on disk (YAML, JSON lines or front matter).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from datetime import UTC, date, datetime
from typing import Any

from pydantic_core import to_json

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


# pydantic-core's JSON writer gives json's text for every string and every float but some
# of those under 1e-4 in size (`0.00001` and `1e-7`, where json writes `1e-05` and
# `1e-07`; others, such as 1.5e-10, come out the same).
SAME_FLOAT_FORM_FROM = 1e-4


def ordered_digest(content: dict[str, Any]) -> str:
    """`compute_digest(content)` for JSON data (no cycles, no ``digest`` key) whose every
    mapping has its keys in sorted order already and whose every float is 0, not finite,
    or at least `SAME_FLOAT_FORM_FROM` in size, as `verify`'s validator hands it over:
    pydantic-core writes that text for a fifth of what json's encoder costs sorting.
    Only where `writers_agree()`."""
    return DIGEST_PREFIX + hashlib.sha256(to_json(content, inf_nan_mode="constants")).hexdigest()


@functools.cache
def writers_agree() -> bool:
    """Whether the installed pydantic-core writes json's canonical text for the forms
    `ordered_digest` takes, checked once per process on those that differ between
    writers or could between versions (large and small floats, the constants, big
    integers, escapes): the tests check it thoroughly, this on whatever is installed."""
    floats = [1e-4, -1e-4, 0.000123, 0.1, 1.5, 1e15, 1e16, -1.5e16, 1e22, 2.0**63, 1e308]
    floats += [1.7976931348623157e308, 123456789.12345679, -0.0, 0.0, math.inf, -math.inf]
    texts = ["".join(map(chr, range(0x20))), '"\\/', "\x7f\u2028\u2029", "é 漢 \U0001f600"]
    probe = {
        "ints": [0, -1, 2**53, 2**64, 10**30, -(10**30)],
        "keys": {text: None for text in sorted(texts)},
        "nan": math.nan,
        "nested": [{"a": [], "b": {}}, True, False, None],
        "numbers": floats,
        "texts": texts,
    }
    return to_json(probe, inf_nan_mode="constants") == canonical_json(probe)


__all__ += ["DIGEST_PREFIX", "SAME_FLOAT_FORM_FROM", "ordered_digest", "writers_agree"]
