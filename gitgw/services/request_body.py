"""A chat completion body as the client sent it, and the same body for an upstream.

The body sent upstream is the client's with only `model` replaced. Encoding the parsed
body again costs as much as parsing it, so when it can be shown from the bytes that one
span of them is the top-level `model` value, only that span is replaced; otherwise the
parsed body is encoded again. Both give an upstream the same JSON object.

What makes the byte-level replacement correct:

1. **No duplicate keys, at any depth** (`parse_body` checks every object). With a
   duplicate, parsers disagree on which value counts (Python's takes the last), and the
   upstream must see exactly what was classified: such a body is always encoded again
   from the parsed data, which has no duplicates.
2. **The top-level key is written `"model"`, literally.** The letters of `model` can be
   escaped in JSON only as `\\u006d`-style escapes, so a body without any such escape
   spells every key that means `model` literally.
3. **`"model"` occurs once in the bytes.** By (2) the top-level key is one occurrence,
   so the only one is that key (a nested key, a value or text such as `say \"model"`
   would be a second occurrence).
4. **Its value is a plain string**: a colon, then a string without backslashes,
   between white space as JSON defines it (space, tab, line feed, carriage return).

And the body must be UTF-8 JSON starting with `{` (a BOM, UTF-16 or UTF-32 do not).
Anything else (an escaped letter anywhere, a second `"model"` in a tool schema, a value
with an escape) takes the slow path, which is always correct.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["DuplicateKey", "parse_body", "with_model"]


class DuplicateKey(ValueError):
    """A JSON object names the same key twice."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        raise DuplicateKey
    return data


# One decoder for every call: json.loads(..., object_pairs_hook=...) builds a new one.
_STRICT = json.JSONDecoder(object_pairs_hook=_unique)


def parse_body(body: bytes) -> tuple[Any, bool]:
    """The parsed JSON of `body`, and whether no object in it repeats a key.

    Raises ValueError (json.JSONDecodeError, UnicodeDecodeError) as `json.loads` does,
    and also for what it lets through that is no text: bytes that are not valid UTF-8
    (or UTF-16, UTF-32) and a `\\ud800`-style escape of half a surrogate pair, which no
    encoder (of receipts, or of the body sent upstream) can write. With a repeated key
    the last value counts, as with `json.loads`.
    """
    text = body.decode(json.detect_encoding(body))
    try:
        data, unique = _STRICT.decode(text), True
    except DuplicateKey:
        data, unique = json.loads(text), False
    if _SURROGATE_ESCAPE.search(text) is not None:  # most likely a pair, an emoji: check
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                "a string holds an unpaired surrogate escape (\\ud800 to \\udfff), which is "
                "not a character"
            ) from None
    return data, unique


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_MODEL_KEY = b'"model"'
_ESCAPED_LETTER = re.compile(rb"\\u006[45cdf]", re.IGNORECASE)  # d, e, l, m, o
_MODEL_VALUE = re.compile(rb'"model"[ \t\n\r]*:[ \t\n\r]*"([^"\\]*)"')


def with_model(body: bytes, data: dict[str, Any], unique: bool, model: str) -> bytes:
    """`body` (whose parse is `data`; `unique` as `parse_body` says) with its top-level
    `model` set to `model`, as UTF-8 JSON."""
    if (
        unique
        and body.lstrip()[:1] == b"{"
        and body.count(_MODEL_KEY) == 1
        and _ESCAPED_LETTER.search(body) is None
    ):
        found = _MODEL_VALUE.search(body)
        if found is not None and found.group(1).decode("utf-8", "surrogatepass") == data["model"]:
            if model == data["model"]:
                return body
            value = json.dumps(model, ensure_ascii=False).encode("utf-8")
            return body[: found.start(1) - 1] + value + body[found.end(1) + 1 :]
    return json.dumps({**data, "model": model}, ensure_ascii=False).encode("utf-8")
