"""The consent ledger: grant, revoke, fold, check; bad input; tampering; two machines."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gitgw._clock import Clock, default_clock
from gitgw.concepts.consent import ConsentLedger, Entry, fold, grant, require_level, revoke
from gitgw.concepts.store import Store
from gitgw.errors import GitgwError
from gitgw.records import ConsentEntry, render
from gitgw.state import StateRepo
from tests.conftest import branch_head as head
from tests.conftest import envelope_data as data
from tests.conftest import git, run_cli
from tests.conftest import run_on as cli
from tests.gitservers import GitServer


def check(repo: Path, subject: str, level: str) -> tuple[int, dict[str, Any]]:
    ran = cli(repo, "consent", "check", subject, "--level", level, "--json")
    return ran.exit_code, data(ran)


# -- grant, revoke, list, check -------------------------------------------------------------


def test_a_grant_allows_every_level_up_to_its_own(state_repo: Path) -> None:
    ran = cli(
        state_repo,
        "consent",
        "grant",
        "provider:openai",
        "--level",
        "confidential",
        "--purpose",
        "code review",
        "--reason",
        "team decision",
    )
    assert ran.exit_code == 0, ran.stderr
    assert ran.stdout.startswith("granted provider:openai up to confidential: entry ")
    for level in ("public", "internal", "confidential"):
        code, answer = check(state_repo, "provider:openai", level)
        assert (code, answer["allowed"]) == (0, True)
        assert answer["entry"]["purpose"] == "code review"
        assert answer["entry"]["reason"] == "team decision"
        assert answer["entry"]["actor"] == "Test User <user@example.test>"
    code, answer = check(state_repo, "provider:openai", "restricted")
    assert (code, answer["allowed"]) == (1, False)
    assert answer["reason"].startswith("granted only up to confidential")
    text = cli(state_repo, "consent", "check", "provider:openai", "--level", "internal")
    assert text.exit_code == 0
    assert text.stdout.startswith("allowed: provider:openai at internal: allowed by grant ")


def test_a_revocation_wins_over_every_earlier_grant(state_repo: Path) -> None:
    cli(state_repo, "consent", "grant", "provider:openai", "--level", "internal")
    cli(state_repo, "consent", "grant", "provider:openai", "--level", "restricted")
    ran = cli(state_repo, "consent", "revoke", "provider:openai", "--reason", "key leaked")
    assert ran.exit_code == 0, ran.stderr
    assert "it ends grant " in ran.stdout
    for level in ("public", "restricted"):
        code, answer = check(state_repo, "provider:openai", level)
        assert code == 1
        assert answer["entry"]["action"] == "revoke"
        assert answer["entry"]["reason"] == "key leaked"
    text = cli(state_repo, "consent", "check", "provider:openai", "--level", "public")
    assert text.exit_code == 1
    assert text.stdout.startswith("denied: provider:openai at public: revoked: revocation ")
    assert data(cli(state_repo, "consent", "list", "--json"))["entries"] == []
    history = data(cli(state_repo, "consent", "list", "--all", "--json"))["entries"]
    assert [e["action"] for e in history] == ["grant", "grant", "revoke"]
    assert history[0]["fate"] == f"replaced by {history[1]['id']}"
    assert history[1]["fate"] == f"revoked by {history[2]['id']}"
    assert history[2]["supersedes"] == history[1]["id"]
    # A new grant after the revocation names it, and takes effect.
    cli(state_repo, "consent", "grant", "provider:openai", "--level", "public")
    assert check(state_repo, "provider:openai", "public")[0] == 0
    assert check(state_repo, "provider:openai", "internal")[0] == 1


def test_a_narrower_grant_narrows(state_repo: Path) -> None:
    cli(state_repo, "consent", "grant", "client:codex", "--level", "restricted")
    ran = cli(state_repo, "consent", "grant", "client:codex", "--level", "internal")
    assert "it supersedes grant " in ran.stdout
    assert check(state_repo, "client:codex", "internal")[0] == 0
    assert check(state_repo, "client:codex", "confidential")[0] == 1
    listing = cli(state_repo, "consent", "list")
    assert "client:codex  internal" in listing.stdout


def test_a_narrowing_written_on_a_machine_whose_clock_is_behind_still_narrows(
    state_repo: Path,
) -> None:
    from gitgw._clock import utc_now

    ahead = Clock(now=lambda: utc_now() + timedelta(minutes=5))  # another machine, fast
    with StateRepo.discover(state_repo) as repo:
        wide = grant(repo, "provider:openai", "restricted", actor="a", clock=ahead)
        narrow = grant(repo, "provider:openai", "internal", actor="b")  # this clock, right
        assert narrow.entry.supersedes == wide.entry.id
        assert narrow.entry.id > wide.entry.id  # sorts after what it replaces
        ledger = ConsentLedger(repo)
        assert ledger.check("provider:openai", "internal").allowed
        assert not ledger.check("provider:openai", "restricted").allowed
        revoked = revoke(repo, "provider:openai", actor="b")  # and a revocation, likewise
        assert revoked.entry.id > narrow.entry.id
        ledger.refresh()
        assert not ledger.check("provider:openai", "public").allowed


def test_revoking_what_was_never_granted_is_recorded_and_said(state_repo: Path) -> None:
    before = head(state_repo)
    ran = cli(state_repo, "consent", "revoke", "tool:memory.write")
    assert ran.exit_code == 0
    assert "note: tool:memory.write was never granted; the revocation is recorded anyway" in (
        ran.stdout
    )
    assert head(state_repo) != before
    history = data(cli(state_repo, "consent", "list", "--all", "--json"))["entries"]
    assert [(e["action"], e["subject"], e["supersedes"]) for e in history] == [
        ("revoke", "tool:memory.write", None)
    ]
    again = cli(state_repo, "consent", "revoke", "tool:memory.write")
    assert f"already revoked by {history[0]['id']}" in again.stdout
    assert cli(state_repo, "verify").exit_code == 0


def test_bad_subjects_and_levels_are_refused_and_nothing_is_written(state_repo: Path) -> None:
    before = head(state_repo)
    ran = cli(state_repo, "consent", "grant", "model:gpt", "--level", "internal")
    assert ran.exit_code == 1
    assert ran.stderr.startswith("gitgw: error: unknown subject kind 'model' in 'model:gpt'\n")
    assert "hint: a subject is KIND:NAME with KIND one of provider, client, env, tool" in (
        ran.stderr
    )
    ran = cli(state_repo, "consent", "revoke", "openai")
    assert ran.exit_code == 1
    assert "'openai' is not a subject" in ran.stderr
    ran = cli(state_repo, "consent", "grant", "provider:bad name", "--level", "internal")
    assert "has an invalid name" in ran.stderr
    ran = cli(state_repo, "consent", "grant", "provider:openai", "--level", "secret")
    assert ran.exit_code == 2
    assert "'secret' is not one of 'public', 'internal', 'confidential', 'restricted'" in (
        ran.stderr
    )
    ran = cli(state_repo, "consent", "check", "env:KEY", "--level", "top")
    assert ran.exit_code == 2
    assert head(state_repo) == before
    with pytest.raises(GitgwError, match="unknown level 'top'") as info:
        require_level("top")
    assert (
        info.value.hint == "levels, lowest to highest: public, internal, confidential, restricted"
    )
    with StateRepo.discover(state_repo) as repo:
        with pytest.raises(GitgwError, match="unknown level"):
            ConsentLedger(repo).check("provider:openai", "secret")
        with pytest.raises(GitgwError, match="unknown subject kind"):
            grant(repo, "user:bob", "internal")
    assert head(state_repo) == before


def test_a_subject_never_granted_is_denied(state_repo: Path) -> None:
    code, answer = check(state_repo, "env:OPENAI_API_KEY", "public")
    assert (code, answer["entry"], answer["reason"]) == (
        1,
        None,
        "env:OPENAI_API_KEY was never granted",
    )
    assert cli(state_repo, "consent", "list").stdout.endswith("no grants are in force\n")


# -- the in-memory ledger -----------------------------------------------------------------


def test_the_ledger_answers_from_memory_and_follows_the_branch(state_repo: Path) -> None:
    with StateRepo.discover(state_repo) as repo, StateRepo.discover(state_repo) as writer:
        ledger = ConsentLedger(repo)
        assert not ledger.check("provider:openai", "public").allowed
        written = grant(writer, "provider:openai", "internal")
        assert not ledger.check("provider:openai", "public").allowed  # not refreshed yet
        assert ledger.refresh() is True
        decision = ledger.check("provider:openai", "internal")
        assert decision.allowed
        assert decision.entry == written.entry
        assert ledger.check("provider:openai", "internal") is decision  # a dict lookup
        assert ledger.refresh() is False
        revoke(writer, "provider:openai")
        ledger.refresh()
        assert not ledger.check("provider:openai", "public").allowed
        # When it was granted, it was in force; and the index rebuilds from nothing.
        moment = written.entry.created + timedelta(microseconds=1)
        assert ledger.decisive_at("provider:openai", moment) == written.entry
        for path in (repo.gitgw_dir / "index").rglob("consent.sqlite*"):
            path.unlink()
        fresh = ConsentLedger(repo)
        assert [e.id for e in fresh.history()] == [e.id for e in ledger.history()]
        assert fresh.decisive_at("provider:openai", moment) == written.entry


def test_a_revocation_deleted_behind_the_hooks_back_fails_closed_while_serving(
    state_repo: Path,
) -> None:
    with StateRepo.discover(state_repo) as repo, StateRepo.discover(state_repo) as writer:
        grant(writer, "provider:openai", "internal")
        revoked = revoke(writer, "provider:openai")
        ledger = ConsentLedger(repo)
        assert not ledger.check("provider:openai", "public").allowed
        # Deleting the revocation with plain git would re-open the grant; a ledger that
        # follows the branch must not fall for it.
        original = writer.read(revoked.entry.path)
        assert original is not None
        writer.commit({revoked.entry.path: None}, "delete the revocation")
        assert ledger.refresh() is True
        decision = ledger.check("provider:openai", "public")
        assert not decision.allowed
        assert "modified or deleted" in decision.detail
        assert not ledger.check("client:claude-code", "public").allowed  # all fail closed
        # Putting it back restores the ledger.
        writer.commit({revoked.entry.path: original}, "restore it")
        ledger.refresh()
        assert ledger.check("provider:openai", "public").why == "revoked"
        # So does putting back the bytes of an entry that was changed, not deleted.
        writer.commit({revoked.entry.path: original.replace(b"revoke", b"grant")}, "change")
        ledger.refresh()
        assert "modified or deleted" in ledger.check("provider:openai", "public").detail
        writer.commit({revoked.entry.path: original}, "restore it again")
        ledger.refresh()
        assert ledger.check("provider:openai", "public").why == "revoked"
        assert ledger.check("client:claude-code", "public").why != "damaged"
        # A deleted revocation written again as a grant under its id is no restoration.
        writer.commit({revoked.entry.path: None}, "delete the revocation again")
        ledger.refresh()
        forged = ConsentEntry(
            id=revoked.entry.id, action="grant", subject="provider:openai",
            level="restricted", actor="mallory", created=revoked.entry.created,
        )  # fmt: skip
        path, data = render(forged)  # a valid entry, its digest recomputed
        assert path == revoked.entry.path
        writer.commit({path: data}, "a grant in its place")
        ledger.refresh()
        assert "modified or deleted" in ledger.check("provider:openai", "public").detail


def _entry(clock: Clock, action: str, subject: str, **fields: Any) -> Entry:
    now = clock.now()
    record = ConsentEntry(
        id=clock.new_id(now),
        action=action,  # type: ignore[arg-type]
        subject=subject,
        actor="tester",
        created=now,
        **fields,
    )
    return Entry.of(ConsentEntry.model_validate(record.sealed()), render(record)[0])


def test_the_fold_does_not_depend_on_the_order_entries_arrive_in() -> None:
    clock = Clock()
    entries = []
    for n in range(300):
        subject = f"provider:p{n % 7}"
        if n % 5 == 0:
            entries.append(_entry(clock, "revoke", subject))
        else:
            levels = ("public", "internal", "confidential", "restricted")
            supersedes = entries[-1].id if entries and n % 3 else None
            entries.append(
                _entry(clock, "grant", subject, level=levels[n % 4], supersedes=supersedes)
            )
    expected = fold(entries)
    for seed in range(5):
        shuffled = entries[:]
        random.Random(seed).shuffle(shuffled)
        folded = fold(shuffled)
        for subject, timeline in expected.subjects.items():
            assert folded.subjects[subject].current == timeline.current
            assert folded.subjects[subject].ignored == timeline.ignored


def test_a_revocation_and_a_grant_with_the_same_id_fold_to_the_revocation() -> None:
    clock = Clock()
    granted = _entry(clock, "grant", "provider:x", level="internal")
    revoked = granted._replace(action="revoke", level=None, digest="sha256:" + "0" * 64)
    for order in ([granted, revoked], [revoked, granted]):
        assert fold(order).subjects["provider:x"].current == revoked


# -- tampering ----------------------------------------------------------------------------


def test_a_consent_entry_whose_digest_does_not_match_denies_every_check(
    state_repo: Path, tmp_path: Path
) -> None:
    cli(state_repo, "consent", "grant", "provider:openai", "--level", "internal")
    cli(state_repo, "consent", "grant", "client:codex", "--level", "internal")
    [entry] = [
        e
        for e in data(cli(state_repo, "consent", "list", "--json"))["entries"]
        if e["subject"] == "provider:openai"
    ]
    clone = tmp_path / "clone"
    git("clone", "-q", "--branch", "gitgw", str(state_repo), str(clone))
    record = clone / entry["path"]
    record.write_text(record.read_text().replace('"internal"', '"restricted"'))
    git("commit", "-qam", "widen the grant quietly", cwd=clone)
    git("push", "-q", "origin", "HEAD:gitgw", cwd=clone)

    code, answer = check(state_repo, "client:codex", "internal")
    assert code == 1
    assert entry["path"] in answer["reason"]
    assert "digest does not match its content" in answer["reason"]
    listing = cli(state_repo, "consent", "list")
    assert f"warning: {entry['path']}: digest does not match its content" in listing.stderr
    verify = cli(state_repo, "verify")
    assert verify.exit_code == 1
    assert f"{entry['path']}: add-only record was modified" in verify.stderr


# -- two machines through a real Git server ------------------------------------------------


def _machine(tmp_path: Path, name: str, url: str, init: bool) -> Path:
    path = tmp_path / name
    if init:
        assert run_cli("init", str(path)).exit_code == 0
    else:
        git("init", "-q", str(path))
    git("remote", "add", "origin", url, cwd=path)
    return path


def _sync(*machines: Path) -> None:
    for path in machines:
        ran = cli(path, "sync")
        assert ran.exit_code == 0, ran.stderr


def test_concurrent_grants_and_revokes_fold_the_same_on_every_machine(
    tmp_path: Path, git_server: GitServer
) -> None:
    url = git_server.create()
    a = _machine(tmp_path, "a", url, init=True)
    b = _machine(tmp_path, "b", url, init=False)
    _sync(a, b)
    cli(a, "consent", "grant", "provider:openai", "--level", "internal")
    _sync(a, b)
    assert check(b, "provider:openai", "internal")[0] == 0

    # a revokes; b, not having seen it, widens the grant a moment later.
    revoked = cli(a, "consent", "revoke", "provider:openai", "--reason", "key leaked")
    widened = cli(b, "consent", "grant", "provider:openai", "--level", "restricted")
    assert revoked.exit_code == widened.exit_code == 0
    assert check(b, "provider:openai", "restricted")[0] == 0  # before sync, b allows
    _sync(a, b, a)
    assert head(a) == head(b)
    answers = [check(m, "provider:openai", "public") for m in (a, b)]
    assert answers[0] == answers[1]
    code, answer = answers[0]
    assert code == 1
    assert answer["entry"]["action"] == "revoke"
    assert "did not see that revocation" in answer["reason"]
    history = data(cli(b, "consent", "list", "--all", "--json"))["entries"]
    assert history[-1]["fate"] == f"no effect: did not see revocation {answer['entry']['id']}"

    # Two grants at once: the newer one decides, on both machines.
    cli(a, "consent", "grant", "provider:openai", "--level", "confidential")
    cli(b, "consent", "grant", "provider:openai", "--level", "public")
    _sync(a, b, a)
    assert check(a, "provider:openai", "public") == check(b, "provider:openai", "public")
    assert check(a, "provider:openai", "internal")[0] == 1  # b's public grant is newer
    assert check(b, "provider:openai", "internal")[0] == 1

    # A ledger kept in memory catches up when the branch moves under it.
    with StateRepo.discover(a) as repo:
        ledger = ConsentLedger(repo)
        cli(b, "consent", "revoke", "provider:openai")
        _sync(b, a)
        assert ledger.check("provider:openai", "public").allowed
        ledger.refresh()
        assert not ledger.check("provider:openai", "public").allowed
    for machine in (a, b):
        assert cli(machine, "verify").exit_code == 0


def test_store_writes_and_cli_writes_agree(state_repo: Path) -> None:
    clock = default_clock()
    entry = ConsentEntry(
        id=clock.new_id(),
        action="grant",
        subject="tool:memory.write",
        level="public",
        actor="script",
        created=clock.now(),
    )
    with StateRepo.discover(state_repo) as repo:
        Store(repo).add(entry, message="grant by a script")
    code, answer = check(state_repo, "tool:memory.write", "public")
    assert code == 0
    assert answer["entry"]["id"] == entry.id
    assert answer["entry"]["path"] == render(entry)[0]


def test_a_revocation_deleted_with_plain_git_is_named_by_verify(
    state_repo: Path, tmp_path: Path
) -> None:
    cli(state_repo, "consent", "grant", "provider:openai", "--level", "internal")
    cli(state_repo, "consent", "revoke", "provider:openai")
    [revocation] = [
        e
        for e in data(cli(state_repo, "consent", "list", "--all", "--json"))["entries"]
        if e["action"] == "revoke"
    ]
    clone = tmp_path / "clone"
    git("clone", "-q", "--branch", "gitgw", str(state_repo), str(clone))
    git("rm", "-q", revocation["path"], cwd=clone)
    git("commit", "-qm", "undo the revocation quietly", cwd=clone)
    git("push", "-q", "origin", "HEAD:gitgw", cwd=clone)
    # The ledger is the files at the head (the grant is back in force there); the history
    # shows what happened, and verify names it.
    verify = cli(state_repo, "verify")
    assert verify.exit_code == 1
    assert f"{revocation['path']}: add-only record was deleted" in verify.stderr
