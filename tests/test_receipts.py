"""Context receipts: record through the batching writer, list, show, verify; context
digests; crashes before a commit; tampering with plain git."""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gitgw._canonical import canonical_json, compute_digest
from gitgw._clock import Clock, default_clock, ulid_time
from gitgw.concepts.consent import grant, revoke
from gitgw.concepts.context import (
    compare_context,
    context_parts,
    message_digest,
    message_of,
    output_message,
    part_text,
    run_parts,
)
from gitgw.concepts.receipts import ReceiptLog, query
from gitgw.concepts.store import Store
from gitgw.errors import BranchCheckedOut
from gitgw.records import Receipt, jsonl_lines, parse_file, render_batch
from gitgw.records.receipt import Route, Usage
from gitgw.services.gateway import Attempt, Gateway, Outcome
from gitgw.services.receipt_lines import batch_file, fallback_line
from gitgw.state import StateRepo
from tests.conftest import branch_head as head
from tests.conftest import envelope_data as data
from tests.conftest import git
from tests.conftest import run_on as cli
from tests.fakeupstream import write_config

MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You review code."},
    {"role": "user", "content": "Is this loop right? for i in range(10): pass"},
]


def make_receipt(
    clock: Clock | None = None,
    *,
    provider: str | None = "ollama",
    location: str | None = "local",
    level: str = "internal",
    consent: list[str] | None = None,
    created: datetime | None = None,
    messages: list[dict[str, Any]] | None = None,
) -> Receipt:
    clock = clock or default_clock()
    created = created or clock.now()
    route = None
    if provider is not None:
        route = Route(
            provider=provider,
            model="m1",
            endpoint="/v1/chat/completions",
            location=location,  # type: ignore[arg-type]
        )
    return Receipt(
        id=clock.new_id(created),
        created=created,
        client="test-client",
        level=level,  # type: ignore[arg-type]
        rules=["customer-ids"] if level != "internal" else [],
        route=route,
        consent=consent or [],
        context=context_parts(messages or MESSAGES),
        usage=Usage(prompt_tokens=20, completion_tokens=5, total_tokens=25),
        latency_ms=120.5,
        overhead_ms=0.9,
        outcome="ok" if route else "refused",
    )


def record(repo_path: Path, *receipts: Receipt) -> str:
    with StateRepo.discover(repo_path) as repo, ReceiptLog(Store(repo)) as log:
        futures = [log.record(r) for r in receipts]
        return [f.result(timeout=30) for f in futures][-1]


# -- context digests ----------------------------------------------------------------------


def test_a_text_message_is_hashed_as_its_utf8_text() -> None:
    message = {"role": "user", "content": "Grüße, CUST-004211"}
    assert part_text(message) == ("Grüße, CUST-004211", "text")
    assert message_digest(message) == hashlib.sha256("Grüße, CUST-004211".encode()).hexdigest()
    [part] = context_parts([message])
    assert (part.role, part.chars, part.content) == ("user", 18, None)
    assert context_parts([message], capture=True)[0].content == "Grüße, CUST-004211"


def test_structured_messages_are_hashed_as_canonical_json_without_the_role() -> None:
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    text, form = part_text(call)
    assert form == "json"
    assert text == canonical_json({k: v for k, v in call.items() if k != "role"}).decode()
    assert message_digest(call) == hashlib.sha256(text.encode()).hexdigest()
    parts = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}, call]
    [first, second] = run_parts(parts, capture=True)
    assert (first.form, second.form) == ("json", "json")
    assert [message_of(p) for p in (first, second)] == parts
    plain = run_parts(MESSAGES, capture=True)
    assert [p.form for p in plain] == [None, None]
    assert [message_of(p) for p in plain] == MESSAGES
    # Fields an upstream adds to an answer do not change its digest.
    answer = {"role": "assistant", "content": "ok", "refusal": None, "annotations": []}
    assert output_message(answer) == {"role": "assistant", "content": "ok"}


