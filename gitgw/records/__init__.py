"""The file formats of the state branch: one pydantic model per kind, and their layout.

These models are the single definition of every format; `schemas/*.schema.json` are
generated from them (`gitgw schemas export`).
"""

from __future__ import annotations

from gitgw.records.base import LEVEL_RANK, LEVELS, AddOnlyRecord, Level, Record, level_rank
from gitgw.records.config import GatewayConfig
from gitgw.records.conflict import Conflict
from gitgw.records.consent import ConsentEntry
from gitgw.records.handoff import Handoff, HandoffEvent
from gitgw.records.layout import (
    KINDS,
    Kind,
    Parsed,
    jsonl_lines,
    kind_named,
    kind_of,
    parse_file,
    render,
    render_batch,
)
from gitgw.records.memory import MemoryNote, MemoryTombstone
from gitgw.records.receipt import Receipt
from gitgw.records.request import Request, Response
from gitgw.records.run import Run
from gitgw.records.schemas import json_schemas
from gitgw.records.workflow import Workflow

__all__ = [
    "KINDS",
    "LEVELS",
    "LEVEL_RANK",
    "AddOnlyRecord",
    "Conflict",
    "ConsentEntry",
    "GatewayConfig",
    "Handoff",
    "HandoffEvent",
    "Kind",
    "Level",
    "MemoryNote",
    "MemoryTombstone",
    "Parsed",
    "Receipt",
    "Record",
    "Request",
    "Response",
    "Run",
    "Workflow",
    "json_schemas",
    "jsonl_lines",
    "kind_named",
    "kind_of",
    "level_rank",
    "parse_file",
    "render",
    "render_batch",
]
