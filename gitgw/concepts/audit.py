"""`gitgw audit`: did anything above a level reach a hosted provider, under which consent?

The answer comes from the receipts alone (each names its route's provider and whether
it was local or hosted at the time, its level and the consent entries it relied on) and
from the consent ledger, to check that the provider grant a receipt cites was in force
at its time and covered its level. The current configuration plays no part: moving a
provider from hosted to local today does not change what happened last month.

A receipt whose route has no `location` (written before receipts recorded it) counts
as hosted: an audit must not assume the safer answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from gitgw.concepts.consent import ConsentLedger
from gitgw.concepts.index import Index
from gitgw.concepts.receipts import RECEIPTS_INDEX, to_millis
from gitgw.records import LEVEL_RANK, LEVELS
from gitgw.state import StateRepo

__all__ = ["AuditGroup", "AuditReport", "Violation", "audit"]


@dataclass
class AuditGroup:
    """Calls to one provider at one level under one provider grant."""

    provider: str
    level: str
    consent: str  # the provider grant relied on
    calls: int = 0
    first: datetime | None = None
    last: datetime | None = None
    location_unknown: int = 0


@dataclass(frozen=True)
class Violation:
    """A call above the level to a hosted provider without a provider grant that held."""

    receipt: str
    created: datetime
    provider: str
    level: str
    reason: str


@dataclass
class AuditReport:
    """The answer for one period."""

    since: datetime | None
    until: datetime | None
    above: str
    receipts: int = 0  # receipts in the period
    reached: int = 0  # of those, calls above the level that reached a hosted provider
    unverified: int = 0  # receipts in the period whose digest does not match
    groups: list[AuditGroup] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every such call had a provider grant in force covering its level."""
        return not self.violations


def _judge(
    ledger: ConsentLedger, consent: str, provider: str, level: int, millis: int
) -> tuple[str | None, str]:
    """(the provider grant that held, or None; why not)."""
    subject = f"provider:{provider}"
    reasons = []
    for entry_id in consent.split():
        entry = ledger.entry(entry_id)
        if entry is None:
            reasons.append(f"cites {entry_id}, which is not on the branch")
            continue
        if entry.subject != subject:
            continue
        decisive = ledger.decisive_at(subject, millis)
        if decisive is None or decisive.id != entry.id:
            then = decisive.id if decisive is not None else "nothing"
            reasons.append(f"cites {entry.id}, which was not in force then ({then} was)")
        elif entry.action != "grant" or entry.level is None:
            reasons.append(f"cites {entry.id}, which is not a grant")
        elif level > LEVEL_RANK[entry.level]:
            reasons.append(f"cites {entry.id}, which grants only up to {entry.level}")
        else:
            return entry.id, ""
    return None, "; ".join(reasons) or f"cites no consent for {subject}"


def _time(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def audit(
    repo: StateRepo,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    above: str = "public",
) -> AuditReport:
    """Which calls above `above` reached a hosted provider in [since, until), and why."""
    report = AuditReport(since, until, above)
    period, params = [], []
    if since is not None:
        period.append("created >= ?")
        params.append(to_millis(since))
    if until is not None:
        period.append("created < ?")
        params.append(to_millis(until))
    where = " AND ".join(period) or "1"
    ledger = ConsentLedger(repo)
    groups: dict[tuple[str, int, str], list[int]] = {}  # -> [calls, first, last, unknown]
    judged: dict[tuple[str, str, int, int], tuple[str | None, str]] = {}
    with Index(repo, RECEIPTS_INDEX).connect() as db:
        report.receipts, report.unverified = db.execute(
            f"SELECT COUNT(*), COUNT(*) - COALESCE(SUM(ok), 0) FROM receipts WHERE {where}",
            params,
        ).fetchone()
        rows = db.execute(
            "SELECT id, created, provider, level, location, consent FROM receipts "
            f"WHERE {where} AND provider IS NOT NULL AND level > ? "
            "AND (location IS NULL OR location != 'local') ORDER BY created, id",
            [*params, LEVEL_RANK[above]],
        )
        for receipt_id, millis, provider, level, location, consent in rows:
            report.reached += 1
            # The answer only changes where the provider's ledger does: judge each span once.
            key = (consent, provider, level, ledger.position(f"provider:{provider}", millis))
            verdict = judged.get(key)
            if verdict is None:
                verdict = judged[key] = _judge(ledger, consent, provider, level, millis)
            grant, reason = verdict
            if grant is None:
                report.violations.append(
                    Violation(receipt_id, _time(millis), provider, LEVELS[level], reason)
                )
                continue
            group = groups.get((provider, level, grant))
            if group is None:
                group = groups[(provider, level, grant)] = [0, millis, millis, 0]
            group[0] += 1
            group[2] = millis
            group[3] += location is None
    report.groups = [
        AuditGroup(p, LEVELS[lvl], g, calls, _time(first), _time(last), unknown)
        for (p, lvl, g), (calls, first, last, unknown) in sorted(groups.items())
    ]
    return report