def test_compare_context_names_each_difference() -> None:
    parts = context_parts(MESSAGES)
    assert compare_context(parts, MESSAGES) == []
    changed = [MESSAGES[0], {"role": "user", "content": "something else"}]
    [problem] = compare_context(parts, changed)
    assert (problem.number, problem.role) == (2, "user")
    assert "differs from the receipt's" in problem.reason
    assert "1 message(s), the receipt 2" in compare_context(parts, MESSAGES[:1])[0].reason
    # A role outside the standard ones is recorded as "other"; a receipt written before
    # that, with the role as it was sent, still matches its message.
    critic = [{"role": "critic", "content": "Too long."}]
    [part] = context_parts(critic)
    assert part.role == "other"
    assert compare_context([part], critic) == []
    assert compare_context([part.model_copy(update={"role": "critic"})], critic) == []
    [wrong] = compare_context([part.model_copy(update={"role": "user"})], critic)
    assert wrong.reason == "role is 'other', the receipt says 'user'"


# -- recording ----------------------------------------------------------------------------


def test_a_receipt_is_acknowledged_only_once_committed(state_repo: Path) -> None:
    receipt = make_receipt()
    commit = record(state_repo, receipt)
    assert head(state_repo) == commit
    shown = data(cli(state_repo, "receipts", "show", receipt.id, "--json"))
    assert shown["receipt"] == receipt.sealed()
    assert shown["path"].startswith(f"receipts/{receipt.created:%Y/%m/%d/%H}/")
    assert shown["path"].endswith(".jsonl")
    text = cli(state_repo, "receipts", "show", receipt.id).stdout
    assert f"receipt   {receipt.id}" in text
    assert "route     ollama/m1 at /v1/chat/completions, local" in text
    assert MESSAGES[1]["content"] not in git("log", "-p", "gitgw", cwd=state_repo)


def test_receipts_recorded_together_share_a_batch_file(state_repo: Path) -> None:
    clock = Clock()
    receipts = [make_receipt(clock) for _ in range(200)]
    with StateRepo.discover(state_repo) as repo, ReceiptLog(Store(repo)) as log:
        futures = [log.record(r) for r in receipts]
        commits = {f.result(timeout=30) for f in futures}
    assert len(commits) < 50  # batched, not one commit each
    batches = git("ls-tree", "-r", "--name-only", "gitgw", "receipts", cwd=state_repo).split()
    assert len(batches) == len(commits)
    listing = data(cli(state_repo, "receipts", "list", "--limit", "0", "--json"))
    assert listing["total"] == 200
    assert [r["id"] for r in listing["receipts"]] == [r.id for r in reversed(receipts)]
    assert cli(state_repo, "verify").exit_code == 0


def test_list_filters_by_time_provider_and_level(state_repo: Path) -> None:
    clock = Clock()
    old = make_receipt(clock, created=datetime(2025, 3, 1, tzinfo=UTC))
    hosted = make_receipt(clock, provider="openai", location="hosted", level="confidential")
    refused = make_receipt(clock, provider=None, level="restricted")
    record(state_repo, old, hosted, refused)

    def ids(*args: str) -> list[str]:
        return [
            r["id"] for r in data(cli(state_repo, "receipts", "list", "--json", *args))["receipts"]
        ]

    assert ids() == [refused.id, hosted.id, old.id]
    assert ids("--since", "2025-06-01") == [refused.id, hosted.id]
    assert ids("--until", "2025-06-01T00:00Z") == [old.id]
    assert ids("--provider", "openai") == [hosted.id]
    assert ids("--level", "confidential") == [refused.id, hosted.id]
    assert ids("--since", "1h", "--level", "restricted") == [refused.id]
    listing = cli(state_repo, "receipts", "list", "--limit", "1")
    assert "showing the newest 1 of 3; --limit 0 for all" in listing.stdout
    assert "(none)" in listing.stdout  # the refused call went nowhere
    bad = cli(state_repo, "receipts", "list", "--since", "last tuesday")
    assert bad.exit_code == 2
    assert "cannot read 'last tuesday' as a time: use a date (2026-11-10)" in bad.stderr


