"""`gitgw schemas`: the JSON Schemas of every file format."""

from __future__ import annotations

from pathlib import Path

import click

from gitgw._fs import atomic_write
from gitgw.cli._output import echo
from gitgw.errors import GitgwError
from gitgw.records import json_schemas


@click.group("schemas")
def command() -> None:
    """The JSON Schemas of the state branch's file formats."""


@command.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default="schemas")
def export(directory: Path) -> None:
    """Write one `<kind>.schema.json` per file format into DIRECTORY (default: schemas)."""
    schemas = json_schemas()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in schemas.items():
            atomic_write(directory / name, data)
    except OSError as exc:
        raise GitgwError(f"cannot write the schemas into {directory}: {exc.strerror}") from None
    echo(f"wrote {len(schemas)} schemas to {directory}")
