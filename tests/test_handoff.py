"""Handoffs: create, list, show, claim, update, export, prompt; bad input; many machines."""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gitgw.concepts import handoff as handoffs
from gitgw.concepts.handoff_export import from_a2a_task, to_a2a_task
from gitgw.concepts.handoff_index import SPEC, list_handoffs
from gitgw.concepts.index import Index
from gitgw.concepts.store import Store
from gitgw.errors import Contention
from gitgw.services.sync import sync
from gitgw.state import StateRepo
from tests.conftest import branch_head as head
from tests.conftest import fails, git, run_cli
from tests.conftest import succeeds as cli
from tests.gitservers import GitServer

EXAMPLE_HANDOFF = "01M72BN4RPD00B6JMKN1EPWCWX"
PUBLIC_NOTE = "01M5C9EDKFBFGEPRV2W147SA69"
CONFIDENTIAL_NOTE = "01M6DYZDS6CWHHTH9THZXXQ8X6"


def show(repo: Path, handoff_id: str) -> dict[str, Any]:
    """`handoff show --json`'s data."""
    data: dict[str, Any] = json.loads(cli(repo, "handoff", "show", handoff_id, "--json"))["data"]
    return data


def create(repo: Path, *extra: str, to: str = "codex", title: str = "Finish it") -> str:
    """Create a handoff; its id."""
    return cli(repo, "handoff", "create", "--to", to, "--title", title, *extra).strip()


# -- the life of a handoff ----------------------------------------------------------------


def test_a_handoff_from_creation_to_completion(example_repo: Path, tmp_path: Path) -> None:
    draft = tmp_path / "draft.md"
    draft.write_text(
        "---\ngoal: Uploads survive a flaky endpoint\n"
        "decisions: [{decision: retry in the exporter, reason: others fail fast}]\n"
        "repo: {branch: feature/retries, base_commit: 9f2c4e1b7a3d5c8e0f6a2b4d1c3e5f7a9b0c2d4e}\n"
        "---\n## Where things stand\n\nThe loop exists; the backoff does not.\n"
    )
    handoff_id = create(
        example_repo, "--from", "claude-code", "--model", "claude-sonnet-4-5",
        "--accept", "python -m tests passes", "--step", "implement delay", "--step", "add test",
        "--verify", "python -m tests", "--changed", "src/retry.py:added",
        "--decision", "cap at 30 s -- the endpoint recovers within that",
        "--ref", f"memory:{PUBLIC_NOTE}", "--body-file", str(draft),
    )  # fmt: skip

    data = show(example_repo, handoff_id)
    h = data["handoff"]
    assert h["from"]["agent"] == "claude-code"
    assert h["from"]["model"] == "claude-sonnet-4-5"
    assert h["goal"] == "Uploads survive a flaky endpoint"
    assert h["next_steps"] == ["implement delay", "add test"]
    assert h["repo"]["branch"] == "feature/retries"
    assert [d["decision"] for d in h["decisions"]] == ["cap at 30 s"]  # the option wins
    assert h["changed_files"] == [{"path": "src/retry.py", "status": "added"}]
    assert h["context"] == [{"kind": "memory", "ref": PUBLIC_NOTE}]
    assert data["body"].startswith("## Where things stand")
    assert data["status"]["state"] == "submitted"
    assert [e["state"] for e in data["events"]] == ["submitted"]

    listed = json.loads(cli(example_repo, "handoff", "list", "--to", "codex", "--json"))
    assert [r["id"] for r in listed["data"]["handoffs"]] == [handoff_id, EXAMPLE_HANDOFF]

    assert "claimed" in cli(example_repo, "handoff", "claim", handoff_id, "--as", "codex")
    cli(example_repo, "handoff", "update", handoff_id, "--as", "codex", "--note", "halfway")
    cli(
        example_repo, "handoff", "update", handoff_id, "--as", "codex", "--state", "completed",
        "--note", "done; tests pass", "--artifact", f"draft={draft}",
    )  # fmt: skip

    data = show(example_repo, handoff_id)
    assert data["status"]["state"] == "completed"
    assert data["status"]["holder"] == "codex"
    kinds = [(e["kind"], e.get("state")) for e in data["events"]]
    assert kinds == [
        ("state", "submitted"), ("claim", None), ("state", "working"), ("note", None),
        ("state", "completed"), ("artifact", None),
    ]  # fmt: skip
    assert data["events"][-1]["artifact"]["sha256"] is not None
    listed = json.loads(cli(example_repo, "handoff", "list", "--state", "completed", "--json"))
    assert [r["id"] for r in listed["data"]["handoffs"]] == [handoff_id]
    text = cli(example_repo, "handoff", "show", handoff_id)
    assert "completed (held by codex)" in text
    assert "Finish it" in text
    assert cli(example_repo, "verify").startswith("ok:")