def test_an_unknown_receipt_id_is_a_clear_error(state_repo: Path) -> None:
    record(state_repo, make_receipt())
    for command in ("show", "verify"):
        ran = cli(state_repo, "receipts", command, "01M00000000000000000000000")
        assert ran.exit_code == 1
        assert ran.stderr.startswith(
            "gitgw: error: no receipt 01M00000000000000000000000 on the state branch\n"
        )
        assert "hint: `gitgw receipts list` shows the newest receipt ids" in ran.stderr


def test_the_index_is_derived_and_rebuilds(state_repo: Path) -> None:
    receipt = make_receipt()
    record(state_repo, receipt)
    with StateRepo.discover(state_repo) as repo:
        assert query(repo).total == 1
        for path in (repo.gitgw_dir / "index").rglob("receipts.sqlite*"):
            path.unlink()
        assert [r.id for r in query(repo).rows] == [receipt.id]


def test_a_failed_commit_is_reported_to_every_caller(state_repo: Path) -> None:
    record(state_repo, make_receipt())
    before = head(state_repo)
    git("switch", "-q", "gitgw", cwd=state_repo)
    with StateRepo.discover(state_repo) as repo, ReceiptLog(Store(repo)) as log:
        future = log.record(make_receipt())
        with pytest.raises(BranchCheckedOut):
            future.result(timeout=30)
    assert head(state_repo) == before


