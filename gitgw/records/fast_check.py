"""`verify`'s format check: `parse_file`'s verdict on a file, without what only its
other callers use.

`verify` proves every file of a long history once. A file of a kind with a fast check
(runs and receipt batches, most of any history) is accepted here only once every check
`parse_file` makes has passed: the same loader's values, a validator that accepts only
what the model accepts, the same digest, the same place. Anything else, any doubt
included, goes to `parse_file`, which accepts it or raises with its reason (or fails)
exactly as it always has: only acceptance is fast, so no verdict and no reason can
differ.

The fast validator is derived from the model's own core schema and hands back the
record's content exactly as read, every mapping in key order, ready for the digest
(`ordered_digest`): each model becomes a typed dict with its fields in sorted order and
no defaults filled in, each value is taken only as the type it already is (strict, so
nothing is converted: a float field keeps an integer an integer), a time is text in
gitgw's own form (`2026-11-20T10:30:00.000Z`) on a day every year has, and a free-form
mapping is sorted. That accepts a part of what the model accepts, and nothing else;
whatever falls outside goes to `parse_file`. A schema holding anything the derivation
does not know (a validator in Python, an alias, a constraint it does not copy) leaves
that kind without a fast check, and so does a pydantic-core that writes any of those
values otherwise than json (`writers_agree`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import SchemaError, SchemaValidator

from gitgw._canonical import SAME_FLOAT_FORM_FROM, ordered_digest, writers_agree
from gitgw._yaml import load_json, load_known_keys
from gitgw.records import base
from gitgw.records.base import AddOnlyRecord
from gitgw.records.layout import KINDS, Kind, jsonl_lines, kind_of, parse_file

__all__ = ["prepare_checks", "verify_file"]

# A ULID time from 10,000 on: `ulid_time` raises for it, so `parse_file` decides.
_ULID_MILLIS_LIMIT = 253_402_300_800_000
_BASE32 = str.maketrans("0123456789ABCDEFGHJKMNPQRSTVWXYZ", "0123456789abcdefghijklmnopqrstuv")
_SHARDS: dict[int, tuple[str, str, str, str]] = {}  # hour since 1970 -> year, month, day, hour

# A time as gitgw writes it, on a day every year has (29 February goes to `parse_file`):
# what `Timestamp` accepts, in UTC already. Rust's regular expressions have no look-ahead,
# so the year 0 is left out by spelling the others.
_YEAR = "(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_DAY = (
    "(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
    "|(?:0[13-9]|1[0-2])-(?:29|30)"
    "|(?:0[13578]|1[02])-31)"
)
_TIME = rf"^{_YEAR}-{_DAY}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{{3}}Z$"
_MODEL_CONFIG = frozenset(
    {"title", "extra_fields_behavior", "validate_by_alias", "validate_by_name"}
)
# The constraints copied from each schema, which mean the same on a strict value.
_KEPT = {
    "str": frozenset({"pattern", "min_length", "max_length"}),
    "int": frozenset({"ge", "gt", "le", "lt", "multiple_of"}),
    "bool": frozenset(),
    "float": frozenset(),
}
_DEFAULT_KEYS = frozenset(
    {"type", "schema", "default", "default_factory", "default_factory_takes_data", "metadata"}
)
# A float field: an integer stays an integer, as the digest saw it (up to where a float
# would round it), and a float is one `ordered_digest` takes (NaN, rare, is left out). A
# strict float schema alone would take an integer and make it a float.
_FLOAT_AS_INT = 2**53


def _float_where(**bounds: float) -> dict[str, Any]:
    only_floats = {"type": "is-instance", "cls": float}
    return {"type": "chain", "steps": [only_floats, {"type": "float", "strict": True, **bounds}]}


_FLOAT = {
    "type": "union",
    "mode": "left_to_right",
    "choices": [
        {"type": "int", "strict": True, "ge": -_FLOAT_AS_INT, "le": _FLOAT_AS_INT},
        _float_where(ge=SAME_FLOAT_FORM_FROM),
        _float_where(le=-SAME_FLOAT_FORM_FROM),
        _float_where(ge=0, le=0),
    ],
}


def _free_form(value: Any) -> Any:
    """A free-form value with every mapping in key order (JSON data, so no cycles);
    raises `ValueError` for a float `ordered_digest` does not take."""
    kind = type(value)
    if kind is dict:
        return {key: _free_form(value[key]) for key in sorted(value)}
    if kind is list:
        return [_free_form(item) for item in value]
    if kind is float and 0 < abs(value) < SAME_FLOAT_FORM_FROM:
        raise ValueError("a float json writes in another form")
    return value


def _as_exact(node: Any) -> dict[str, Any]:
    """The schema of the fast check, from a model's core schema (see the module's
    docstring). Raises `TypeError` for anything it does not know: no fast check."""
    kind = node.get("type")
    if kind == "definitions":
        return {
            "type": "definitions",
            "schema": _as_exact(node["schema"]),
            "definitions": [_as_exact(each) for each in node["definitions"]],
        }
    if kind == "definition-ref" and set(node) <= {"type", "schema_ref", "metadata"}:
        return {"type": "definition-ref", "schema_ref": node["schema_ref"]}
    if kind == "model":
        return _model_as_typed_dict(node)
    if kind == "nullable" and set(node) <= {"type", "schema", "metadata"}:
        return {"type": "nullable", "schema": _as_exact(node["schema"])}
    if kind == "list" and set(node) <= {"type", "items_schema", "metadata"}:
        return {"type": "list", "strict": True, "items_schema": _as_exact(node["items_schema"])}
    if kind == "dict" and set(node) <= {"type", "keys_schema", "values_schema", "metadata"}:
        if node["keys_schema"] != {"type": "str"} or node["values_schema"] != {"type": "any"}:
            raise TypeError("a mapping of other than strings to anything")
        return {
            "type": "function-after",
            "function": {"type": "no-info", "function": _free_form},
            "schema": {"type": "dict", "strict": True, "keys_schema": {"type": "str"}},
        }
    return _value_as_exact(node)


def _value_as_exact(node: Any) -> dict[str, Any]:
    kind = node.get("type")
    if kind == "function-after" and node["function"].get("function") is base._utc:
        inner = node["schema"]
        if inner.get("type") != "datetime" or set(inner) - {"type", "microseconds_precision"}:
            raise TypeError("a Timestamp on another schema")
        return {"type": "str", "strict": True, "pattern": _TIME}
    if kind == "literal" and set(node) <= {"type", "expected", "metadata"}:
        expected = node["expected"]
        if all(type(value) is str for value in expected):
            return {"type": "literal", "expected": expected}
        if len(expected) == 1 and type(expected[0]) is int:  # `schema_version: Literal[1]`
            return {"type": "int", "strict": True, "ge": expected[0], "le": expected[0]}
        raise TypeError("a literal of other values than strings")
    if kind not in _KEPT or set(node) - _KEPT[kind] - {"type", "metadata"}:
        raise TypeError(f"a {kind} schema, or a setting this does not copy")
    if kind == "float":
        return _FLOAT
    return {"type": kind, "strict": True, **{key: node[key] for key in _KEPT[kind] if key in node}}


def _model_as_typed_dict(node: dict[str, Any]) -> dict[str, Any]:
    config = node.get("config", {})
    inner = node["schema"]
    if (
        node.get("custom_init")
        or node.get("root_model")
        or set(node)
        - {"type", "cls", "schema", "config", "ref", "metadata", "custom_init", "root_model"}
        or set(config) - _MODEL_CONFIG
        or config.get("extra_fields_behavior") != "forbid"
        or inner["type"] != "model-fields"
        or inner.get("computed_fields")
        or set(inner) - {"type", "fields", "model_name", "computed_fields"}
    ):
        raise TypeError(f"model {node.get('cls')} has more than fields")
    fields = {}
    for name in sorted(inner["fields"]):  # the output's keys come in this order
        field = inner["fields"][name]
        if set(field) - {"type", "schema", "metadata"}:
            raise TypeError(f"field {name} has more than a schema")
        schema = field["schema"]
        # A field with a default may be left out; left out, it stays out (the digest
        # covers what the file holds).
        required = schema["type"] != "default"
        if not required:
            if set(schema) - _DEFAULT_KEYS:
                raise TypeError(f"field {name} has a default with more than a value")
            schema = schema["schema"]
        fields[name] = {
            "type": "typed-dict-field",
            "schema": _as_exact(schema),
            "required": required,
        }
    exact: dict[str, Any] = {"type": "typed-dict", "fields": fields, "extra_behavior": "forbid"}
    if "ref" in node:
        exact["ref"] = node["ref"]
    return exact


@dataclass(frozen=True)
class _FastCheck:
    # The content, every mapping in key order; raises ValidationError for anything
    # outside what it takes (a part of what the model takes).
    validate: Callable[[Any], dict[str, Any]]
    keys: frozenset[str]  # the top-level names a record may have


_FAST: dict[str, _FastCheck | None] = {}
_KEY = re.compile(r"[a-z_][a-z0-9_]*")
_FAST_KINDS = ("run", "receipt")  # most of any history; the rest go through parse_file


def _fast_check(kind: Kind) -> _FastCheck | None:
    if kind.name not in _FAST:
        check = None
        model = kind.model
        if (
            kind.name in _FAST_KINDS
            and model is not None
            and issubclass(model, AddOnlyRecord)
            and writers_agree()  # else its digests need json's encoder: parse_file's route
        ):
            model.model_rebuild()
            try:
                validator = SchemaValidator(_as_exact(model.__pydantic_core_schema__))
            except (TypeError, SchemaError):  # a schema it cannot keep the meaning of
                validator = None
            if validator is not None:
                # The loader takes only these names, each one `_PAIRS` takes too.
                keys = frozenset(name for name in model.model_fields if _KEY.fullmatch(name))
                check = _FastCheck(validator.validate_python, keys)
        _FAST[kind.name] = check
    return _FAST[kind.name]


def prepare_checks() -> None:
    """Build the fast checks now (before forking workers, which then share them)."""
    for kind in KINDS:
        _fast_check(kind)


def _in_place(path_parts: dict[str, str]) -> bool:
    # What `_check_place` checks of a path alone: its time shard is its id's time.
    millis = int(path_parts["id"][:10].translate(_BASE32), 32)
    if millis >= _ULID_MILLIS_LIMIT:
        return False
    hour = millis // 3_600_000
    shard = _SHARDS.get(hour)
    if shard is None:
        moment = datetime.fromtimestamp(hour * 3600, tz=UTC)
        shard = (
            f"{moment.year:04d}",
            f"{moment.month:02d}",
            f"{moment.day:02d}",
            f"{moment.hour:02d}",
        )
        _SHARDS[hour] = shard
    year, month, day, hour_text = shard
    return (
        path_parts["y"] == year
        and path_parts["m"] == month
        and path_parts.get("d", day) == day
        and path_parts.get("h", hour_text) == hour_text
    )


def _record_passes(check: _FastCheck, loaded: Any) -> bool:
    # Schema, then digest: what `_validate` checks of one add-only record.
    if not isinstance(loaded, dict):
        return False
    try:
        content = check.validate(loaded)
    except ValidationError:
        return False
    digest = content.pop("digest", None)  # the digest covers the rest
    return isinstance(digest, str) and ordered_digest(content) == digest


def _fast_records(
    kind: Kind,
    check: _FastCheck,
    path: str,
    data: bytes,
    parts: dict[str, str],
    ids: list[str] | None = None,
) -> int:
    """How many records the file holds if it passes every check, else 0 (not known);
    a batch's record ids go to `ids`."""
    if "y" not in parts or not _in_place(parts):
        return 0
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return 0
    if kind.form == "record":
        loaded = load_known_keys(text, check.keys)
        if loaded is None or loaded.get("id") != parts["id"] or not _record_passes(check, loaded):
            return 0
        return 1
    if kind.form != "jsonl":
        return 0
    lines = jsonl_lines(text)
    found = []
    for line in lines:
        try:
            loaded = load_json(line)
        except ValueError:
            return 0
        if not _record_passes(check, loaded):
            return 0
        found.append(loaded["id"])
    if ids is not None:
        ids.extend(found)
    return len(lines)


def verify_file(path: str, data: bytes, ids: list[str] | None = None) -> int:
    """`parse_file`'s verdict on a file, for `verify`: the number of records it holds
    (one for a file of another kind), or `InvalidRecord` with `parse_file`'s reason.
    The ids of a batch's records (JSON lines: their ids are not their file's name) go
    to `ids`, for the check that no record is given twice."""
    found = kind_of(path)
    if found is not None:
        kind, parts = found
        check = _fast_check(kind)
        if check is not None:
            try:
                count = _fast_records(kind, check, path, data, parts, ids)
            except Exception:  # e.g. a lone surrogate to hash: parse_file says what it is
                count = 0
            if count:
                return count
    parsed = parse_file(path, data)
    if ids is not None:
        ids.extend(parsed.batch_ids())
    return len(parsed.records) or 1
