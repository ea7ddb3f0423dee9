"""`gitgw start`: the watcher, the engine and the daemon, on real repositories.

The state repository is a bare repository served by a real Git server on loopback
(`git daemon`); clones push handoffs and request files into it, with gitgw or with plain
git, and the daemon (in this process, or as a real `gitgw start` process) reacts. Model
calls go to a fake upstream (an aiohttp app on 127.0.0.1).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gitgw._yaml import dump_document
from gitgw.concepts import handoff as handoffs
from gitgw.concepts.consent import grant
from gitgw.concepts.runs import list_runs, show_run
from gitgw.concepts.store import Store
from gitgw.daemon import Daemon
from gitgw.errors import GitgwError
from gitgw.records import Handoff, HandoffEvent, Request, Response, render
from gitgw.services.deliveries import PushEvent
from gitgw.services.engine import Engine
from gitgw.services.gateway import Gateway
from gitgw.state import StateRepo
from tests.conftest import git, run_cli
from tests.fakeupstream import TEST_SETTINGS, BackgroundLoop, FakeUpstream, write_config
from tests.gitservers import GitServer
from tests.test_gitea import AFTER, SECRET, gitea_headers, go_json, push_payload

REVIEW = """\
schema_version: 1
description: Review each submitted handoff.
on:
  - handoff:
      state: submitted
steps:
  - name: review
    uses: complete
    with:
      model: local
      prompt: "Review the handoff {{ handoff.title }}"
  - name: comment
    uses: handoff
    with:
      handoff: "{{ handoff.id }}"
      kind: note
      note: "{{ steps.review.output }}"
"""

SLOW = """\
schema_version: 1
on:
  - handoff:
      state: submitted
steps:
  - name: wait
    uses: run
    timeout_s: 60
    with:
      command: ["sleep", "30"]
"""

EVERYTHING = """\
schema_version: 1
on:
  - path: "**"
steps:
  - name: note
    uses: run
    with:
      command: ["true"]
