"""`verify`'s format check: `parse_file`'s verdict on a file, without what only its
other callers use.

`verify` proves every file of a long history once. A file of a kind with a fast check
(runs and receipt batches, most of any history) is accepted here only once every check
`parse_file` makes has passed: the same loader's values, a validator whose schema is
the model's, the same digest, the same place. Anything else, any doubt included, goes
to `parse_file`, which accepts it or raises with its reason (or fails) exactly as it
always has: only acceptance is fast, so no verdict and no reason can differ.

The fast validator is the model's own core schema with each model made a typed dict
(nothing is built but dicts) and `Timestamp`'s Python check done by pydantic-core. A
schema holding anything whose meaning the conversion does not keep (a validator in
Python, an alias, a setting it does not know) leaves that kind without a fast check.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import SchemaError, SchemaValidator

from gitgw._canonical import parsed_digest
from gitgw._yaml import load_json, load_known_keys
from gitgw.records import base
from gitgw.records.base import AddOnlyRecord
from gitgw.records.layout import KINDS, Kind, jsonl_lines, kind_of, parse_file

__all__ = ["prepare_checks", "verify_file"]

# A ULID time from 10,000 on: `ulid_time` raises for it, so `parse_file` decides.
_ULID_MILLIS_LIMIT = 253_402_300_800_000
_BASE32 = str.maketrans("0123456789ABCDEFGHJKMNPQRSTVWXYZ", "0123456789abcdefghijklmnopqrstuv")
_SHARDS: dict[int, tuple[str, str, str, str]] = {}  # hour since 1970 -> year, month, day, hour
_MODEL_CONFIG = frozenset(
    {"title", "extra_fields_behavior", "validate_by_alias", "validate_by_name"}
)
_PLAIN_SCHEMAS = frozenset(
    {"any", "bool", "datetime", "default", "definition-ref", "definitions", "dict", "float"}
    | {"int", "list", "literal", "nullable", "str"}
)
_SUBSCHEMAS = frozenset({"schema", "items_schema", "keys_schema", "values_schema", "definitions"})


def _as_plain(node: Any) -> Any:
    """A model's core schema with every model a typed dict and `Timestamp`'s Python check
    done in pydantic-core: the same inputs accepted, nothing built but dicts. Raises
    `TypeError` for anything whose meaning it does not keep (a validator in Python, an
    alias, a setting it does not know): that kind has no fast check."""
    if isinstance(node, list):
        return [_as_plain(item) for item in node]
    if not isinstance(node, dict):
        return node
    kind = node.get("type")
    if kind == "model":
        return _model_as_typed_dict(node)
    if kind == "function-after" and node["function"].get("function") is base._utc:
        # `_utc` refuses a naive time and converts to UTC, which overflows outside the
        # years 1-9999 in UTC: such a time is not accepted here (`parse_file` decides).
        inner = dict(node["schema"])
        if inner.get("type") != "datetime" or set(inner) - {"type", "microseconds_precision"}:
            raise TypeError("a Timestamp on another schema")
        inner["tz_constraint"] = "aware"
        inner["ge"] = datetime.min.replace(tzinfo=UTC)
        inner["le"] = datetime.max.replace(tzinfo=UTC)
        return inner
    if kind not in _PLAIN_SCHEMAS:
        raise TypeError(f"a {kind} schema")
    return {
        key: _as_plain(value) if key in _SUBSCHEMAS else value
        for key, value in node.items()
        if key != "serialization"
    }


def _model_as_typed_dict(node: dict[str, Any]) -> dict[str, Any]:
    config = node.get("config", {})
    inner = node["schema"]
    if (
        node.get("custom_init")
        or node.get("root_model")
        or set(node)
        - {"type", "cls", "schema", "config", "ref", "metadata", "custom_init", "root_model"}
        or set(config) - _MODEL_CONFIG
        or inner["type"] != "model-fields"
        or inner.get("computed_fields")
        or set(inner) - {"type", "fields", "model_name", "computed_fields"}
    ):
        raise TypeError(f"model {node.get('cls')} has more than fields")
    fields = {}
    for name, field in inner["fields"].items():
        if set(field) - {"type", "schema", "metadata"}:
            raise TypeError(f"field {name} has more than a schema")
        schema = _as_plain(field["schema"])
        # A model's field is required unless it has a default, which a `default` gives.
        required = field["schema"]["type"] != "default"
        fields[name] = {"type": "typed-dict-field", "schema": schema, "required": required}
    plain = {
        "type": "typed-dict",
        "fields": fields,
        "extra_behavior": config.get("extra_fields_behavior", "ignore"),
    }
    if "ref" in node:
        plain["ref"] = node["ref"]
    return plain


@dataclass(frozen=True)
class _FastCheck:
    validate: Callable[[Any], dict[str, Any]]  # raises ValidationError where the model would
    keys: frozenset[str]  # the top-level names a record may have


_FAST: dict[str, _FastCheck | None] = {}
_KEY = re.compile(r"[a-z_][a-z0-9_]*")
_FAST_KINDS = ("run", "receipt")  # most of any history; the rest go through parse_file


def _fast_check(kind: Kind) -> _FastCheck | None:
    if kind.name not in _FAST:
        check = None
        model = kind.model
        if kind.name in _FAST_KINDS and model is not None and issubclass(model, AddOnlyRecord):
            model.model_rebuild()
            try:
                validator = SchemaValidator(_as_plain(model.__pydantic_core_schema__))
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
        fields = check.validate(loaded)
    except ValidationError:
        return False
    digest = fields.get("digest")
    if not isinstance(digest, str):
        return False
    del loaded["digest"]  # the digest covers the rest; `loaded` is not used after this
    return parsed_digest(loaded) == digest


def _fast_records(
    kind: Kind, check: _FastCheck, path: str, data: bytes, parts: dict[str, str]
) -> int:
    """How many records the file holds if it passes every check, else 0 (not known)."""
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
    for line in lines:
        try:
            loaded = load_json(line)
        except ValueError:
            return 0
        if not _record_passes(check, loaded):
            return 0
    return len(lines)


def verify_file(path: str, data: bytes) -> int:
    """`parse_file`'s verdict on a file, for `verify`: the number of records it holds
    (one for a file of another kind), or `InvalidRecord` with `parse_file`'s reason."""
    found = kind_of(path)
    if found is not None:
        kind, parts = found
        check = _fast_check(kind)
        if check is not None:
            try:
                count = _fast_records(kind, check, path, data, parts)
            except Exception:  # e.g. a lone surrogate to hash: parse_file says what it is
                count = 0
            if count:
                return count
    return len(parse_file(path, data).records) or 1
