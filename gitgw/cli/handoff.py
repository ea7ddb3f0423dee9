"""`gitgw handoff`: hand work to another agent, claim it, report on it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import click

from gitgw._canonical import format_time
from gitgw.cli._input import read_text
from gitgw.cli._output import echo, emit_json, err, table
from gitgw.cli._repo import open_repo
from gitgw.concepts import handoff as handoffs
from gitgw.concepts.handoff_export import from_a2a_task, prompt_context, to_a2a_task
from gitgw.concepts.handoff_index import find_ids, list_handoffs
from gitgw.concepts.identity import (
    allowed,
    clearance,
    current_agent,
    machine_name,
    require_clearance,
)
from gitgw.concepts.store import Store
from gitgw.records import LEVELS
from gitgw.records.handoff import Artifact
from gitgw.state import StateRepo

_STATES = click.Choice(list(handoffs.STATES))
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON (a versioned envelope).")


@click.group("handoff")
def command() -> None:
    """Hand work to another agent, and follow it to the end.

    A handoff is handoffs/<id>/handoff.md on the state branch (never changed once
    written) plus add-only events: claims, state changes (A2A TaskStates: submitted,
    working, input-required, completed, failed, canceled, rejected), notes, artifacts.
    Agents on other machines see it after `gitgw sync`. If two claim it at once, the
    earliest claim holds it on every machine.

    \b
    A round trip:
      ID=$(gitgw handoff create --to codex --title "Finish the retry logic" --body-file notes.md)
      gitgw handoff list --to codex --state submitted
      gitgw handoff claim $ID --as codex
      gitgw handoff update $ID --as codex --state completed --note "done, tests pass"
    """


def _resolve(repo: StateRepo, given: str) -> str:
    if len(given) == 26:
        return given.upper()
    found = find_ids(repo, given) if len(given) >= 4 else []
    if len(found) == 1:
        return found[0]
    raise handoffs.HandoffError(
        f"{given!r} names {'several handoffs' if found else 'no handoff'}",
        "give the whole id, or more of it (see `gitgw handoff list`)",
    )


def _read_text(body_file: str | None) -> str:
    if body_file is None:
        return ""
    return read_text(body_file, "the handoff's body")


def _decision(text: str) -> dict[str, str]:
    decision, sep, reason = text.partition(" -- ")
    if not sep or not decision.strip() or not reason.strip():
        raise handoffs.HandoffError(
            f"cannot read the decision {text!r}", 'write it as "DECISION -- REASON"'
        )
    return {"decision": decision.strip(), "reason": reason.strip()}


def _changed(text: str) -> dict[str, str]:
    path, sep, status = text.rpartition(":")
    if not (sep and status in ("added", "modified", "deleted", "renamed")):
        path, status = text, "modified"
    if not path.strip():
        raise click.BadParameter(f"{text!r} names no file", param_hint="--changed")
    return {"path": path, "status": status}


@command.command("create")
@click.option("--to", "to", metavar="AGENT", help="The receiving agent's name, or `any`.")
@click.option("--title", metavar="TEXT", help="One line saying what the work is.")
@click.option(
    "--from",
    "sender",
    metavar="AGENT",
    help="Who hands it over [default: $GITGW_AGENT, or your git name].",
)
@click.option("--model", help="The model the sender ran on.")
@click.option("--machine", help="The machine the sender ran on [default: this host].")
@click.option("--goal", help="What the work is for.")
@click.option("--accept", multiple=True, help="An acceptance criterion (repeatable).")
@click.option("--step", multiple=True, help="A next step, in order (repeatable).")
@click.option(
    "--verify",
    "verify_commands",
    multiple=True,
    help="A command that checks the work (repeatable).",
)
@click.option("--blocker", multiple=True, help="Something in the way (repeatable).")
@click.option(
    "--decision", multiple=True, metavar="TEXT", help='A decision taken: "DECISION -- REASON".'
)
@click.option(
    "--changed",
    multiple=True,
    metavar="PATH[:STATUS]",
    help="A changed file: PATH[:added|modified|deleted].",
)
@click.option("--code-repo", help="The code repository's URL.")
@click.option("--code-branch", help="The code branch the work is on.")
@click.option("--base-commit", help="The commit the work started from.")
@click.option("--wip-commit", help="A commit holding the work in progress.")
@click.option(
    "--trust",
    type=click.Choice(list(LEVELS)),
    metavar="LEVEL",
    help="Its trust level: public, internal, confidential, restricted [default: internal].",
)
@click.option(
    "--ref", multiple=True, metavar="KIND:REF",
    help="Context to read; KIND is memory, file, receipt, handoff or url (repeatable).",
)  # fmt: skip
@click.option(
    "--body-file", metavar="FILE",
    help="Markdown for the body, or - for stdin. It may start with YAML front matter "
    "holding any handoff field.",
)  # fmt: skip
def create(
    to: str | None,
    title: str | None,
    sender: str | None,
    model: str | None,
    machine: str | None,
    goal: str | None,
    accept: tuple[str, ...],
    step: tuple[str, ...],
    verify_commands: tuple[str, ...],
    blocker: tuple[str, ...],
    decision: tuple[str, ...],
    changed: tuple[str, ...],
    code_repo: str | None,
    code_branch: str | None,
    base_commit: str | None,
    wip_commit: str | None,
    trust: str | None,
    ref: tuple[str, ...],
    body_file: str | None,
) -> None:
    """Create a handoff and print its id.

    Fields come from the options and from the front matter of --body-file; an option
    wins over the front matter. Every handoff needs --to and --title. References to
    memory notes must exist and be at or below the handoff's trust level. Nothing that
    looks like a secret is accepted, anywhere in it.

    \b
    Example:
      gitgw handoff create --to codex --title "Finish the retry logic" \\
        --goal "Uploads survive a flaky endpoint" --accept "python -m tests passes" \\
        --step "implement RetryPolicy.delay" --ref memory:01M5C9EDKFBFGEPRV2W147SA69 \\
        --body-file notes.md
    """
    fields, body = handoffs.parse_draft(_read_text(body_file))
    with open_repo() as repo:
        store = Store(repo)
        party = dict(fields.pop("from", None) or {})
        party["agent"] = current_agent(repo, sender or party.get("agent"))
        party["model"] = model or party.get("model")
        party["machine"] = machine or party.get("machine") or machine_name()
        fields["from"] = {k: v for k, v in party.items() if v is not None}
        code = dict(fields.pop("repo", None) or {})
        for key, value in (("url", code_repo), ("branch", code_branch),
                           ("base_commit", base_commit), ("wip_commit", wip_commit)):  # fmt: skip
            if value:
                code[key] = value
        if code:
            fields["repo"] = code
        options: dict[str, Any] = {
            "to": to, "title": title, "goal": goal,
            "trust": trust,
            "acceptance": list(accept), "next_steps": list(step),
            "verify_commands": list(verify_commands), "blockers": list(blocker),
            "decisions": [_decision(d) for d in decision],
            "changed_files": [_changed(c) for c in changed],
            "context": [handoffs.parse_ref(r).model_dump() for r in ref],
        }  # fmt: skip
        fields.update({k: v for k, v in options.items() if v})
        created = handoffs.create(store, fields, body)
    echo(created.id)


@command.command("list")
@click.option("--to", "to", help="Only handoffs to this agent (or to `any`).")
@click.option(
    "--state", "states", type=_STATES, multiple=True, help="Only this state (repeatable)."
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="At most this many; 0 for all.",
)
@_JSON
def list_(to: str | None, states: tuple[str, ...], limit: int, as_json: bool) -> None:
    """List handoffs, newest first, with their current state and holder.

    Answers from an index under .git/gitgw/ that follows the branch (rebuilt when it is
    missing or stale). Handoffs above your clearance ($GITGW_CLEARANCE) are left out.
    """
    ceiling = clearance()
    levels = tuple(level for level in LEVELS if allowed(level, ceiling))
    with open_repo() as repo:
        visible, total = list_handoffs(repo, to, states, limit or None, levels)
    if as_json:
        emit_json({"total": total, "handoffs": visible})
        return
    table(
        [(r.id, r.state, r.to, r.holder or "-", r.title[:60]) for r in visible],
        ("ID", "STATE", "TO", "HOLDER", "TITLE"),
    )
    if total > len(visible):
        err(f"({total - len(visible)} more; use --limit 0 to see all)")


def _view_json(view: handoffs.HandoffView) -> dict[str, Any]:
    status = view.status
    return {
        "handoff": view.handoff.to_data(),
        "body": view.body,
        "status": {
            "state": status.state,
            "holder": status.holder,
            "claim": status.claim,
            "updated": status.updated,
            "lost_claims": status.lost,
            "ignored": status.ignored,
        },
        "events": [event.to_data() for event in view.events],
    }


@command.command("show")
@click.argument("handoff_id", metavar="ID")
@_JSON
def show(handoff_id: str, as_json: bool) -> None:
    """Show a handoff: its fields, its state and holder, and its events."""
    with open_repo() as repo:
        view = handoffs.read(Store(repo), _resolve(repo, handoff_id))
    require_clearance(view.handoff.trust, f"handoff {view.handoff.id}")
    if as_json:
        emit_json(_view_json(view))
        return
    _print_view(view)


def _print_view(view: handoffs.HandoffView) -> None:
    h, status = view.handoff, view.status
    held = f" (held by {status.holder})" if status.holder else ""
    sender = h.from_.agent + "".join(
        f" {label} {value}" for label, value in (("on", h.from_.model), ("at", h.from_.machine))
        if value
    )  # fmt: skip
    echo(f"handoff {h.id}: {h.title}")
    for label, value in (("state", status.state + held), ("from", sender), ("to", h.to),
                         ("trust", h.trust), ("created", format_time(h.created)),
                         ("goal", h.goal)):  # fmt: skip
        if value:
            echo(f"  {label + ':':9} {value}")
    if h.repo:
        echo(f"  {'code:':9} " + " ".join(f"{k}={v}" for k, v in h.repo.model_dump().items() if v))
    sections: list[tuple[str, list[str]]] = [
        ("acceptance", h.acceptance),
        ("changed files", [f"{c.path} ({c.status})" for c in h.changed_files]),
        ("decisions", [f"{d.decision} -- {d.reason}" for d in h.decisions]),
        ("verify with", h.verify_commands),
        ("blockers", h.blockers),
        ("next steps", h.next_steps),
        ("context", [f"{c.kind}:{c.ref}" for c in h.context]),
    ]
    for title, items in sections:
        if items:
            echo(f"  {title}:")
            for item in items:
                echo(f"    - {item}")
    echo("  events:")
    ignored = {i.event: i.reason for i in status.ignored}
    for e in view.events:
        what = f"{e.kind} {e.state}" if e.state else e.kind
        extra = f": {e.note}" if e.note else ""
        if e.artifact:
            extra += f" [{e.artifact.name} {e.artifact.uri}]"
        flag = f"  (ignored: {ignored[e.id]})" if e.id in ignored else ""
        echo(f"    {format_time(e.created)}  {e.agent}  {what}{extra}{flag}")
    for lost in status.lost:
        echo(f"  lost claim: {lost.agent} ({lost.event}); {status.holder} claimed it first")
    if view.body.strip():
        echo("")
        echo(view.body.rstrip())


@command.command("claim")
@click.argument("handoff_id", metavar="ID")
@click.option(
    "--as", "agent", required=True, envvar="GITGW_AGENT", help="Your agent name [env: GITGW_AGENT]."
)
def claim(handoff_id: str, agent: str) -> None:
    """Claim a handoff (and set it working).

    Fails, saying who holds it, if another agent claimed it first; claiming one you
    already hold changes nothing. After a sync that merged two claims, the agent whose
    claim came later is told here that it lost.
    """
    with open_repo() as repo:
        view = handoffs.claim(Store(repo), _resolve(repo, handoff_id), agent)
    echo(f"claimed {view.handoff.id} as {agent}; state: {view.status.state}")


def _artifact(text: str) -> Artifact:
    name, sep, uri = text.partition("=")
    if not sep or not name or not uri:
        raise handoffs.HandoffError(f"cannot read the artifact {text!r}", "write NAME=URI")
    digest = None
    local = Path(uri.removeprefix("file://"))
    if local.is_file():
        digest = hashlib.sha256(local.read_bytes()).hexdigest()
    return Artifact(name=name, uri=uri, sha256=digest)


@command.command("update")
@click.argument("handoff_id", metavar="ID")
@click.option("--state", type=_STATES, help="The new state.")
@click.option("--note", help="A note for whoever reads the handoff next.")
@click.option("--artifact", multiple=True, help="Something produced: NAME=URI (a local file's "
              "sha256 is recorded).")  # fmt: skip
@click.option(
    "--as",
    "agent",
    envvar="GITGW_AGENT",
    help="Your agent name [env: GITGW_AGENT; default: your git name].",
)
def update(
    handoff_id: str,
    state: str | None,
    note: str | None,
    artifact: tuple[str, ...],
    agent: str | None,
) -> None:
    """Change a handoff's state, add a note, or record artifacts.

    Only the holder changes the state (the sender may cancel); working, input-required,
    completed and failed need a claim first; a terminal state (completed, failed,
    canceled, rejected) accepts no change.
    """
    if state is None and note is None and not artifact:
        raise click.UsageError("give --state, --note or --artifact")
    with open_repo() as repo:
        store = Store(repo)
        view = handoffs.read(store, _resolve(repo, handoff_id))
        who = current_agent(repo, agent)
        events = []
        if state is not None:
            events.append(handoffs.new_event(store, view, "state", who, state=state, note=note))
        elif note is not None:
            events.append(handoffs.new_event(store, view, "note", who, note=note))
        for item in artifact:
            events.append(
                handoffs.new_event(store, view, "artifact", who, artifact=_artifact(item))
            )
        handoffs.write_events(store, view, *events)
        after = handoffs.read(store, view.handoff.id)
    echo(f"{after.handoff.id}: {after.status.state}")


@command.command("export")
@click.argument("handoff_id", metavar="ID")
@click.option("--format", "fmt", type=click.Choice(["a2a"]), required=True, help="The format.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of stdout.",
)
def export(handoff_id: str, fmt: str, output: Path | None) -> None:
    """Export a handoff as an A2A Task (JSON), losslessly.

    The Task has the handoff's state, its history (the body, then every note) and its
    artifacts; metadata.gitgw holds the exact records, so `gitgw handoff import`
    rebuilds the same files, digests and all.
    """
    with open_repo() as repo:
        view = handoffs.read(Store(repo), _resolve(repo, handoff_id))
    require_clearance(view.handoff.trust, f"handoff {view.handoff.id}")
    text = json.dumps(to_a2a_task(view), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise handoffs.HandoffError(f"cannot write {output}: {exc.strerror}") from None


@command.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
def import_(file: Any) -> None:
    """Add a handoff from an A2A Task that `gitgw handoff export` wrote (FILE or -)."""
    try:
        task = json.load(file)
    except ValueError as exc:
        raise handoffs.HandoffError(f"not JSON: {exc}") from None
    files = from_a2a_task(task)
    with open_repo() as repo:
        Store(repo).commit_files(files, f"gitgw: import handoff {task.get('id')}")
    echo(str(task.get("id")))


@command.command("prompt")
@click.argument("handoff_id", metavar="ID")
@click.option(
    "--as",
    "agent",
    envvar="GITGW_AGENT",
    help="The agent the prompt is for [default: the handoff's `to`].",
)
def prompt(handoff_id: str, agent: str | None) -> None:
    """Print a prompt an agent can be started with to take the handoff on.

    It holds the handoff's fields, body and notes, the memory notes it names (only up to
    the handoff's trust level and your clearance) and how to report back.
    """
    from gitgw.render import render_template

    with open_repo() as repo:
        store = Store(repo)
        view = handoffs.read(store, _resolve(repo, handoff_id))
        require_clearance(view.handoff.trust, f"handoff {view.handoff.id}")
        to = agent or (view.handoff.to if view.handoff.to != "any" else "the receiving agent")
        context = prompt_context(store, view, to)
    click.echo(render_template("handoff_prompt.md.j2", context), nl=False)