"""


def wait_for(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    loop = BackgroundLoop()
    fake = FakeUpstream("local")
    loop.run(fake.start())
    yield fake
    loop.run(fake.stop())
    loop.close()


@pytest.fixture
def served(git_daemon: GitServer, upstream: FakeUpstream, tmp_path: Path) -> Path:
    """A bare state repository on the Git server, configured for the fake upstream."""
    path = git_daemon.path("state.git")
    git("init", "--quiet", "--bare", str(path))
    assert run_cli("init", str(path)).exit_code == 0
    write_config(path, upstream.base_url, "http://127.0.0.1:9/v1")
    with StateRepo.discover(path) as repo:
        Store(repo).put("workflows/review.yaml", REVIEW.encode(), "add the review workflow")
    return path


def clone(server: GitServer, into: Path, bare: bool = True) -> Path:
    git("clone", "--quiet", *(["--bare"] if bare else ["--branch", "gitgw"]),
        server.url("state.git"), str(into))  # fmt: skip
    return into


def push(repo: Path) -> None:
    git("push", "--quiet", "origin", "gitgw", cwd=repo)


def pull(repo: Path) -> None:
    git("fetch", "--quiet", "origin", "+gitgw:gitgw", cwd=repo)


def new_handoff(repo: Path, title: str) -> str:
    with StateRepo.discover(repo) as state:
        made = handoffs.create(
            Store(state), {"from": {"agent": "claude-code"}, "to": "codex", "title": title}, "Body."
        )
    return made.id


class Running:
    """A daemon served from a background event loop, with the steps it started."""

    def __init__(self, path: Path) -> None:
        self.loop = BackgroundLoop()
        self.gateway = Gateway(StateRepo.discover(path))
        self.steps: list[tuple[float, str, str]] = []
        self.daemon = Daemon(
            self.gateway, "127.0.0.1", 0, TEST_SETTINGS,
            on_step=lambda run, step: self.steps.append((time.time(), run, step)),
        )  # fmt: skip
        self.serving = self.loop.run(self.daemon.start())

    def stop(self) -> None:
        self.loop.run(self.daemon.stop())
        self.gateway.close()
        self.loop.close()


@pytest.fixture
def running(served: Path) -> Iterator[Running]:
    daemon = Running(served)
    yield daemon
    daemon.stop()


def runs_of(path: Path, workflow: str | None = None) -> list[Any]:
    with StateRepo.discover(path) as repo:
        listing = list_runs(repo, limit=None)
    return [r for r in listing.runs if workflow is None or r.workflow == workflow]


def handoff_notes(path: Path, handoff_id: str) -> list[str]:
    with StateRepo.discover(path) as repo:
        view = handoffs.read(Store(repo), handoff_id)
    return [event.note or "" for event in view.events if event.kind == "note"]


def finished(path: Path, workflow: str, count: int) -> Callable[[], list[Any]]:
    def check() -> list[Any]:
        done = [r for r in runs_of(path, workflow) if r.status != "started"]
        return done if len(done) >= count else []

    return check


# -- pushes fire workflows ------------------------------------------------------------------


def test_a_handoff_pushed_with_gitgw_fires_its_workflow_once(
    served: Path, running: Running, upstream: FakeUpstream, tmp_path: Path, git_daemon: GitServer
) -> None:
    work = clone(git_daemon, tmp_path / "agent.git")
    handoff_id = new_handoff(work, "Finish the exporter")
    push(work)

    [run] = wait_for(finished(served, "review", 1), what="the review run")
    assert run.status == "succeeded", run.error
    notes = wait_for(lambda: handoff_notes(served, handoff_id), what="the note")
    assert notes == ["hello from local"]
    sent = upstream.received[0]["messages"][0]["content"]
    assert sent == "Review the handoff Finish the exporter"
    with StateRepo.discover(served) as repo:
        view = show_run(repo, run.id)
    assert view.merged().trigger is not None
    assert view.merged().trigger["key"].startswith(f"handoff:{handoff_id}:")
    assert len(view.merged().receipts) == 1
    # The run's own commits (its records, the note) fire nothing more.
    time.sleep(1.0)
    assert len(runs_of(served, "review")) == 1
    assert len(upstream.received) == 1


def test_a_handoff_committed_with_plain_git_fires_too(
    served: Path, running: Running, tmp_path: Path, git_daemon: GitServer
) -> None:
    work = clone(git_daemon, tmp_path / "checkout", bare=False)
    with StateRepo.discover(served) as repo:
        clock = Store(repo).clock
    now = clock.now()
    from gitgw.records import Handoff, HandoffEvent

    handoff = Handoff.model_validate({"id": clock.new_id(now), "created": now, "to": "codex",
                                      "from": {"agent": "alice"}, "title": "By hand"})  # fmt: skip
    event = HandoffEvent(id=clock.new_id(now), handoff=handoff.id, kind="state", agent="alice",
                         state="submitted", created=now)  # fmt: skip
    for record, body in ((handoff, "Written with git."), (event, None)):
        path, data = render(record, body)
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_bytes(data)
        git("add", path, cwd=work)
    git("commit", "--quiet", "-m", "a handoff by hand", cwd=work)
    push(work)

    [run] = wait_for(finished(served, "review", 1), what="the review run")
    assert run.status == "succeeded", run.error
    assert wait_for(lambda: handoff_notes(served, handoff.id)) == ["hello from local"]


def test_a_burst_of_pushes_fires_each_workflow_exactly_once(
    served: Path, running: Running, tmp_path: Path, git_daemon: GitServer
) -> None:
    work = clone(git_daemon, tmp_path / "agent.git")
    made = []
    for n in range(12):
        made.append(new_handoff(work, f"Task {n}"))
        # The daemon writes to the branch too: sync merges its runs in before pushing.
        assert run_cli("--repo", str(work), "sync").exit_code == 0
    done = wait_for(finished(served, "review", 12), timeout=60, what="twelve runs")
    time.sleep(1.0)
    runs = runs_of(served, "review")
    assert len(runs) == 12
    assert all(r.status == "succeeded" for r in done)
    for handoff_id in made:
        assert handoff_notes(served, handoff_id) == ["hello from local"]


def test_a_request_file_is_answered_with_a_response_and_a_receipt(
    served: Path, running: Running, tmp_path: Path, git_daemon: GitServer
) -> None:
    with StateRepo.discover(served) as repo:
        grant(repo, "client:ci-bot", "confidential", actor="test")
    work = clone(git_daemon, tmp_path / "agent.git")
    pull(work)
    with StateRepo.discover(work) as repo:
        store = Store(repo)
        now = store.clock.now()
        request = Request.model_validate({
            "id": store.clock.new_id(now), "created": now, "agent": "ci-bot", "model": "local",
            "template": "Summarise {{ topic }}", "inputs": {"topic": "the invoices"},
        })  # fmt: skip
        store.add(request, message="ask")
    push(work)

    def response() -> Response | None:
        with StateRepo.discover(served) as repo:
            for _path, parsed in Store(repo).iter_kind("response"):
                found = parsed.records[0]
                assert isinstance(found, Response)
                if found.request == request.id:
                    return found
        return None

    answer = wait_for(response, what="the response")
    assert answer.outcome == "ok"
    assert answer.content == "hello from local"
    assert answer.receipt is not None
    listed = run_cli("--repo", str(served), "receipts", "show", answer.receipt)
    assert listed.exit_code == 0, listed.stderr
    # The agent gets the answer with a plain fetch.
    pull(work)
    with StateRepo.discover(work) as repo:
        assert any(p.records[0].request == request.id for _, p in Store(repo).iter_kind("response"))


def _ask(served: Path, agent: str, **fields: Any) -> Request:
    """A request file from `agent` for the local model, added to the served branch."""
    with StateRepo.discover(served) as repo:
        store = Store(repo)
        now = store.clock.now()
        request = Request.model_validate(
            {"id": store.clock.new_id(now), "created": now, "agent": agent, "model": "local"}
            | fields
        )
        store.add(request, message="ask")
    return request


def _responses_to(served: Path, request_id: str) -> list[Response]:
    with StateRepo.discover(served) as repo:
        found = [p.records[0] for _, p in Store(repo).iter_kind("response")]
    return [r for r in found if isinstance(r, Response) and r.request == request_id]


def test_a_request_without_consent_for_its_agent_is_answered_with_the_refusal(
    served: Path, running: Running, upstream: FakeUpstream
) -> None:
    request = _ask(served, "stranger", messages=[{"role": "user", "content": "hi"}])
    [answer] = wait_for(lambda: _responses_to(served, request.id), what="the response")
    assert answer.outcome == "refused"
    assert "client:stranger" in (answer.error or "")
    assert upstream.received == []


def test_a_request_template_cannot_run_code_on_the_daemons_machine(
    served: Path, running: Running, upstream: FakeUpstream, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    with StateRepo.discover(served) as repo:
        grant(repo, "client:ci-bot", "confidential", actor="test")
    escape = f"{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}"
    request = _ask(served, "ci-bot", template=f"Summarise {escape}", inputs={})
    [answer] = wait_for(lambda: _responses_to(served, request.id), what="the response")
    assert answer.outcome != "ok"
    assert "not allowed" in (answer.error or ""), answer.error
    assert not marker.exists()
    assert upstream.received == []


def test_a_request_file_without_its_digest_is_answered_with_the_reason(
    served: Path, running: Running, tmp_path: Path, git_daemon: GitServer,
    upstream: FakeUpstream,
) -> None:  # fmt: skip
    work = clone(git_daemon, tmp_path / "checkout", bare=False)
    request_id = "01M72EM2QRFWRBSZ2SR0FC3AE0"
    path = work / "requests" / f"{request_id}.yaml"
    path.parent.mkdir()
    path.write_text(
        f'schema_version: 1\nid: "{request_id}"\ncreated: "2026-11-10T10:03:55.000Z"\n'
        'agent: "ci-bot"\nmodel: "local"\nmessages: [{"role": "user", "content": "hi"}]\n'
    )
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "a request written by hand", cwd=work)
    push(work)

    def answered() -> list[Response]:
        with StateRepo.discover(served) as repo:
            found = [p.records[0] for _, p in Store(repo).iter_kind("response")]
        return [r for r in found if isinstance(r, Response) and r.request == request_id]

    [answer] = wait_for(answered, what="the response")
    assert answer.outcome == "error"
    assert "has no digest" in (answer.error or "")
    assert upstream.received == []


def test_a_request_rejected_just_before_a_crash_is_not_rejected_again(served: Path) -> None:
    request_id = "01M72EM2QRFWRBSZ2SR0FC3AE0"
    text = (
        f'schema_version: 1\nid: "{request_id}"\ncreated: "2026-11-10T10:03:55.000Z"\n'
        'agent: "ci-bot"\nmodel: "local"\ntemplate: "hi"\n'
    )  # no digest: it is answered with an error
    gateway = Gateway(StateRepo.discover(served))
    engine = Engine(gateway)
    try:
        engine.start()
        before = engine.cursor
        assert before is not None
        gateway.repo.commit({f"requests/{request_id}.yaml": text.encode()}, "by hand")
        engine.catch_up()
        # The process dies after answering, before its cursor reaches the disk: what
        # the disk holds then is the cursor from before.
        engine.place.save_cursor(before)
        engine.close()
        engine = Engine(gateway)  # the restart
        engine.start()
        engine.catch_up()
        with StateRepo.discover(served) as repo:
            found = [p.records[0] for _, p in Store(repo).iter_kind("response")]
        assert [r.request for r in found if isinstance(r, Response)] == [request_id]
    finally:
        engine.close()
        gateway.close()


# -- what must not fire ---------------------------------------------------------------------


def test_an_invalid_commit_is_reported_and_fires_nothing(
    served: Path, running: Running, tmp_path: Path, git_daemon: GitServer,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    work = clone(git_daemon, tmp_path / "checkout", bare=False)
    bad = work / "handoffs" / "01M72BN4RPD00B6JMKN1EPWCWX" / "handoff.md"
    bad.parent.mkdir(parents=True)
    bad.write_text("---\nschema_version: 1\ntitle: no id, no author\n---\nBody.\n")
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "an invalid handoff", cwd=work)
    push(work)
    wait_for(lambda: "is invalid, its effects are not applied" in caplog.text, what="the report")
    assert runs_of(served, "review") == []


def test_an_invalid_workflow_keeps_the_last_valid_version(
    served: Path, running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    with StateRepo.discover(served) as repo:
        head = repo.require_head()
        tree = repo.add_files(repo.tree_of(head) or b"", {"workflows/review.yaml": b"steps: 3\n"})
        assert repo.commit_tree(tree, [head], "break the workflow", head) is not None
    wait_for(lambda: "keeping its last valid version" in caplog.text, what="the report")
    handoff_id = new_handoff(served, "Still reviewed")
    [run] = wait_for(finished(served, "review", 1), what="the review run")
    assert run.status == "succeeded"
    assert wait_for(lambda: handoff_notes(served, handoff_id)) == ["hello from local"]


def test_a_request_beside_a_broken_workflow_in_one_commit_is_answered(
    served: Path, running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    # A workflow keeps its last valid version; the request of the same commit is no
    # less valid for it.
    with StateRepo.discover(served) as repo:
        now = Store(repo).clock.now()
        request = Request.model_validate({
            "id": Store(repo).clock.new_id(now), "created": now, "agent": "ci-bot",
            "model": "local", "messages": [{"role": "user", "content": "hi"}],
        })  # fmt: skip
        path, data = render(request)
        repo.commit({path: data, "workflows/review.yaml": b"steps: 3\n"}, "ask, break a workflow")
    wait_for(lambda: _responses_to(served, request.id), what="the response")
    assert "keeping its last valid version" in caplog.text


def test_a_workflow_on_every_path_never_triggers_itself(served: Path, running: Running) -> None:
    with StateRepo.discover(served) as repo:
        Store(repo).put("workflows/everything.yaml", EVERYTHING.encode(), "watch everything")
    wait_for(finished(served, "everything", 1), what="the first run")
    time.sleep(1.5)
    # One run for the commit that added it; its own run records fired nothing more.
    assert len(runs_of(served, "everything")) == 1


def test_a_second_daemon_on_the_same_branch_is_refused(served: Path, running: Running) -> None:
    gateway = Gateway(StateRepo.discover(served))
    try:
        with pytest.raises(GitgwError, match="already following branch gitgw"):
            Engine(gateway).start()
    finally:
        gateway.close()


def test_a_rewritten_branch_is_followed_without_firing_again(
    served: Path, running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    new_handoff(served, "Fired once")
    wait_for(finished(served, "review", 1), what="the first run")
    # Someone rewrites the branch with plain git: the same tree under a new commit id,
    # dropping the daemon's run records.
    with StateRepo.discover(served) as repo:
        head = repo.require_head()
        first_run = repo.commit_info(head)
        while "Gitgw-" in first_run.message:
            first_run = repo.commit_info(first_run.parents[0])
        rewritten = repo.commit_tree(
            first_run.tree.encode(), list(first_run.parents), "reworded", head
        )
        assert rewritten is not None
    wait_for(lambda: "the state branch was rewritten" in caplog.text, what="the warning")
    time.sleep(1.0)
    assert runs_of(served, "review") == []  # the rewrite dropped them; nothing ran again


# -- webhooks -----------------------------------------------------------------------------


def _post_delivery(base: str, payload: dict[str, Any], delivery: str) -> int:
    body = go_json(payload)
    request = urllib.request.Request(
        base + "/hooks/gitea", data=body, headers=gitea_headers(body, delivery=delivery)
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return int(answer.status)


def _configure_gitea(path: Path, **gitea: str) -> None:
    with StateRepo.discover(path) as repo:
        store = Store(repo)
        data = store.config().model_dump(mode="json", by_alias=True, exclude_none=True)
        data["gitea"] = {"webhook_secret_env": "HOOK_SECRET", **gitea}
        store.put("gitgw.yaml", dump_document(data).encode(), "gitea settings")


def test_a_signed_gitea_push_to_the_state_repository_syncs_it(
    git_daemon: GitServer, upstream: FakeUpstream, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    hub = git_daemon.path("state.git")
    git("init", "--quiet", "--bare", str(hub))
    assert run_cli("init", str(hub)).exit_code == 0
    write_config(hub, upstream.base_url, "http://127.0.0.1:9/v1")
    _configure_gitea(hub, state_repo="team/state")
    with StateRepo.discover(hub) as repo:
        Store(repo).put("workflows/review.yaml", REVIEW.encode(), "review")
    mine = clone(git_daemon, tmp_path / "mine.git")
    running = Running(mine)
    try:
        other = clone(git_daemon, tmp_path / "other.git")
        handoff_id = new_handoff(other, "From another machine")
        push(other)
        time.sleep(0.5)
        assert runs_of(mine, "review") == []  # nothing arrives without a sync
        base = running.serving.url.removesuffix("/v1")
        delivery = "1d2c7a54-3a6a-4f4b-9a86-1f2d7b9d1a01"
        assert _post_delivery(base, push_payload(), delivery) == 202
        [run] = wait_for(finished(mine, "review", 1), what="the synced review")
        assert run.status == "succeeded"
        assert wait_for(lambda: handoff_notes(mine, handoff_id)) == ["hello from local"]
        # Gitea's redelivery of the same delivery changes nothing.
        assert _post_delivery(base, push_payload(), delivery) == 200
    finally:
        running.stop()


def test_a_periodic_sync_brings_in_what_others_pushed(
    git_daemon: GitServer, upstream: FakeUpstream, tmp_path: Path
) -> None:
    hub = git_daemon.path("state.git")
    git("init", "--quiet", "--bare", str(hub))
    assert run_cli("init", str(hub)).exit_code == 0
    write_config(hub, upstream.base_url, "http://127.0.0.1:9/v1")
    with StateRepo.discover(hub) as repo:
        store = Store(repo)
        data = store.config().model_dump(mode="json", by_alias=True, exclude_none=True)
        data["daemon"] = {"sync_interval_s": 0.3}
        store.put("gitgw.yaml", dump_document(data).encode(), "sync often")
        store.put("workflows/review.yaml", REVIEW.encode(), "review")
    mine = clone(git_daemon, tmp_path / "mine.git")
    running = Running(mine)
    try:
        other = clone(git_daemon, tmp_path / "other.git")
        handoff_id = new_handoff(other, "Picked up by a periodic sync")
        push(other)
        [run] = wait_for(finished(mine, "review", 1), what="the synced review")
        assert run.status == "succeeded"
        assert wait_for(lambda: handoff_notes(mine, handoff_id)) == ["hello from local"]
        # The run's records reach the hub by the next sync, so the other machine sees them.
        wait_for(lambda: handoff_notes(hub, handoff_id), what="the note on the hub")
    finally:
        running.stop()


GITEA_PUSH = """\
schema_version: 1
on:
  - gitea_push:
      repo: team/state
      branch: gitgw