def test_list_answers_from_an_index_that_rebuilds(example_repo: Path) -> None:
    ids = [create(example_repo, to=name) for name in ("codex", "any", "claude-code")]
    with StateRepo.discover(example_repo) as repo:
        index = Index(repo, SPEC)
        rows, total = list_handoffs(repo, to="codex")
        assert {r.id for r in rows} == {ids[0], ids[1], EXAMPLE_HANDOFF}  # `any` included
        assert total == 3
        index.path.unlink()
        rows, total = list_handoffs(repo, states=("working",))
        assert [r.id for r in rows] == [EXAMPLE_HANDOFF]
        assert rows[0].holder == "codex"
    text = cli(example_repo, "handoff", "list", "--limit", "2")
    assert len(text.strip().splitlines()) == 3  # the header and two rows


def test_ids_can_be_shortened_when_unambiguous(example_repo: Path) -> None:
    assert show(example_repo, EXAMPLE_HANDOFF[:8])["handoff"]["id"] == EXAMPLE_HANDOFF
    assert "names no handoff" in fails(example_repo, "handoff", "show", "ZZZZZZZZ")


# -- bad input: a clear error, and nothing lost -------------------------------------------


def test_a_handoff_without_a_required_field_is_refused(example_repo: Path) -> None:
    before = head(example_repo)
    error = fails(example_repo, "handoff", "create", "--to", "codex")
    assert "the handoff is not valid: title is required" in error
    error = fails(example_repo, "handoff", "create", "--title", "x")
    assert "to is required" in error
    assert head(example_repo) == before


def test_a_draft_with_unknown_or_reserved_fields_is_refused(example_repo: Path) -> None:
    before = head(example_repo)
    error = fails(example_repo, "handoff", "create", "--to", "a", "--title", "t",
                  "--body-file", "-", input="---\npriority: high\n---\nbody\n")  # fmt: skip
    assert "priority: Extra inputs are not permitted" in error
    draft = "---\nid: 01M72BN4RPD00B6JMKN1EPWCWX\n---\n"
    error = fails(example_repo, "handoff", "create", "--to", "a", "--title", "t",
                  "--body-file", "-", input=draft)  # fmt: skip
    assert "may not set id" in error
    assert "cannot read the reference" in fails(
        example_repo, "handoff", "create", "--to", "a", "--title", "t", "--ref", "nonsense"
    )
    assert head(example_repo) == before


def test_an_unknown_state_is_refused(example_repo: Path) -> None:
    before = head(example_repo)
    ran = run_cli("--repo", str(example_repo), "handoff", "update", EXAMPLE_HANDOFF,
                  "--as", "codex", "--state", "done")  # fmt: skip
    assert ran.exit_code == 2
    assert "'done' is not one of" in ran.stderr
    assert "input-required" in ran.stderr
    with pytest.raises(handoffs.HandoffError, match="unknown state 'done'"):
        handoffs.validate_states(["done"])
    assert head(example_repo) == before


def test_no_transition_out_of_a_terminal_state(example_repo: Path) -> None:
    cli(example_repo, "handoff", "update", EXAMPLE_HANDOFF, "--as", "codex", "--state", "failed")
    before = head(example_repo)
    for state in ("working", "completed", "canceled"):
        error = fails(example_repo, "handoff", "update", EXAMPLE_HANDOFF, "--as", "codex",
                      "--state", state)  # fmt: skip
        assert "the handoff is already failed; a terminal state accepts no change" in error
    assert "already failed" in fails(example_repo, "handoff", "claim", EXAMPLE_HANDOFF,
                                     "--as", "bob")  # fmt: skip
    assert head(example_repo) == before
    assert show(example_repo, EXAMPLE_HANDOFF)["status"]["state"] == "failed"


def test_a_claim_on_a_claimed_handoff_is_refused(example_repo: Path) -> None:
    before = head(example_repo)
    error = fails(example_repo, "handoff", "claim", EXAMPLE_HANDOFF, "--as", "bob")
    assert "bob cannot claim it: codex claimed it first" in error
    assert "codex holds it" in error
    assert head(example_repo) == before
    # The holder claiming again changes nothing.
    assert "claimed" in cli(example_repo, "handoff", "claim", EXAMPLE_HANDOFF, "--as", "codex")
    assert head(example_repo) == before


