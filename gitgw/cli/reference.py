"""The CLI reference page, generated from the click command tree.

`docs/cli.md` is this module's output, and a test fails when the two differ, so the
reference cannot fall behind the commands. Regenerate it with:

    python -m gitgw.cli.reference > docs/cli.md

Help is rendered at a fixed width of 100 columns, so the page does not depend on the
terminal it was generated in.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import click

from gitgw.cli import cli

__all__ = ["REGENERATE", "WIDTH", "command_paths", "render_reference"]

WIDTH = 100
REGENERATE = "python -m gitgw.cli.reference > docs/cli.md"

_INTRO = f"""\
# CLI reference

Every `gitgw` command and its `--help` output, wrapped at 100 columns (in a terminal,
the text wraps to fit it). Every command also answers `-h`. This page is generated from
the commands themselves, and a test fails when it is out of date. Regenerate it with:

```sh
{REGENERATE}
```

Exit codes: 0 success; 1 a failed check or an error gitgw explains (a message on stderr,
often with a `hint:` line); 2 bad usage; 3 an unexpected crash, with a log written under
gitgw's home directory (`$GITGW_HOME`, else `$XDG_STATE_HOME/gitgw`).
"""


def _contexts(
    command: click.Command, name: str, parent: click.Context | None
) -> Iterator[click.Context]:
    """A context for `command` and, depth first, for every subcommand under it."""
    settings = dict(command.context_settings)
    if parent is None:
        settings["terminal_width"] = WIDTH
        settings["max_content_width"] = WIDTH
    ctx = click.Context(command, info_name=name, parent=parent, **settings)
    yield ctx
    if isinstance(command, click.Group):
        for sub_name in command.list_commands(ctx):
            sub = command.get_command(ctx, sub_name)
            if sub is not None and not sub.hidden:
                yield from _contexts(sub, sub_name, ctx)


def command_paths() -> list[str]:
    """Every command's full name, e.g. ``gitgw schemas export``, root first."""
    return [ctx.command_path for ctx in _contexts(cli, "gitgw", None)]


def render_reference() -> str:
    """The markdown of `docs/cli.md`: one section per command with its `--help` output."""
    sections = [_INTRO]
    for ctx in _contexts(cli, "gitgw", None):
        help_text = "\n".join(line.rstrip() for line in ctx.get_help().splitlines())
        sections.append(f"## `{ctx.command_path}`\n\n```text\n{help_text}\n```\n")
    return "\n".join(sections)


if __name__ == "__main__":
    sys.stdout.write(render_reference())