steps:
  - name: record
    uses: memory
    with:
      title: "push {{ push.after }}"
      body: "{{ push.pusher }} pushed {{ push.commits | length }} commits to {{ push.repo }}"
"""


def _serving_push_workflow(served: Path, monkeypatch: pytest.MonkeyPatch) -> Running:
    """A daemon taking signed Gitea deliveries, with a workflow on pushes."""
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    _configure_gitea(served)
    with StateRepo.discover(served) as repo:
        Store(repo).put("workflows/on-push.yaml", GITEA_PUSH.encode(), "on push")
    return Running(served)


def test_a_gitea_push_to_another_repository_fires_its_workflows(
    served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = _serving_push_workflow(served, monkeypatch)
    try:
        base = running.serving.url.removesuffix("/v1")
        assert _post_delivery(base, push_payload(), "6f1e1b0a-0000-4000-8000-000000000001") == 202
        [run] = wait_for(finished(served, "on-push", 1), what="the push workflow")
        assert run.status == "succeeded", run.error
        with StateRepo.discover(served) as repo:
            view = show_run(repo, run.id)
            trigger = view.merged().trigger
            titles = [p.records[0].title for _, p in Store(repo).iter_kind("memory")]
        assert trigger is not None
        assert trigger["key"] == "gitea:6f1e1b0a-0000-4000-8000-000000000001"
        assert f"push {AFTER}" in titles
    finally:
        running.stop()


def test_a_gitea_push_taken_during_a_failing_round_is_handled_once_it_recovers(
    served: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    running = _serving_push_workflow(served, monkeypatch)
    try:
        base = running.serving.url.removesuffix("/v1")
        # Someone checks the state branch out for a moment: every commit is refused, so
        # the round that takes the push fails.
        git("worktree", "add", "--quiet", str(tmp_path / "checkout"), "gitgw", cwd=served)
        assert _post_delivery(base, push_payload(), "6f1e1b0a-0000-4000-8000-0000000000a1") == 202
        time.sleep(1.0)
        assert runs_of(served, "on-push") == []
        failed = [r for r in caplog.records if "failed on this round" in r.getMessage()]
        assert len(failed) == 1  # it waits before trying again, it does not spin
        git("worktree", "remove", "--force", str(tmp_path / "checkout"), cwd=served)
        [run] = wait_for(finished(served, "on-push", 1), timeout=15, what="the retried push")
        assert run.status == "succeeded", run.error
        time.sleep(1.0)
        assert len(runs_of(served, "on-push")) == 1  # once, not again
        # Stopping while rounds keep failing does not wait for ever: it says what is left.
        git("worktree", "add", "--quiet", str(tmp_path / "checkout"), "gitgw", cwd=served)
        other = push_payload(after="f" * 40)
        assert _post_delivery(base, other, "6f1e1b0a-0000-4000-8000-0000000000a2") == 202
    finally:
        began = time.monotonic()
        running.stop()
    assert time.monotonic() - began < 15
    assert "stopping with 1 Gitea push(es) not handled: 6f1e1b0a" in caplog.text


HOURLY = """\
schema_version: 1
on:
  - schedule: "30 * * * *"
