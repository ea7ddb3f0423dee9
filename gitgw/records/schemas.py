"""JSON Schemas generated from the record models, one per kind."""

from __future__ import annotations

import json
from typing import Any

from gitgw.records.layout import KINDS

__all__ = ["json_schemas"]


def json_schemas() -> dict[str, bytes]:
    """File name → the JSON Schema bytes for every kind that has a model."""
    out: dict[str, bytes] = {}
    for kind in KINDS:
        if kind.model is None:
            continue
        schema: dict[str, Any] = kind.model.model_json_schema(by_alias=True, mode="validation")
        if kind.add_only:
            # In memory a record may lack its digest until it is sealed; on disk never.
            schema["properties"]["digest"] = {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"}
            schema["required"] = sorted({*schema.get("required", ()), "digest"})
        name = f"{kind.name}.schema.json"
        described = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"urn:gitgw:schema:{kind.name}:1",
            "x-gitgw-path": kind.template,
            **({"x-gitgw-earlier-paths": list(kind.earlier)} if kind.earlier else {}),
            "x-gitgw-form": kind.form,
            "x-gitgw-add-only": kind.add_only,
            **schema,
        }
        out[name] = (json.dumps(described, indent=2, sort_keys=False) + "\n").encode("utf-8")
    return out