def test_only_the_holder_changes_the_state(example_repo: Path) -> None:
    before = head(example_repo)
    error = fails(example_repo, "handoff", "update", EXAMPLE_HANDOFF, "--as", "bob",
                  "--state", "completed")  # fmt: skip
    assert "codex holds it; only the holder changes its state" in error
    fresh = create(example_repo, "--from", "alice")
    error = fails(example_repo, "handoff", "update", fresh, "--as", "codex", "--state", "working")
    assert "nobody has claimed it; claim it before setting working" in error
    # The sender may cancel, the addressee may reject: neither needs a claim; nobody
    # else may do either.
    error = fails(example_repo, "handoff", "update", fresh, "--as", "bob", "--state", "canceled")
    assert "only its sender, alice, cancels it before it is claimed" in error
    error = fails(example_repo, "handoff", "update", fresh, "--as", "bob", "--state", "rejected")
    assert "only its addressee, codex, rejects it" in error
    cli(example_repo, "handoff", "update", fresh, "--as", "alice", "--state", "canceled")
    assert show(example_repo, fresh)["status"]["state"] == "canceled"
    rejected = create(example_repo, "--from", "alice")
    cli(example_repo, "handoff", "update", rejected, "--as", "codex", "--state", "rejected")
    assert show(example_repo, rejected)["status"]["state"] == "rejected"
    anyone = create(example_repo, "--from", "alice", to="any")
    cli(example_repo, "handoff", "update", anyone, "--as", "bob", "--state", "rejected")
    assert show(example_repo, anyone)["status"]["state"] == "rejected"
    assert head(example_repo) != before


def test_references_are_checked(example_repo: Path) -> None:
    before = head(example_repo)
    error = fails(example_repo, "handoff", "create", "--to", "a", "--title", "t",
                  "--ref", "memory:01M5C9EDKFBFGEPRV2W147SA60")  # fmt: skip
    assert "no memory note 01M5C9EDKFBFGEPRV2W147SA60" in error
    error = fails(example_repo, "handoff", "create", "--to", "a", "--title", "t",
                  "--ref", f"memory:{CONFIDENTIAL_NOTE}")  # fmt: skip
    assert f"memory note {CONFIDENTIAL_NOTE} is confidential, above this handoff's level" in error
    assert head(example_repo) == before
    create(example_repo, "--trust", "confidential", "--ref", f"memory:{CONFIDENTIAL_NOTE}")


def test_a_handoff_carrying_a_secret_is_refused(example_repo: Path) -> None:
    before = head(example_repo)
    token = "ghp_" + "abcdefghijklmnopqrstuvwxyz" + "0123456789"
    error = fails(example_repo, "handoff", "create", "--to", "a", "--title", "t",
                  "--body-file", "-", input=f"use {token} to push\n")  # fmt: skip
    assert "possible secret (GitHub Token)" in error
    assert token not in error
    error = fails(example_repo, "handoff", "update", EXAMPLE_HANDOFF, "--as", "codex",
                  "--note", f"token: {token}")  # fmt: skip
    assert "(field note): possible secret (GitHub Token)" in error
    assert token not in error
    assert head(example_repo) == before