steps:
  - name: tick
    uses: run
    with:
      command: ["true"]
"""


def test_a_schedule_fires_once_in_its_minute(served: Path) -> None:
    with StateRepo.discover(served) as repo:
        Store(repo).put("workflows/hourly.yaml", HOURLY.encode(), "hourly")
    gateway = Gateway(StateRepo.discover(served))
    try:
        engine = Engine(gateway)
        engine.start()
        assert engine.tick(datetime(2026, 11, 26, 9, 29, 59, tzinfo=UTC)) == []
        [fired] = engine.tick(datetime(2026, 11, 26, 9, 30, 1, tzinfo=UTC))
        assert fired.key == "schedule:2026-11-26T09:30:00.000Z"
        assert engine.tick(datetime(2026, 11, 26, 9, 30, 40, tzinfo=UTC)) == []
        # A restart in the same minute remembers it fired.
        assert Engine(gateway).tick(datetime(2026, 11, 26, 9, 30, 50, tzinfo=UTC)) == []
        assert [r.status for r in runs_of(served, "hourly")] == ["succeeded"]
        engine.close()
    finally:
        gateway.close()


TWO_TRIGGERS = """\
schema_version: 1
on:
  - handoff: {state: submitted}
  - path: "handoffs/**"
steps:
  - name: echo
    uses: run
    with:
      command: ["true"]
