"""`gitgw receipts`: list, show and verify the receipts of model calls."""

from __future__ import annotations

import json
from datetime import datetime
from typing import IO, Any

import click

from gitgw._canonical import format_time
from gitgw.cli._output import echo, emit_json, err, table
from gitgw.cli._repo import open_repo
from gitgw.cli._when import WHEN, WHEN_HELP, show_time
from gitgw.concepts.evidence import verify_receipt
from gitgw.concepts.receipts import ReceiptRow, find, query
from gitgw.errors import GitgwError
from gitgw.records import LEVELS, Receipt


def _row_json(row: ReceiptRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "created": format_time(row.created),
        "client": row.client,
        "level": row.level,
        "provider": row.provider,
        "model": row.model,
        "location": row.location,
        "outcome": row.outcome,
        "consent": list(row.consent),
        "tokens": row.tokens,
        "latency_ms": row.latency_ms,
        "digest_ok": row.digest_ok,
        "path": row.path,
        "line": row.line,
    }


@click.group("receipts")
def command() -> None:
    """List, show and verify receipts: what context went to which model.

    Every model call leaves one receipt: its trust level and the names of the rules that
    set it, the route taken and the candidates rejected, the consent relied on, and each
    message by SHA-256 and size (never its text, unless content capture is on). Receipts
    are batched into add-only files under receipts/<yyyy>/<mm>/<dd>/<hh>/.
    """


@command.command("list")
@click.option("--since", type=WHEN, help=f"Only receipts at or after this: {WHEN_HELP}.")
@click.option("--until", type=WHEN, help="Only receipts before this (same forms).")
@click.option("--provider", help="Only calls routed to this provider.")
@click.option("--level", type=click.Choice(LEVELS), help="Only receipts at this level or above.")
@click.option(
    "--limit", default=50, show_default=True, type=click.IntRange(min=0), help="0 for all."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a versioned envelope).")
def list_command(
    since: datetime | None,
    until: datetime | None,
    provider: str | None,
    level: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List receipts, newest first.

    Answers from an index under .git/gitgw/ that follows the branch (it is rebuilt when
    missing, so deleting it loses nothing).
    """
    with open_repo() as repo:
        repo.require_head()
        listing = query(
            repo,
            since=since,
            until=until,
            provider=provider,
            min_level=level,
            limit=limit or None,
        )
    if as_json:
        emit_json({"total": listing.total, "receipts": [_row_json(r) for r in listing.rows]})
        return
    rows: list[tuple[str, ...]] = [
        (
            r.id,
            show_time(r.created),
            r.client or "-",
            r.level,
            f"{r.provider}/{r.model}" if r.provider else "(none)",
            r.outcome or "-",
            "-" if r.tokens is None else str(r.tokens),
        )
        for r in listing.rows
    ]
    table(rows, ("receipt", "time (UTC)", "client", "level", "route", "outcome", "tokens"))
    if listing.total > len(listing.rows):
        echo(f"showing the newest {len(listing.rows)} of {listing.total}; --limit 0 for all")
    elif not rows:
        echo("no receipts match")
    broken = [r.id for r in listing.rows if not r.digest_ok]
    if broken:
        err(f"warning: {len(broken)} receipt(s) fail their digest, e.g. {broken[0]}")
        err("hint: run `gitgw verify`, or `gitgw receipts verify ID` for one receipt")


def _show(receipt: Receipt, path: str) -> None:
    echo(f"receipt   {receipt.id}  ({path})")
    echo(f"time      {format_time(receipt.created)}")
    echo(f"client    {receipt.client or '-'}")
    rules = f" (rules: {', '.join(receipt.rules)})" if receipt.rules else ""
    echo(f"level     {receipt.level}{rules}")
    if receipt.route is not None:
        r = receipt.route
        where = f", {r.location}" if r.location else ""
        echo(f"route     {r.provider}/{r.model} at {r.endpoint}{where}")
    for rejection in receipt.rejected:
        echo(f"rejected  {rejection.provider}/{rejection.model}: {rejection.reason}")
    echo(f"consent   {', '.join(receipt.consent) or '-'}")
    echo(f"outcome   {receipt.outcome}{': ' + receipt.detail if receipt.detail else ''}")
    if receipt.usage is not None:
        u = receipt.usage
        echo(f"usage     {u.prompt_tokens} prompt + {u.completion_tokens} completion tokens")
    timing = [
        f"{label} {value} ms"
        for label, value in (("latency", receipt.latency_ms), ("overhead", receipt.overhead_ms))
        if value is not None
    ]
    if timing or receipt.cost is not None:
        cost = [f"cost {receipt.cost}"] if receipt.cost is not None else []
        echo(f"costs     {', '.join(timing + cost)}")
    mode = "offline" if receipt.offline else "online"
    echo(f"mode      {mode}; config {receipt.config_commit or '-'}; run {receipt.run or '-'}")
    table(
        [
            (str(n), p.role, p.sha256, str(p.chars), "-" if p.tokens is None else str(p.tokens))
            for n, p in enumerate(receipt.context, 1)
        ],
        ("part", "role", "sha256", "chars", "tokens"),
    )


@command.command("show")
@click.argument("receipt_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a versioned envelope).")
def show_command(receipt_id: str, as_json: bool) -> None:
    """Show receipt ID, read and checked from its batch file."""
    with open_repo() as repo:
        located = find(repo, receipt_id)
    if as_json:
        emit_json({"path": located.path, "line": located.line, "receipt": located.receipt})
    else:
        _show(located.receipt, located.path)


def _messages(handle: IO[str]) -> list[object]:
    try:
        data = json.load(handle)
    except ValueError as exc:
        raise GitgwError(f"{handle.name}: not JSON ({exc})") from None
    messages = data.get("messages") if isinstance(data, dict) else data
    if not isinstance(messages, list):
        raise GitgwError(
            f"{handle.name}: expected the request's JSON with a messages list",
            'the original request body, e.g. {"model": "...", "messages": [...]}',
        )
    return messages


@command.command("verify")
@click.argument("receipt_id", metavar="ID")
@click.option(
    "--context",
    type=click.File("r", encoding="utf-8"),
    help='The original request (OpenAI chat JSON, {"messages": [...]}; - for stdin).',
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a versioned envelope).")
def verify_command(receipt_id: str, context: IO[str] | None, as_json: bool) -> None:
    """Prove receipt ID is what it claims; exit 1 naming every problem.

    \b
    Checks that:
      - it is on the branch, and its batch file matches its schema and digests;
      - that file was never modified or deleted after it was added (history, and
        earlier heads this machine has seen);
      - each consent entry it cites was in force at its time and covered its level;
      - with --context, every message's digest matches the receipt.
    """
    messages = _messages(context) if context is not None else None
    with open_repo() as repo:
        check = verify_receipt(repo, receipt_id, messages)
    if as_json:
        emit_json(
            {
                "ok": check.ok,
                "id": check.id,
                "path": check.path,
                "added_in": check.added_in,
                "consent": check.consent,
                "context_checked": check.context_checked,
                "problems": check.problems,
            }
        )
    else:
        for problem in check.problems:
            err(problem)
        checked = "context digests match; " if check.context_checked and check.ok else ""
        if check.ok:
            added = f", added in {check.added_in[:12]}" if check.added_in else ""
            echo(
                f"ok: receipt {check.id} is intact ({check.path}{added}); {checked}"
                f"consent in force: {', '.join(check.consent) or 'none cited'}"
            )
        else:
            echo(f"FAILED: receipt {check.id}: {len(check.problems)} problem(s)")
    if not check.ok:
        raise SystemExit(1)