# -- crashes ------------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from gitgw.concepts.receipts import ReceiptLog
    from gitgw.concepts.store import Store
    from gitgw.records import Receipt, jsonl_lines, parse_file, render_batch
    from gitgw.state import StateRepo

    receipt = Receipt.model_validate_json(sys.stdin.read())
    log = ReceiptLog(Store(StateRepo.discover(sys.argv[1])))
    future = log.record(receipt)
    if sys.argv[2] == "wait":
        print("durable", future.result(timeout=30), flush=True)
    else:
        time.sleep(1.0)
        print("done" if future.done() else "not acknowledged", flush=True)
    os._exit(9)  # killed: no flush, no clean shutdown
    """
)


def _child(repo: Path, receipt: Receipt, mode: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(repo), mode],
        input=receipt.model_dump_json(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 9, done.stderr
    return done.stdout.strip()


def test_a_crash_before_the_commit_acknowledges_nothing_and_loses_nothing(
    state_repo: Path,
) -> None:
    earlier = make_receipt()
    record(state_repo, earlier)
    before = head(state_repo)
    lock = state_repo / ".git" / "refs" / "heads" / "gitgw.lock"
    lock.write_text(before + "\n")  # another writer holds the branch while we crash
    lost = make_receipt()
    assert _child(state_repo, lost, "nowait") == "not acknowledged"
    lock.unlink()
    assert head(state_repo) == before
    assert cli(state_repo, "receipts", "show", lost.id).exit_code == 1
    assert cli(state_repo, "receipts", "show", earlier.id).exit_code == 0
    kept = make_receipt()
    answer = _child(state_repo, kept, "wait")
    assert answer == f"durable {head(state_repo)}"
    assert cli(state_repo, "receipts", "show", kept.id).exit_code == 0
    assert cli(state_repo, "verify").exit_code == 0


# -- verify -------------------------------------------------------------------------------


def test_verify_checks_consent_in_force_and_the_context(state_repo: Path, tmp_path: Path) -> None:
    with StateRepo.discover(state_repo) as repo:
        granted = grant(repo, "provider:openai", "internal").entry
    good = make_receipt(provider="openai", location="hosted", consent=[granted.id])
    above = make_receipt(
        provider="openai", location="hosted", level="confidential", consent=[granted.id]
    )
    record(state_repo, good, above)
    with StateRepo.discover(state_repo) as repo:
        revoke(repo, "provider:openai")
    late = make_receipt(provider="openai", location="hosted", consent=[granted.id])
    unknown = make_receipt(consent=["01M00000000000000000000000"])
    record(state_repo, late, unknown)

    request = tmp_path / "request.json"
    request.write_text(json.dumps({"model": "m1", "messages": MESSAGES}))
    ran = cli(state_repo, "receipts", "verify", good.id, "--context", str(request))
    assert ran.exit_code == 0, ran.stderr
    assert ran.stdout.startswith(f"ok: receipt {good.id} is intact (receipts/")
    assert f"context digests match; consent in force: {granted.id}" in ran.stdout

    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps({"messages": [MESSAGES[0], {"role": "user", "content": "x"}]}))
    ran = cli(state_repo, "receipts", "verify", good.id, "--context", str(edited))
    assert ran.exit_code == 1
    assert "context part 2 (user): digest " in ran.stderr

    ran = cli(state_repo, "receipts", "verify", above.id, "--json")
    assert ran.exit_code == 1
    [problem] = data(ran)["problems"]
    assert "does not cover the receipt's level confidential" in problem

    [problem] = data(cli(state_repo, "receipts", "verify", late.id, "--json"))["problems"]
    assert f"cites grant {granted.id}" in problem
    assert "which was not in force for provider:openai at the receipt's time" in problem

    [problem] = data(cli(state_repo, "receipts", "verify", unknown.id, "--json"))["problems"]
    assert problem == "cites consent entry 01M00000000000000000000000, which is not on the branch"

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    ran = cli(state_repo, "receipts", "verify", good.id, "--context", str(bad))
    assert (ran.exit_code, "not JSON" in ran.stderr) == (1, True)


# -- tampering with plain git -------------------------------------------------------------


@pytest.fixture
def clone(state_repo: Path, tmp_path: Path) -> Path:
    path = tmp_path / "clone"
    git("clone", "-q", "--branch", "gitgw", str(state_repo), str(path))
    return path


def _batch(clone: Path, receipt: Receipt) -> Path:
    git("pull", "-q", cwd=clone)
    [path] = list((clone / "receipts").rglob("*.jsonl"))
    assert receipt.id in path.read_text()
    return path


def test_a_receipt_edited_with_its_digest_recomputed_is_still_caught(
    state_repo: Path, clone: Path
) -> None:
    receipt = make_receipt(level="confidential")
    record(state_repo, receipt)
    path = _batch(clone, receipt)
    line = json.loads(path.read_text())
    line["level"] = "internal"  # pretend it was less sensitive
    line.pop("digest")
    line["digest"] = compute_digest(line)
    path.write_text(json.dumps(line, separators=(",", ":")) + "\n")
    git("commit", "-qam", "tidy receipts", cwd=clone)
    git("push", "-q", "origin", "HEAD:gitgw", cwd=clone)
    tampering = git("rev-parse", "HEAD", cwd=clone).strip()
    name = str(path.relative_to(clone))

    ran = cli(state_repo, "receipts", "verify", receipt.id)
    assert ran.exit_code == 1
    assert f"{name}: was modified in commit {tampering[:12]}" in ran.stderr
    verify = cli(state_repo, "verify")
    assert verify.exit_code == 1
    assert f"{name}: add-only record was modified" in verify.stderr


def test_a_receipt_file_deleted_in_history_is_named(state_repo: Path, clone: Path) -> None:
    receipt = make_receipt()
    record(state_repo, receipt)
    path = _batch(clone, receipt)
    git("rm", "-q", str(path), cwd=clone)
    git("commit", "-qm", "drop receipts", cwd=clone)
    git("push", "-q", "origin", "HEAD:gitgw", cwd=clone)
    deleting = git("rev-parse", "HEAD", cwd=clone).strip()
    name = str(path.relative_to(clone))

    ran = cli(state_repo, "receipts", "verify", receipt.id)
    assert ran.exit_code == 1
    assert ran.stderr.strip() == (
        f"{name}: held receipt {receipt.id} and was deleted in commit {deleting[:12]}"
    )
    assert cli(state_repo, "receipts", "show", receipt.id).exit_code == 1
    verify = cli(state_repo, "verify")
    assert f"{name}: add-only record was deleted" in verify.stderr


def test_a_receipt_rewritten_out_of_history_is_named(state_repo: Path, clone: Path) -> None:
    receipt = make_receipt(level="restricted")
    record(state_repo, receipt)
    assert cli(state_repo, "receipts", "verify", receipt.id).exit_code == 0
    path = _batch(clone, receipt)
    line = json.loads(path.read_text())
    line["level"] = "public"
    line.pop("digest")
    line["digest"] = compute_digest(line)
    path.write_text(json.dumps(line, separators=(",", ":")) + "\n")
    git("commit", "-q", "--amend", "-am", "receipts (rewritten)", cwd=clone)
    git("push", "-q", "--force", "origin", "HEAD:gitgw", cwd=clone)
    name = str(path.relative_to(clone))

    ran = cli(state_repo, "receipts", "verify", receipt.id)
    assert ran.exit_code == 1
    assert f"{name}: modified by a rewrite of history" in ran.stderr
    assert cli(state_repo, "verify").exit_code == 1


def test_a_receipt_with_a_broken_digest_is_named(state_repo: Path, clone: Path) -> None:
    receipt = make_receipt()
    record(state_repo, receipt)
    path = _batch(clone, receipt)
    path.write_text(path.read_text().replace('"test-client"', '"someone-else"'))
    git("commit", "-qam", "edit", cwd=clone)
    git("push", "-q", "origin", "HEAD:gitgw", cwd=clone)
    name = str(path.relative_to(clone))
    ran = cli(state_repo, "receipts", "verify", receipt.id)
    assert f"{name}: line 1: digest does not match its content" in ran.stderr
    listing = cli(state_repo, "receipts", "list")
    assert "warning: 1 receipt(s) fail their digest" in listing.stderr
    shown = cli(state_repo, "receipts", "show", receipt.id)
    assert shown.exit_code == 1
    assert "digest does not match its content" in shown.stderr


_SHAPES: list[dict[str, Any]] = [
    {"model": "local", "messages": MESSAGES},
    # Quotes, backslashes, control characters, non-ASCII and emoji: every escape JSON has.
    {
        "model": "chat",
        "messages": [
            {"role": "system", "content": 'say "hi"\\n\ttab\x01 é ü 漢字 🙂 \u2028'},
            {"role": "user", "content": [{"type": "text", "text": "part one"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"b": 1, "a": [2]}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
    },
    # Personal data: a rule name in the receipt, hosted candidates rejected with reasons.
    {"model": "chat", "messages": [{"role": "user", "content": "mail ana@example.org"}]},
    {"model": "hosted-first", "messages": [{"role": "user", "content": "hello"}]},
]


@pytest.mark.parametrize("capture", [False, True])
def test_every_receipt_line_the_proxy_writes_is_canonical_and_verifies(
    state_repo: Path, capture: bool
) -> None:
    # The proxy writes a receipt's canonical JSON directly (no dict, no sorting): each
    # line must be exactly what canonical_json makes of its own content, and check out.
    write_config(state_repo, "http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1", capture=capture)
    gateway = Gateway(StateRepo.discover(state_repo))
    answer = json.dumps({"usage": {"total_tokens": 8, "prompt_tokens": 5}}).encode()
    odd_usage = b'{"usage": {"prompt_tokens": 3, "note": "\\ud800"}}'
    outcomes = [
        lambda p: Outcome("ok", route=p.plan.routes[0], answer=answer, latency_ms=12.5),
        lambda p: Outcome(
            "upstream_error",
            failed=[Attempt("local", "llama-local", 'HTTP 502: "bad" \\ gateway')],
            detail="every route failed: ünïcode \x7f",
            latency_ms=0.001,
            overhead_ms=1e-05,
        ),
        lambda p: Outcome("ok", route=p.plan.routes[0], usage={"completion_tokens": 3}),
        lambda p: Outcome("interrupted", overhead_ms=3.0, latency_ms=1234567.891),
        # Usage json reads and pydantic-core refuses (an unpaired surrogate escape).
        lambda p: Outcome("ok", route=p.plan.routes[0], answer=odd_usage),
    ]
    count = routed = 0
    for shape, client in itertools.product(_SHAPES, (None, "cli-ana")):
        prepared = gateway.prepare(json.dumps(shape).encode(), client)
        for outcome in outcomes:
            if prepared.plan is None or not prepared.plan.routes:
                gateway.record(prepared, Outcome("refused", detail="no route"))
            else:
                gateway.record(prepared, outcome(prepared))
                routed += 1
            count += 1
    assert routed  # the answered shapes were written too, not only refusals
    gateway.flush()
    with StateRepo.discover(state_repo) as repo:
        batches = [path for path, _ in repo.walk("receipts")]
        lines = [
            line
            for path in batches
            for line in jsonl_lines((repo.read(path) or b"").decode("utf-8"))
        ]
        for path in batches:
            parse_file(path, repo.read(path) or b"")  # schema, digest, place
    gateway.close()
    assert len(lines) == count
    for line in lines:
        content = json.loads(line)
        content.pop("digest")
        assert line.encode("utf-8").startswith(canonical_json(content)[:-1])
        assert line.endswith(f',"digest":"{compute_digest(content)}"}}')
    captured = [json.loads(line)["context"][0].get("content") for line in lines]
    assert any(captured) == capture
    usages = [json.loads(line).get("usage") for line in lines]
    assert {"total_tokens": 8, "prompt_tokens": 5} in usages
    assert {"prompt_tokens": 3} in usages


def test_a_receipt_recorded_on_any_thread_is_on_the_branch_when_its_flush_returns(
    state_repo: Path,
) -> None:
    # `record()` only queues a receipt; whoever seals first builds it. A flush must still
    # wait for the receipts recorded before it, even while another thread is building
    # them, and none may be written twice or lost.
    write_config(state_repo, "http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1")
    gateway = Gateway(StateRepo.discover(state_repo))
    body = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
    stop = threading.Event()
    missing: list[str] = []
    recorded: list[str] = []

    def sealer() -> None:
        while not stop.wait(0.0005):
            gateway.seal()

    def on_branch() -> list[str]:
        with StateRepo.discover(state_repo) as repo:
            return [
                json.loads(line)["id"]
                for path, _ in repo.walk("receipts")
                for line in jsonl_lines((repo.read(path) or b"").decode("utf-8"))
            ]

    def producer() -> None:
        for _round in range(3):
            ids = []
            for _ in range(10):
                prepared = gateway.prepare(body.encode(), None)
                route = prepared.plan.routes[0] if prepared.plan and prepared.plan.routes else None
                ids.append(gateway.record(prepared, Outcome("ok", route=route)))
            gateway.flush()
            written = set(on_branch())
            missing.extend(i for i in ids if i not in written)
            recorded.extend(ids)

    sealers = [threading.Thread(target=sealer) for _ in range(2)]
    producers = [threading.Thread(target=producer) for _ in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads change hands inside seal(), not only between
    try:
        for thread in sealers + producers:
            thread.start()
        for thread in producers:
            thread.join()
    finally:
        stop.set()
        sys.setswitchinterval(interval)
    for thread in sealers:
        thread.join()
    gateway.close()
    assert missing == []
    assert len(recorded) == 4 * 3 * 10
    assert sorted(on_branch()) == sorted(recorded)  # each once


def test_a_receipt_that_cannot_be_built_at_all_does_not_cost_the_others_theirs(
    state_repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A bug that breaks even the fallback line (here an outcome no JSON can hold) loses
    # that one receipt, loudly; the receipts queued with it still reach the branch.
    write_config(state_repo, "http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1")
    gateway = Gateway(StateRepo.discover(state_repo))
    body = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
    before = gateway.record(gateway.prepare(body.encode(), None), Outcome("ok"))
    broken = gateway.record(gateway.prepare(body.encode(), None), Outcome(object()))  # type: ignore[arg-type]
    after = gateway.record(gateway.prepare(body.encode(), None), Outcome("refused"))
    gateway.flush()
    gateway.close()
    with StateRepo.discover(state_repo) as repo:
        ids = [
            json.loads(line)["id"]
            for path, _ in repo.walk("receipts")
            for line in jsonl_lines((repo.read(path) or b"").decode("utf-8"))
        ]
    assert sorted(ids) == sorted([before, after])
    assert f"lost the receipt of {broken}" in caplog.text


def test_a_receipt_that_cannot_be_built_falls_back_to_one_without_the_requests_text(
    state_repo: Path,
) -> None:
    write_config(state_repo, "http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1")
    gateway = Gateway(StateRepo.discover(state_repo))
    body = {"model": "chat", "messages": [{"role": "user", "content": "mail jane@example.org"}]}
    prepared = gateway.prepare(json.dumps(body).encode(), None)
    outcome = Outcome("ok", receipt_id=prepared.receipt_id, detail="jane@example.org said hi")
    line = fallback_line(gateway.loaded, prepared, outcome, gateway.clock, RecursionError())
    gateway.close()
    path, data = batch_file([line], prepared.receipt_id)
    [receipt] = parse_file(path, data).records  # schema, digest and place hold
    assert isinstance(receipt, Receipt)
    assert (receipt.id, receipt.level, receipt.rules) == (
        prepared.receipt_id,
        "confidential",
        ["personal.email"],
    )
    assert receipt.detail == "the full receipt could not be built (RecursionError)"
    assert "jane" not in line


def test_batches_in_the_day_layout_of_earlier_versions_still_read_and_verify(
    state_repo: Path,
) -> None:
    clock = Clock()
    old, new = make_receipt(clock), make_receipt(clock)
    batch_id = clock.new_id()
    path, data_ = render_batch([old], batch_id)
    hour = ulid_time(batch_id).strftime("%Y/%m/%d/%H")
    assert path == f"receipts/{hour}/{batch_id}.jsonl"  # written by the hour
    day_path = f"receipts/{hour[:-3]}/{batch_id}.jsonl"  # where earlier versions put it
    with StateRepo.discover(state_repo) as repo:
        repo.commit({day_path: data_}, "a batch as gitgw wrote it before hour shards")
    record(state_repo, new)
    assert data(cli(state_repo, "receipts", "show", old.id, "--json"))["path"] == day_path
    listing = data(cli(state_repo, "receipts", "list", "--json"))
    assert {r["id"] for r in listing["receipts"]} == {old.id, new.id}
    assert cli(state_repo, "verify").exit_code == 0
    # Either layout, the shard must be the batch id's: an hour off is named.
    wrong = f"receipts/{hour[:-2]}{(int(hour[-2:]) + 1) % 24:02d}/{batch_id}.jsonl"
    with StateRepo.discover(state_repo) as repo:
        repo.commit({wrong: data_}, "a batch in another hour")
    ran = cli(state_repo, "verify")
    assert ran.exit_code == 1
    assert f"{wrong}: sits in another time shard than its id's time" in ran.stdout + ran.stderr
