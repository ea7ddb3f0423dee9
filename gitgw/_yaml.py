"""The only module that imports ruamel.yaml.

Records gitgw writes use a strict subset of YAML: one ``key: <JSON value>`` line per
top-level field. Every such file is ordinary YAML 1.2 (JSON is YAML's flow style), reads
well in a forge's web view, and parses exactly and fast without a YAML parser, which is
what lets `gitgw verify` check tens of thousands of records a second. Anything else,
such as a hand-written config, goes through ruamel.yaml.
"""

from __future__ import annotations

import io
import json
import json.scanner
import re
from collections.abc import Callable
from typing import Any, Final

from pydantic_core import from_json
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

__all__ = [
    "YamlError",
    "dump_document",
    "dump_record",
    "load_document",
    "load_json",
    "load_known_keys",
    "load_record",
]

_LINE = re.compile(r"([a-z_][a-z0-9_]*): (.+)")


class YamlError(ValueError):
    """The text is not valid YAML (or not a mapping where one is required)."""


def _safe() -> YAML:
    return YAML(typ="safe", pure=True)


def dump_record(data: dict[str, Any]) -> str:
    """A mapping as gitgw's record YAML: one ``key: <JSON>`` line per key, in order."""
    lines = []
    for key, value in data.items():
        text = json.dumps(value, ensure_ascii=False)
        # YAML 1.1 readers treat these as line breaks; keep them escaped.
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        lines.append(f"{key}: {text}")
    return "\n".join(lines) + "\n"


# The C scanner behind json.loads, called directly: it skips the wrapper's checks, which
# cost more than scanning the short values of a record's lines. (typeshed's stub names
# the wrong type for its argument: it takes the decoder whose settings it uses.)
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    json.JSONDecoder()  # type: ignore[arg-type]
)


# pydantic-core keeps the strings it reads in a cache, by default all of them: ids and
# hashes, each seen once, cost a lookup for nothing. Keys repeat from record to record.
_CACHED: Final = "keys"


def load_json(text: str) -> Any:
    """Exactly `json.loads(text)`, faster for text that is one JSON value and nothing else.

    pydantic-core's parser reads a receipt line in half the time json's does, and
    accepts and refuses the same texts with the same values, but for a string holding
    an unpaired surrogate escape (``"\\ud800"``) and a value nested over 200 deep, which
    json takes and it refuses: what it refuses goes to json.loads, which decides (and
    raises json's error)."""
    if len(text) < _FROM_JSON_AT:
        try:
            value, end = _scan(text, 0)
        except (StopIteration, ValueError):
            return json.loads(text)  # raises the error json.loads raises
        if end == len(text):
            return value
        return json.loads(text)  # white space around the value, or more after it
    try:
        return from_json(text, cache_strings=_CACHED)
    except (ValueError, TypeError):  # TypeError: a str holding a lone surrogate itself
        return json.loads(text)


_FROM_JSON_AT = 64  # shorter values: the C scanner costs less than the call


# One match per line of a record, found in one pass over the whole text. `$` stops at
# "\n" only, so a text holding another character `str.splitlines` breaks lines at goes
# through the line-by-line reader, which keeps the meaning of a "line" exactly.
_PAIRS = re.compile(r"^([a-z_][a-z0-9_]*): (.+)$", re.MULTILINE)
_OTHER_BREAKS = re.compile("[\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def _other_breaks(text: str) -> bool:
    if text.isascii():  # a flag Python keeps on every str; `in` is a memchr, the regex is not
        return (
            "\r" in text
            or "\v" in text
            or "\f" in text
            or "\x1c" in text
            or ("\x1d" in text or "\x1e" in text)
        )
    return _OTHER_BREAKS.search(text) is not None


def _load_fast(text: str) -> dict[str, Any] | None:
    if _other_breaks(text):
        return _load_lines(text)
    pairs = _PAIRS.findall(text)
    # Every line matched (at most one match per line): no blank or other line slipped by.
    if len(pairs) != text.count("\n") + (not text.endswith("\n")):
        return None
    data: dict[str, Any] = {}
    for key, value in pairs:
        try:  # load_json inlined: this loop is most of the cost of reading a record
            data[key], end = _scan(value, 0)
        except (StopIteration, ValueError):
            end = -1
        if end != len(value):
            try:
                data[key] = json.loads(value)  # white space around the value, or an error
            except ValueError:
                return None
    return data if len(data) == len(pairs) else None  # fewer: a key given twice


def load_known_keys(text: str, keys: frozenset[str]) -> dict[str, Any] | None:
    """What `load_record` gives for a text in gitgw's own layout whose keys are all in
    `keys` (each a name `_PAIRS` takes), or None for any other text, which
    `load_record` reads.

    `verify` reads tens of thousands of records. A line split at its first ": " is what
    `_PAIRS` finds in it when the part before is one of `keys`, and each value goes to
    pydantic-core's parser, which reads even a short value for less than the regular
    expression and json's scanner cost, and takes only what `json.loads` takes, as
    `json.loads` reads it (`load_json`): what it refuses is left to `load_record`.
    """
    if _other_breaks(text):
        return None
    lines = text.split("\n")
    if lines.pop() or not lines:  # no line feed at the end, or no line
        return None
    data: dict[str, Any] = {}
    for line in lines:
        key, _, value = line.partition(": ")
        if key not in keys:  # no ": " either: the whole line is no key
            return None
        try:
            data[key] = from_json(value, cache_strings=_CACHED)
        except (ValueError, TypeError):  # TypeError: a str holding a lone surrogate
            return None
    return data if len(data) == len(lines) else None  # fewer: a key given twice


def _load_lines(text: str) -> dict[str, Any] | None:
    data: dict[str, Any] = {}
    for line in text.splitlines():
        match = _LINE.fullmatch(line)
        if match is None:
            return None
        key, value = match.groups()
        if key in data:
            return None
        try:
            data[key] = load_json(value)
        except ValueError:
            return None
    return data or None


def load_record(text: str) -> dict[str, Any]:
    """Parse a record file: the exact fast path for gitgw's own layout, else full YAML."""
    fast = _load_fast(text)
    return fast if fast is not None else load_document(text)


def _describe(exc: YAMLError) -> str:
    # ruamel's text ends with a caret line or a documentation link: the problem and where
    # it is are in the error's fields, e.g. "mapping values are not allowed here (line
    # 1, column 5)".
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem:
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return f"{problem}{where}"
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else "bad YAML"


def load_document(text: str) -> dict[str, Any]:
    """Parse a YAML document that must be a mapping (an empty document is {})."""
    try:
        data = _safe().load(text)
    except YAMLError as exc:
        raise YamlError(_describe(exc)) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise YamlError(f"expected a mapping at the top level, found {type(data).__name__}")
    return data


def dump_document(data: Any) -> str:
    """Block-style YAML for a config a person will read and edit."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    stream = io.StringIO()
    yaml.dump(data, stream)
    return stream.getvalue()
