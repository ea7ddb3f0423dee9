"""`schemas/` is generated from the record models and must never be stale; the example
state validates against it with an independent JSON Schema implementation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gitgw._yaml import load_document, load_record
from gitgw.records import json_schemas, kind_of

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
EXAMPLE = ROOT / "example-repo"
REGENERATE = "regenerate them with `gitgw schemas export schemas`"


def test_every_generated_schema_is_committed_and_current() -> None:
    stale = [
        name
        for name, data in json_schemas().items()
        if not (SCHEMAS / name).is_file() or (SCHEMAS / name).read_bytes() != data
    ]
    assert not stale, f"schemas/ is stale ({', '.join(stale)}): {REGENERATE}"


def test_no_committed_schema_is_left_over() -> None:
    extra = sorted({p.name for p in SCHEMAS.glob("*.json")} - json_schemas().keys())
    assert not extra, f"schemas/ holds files no model generates ({', '.join(extra)}): {REGENERATE}"


@pytest.mark.parametrize("name", sorted(json_schemas()))
def test_each_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    schema = json.loads(json_schemas()[name])
    jsonschema.Draft202012Validator.check_schema(schema)


def _documents(path: str, text: str) -> list[dict[str, Any]]:
    """The JSON content of one file as a reader without gitgw would get it."""
    found = kind_of(path)
    assert found is not None, path
    form = found[0].form
    if form == "jsonl":
        return [json.loads(line) for line in text.splitlines()]
    if form == "markdown":
        front = text.split("---\n", 2)[1]
        return [load_record(front)]
    return [load_record(text) if form == "record" else load_document(text)]


EXAMPLE_FILES = sorted(
    path.relative_to(EXAMPLE).as_posix()
    for path in EXAMPLE.rglob("*")
    if path.is_file() and (found := kind_of(path.relative_to(EXAMPLE).as_posix()))
    and found[0].model is not None
)  # fmt: skip


@pytest.mark.parametrize("path", EXAMPLE_FILES)
def test_example_file_validates_against_its_exported_schema(path: str) -> None:
    found = kind_of(path)
    assert found is not None
    schema = json.loads((SCHEMAS / f"{found[0].name}.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for document in _documents(path, (EXAMPLE / path).read_text()):
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
        assert not errors, f"{path}: {errors}"


def test_schemas_reject_unknown_fields() -> None:
    schema = json.loads((SCHEMAS / "consent.schema.json").read_text())
    path = next(p for p in EXAMPLE_FILES if p.startswith("consent/"))
    document = {**_documents(path, (EXAMPLE / path).read_text())[0], "surprise": True}
    assert not jsonschema.Draft202012Validator(schema).is_valid(document)


def test_schemas_say_where_each_kind_lives() -> None:
    for name, data in json_schemas().items():
        schema = json.loads(data)
        assert schema["$id"] == f"urn:gitgw:schema:{name.removesuffix('.schema.json')}:1"
        assert {"x-gitgw-path", "x-gitgw-form", "x-gitgw-add-only"} <= schema.keys()
