"""`gitgw consent`: grant, revoke, list and check who may receive what."""

from __future__ import annotations

from typing import Any

import click

from gitgw._canonical import format_time
from gitgw.cli._output import echo, emit_json, err, table
from gitgw.cli._repo import open_repo
from gitgw.cli._when import show_time
from gitgw.concepts.consent import ConsentLedger, Decision, Entry, grant, revoke
from gitgw.records import LEVELS

LEVEL = click.Choice(LEVELS)
_SUBJECTS = (
    "provider:NAME (a provider in gitgw.yaml), client:NAME (a client of the proxy), "
    "env:VARIABLE (use a key found in the environment), tool:NAME (a tool agents call)"
)


def _entry_json(entry: Entry, fate: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": entry.id,
        "action": entry.action,
        "subject": entry.subject,
        "level": entry.level,
        "purpose": entry.purpose,
        "actor": entry.actor,
        "created": format_time(entry.created),
        "reason": entry.reason,
        "supersedes": entry.supersedes,
        "path": entry.path,
    }
    if fate is not None:
        data["fate"] = fate
    return data


def _decision_json(decision: Decision) -> dict[str, Any]:
    return {
        "subject": decision.subject,
        "level": decision.level,
        "allowed": decision.allowed,
        "reason": decision.reason,
        "entry": None if decision.entry is None else _entry_json(decision.entry),
    }


@click.group("consent")
def command() -> None:
    """Grant, revoke, list and check consent: who may receive what.

    \b
    A subject is KIND:NAME:
      provider:openai          a model provider (a hosted one needs a grant for each level)
      client:claude-code       a client of the proxy
      env:OPENAI_API_KEY       permission to use a key found in the environment
      tool:memory.write        a tool that agents call

    Levels, lowest to highest: public, internal, confidential, restricted. A grant up to
    a level allows every level below it too; the newest entry of a subject decides, and a
    revocation also wins over a grant written elsewhere that did not see it. Entries are
    add-only files under consent/; nothing is ever edited or deleted.
    """


@command.command("grant")
@click.argument("subject")
@click.option("--level", required=True, type=LEVEL, help="The highest level granted.")
@click.option("--purpose", help="What the grant is for (shown in lists and audits).")
@click.option("--reason", help="Why it was granted (kept in the ledger).")
def grant_command(subject: str, level: str, purpose: str | None, reason: str | None) -> None:
    """Grant SUBJECT every level up to LEVEL.

    The entry records who granted it (GITGW_ACTOR, else git's user.name and user.email)
    and supersedes whatever entry of the subject was in force.

    \b
    Example:
      gitgw consent grant provider:openai --level internal --purpose "code review"
    """
    with open_repo() as repo:
        written = grant(repo, subject, level, purpose=purpose, reason=reason)
    echo(
        f"granted {subject} up to {level}: entry {written.entry.id} (commit {written.commit[:12]})"
    )
    if written.previous is not None:
        echo(f"it supersedes {written.previous.describe()}")


@command.command("revoke")
@click.argument("subject")
@click.option("--reason", help="Why it was revoked (kept in the ledger).")
def revoke_command(subject: str, reason: str | None) -> None:
    """Revoke SUBJECT: every earlier grant of it stops counting.

    Revoking a subject that was never granted, or is already revoked, is recorded all
    the same (it also blocks a grant written elsewhere that did not see it), and said so.
    """
    with open_repo() as repo:
        written = revoke(repo, subject, reason=reason)
    entry, previous = written.entry, written.previous
    echo(f"revoked {subject}: entry {entry.id} (commit {written.commit[:12]})")
    if previous is None:
        echo(f"note: {subject} was never granted; the revocation is recorded anyway")
    elif previous.action == "revoke":
        echo(f"note: {subject} was already revoked by {previous.id}; recorded anyway")
    else:
        echo(f"it ends {previous.describe()}")


@command.command("list")
@click.option(
    "--all", "show_all", is_flag=True, help="Every entry, oldest first, with what became of it."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a versioned envelope).")
def list_command(show_all: bool, as_json: bool) -> None:
    """Show the grants in force (or, with --all, the whole history)."""
    with open_repo() as repo:
        repo.require_head()
        ledger = ConsentLedger(repo)
    damaged = ledger.damaged
    if as_json:
        if show_all:
            entries = [_entry_json(e, ledger.fate(e.id)) for e in ledger.history()]
        else:
            entries = [_entry_json(e) for e in ledger.current()]
        emit_json({"all": show_all, "entries": entries, "unreadable": damaged})
    elif show_all:
        rows: list[tuple[str, ...]] = [
            (
                e.id,
                show_time(e.created),
                e.action,
                e.subject,
                e.level or "-",
                e.actor,
                ledger.fate(e.id),
            )
            for e in ledger.history()
        ]
        table(rows, ("entry", "time (UTC)", "action", "subject", "level", "by", "now"))
        if not rows:
            echo("the consent ledger is empty")
    else:
        rows = [
            (e.subject, e.level or "-", e.purpose or "-", show_time(e.created), e.actor, e.id)
            for e in ledger.current()
        ]
        table(rows, ("subject", "up to", "purpose", "since (UTC)", "by", "entry"))
        if not rows:
            echo("no grants are in force")
    for problem in damaged:
        err(f"warning: {problem.path}: {problem.reason}")
    if damaged:
        err(
            "warning: while a consent file is unreadable, every check is denied; run `gitgw verify`"
        )


@command.command("check")
@click.argument("subject")
@click.option("--level", required=True, type=LEVEL, help="The level to ask about.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a versioned envelope).")
def check_command(subject: str, level: str, as_json: bool) -> None:
    """May SUBJECT receive LEVEL now? Exit 0 if allowed, 1 if denied.

    Prints the entry that decided: the grant that allows it, or the revocation or
    narrower grant that denies it.
    """
    with open_repo() as repo:
        repo.require_head()
        decision = ConsentLedger(repo).check(subject, level)
    if as_json:
        emit_json(_decision_json(decision))
    else:
        verdict = "allowed" if decision.allowed else "denied"
        echo(f"{verdict}: {subject} at {level}: {decision.reason}")
    if not decision.allowed:
        raise SystemExit(1)
