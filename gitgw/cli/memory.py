"""`gitgw memory`: notes agents and people share through the state branch."""

from __future__ import annotations

import click

from gitgw._canonical import format_time
from gitgw.cli._input import read_text
from gitgw.cli._output import echo, emit_json, err
from gitgw.cli._repo import open_repo
from gitgw.concepts import memory
from gitgw.concepts.identity import check_level, current_agent
from gitgw.concepts.store import Store
from gitgw.records import LEVELS

_LEVEL = click.Choice(list(LEVELS))
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON (a versioned envelope).")


@click.group("memory")
def command() -> None:
    """Share what you learned: notes every agent and person can search.

    A note is memory/<id>.md on the state branch: front matter (title, tags, trust
    level, author, source, times) and a markdown body. Other machines see it after
    `gitgw sync`. Search ranks notes by their words (titles count most) and shows only
    those at or below your clearance ($GITGW_CLEARANCE).

    \b
    Examples:
      gitgw memory add --title "Running the checks" --tag testing --trust public --file note.md
      echo "Staging is read-only for agents" | gitgw memory add --title "Staging DB" -
      gitgw memory search "staging database" --limit 5
      gitgw memory forget 01M6DYZDS6CWHHTH9THZXXQ8X6
    """


def _body(file: str | None, dash: bool) -> str:
    if dash or file == "-":
        return read_text("-", "the note's text")
    if file is None:
        raise click.UsageError("give the note's text: --file F, or - to read stdin")
    return read_text(file, "the note's text")


@command.command("add")
@click.option("--title", required=True, help="What the note is about, in one line.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option("--trust", type=_LEVEL, default="internal", show_default=True, help="Who may see it.")
@click.option("--source", help="Where the knowledge comes from (a URL, a document).")
@click.option("--author", help="Who writes it [default: $GITGW_AGENT, or your git name].")
@click.option("--file", "file", help="A file holding the markdown text, or - for stdin.")
@click.argument("dash", required=False, type=click.Choice(["-"]), metavar="[-]")
def add(
    title: str,
    tags: tuple[str, ...],
    trust: str,
    source: str | None,
    author: str | None,
    file: str | None,
    dash: str | None,
) -> None:
    """Add a note and print its id.

    The text comes from --file F, or from stdin with `-`. A note holding anything that
    looks like a secret (a private key, a cloud or API token, a password) is refused
    with the line it is on, and nothing is written.
    """
    text = _body(file, dash == "-")
    with open_repo() as repo:
        note = memory.add(
            Store(repo),
            title=title,
            body=text,
            author=current_agent(repo, author),
            tags=tags,
            trust=check_level(trust, "--trust"),
            source=source,
        )
    echo(note.id)


@command.command("edit")
@click.argument("note_id", metavar="ID")
@click.option("--title", help="A new title.")
@click.option("--tag", "tags", multiple=True, help="Replace the tags (repeatable).")
@click.option("--trust", type=_LEVEL, help="A new trust level.")
@click.option("--file", "file", help="New text from a file, or - for stdin.")
def edit(
    note_id: str, title: str | None, tags: tuple[str, ...], trust: str | None, file: str | None
) -> None:
    """Change a note in place.

    Notes are the one kind of record that is edited. If the same note is edited on two
    machines, `gitgw sync` keeps both versions (the other one under conflicts/) and
    says so; `gitgw memory show` then names the version set aside.
    """
    with open_repo() as repo:
        note = memory.edit(
            Store(repo),
            note_id.upper(),
            title=title,
            body=None if file is None else _body(file, False),
            tags=tags or None,
            trust=check_level(trust, "--trust") if trust else None,
        )
    echo(f"{note.id}: updated {format_time(note.updated)}")


@command.command("show")
@click.argument("note_id", metavar="ID")
@_JSON
def show(note_id: str, as_json: bool) -> None:
    """Show a note (if your clearance lets you see its trust level)."""
    with open_repo() as repo:
        view = memory.show(Store(repo), note_id.upper())
    if as_json:
        emit_json(
            {
                "note": view.note.to_data(),
                "body": view.body,
                "path": view.path,
                "conflicts": [c.to_data() for c in view.conflicts],
            }
        )
        return
    n = view.note
    echo(f"# {n.title}")
    echo(f"id: {n.id}  trust: {n.trust}  author: {n.author}  updated: {format_time(n.updated)}")
    if n.tags:
        echo("tags: " + ", ".join(n.tags))
    if n.source:
        echo(f"source: {n.source}")
    for conflict in view.conflicts:
        if conflict.kept_at is None:
            err(
                "conflict: the note was deleted on one machine while it changed on another; "
                f"the change was kept when {conflict.ours[:12]} and {conflict.theirs[:12]} "
                "were merged"
            )
        else:
            err(
                f"conflict: another version, from {conflict.theirs[:12]}, is kept at "
                f"{conflict.kept_at}"
            )
    echo("")
    echo(view.body.rstrip())


@command.command("search")
@click.argument("query")
@click.option("--limit", type=int, default=10, show_default=True, help="At most this many results.")
@click.option(
    "--max-trust", type=_LEVEL, help="Only notes at or below this level [default: your clearance]."
)
@_JSON
def search(query: str, limit: int, max_trust: str | None, as_json: bool) -> None:
    """Search notes by their words, best match first.

    Every word counts (a note matching more of them ranks higher); a word also matches
    longer ones that start with it and other forms of it (retry, retries). Titles weigh
    most, then tags, then the text. Forgotten notes never appear. Asking for
    --max-trust above your clearance ($GITGW_CLEARANCE) is an error.
    """
    with open_repo() as repo:
        hits = memory.search(
            repo, query, limit, check_level(max_trust, "--max-trust") if max_trust else None
        )
    if as_json:
        emit_json({"query": query, "hits": hits})
        return
    if not hits:
        err("no notes match")
    for hit in hits:
        tags = f"  [{', '.join(hit.tags)}]" if hit.tags else ""
        echo(f"{hit.id}  {hit.trust:12}  {hit.title}{tags}")
        if hit.snippet:
            echo("    " + " ".join(hit.snippet.split()))


@command.command("forget")
@click.argument("note_id", metavar="ID")
@click.option("--reason", help="Why it should be forgotten.")
@click.option("--as", "actor", help="Who forgets it [default: $GITGW_AGENT, or your git name].")
def forget(note_id: str, reason: str | None, actor: str | None) -> None:
    """Forget a note: it leaves search everywhere once synced; history keeps it.

    Writes an add-only tombstone (memory/tombstones/<id>.yaml) and removes the note's
    file in the same commit.
    """
    with open_repo() as repo:
        tombstone = memory.forget(Store(repo), note_id.upper(), current_agent(repo, actor), reason)
    echo(f"forgot {tombstone.note} (tombstone {tombstone.id})")
