"""Everything the CLI prints goes through here: text, tables and the JSON envelope."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

__all__ = ["JSON_SCHEMA_VERSION", "echo", "emit_json", "err", "table", "when"]

JSON_SCHEMA_VERSION = 1


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def emit_json(data: Any) -> None:
    """Print `data` in the versioned envelope every `--json` output uses."""
    envelope = {"schema_version": JSON_SCHEMA_VERSION, "data": _plain(data)}
    click.echo(json.dumps(envelope, indent=2, ensure_ascii=False))


def echo(message: str = "") -> None:
    """Print a line to standard output."""
    click.echo(message)


def err(message: str) -> None:
    """Print a line to standard error."""
    click.echo(message, err=True)


def table(rows: list[tuple[str, ...]], header: tuple[str, ...] | None = None) -> None:
    """Print rows as aligned columns."""
    allrows = ([header] if header else []) + rows
    if not allrows:
        return
    widths = [max(len(row[i]) for row in allrows) for i in range(len(allrows[0]))]
    for row in allrows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def when(epoch: int | None) -> str:
    """A commit time as local-independent UTC text."""
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def is_tty() -> bool:
    """Whether standard error is a terminal (progress is shown only then)."""
    return sys.stderr.isatty()


__all__ += ["is_tty"]