def test_clearance_hides_and_refuses(example_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_work = create(example_repo, "--trust", "confidential")
    monkeypatch.setenv("GITGW_CLEARANCE", "internal")
    listed = json.loads(cli(example_repo, "handoff", "list", "--json"))["data"]["handoffs"]
    assert secret_work not in {r["id"] for r in listed}
    assert "above what you may see" in fails(example_repo, "handoff", "show", secret_work)


# -- the fold -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Ev:
    id: str
    kind: str
    agent: str
    state: str | None = None


def test_the_fold_is_the_same_in_any_order() -> None:
    events = [
        Ev("01", "state", "alice", "submitted"),
        Ev("02", "claim", "bob"),
        Ev("03", "claim", "carol"),  # later: lost
        Ev("04", "state", "carol", "working"),  # from the loser: ignored
        Ev("05", "state", "bob", "working"),
        Ev("06", "state", "carol", "completed"),  # ignored
        Ev("07", "state", "bob", "input-required"),
        Ev("08", "state", "bob", "completed"),
        Ev("09", "state", "bob", "working"),  # after a terminal state: ignored
        Ev("10", "note", "carol"),
    ]
    expected = handoffs.fold("alice", events)
    assert (expected.state, expected.holder, expected.claim) == ("completed", "bob", "02")
    assert [(lost.agent, lost.event) for lost in expected.lost] == [("carol", "03")]
    assert [i.event for i in expected.ignored] == ["03", "04", "06", "09"]
    rng = random.Random(7)
    for _ in range(20):
        shuffled = events[:]
        rng.shuffle(shuffled)
        assert handoffs.fold("alice", shuffled) == expected


def test_the_fold_ignores_a_cancel_or_reject_written_by_someone_without_the_right() -> None:
    # As a push with plain git (past gitgw's checks) would bring them.
    events = [
        Ev("01", "state", "alice", "submitted"),
        Ev("02", "state", "mallory", "canceled"),  # not the sender
        Ev("03", "state", "mallory", "rejected"),  # not the addressee
    ]
    folded = handoffs.fold("alice", events, "codex")
    assert folded.state == "submitted"
    assert [i.event for i in folded.ignored] == ["02", "03"]
    assert handoffs.fold("alice", events, "any").state == "rejected"  # anyone may reject


# -- other shapes: A2A, a prompt ----------------------------------------------------------


def test_a2a_export_is_lossless(example_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "task.json"
    cli(example_repo, "handoff", "export", EXAMPLE_HANDOFF, "--format", "a2a", "-o", str(out))
    task = json.loads(out.read_text())
    assert (task["kind"], task["id"], task["status"]["state"]) == (
        "task",
        EXAMPLE_HANDOFF,
        "working",
    )
    assert task["history"][0]["role"] == "user"
    assert task["history"][0]["parts"][0]["text"].startswith("## Where things stand")
    assert [m["metadata"]["agent"] for m in task["history"]] == [
        "claude-code", "workflow:review-handoffs", "codex",
    ]  # fmt: skip

    with StateRepo.discover(example_repo) as repo:
        originals = {path: repo.blob(blob) for path, blob in repo.walk("handoffs")}
        view = handoffs.read(Store(repo), EXAMPLE_HANDOFF)
    assert from_a2a_task(to_a2a_task(view)) == originals

    other = tmp_path / "other"
    cli(tmp_path, "init", str(other))
    assert cli(other, "handoff", "import", str(out)).strip() == EXAMPLE_HANDOFF
    with StateRepo.discover(other) as repo:
        assert {path: repo.blob(blob) for path, blob in repo.walk("handoffs")} == originals

    task["metadata"]["gitgw"]["body"] += "tampered"
    out.write_text(json.dumps(task))
    assert "do not check out" in fails(other, "handoff", "import", str(out))


def test_the_prompt_carries_the_handoff_and_the_memory_it_may(
    example_repo: Path,
) -> None:
    prompt = cli(example_repo, "handoff", "prompt", EXAMPLE_HANDOFF)
    assert prompt.startswith("You are codex. claude-code (claude-sonnet-4-5 on alice-laptop)")
    assert "# Finish the retry logic in the invoice exporter" in prompt
    assert "1. implement RetryPolicy.delay" in prompt
    assert "### Running the checks (memory 01M5C9EDKFBFGEPRV2W147SA69)" in prompt
    assert f"gitgw handoff claim {EXAMPLE_HANDOFF} --as codex" in prompt
    withheld = create(
        example_repo, "--trust", "confidential", "--ref", f"memory:{CONFIDENTIAL_NOTE}"
    )
    prompt = cli(example_repo, "handoff", "prompt", withheld, "--as", "bob")
    assert "Staging database" in prompt  # confidential handoff, confidential note: included


# -- many machines ------------------------------------------------------------------------


def clone_machine(tmp_path: Path, name: str, url: str) -> Path:
    """A machine with `origin` at `url`, in step with it."""
    path = tmp_path / name
    git("init", "--quiet", str(path))
    git("remote", "add", "origin", url, cwd=path)
    cli(path, "sync")
    return path


def test_concurrent_claims_resolve_to_the_earliest_everywhere(
    tmp_path: Path, git_daemon: GitServer
) -> None:
    url = git_daemon.create()
    a = tmp_path / "a"
    cli(tmp_path, "init", "--example", str(a))
    git("remote", "add", "origin", url, cwd=a)
    cli(a, "sync")
    b = clone_machine(tmp_path, "b", url)
    handoff_id = create(a, "--from", "alice", to="any")
    cli(a, "sync")
    cli(b, "sync")

    # Both claim before either has seen the other's claim; codex on `a` came first.
    assert "claimed" in cli(a, "handoff", "claim", handoff_id, "--as", "codex")
    assert "claimed" in cli(b, "handoff", "claim", handoff_id, "--as", "claude-code")
    cli(b, "handoff", "update", handoff_id, "--as", "claude-code", "--note", "on it")
    for machine in (a, b, a):
        assert "conflict" not in cli(machine, "sync")

    for machine in (a, b):
        data = show(machine, handoff_id)
        assert data["status"]["holder"] == "codex"
        assert data["status"]["state"] == "working"
        assert [c["agent"] for c in data["status"]["lost_claims"]] == ["claude-code"]
        assert "lost claim: claude-code" in cli(machine, "handoff", "show", handoff_id)
    error = fails(b, "handoff", "claim", handoff_id, "--as", "claude-code")
    assert "claude-code lost the claim: codex claimed it first" in error
    error = fails(b, "handoff", "update", handoff_id, "--as", "claude-code", "--state", "completed")
    assert "codex holds it" in error or "lost the claim" in error
    cli(a, "handoff", "update", handoff_id, "--as", "codex", "--state", "completed")
    cli(a, "sync")
    cli(b, "sync")
    assert show(b, handoff_id)["status"]["state"] == "completed"
    assert head(a) == head(b)
    assert cli(b, "verify").startswith("ok:")


def sync_until_done(repo: StateRepo, rng: random.Random) -> None:
    """Sync, trying again when the remote kept moving (as an agent's loop would)."""
    for _ in range(10):
        try:
            sync(repo, "origin")
            return
        except Contention:
            time.sleep(rng.uniform(0.05, 0.3))
    sync(repo, "origin")


def test_three_machines_work_concurrently_and_converge(
    tmp_path: Path, git_daemon: GitServer
) -> None:
    url = git_daemon.create()
    first = tmp_path / "m0"
    cli(tmp_path, "init", str(first))
    git("remote", "add", "origin", url, cwd=first)
    cli(first, "sync")
    machines = [first] + [clone_machine(tmp_path, f"m{n}", url) for n in (1, 2)]
    errors: list[BaseException] = []
    created: list[str] = []
    lock = threading.Lock()

    def agent(number: int, path: Path) -> None:
        rng = random.Random(number)
        name = f"agent-{number}"
        try:
            with StateRepo.discover(path) as repo:
                store = Store(repo)
                for round_ in range(4):
                    made = handoffs.create(
                        store,
                        {"from": {"agent": name}, "to": "any", "title": f"{name} {round_}"},
                        "",
                    )
                    with lock:
                        created.append(made.id)
                    sync_until_done(repo, rng)
                    rows, _ = list_handoffs(repo, states=("submitted",))
                    for row in rng.sample(rows, min(2, len(rows))):
                        try:
                            view = handoffs.claim(store, row.id, name)
                        except handoffs.ClaimLost:
                            continue
                        done = handoffs.new_event(store, view, "state", name, state="completed")
                        handoffs.write_events(store, view, done)
                    sync_until_done(repo, rng)
        except BaseException as exc:  # reported below, with the thread's name
            errors.append(exc)

    threads = [threading.Thread(target=agent, args=(n, p)) for n, p in enumerate(machines)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    for _ in range(2):
        for machine in machines:
            cli(machine, "sync")

    heads = {head(m) for m in machines}
    assert len(heads) == 1
    views = []
    for machine in machines:
        listed = json.loads(cli(machine, "handoff", "list", "--limit", "0", "--json"))["data"]
        views.append({r["id"]: (r["state"], r["holder"]) for r in listed["handoffs"]})
        assert not any(p.startswith("conflicts/") for p in git(
            "ls-tree", "-r", "--name-only", "gitgw", cwd=machine).split())  # fmt: skip
    assert views[0] == views[1] == views[2]
    assert set(views[0]) == set(created)
    assert cli(machines[0], "verify").startswith("ok:")
    # Every completed handoff is held by exactly the agent that completed it.
    for handoff_id, (state, holder) in views[0].items():
        if state == "completed":
            data = show(machines[0], handoff_id)
            ignored = {i["event"] for i in data["status"]["ignored"]}
            applied = [e for e in data["events"] if e["id"] not in ignored]
            completer = next(e["agent"] for e in applied if e.get("state") == "completed")
            assert completer == holder
