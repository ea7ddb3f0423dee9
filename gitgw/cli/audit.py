"""`gitgw audit`: what reached a hosted provider in a period, and under which consent."""

from __future__ import annotations

from datetime import datetime

import click

from gitgw._canonical import format_time
from gitgw.cli._output import echo, emit_json, table
from gitgw.cli._repo import open_repo
from gitgw.cli._when import WHEN, WHEN_HELP, show_time
from gitgw.concepts.audit import audit
from gitgw.records import LEVELS


@click.command("audit")
@click.option("--since", required=True, type=WHEN, help=f"Start of the period: {WHEN_HELP}.")
@click.option("--until", type=WHEN, help="End of the period (default: now; same forms).")
@click.option(
    "--above",
    type=click.Choice(LEVELS),
    default="public",
    show_default=True,
    help="Report content above this level.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a versioned envelope).")
def command(since: datetime, until: datetime | None, above: str, as_json: bool) -> None:
    """Did anything above a level reach a hosted provider, and under which consent?

    Answers from the receipts alone: each one records its level, its route (and whether
    that provider was local or hosted), and the consent it relied on; the consent ledger
    shows whether the provider grant it cites was in force then and covered its level.
    Exit 1 when a call lacked such a grant (each one is listed).

    \b
    Example:
      gitgw audit --since 30d --above internal
    """
    if until is not None and until < since:
        raise click.BadParameter("the period ends before it starts", param_hint="--until")
    with open_repo() as repo:
        repo.require_head()
        report = audit(repo, since=since, until=until, above=above)
    if as_json:
        emit_json(
            {
                "ok": report.ok,
                "since": format_time(since),
                "until": format_time(until) if until else None,
                "above": above,
                "receipts": report.receipts,
                "reached_hosted": report.reached,
                "unverified": report.unverified,
                "groups": [
                    {
                        "provider": g.provider,
                        "level": g.level,
                        "consent": g.consent,
                        "calls": g.calls,
                        "first": format_time(g.first) if g.first else None,
                        "last": format_time(g.last) if g.last else None,
                        "location_unknown": g.location_unknown,
                    }
                    for g in report.groups
                ],
                "violations": [
                    {
                        "receipt": v.receipt,
                        "created": format_time(v.created),
                        "provider": v.provider,
                        "level": v.level,
                        "reason": v.reason,
                    }
                    for v in report.violations
                ],
            }
        )
    else:
        period = f"{show_time(since)} to {show_time(until) if until else 'now'} (UTC)"
        answer = "yes" if report.reached else "no"
        echo(
            f"{period}: {report.receipts} receipt(s); content above {above} reached a hosted "
            f"provider: {answer} ({report.reached} call(s))"
        )
        if report.groups:
            echo()
            rows: list[tuple[str, ...]] = [
                (g.provider, g.level, str(g.calls), g.consent, show_time(g.last))
                for g in report.groups
            ]
            table(rows, ("provider", "level", "calls", "under consent", "last (UTC)"))
        unknown = sum(g.location_unknown for g in report.groups)
        if unknown:
            echo(f"{unknown} of these receipts do not say where the provider was; counted hosted")
        if report.violations:
            echo()
            echo(f"{len(report.violations)} call(s) without a provider grant that held:")
            for v in report.violations:
                echo(f"  {v.receipt}  {show_time(v.created)}  {v.provider}  {v.level}: {v.reason}")
        if report.unverified:
            echo(
                f"warning: {report.unverified} receipt(s) in the period fail their digest; "
                "run `gitgw verify`"
            )
    if not report.ok:
        raise SystemExit(1)