"""


def test_a_workflow_fires_once_for_a_commit_that_two_of_its_triggers_match(
    served: Path,
) -> None:
    with StateRepo.discover(served) as repo:
        Store(repo).put("workflows/triage.yaml", TWO_TRIGGERS.encode(), "two triggers")
    gateway = Gateway(StateRepo.discover(served))
    engine = Engine(gateway)
    try:
        engine.start()
        one = {"from": {"agent": "alice"}, "to": "codex", "title": "One"}
        handoffs.create(gateway.store, one, "Body.")
        fired = [f for f in engine.catch_up().fired if f.name == "triage"]
        assert [f.key.split(":")[0] for f in fired] == ["handoff"]  # not the path as well
        # Two handoffs in one commit are two events for it: one run each.
        store, now = gateway.store, gateway.store.clock.now()
        records: list[Any] = []
        for title in ("A", "B"):
            fields = {"from": {"agent": "alice"}, "to": "codex", "title": title}
            handoff = Handoff.model_validate(fields | {"id": store.clock.new_id(), "created": now})
            submitted = HandoffEvent(
                id=store.clock.new_id(), handoff=handoff.id, kind="state", agent="alice",
                state="submitted", created=now,
            )  # fmt: skip
            records += [(handoff, f"{title}."), submitted]
        store.add(*records, message="two handoffs in one commit")
        fired = [f for f in engine.catch_up().fired if f.name == "triage"]
        assert sorted(f.key.split(":")[1] for f in fired) == sorted(
            r[0].id for r in records if isinstance(r, tuple)
        )
        # A commit the handoff trigger does not match (a claim) fires through its path.
        handoffs.claim(gateway.store, records[0][0].id, "codex")
        fired = [f for f in engine.catch_up().fired if f.name == "triage"]
        assert [f.key.split(":")[0] for f in fired] == ["commit"]
    finally:
        engine.close()
        gateway.close()


def test_the_webhook_queue_is_bounded(served: Path) -> None:
    gateway = Gateway(StateRepo.discover(served))
    try:
        daemon = Daemon(gateway, "127.0.0.1", 0, TEST_SETTINGS)
        limit = gateway.config.daemon.webhook_queue
        event = PushEvent(delivery="d", repo="a/b", ref="refs/heads/main", branch="main",
                          before="0" * 40, after="1" * 40, clone_url=None, html_url=None,
                          commits=[], pusher="bob")  # fmt: skip
        accepted = [daemon.accept(event) for _ in range(limit + 3)]
        assert accepted.count(True) == limit
        assert accepted[-1] is False
        daemon.workers.stop()
    finally:
        gateway.close()


# -- the real process -----------------------------------------------------------------------


class Process:
    """A real `gitgw start` process and the URL it serves."""

    def __init__(self, path: Path, *extra: str) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "gitgw", "--repo", str(path), "start", "--port", "0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        assert "serving http" in line, line + (self.popen.stderr.read() if line == "" else "")
        self.url = line.split("serving ", 1)[1].split()[0]

    def kill(self) -> None:
        self.popen.kill()
        self.popen.communicate(timeout=10)

    def terminate(self) -> tuple[str, str]:
        """SIGTERM, then its remaining output (stdout, stderr)."""
        self.popen.send_signal(signal.SIGTERM)
        out, err = self.popen.communicate(timeout=30)
        return out, err


def test_a_killed_daemon_marks_the_run_interrupted_and_resumes_where_it_stopped(
    served: Path, tmp_path: Path, git_daemon: GitServer
) -> None:
    with StateRepo.discover(served) as repo:
        Store(repo).put("workflows/review.yaml", SLOW.encode(), "a slow workflow")
    process = Process(served)
    try:
        first = new_handoff(served, "Killed midway")
        wait_for(lambda: runs_of(served, "review"), what="the run to start")
    finally:
        process.kill()
    [started] = runs_of(served, "review")
    assert started.status == "started"
    # While it is down: the workflow changes, then a handoff arrives (runs use the
    # workflow as it was at the commit that fired them).
    with StateRepo.discover(served) as repo:
        Store(repo).put("workflows/review.yaml", REVIEW.encode(), "a quick workflow")
    second = new_handoff(served, "Pushed while it was down")
    process = Process(served, "--json-logs")
    try:

        def settled() -> list[Any]:
            runs = {r.id: r for r in runs_of(served, "review")}
            done = runs[started.id].status == "interrupted" and len(runs) == 2
            return [r for r in runs.values() if r.status != "started"] if done else []

        wait_for(lambda: len(settled()) == 2, timeout=20, what="the restart to settle")
    finally:
        _out, err = process.terminate()
    assert process.popen.returncode == 0, err
    runs = runs_of(served, "review")
    assert sorted(r.status for r in runs) == ["interrupted", "succeeded"]
    assert handoff_notes(served, first) == []  # not silently redone
    assert handoff_notes(served, second) == ["hello from local"]
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any("interrupted" in entry["msg"] for entry in logs)
    assert all({"time", "level", "logger", "msg"} <= entry.keys() for entry in logs)


def test_sigterm_flushes_receipts_and_exits_cleanly(served: Path) -> None:
    process = Process(served)
    try:
        body = {"model": "local", "messages": [{"role": "user", "content": "hi"}]}
        request = urllib.request.Request(
            process.url + "/chat/completions", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as answer:
            receipt = answer.headers["x-gitgw-receipt"]
    finally:
        out, err = process.terminate()
    assert process.popen.returncode == 0, err
    assert "every receipt is on the state branch" in out
    shown = run_cli("--repo", str(served), "receipts", "show", receipt)
    assert shown.exit_code == 0, shown.stderr
