"""`gitgw audit`: what reached a hosted provider, under which consent, from receipts alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from gitgw._clock import Clock
from gitgw.concepts.audit import audit
from gitgw.concepts.consent import grant, revoke
from gitgw.records import render_batch
from gitgw.state import StateRepo
from tests.conftest import envelope_data as data
from tests.conftest import run_on as cli
from tests.test_receipts import make_receipt, record


def test_audit_answers_from_receipts_and_names_every_violation(state_repo: Path) -> None:
    clock = Clock()
    with StateRepo.discover(state_repo) as repo:
        granted = grant(repo, "provider:openai", "internal").entry.id
    hosted = {"provider": "openai", "location": "hosted"}
    consented = make_receipt(clock, **hosted, consent=[granted])
    too_high = make_receipt(clock, **hosted, level="confidential", consent=[granted])
    local = make_receipt(clock, provider="ollama", location="local", level="restricted")
    unknown = make_receipt(clock, provider="openai", location=None, consent=[granted])
    uncited = make_receipt(clock, **hosted)
    refused = make_receipt(clock, provider=None, level="restricted")
    public = make_receipt(clock, **hosted, level="public")
    long_ago = make_receipt(
        clock, **hosted, consent=[granted], created=datetime(2024, 1, 1, tzinfo=UTC)
    )
    record(state_repo, consented, too_high, local, unknown, uncited, refused, public, long_ago)
    with StateRepo.discover(state_repo) as repo:
        revoke(repo, "provider:openai")
    after_revoke = make_receipt(clock, **hosted, consent=[granted])
    record(state_repo, after_revoke)

    ran = cli(state_repo, "audit", "--since", "1h", "--json")
    assert ran.exit_code == 1
    report = data(ran)
    assert (report["receipts"], report["reached_hosted"], report["ok"]) == (8, 5, False)
    [group] = report["groups"]
    assert (group["provider"], group["level"], group["consent"], group["calls"]) == (
        "openai",
        "internal",
        granted,
        2,
    )
    assert group["location_unknown"] == 1
    reasons = {v["receipt"]: v["reason"] for v in report["violations"]}
    assert reasons == {
        too_high.id: f"cites {granted}, which grants only up to internal",
        uncited.id: "cites no consent for provider:openai",
        after_revoke.id: reasons[after_revoke.id],
    }
    assert reasons[after_revoke.id].startswith(f"cites {granted}, which was not in force then")

    text = cli(state_repo, "audit", "--since", "1h")
    assert "content above public reached a hosted provider: yes (5 call(s))" in text.stdout
    assert f"openai    internal  2      {granted}" in text.stdout
    assert "1 of these receipts do not say where the provider was; counted hosted" in text.stdout
    assert "3 call(s) without a provider grant that held:" in text.stdout

    above = data(cli(state_repo, "audit", "--since", "1h", "--above", "internal", "--json"))
    assert [v["receipt"] for v in above["violations"]] == [too_high.id]
    nothing = cli(state_repo, "audit", "--since", "1h", "--above", "confidential")
    assert nothing.exit_code == 0
    assert "reached a hosted provider: no (0 call(s))" in nothing.stdout
    period = ("--since", "2023-12-01", "--until", "2024-02-01")
    old = data(cli(state_repo, "audit", *period, "--json"))
    assert (old["receipts"], old["reached_hosted"], old["ok"]) == (1, 1, False)
    [violation] = old["violations"]  # it cites a grant made two years later
    assert violation["reason"] == f"cites {granted}, which was not in force then (nothing was)"


def test_audit_needs_a_period_and_reads_it_clearly(state_repo: Path) -> None:
    ran = cli(state_repo, "audit")
    assert ran.exit_code == 2
    assert "Missing option '--since'" in ran.stderr
    ran = cli(state_repo, "audit", "--since", "soon")
    assert ran.exit_code == 2
    assert "cannot read 'soon' as a time" in ran.stderr
    empty = cli(state_repo, "audit", "--since", "7d")
    assert empty.exit_code == 0
    assert ": 0 receipt(s); content above public reached a hosted provider: no" in empty.stdout


def test_audit_on_a_large_generated_ledger(state_repo: Path) -> None:
    # 12,000 receipts in 12 batch files of one commit, as a busy gateway would leave them.
    clock = Clock()
    start = datetime(2025, 6, 1, tzinfo=UTC)
    with StateRepo.discover(state_repo) as repo:
        granted = grant(repo, "provider:openai", "confidential", clock=Clock(lambda: start)).entry
        files = {}
        expected_reached = expected_violations = 0
        for hour in range(12):
            at = start + timedelta(hours=hour + 1)
            batch = []
            for n in range(1000):
                level = ("public", "internal", "confidential", "restricted")[n % 4]
                hosted = n % 3 == 0
                consent = [granted.id] if n % 10 else []
                batch.append(
                    make_receipt(
                        clock,
                        provider="openai" if hosted else "ollama",
                        location="hosted" if hosted else "local",
                        level=level,
                        consent=consent,
                        created=at + timedelta(milliseconds=n),
                    )
                )
                if hosted and level != "public":
                    expected_reached += 1
                    expected_violations += level == "restricted" or not consent
            path, blob = render_batch(batch, clock.new_id(at + timedelta(seconds=2)))
            files[path] = blob
        repo.commit(files, "12,000 receipts")
        report = audit(repo, since=start)
    assert report.receipts == 12_000
    assert report.reached == expected_reached
    assert len(report.violations) == expected_violations
    assert sum(g.calls for g in report.groups) == expected_reached - expected_violations
    assert {(g.level, g.consent) for g in report.groups} == {
        ("internal", granted.id),
        ("confidential", granted.id),
    }
    listing = data(cli(state_repo, "receipts", "list", "--provider", "openai", "--json"))
    assert listing["total"] == 12 * 334  # n % 3 == 0 for 334 of every 1,000
