"""Workflows: cron expressions, the workflow schema, the set of workflows the daemon keeps,
trigger matching, the runner's steps and `gitgw workflows`, on real repositories with fake
upstream models and a fake Gitea API on loopback."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import web

from gitgw.concepts import handoff as handoffs
from gitgw.concepts import memory
from gitgw.concepts.checks import check_file
from gitgw.concepts.events import Event
from gitgw.concepts.runs import show_run
from gitgw.concepts.store import Store
from gitgw.concepts.workflows import WorkflowSet, load
from gitgw.errors import InvalidRecord
from gitgw.records import Run, Workflow
from gitgw.records.cron import Cron
from gitgw.services.gateway import Gateway
from gitgw.services.workflow_runner import OUTPUT_LIMIT, RunContext, run_workflow
from gitgw.state import StateRepo
from tests.conftest import envelope_data, git, run_on, succeeds
from tests.fakeupstream import BackgroundLoop, FakeUpstream, receipts_on_branch, write_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example-repo"


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- cron ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "moment", "expected"),
    [
        ("* * * * *", "2026-03-04 05:06", True),
        ("*/15 * * * *", "2026-03-04 05:45", True),
        ("*/15 * * * *", "2026-03-04 05:46", False),
        ("0 9-17/4 * * *", "2026-03-04 13:00", True),
        ("0 9-17/4 * * *", "2026-03-04 15:00", False),
        ("5,10,15 * * * *", "2026-03-04 05:10", True),
        ("0 0 * jan,jul *", "2026-07-01 00:00", True),
        ("0 0 * jan,jul *", "2026-08-01 00:00", False),
        ("30 8 * * MON-FRI", "2026-03-06 08:30", True),  # a Friday
        ("30 8 * * mon-fri", "2026-03-07 08:30", False),  # a Saturday
        ("0 0 * * 7", "2026-03-08 00:00", True),  # 7 is Sunday too
        ("0 0 * * sun", "2026-03-08 00:00", True),
        # day of month OR day of week when both are restricted
        ("0 0 13 * fri", "2026-03-13 00:00", True),  # the 13th, a Friday
        ("0 0 13 * fri", "2026-03-06 00:00", True),  # a Friday, not the 13th
        ("0 0 13 * fri", "2026-04-13 00:00", True),  # the 13th, a Monday
        ("0 0 13 * fri", "2026-04-14 00:00", False),
        # a field starting with `*` leaves the decision to the other one
        ("0 0 */2 * fri", "2026-03-06 00:00", False),  # a Friday but an even day
        ("0 0 */2 * fri", "2026-03-13 00:00", True),
        ("@hourly", "2026-03-04 05:00", True),
        ("@daily", "2026-03-04 00:00", True),
        ("@weekly", "2026-03-08 00:00", True),
        ("@monthly", "2026-03-01 00:00", True),
        ("@monthly", "2026-03-02 00:00", False),
    ],
)
def test_cron_matches(expr: str, moment: str, expected: bool) -> None:
    assert Cron.parse(expr).matches(_at(moment)) is expected


def test_cron_matches_in_utc() -> None:
    from datetime import timedelta, timezone

    paris = datetime(2026, 3, 4, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    assert Cron.parse("0 9 * * *").matches(paris)


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("*/15 * * * *", "2026-03-04 05:46", "2026-03-04 06:00"),
        ("*/15 * * * *", "2026-03-04 06:00", "2026-03-04 06:15"),  # strictly after
        ("0 9 * * mon-fri", "2026-03-06 09:00", "2026-03-09 09:00"),  # Friday -> Monday
        ("@monthly", "2026-12-31 23:59", "2027-01-01 00:00"),
        ("0 0 29 feb *", "2026-03-01 00:00", "2028-02-29 00:00"),
        ("0 0 31 * *", "2026-04-01 00:00", "2026-05-31 00:00"),
    ],
)
def test_cron_next_after(expr: str, after: str, expected: str) -> None:
    found = Cron.parse(expr).next_after(_at(after))
    assert found == _at(expected)
    assert Cron.parse(expr).matches(found)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("", "has 0 fields; it needs five"),
        ("* * * *", "has 4 fields; it needs five"),
        ("* * * * * *", "has 6 fields"),
        ("60 * * * *", "minute: 60 is out of range 0-59"),
        ("* 24 * * *", "hour: 24 is out of range 0-23"),
        ("* * 0 * *", "day of month: 0 is out of range 1-31"),
        ("* * * 13 *", "month: 13 is out of range 1-12"),
        ("* * * * 8", "day of week: 8 is out of range 0-7"),
        ("* * * smarch *", "month: 'smarch' is not a number or a name"),
        ("*/0 * * * *", "step '0' must be a positive number"),
        ("10-5 * * * *", "range '10-5' runs backwards"),
        ("1,,2 * * * *", "empty item"),
        ("0 0 30 feb *", "never matches"),
        ("@fortnightly", "unknown shorthand"),
    ],
)
def test_bad_cron_expressions_say_what_is_wrong(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match="cron expression") as caught:
        Cron.parse(expr)
    assert message in str(caught.value)


# -- the schema ---------------------------------------------------------------------------------

GOOD = """\
schema_version: 1
on:
  - handoff: {to: codex, state: submitted}
steps:
  - name: review
    uses: complete
    with: {model: chat, prompt: "Review {{ handoff.title }}"}
"""


def _bad(steps: str, on: str = "  - path: memory/**\n") -> str:
    return f"schema_version: 1\non:\n{on}steps:\n{steps}"


def _one(uses: str, with_: str) -> str:
    """A single step named `a` of kind `uses` with the flow mapping `with_`."""
    return f"  - name: a\n    uses: {uses}\n    with: {with_}\n"


RUN_LS = _one("run", "{command: ls}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            _bad(_one("complete", "{prompt: hi}")),
            "steps.0: step 'a' (complete): `with.model` is required",
        ),
        (
            _bad(_one("complete", "{model: chat, promt: hi}")),
            "`with.promt` is not a key of a complete step (it takes model, prompt, messages, "
            "params, trust)",
        ),
        (
            _bad(
                "  - name: a\n    uses: complete\n"
                "    with: {model: chat, prompt: hi, messages: [{role: user, content: hi}]}\n"
            ),
            "needs exactly one of `prompt` or `messages`",
        ),
        (
            _bad(_one("complete", "{model: chat, prompt: hi, trust: x}")),
            "`with.trust`: 'x' is not a trust level",
        ),
        (
            _bad(_one("run", "{command: []}")),
            "`with.command`: must be a command line (a string, run by /bin/sh) or a list",
        ),
        (_bad(_one("memory", "{title: t}")), "`with.body` is required"),
        (
            _bad(_one("handoff", "{handoff: x, kind: note}")),
            "a handoff step of kind note needs `note`",
        ),
        (
            _bad(_one("handoff", "{note: hi}")),
            "needs `handoff` (an id) and `kind`",
        ),
        (
            _bad(_one("gitea-status", "{state: great, sha: x, repo: a/b}")),
            "'great' is not a commit status state",
        ),
        (
            _bad(RUN_LS + RUN_LS),
            "two steps are named 'a'",
        ),
        (
            _bad(
                RUN_LS,
                "  - schedule: '61 * * * *'\n",
            ),
            "on.0.schedule: cron expression '61 * * * *': minute: 61 is out of range",
        ),
        (
            _bad(RUN_LS, "  - handoff: {who: x}\n"),
            "a handoff trigger does not take 'who'; its keys are to, state",
        ),
        (
            _bad(
                RUN_LS,
                "  - handoff: {state: done}\n",
            ),
            "'done' is not a handoff state",
        ),
        (
            _bad(RUN_LS, "  - request: {to: x}\n"),
            "a request trigger does not take 'to'; its keys are model, agent",
        ),
        (
            _bad(
                RUN_LS,
                "  - gitea_push: {branch: main}\n",
            ),
            "a gitea_push trigger needs `repo`",
        ),
    ],
)
def test_a_bad_workflow_file_is_rejected_with_a_clear_message(text: str, message: str) -> None:
    check_file("workflows/ok.yaml", GOOD.encode())
    with pytest.raises(InvalidRecord) as caught:
        check_file("workflows/bad.yaml", text.encode())
    assert caught.value.path == "workflows/bad.yaml"
    assert "does not match the workflow schema" in caught.value.reason
    assert message in caught.value.reason


def test_the_exported_schema_checks_each_step_kind_too() -> None:
    from gitgw._yaml import load_document

    schema = json.loads((ROOT / "schemas" / "workflow.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(load_document(GOOD))
    missing_model = _bad(_one("complete", "{prompt: hi}"))
    unknown_key = _bad(_one("run", "{command: ls, shell: bash}"))
    bad_state = _bad(_one("gitea-status", "{state: x, sha: s, repo: a/b}"))
    templated = _bad(_one("gitea-status", "{state: '{{ s }}', sha: s, repo: a/b}"))
    assert not validator.is_valid(load_document(missing_model))
    assert not validator.is_valid(load_document(unknown_key))
    assert not validator.is_valid(load_document(bad_state))
    assert validator.is_valid(load_document(templated))


# -- the set of workflows ----------------------------------------------------------------------


def _workflow(step_command: str = "echo one", on: str = "  - path: memory/**\n") -> bytes:
    return _bad(
        f"  - name: only\n    uses: run\n    with: {{command: {step_command}}}\n", on
    ).encode()


def test_a_workflow_that_became_invalid_keeps_its_last_valid_version(state_repo: Path) -> None:
    with StateRepo.discover(state_repo) as repo:
        store = Store(repo)
        found = WorkflowSet()
        first = store.put("workflows/w.yaml", _workflow("echo one"), "add w")
        assert found.refresh(repo, first) == []
        assert found.workflows["w"].steps[0].with_["command"] == "echo one"

        # A plain git commit (the hooks not installed) makes the file invalid.
        broken = repo.commit({"workflows/w.yaml": b"schema_version: 1\non: []\nsteps: []\n"}, "x")
        problems = found.refresh(repo, broken)
        assert [(p.path, p.commit, p.name, p.kept) for p in problems] == [
            ("workflows/w.yaml", broken, "w", True)
        ]
        assert "on: List should have at least 1 item" in problems[0].reason
        assert found.workflows["w"].steps[0].with_["command"] == "echo one"  # still in force
        assert found.problems == problems

        # Nothing changed under workflows/: nothing is parsed again, nothing is reported.
        other = repo.commit({"README.md": b"# another commit\n"}, "readme")
        assert found.refresh(repo, other) == []
        assert found.problems == problems

        fixed = store.put("workflows/w.yaml", _workflow("echo two"), "fix w")
        assert found.refresh(repo, fixed) == []
        assert found.workflows["w"].steps[0].with_["command"] == "echo two"
        assert found.problems == []

        never_valid = repo.commit({"workflows/new.yaml": b"not: [valid"}, "y")
        [problem] = found.refresh(repo, never_valid)
        assert (problem.name, problem.kept) == ("new", False)
        assert "new" not in found.workflows

        deleted = repo.commit({"workflows/w.yaml": None, "workflows/new.yaml": None}, "rm")
        assert found.refresh(repo, deleted) == []
        assert found.workflows == {}
        assert found.problems == []
        assert found.commit == deleted


def test_load_reads_the_workflows_at_a_commit(example_repo: Path) -> None:
    with StateRepo.discover(example_repo) as repo:
        store = Store(repo)
        before = repo.require_head()
        store.put("workflows/later.yaml", _workflow(), "add later")
        assert sorted(load(store).workflows) == ["later", "review-handoffs"]
        assert sorted(load(store, before).workflows) == ["review-handoffs"]


def test_matching_events_to_triggers(state_repo: Path) -> None:
    workflows = {
        "codex-submitted": "  - handoff: {to: codex, state: submitted}\n",
        "any-handoff": "  - handoff: {}\n",
        "chat-requests": "  - request: {model: chat}\n",
        "memory-changes": "  - path: memory/**\n",
        "nightly": "  - schedule: '@daily'\n",
        "hourly": "  - schedule: '@hourly'\n",
        "pushes": "  - gitea_push: {repo: acme/app, branch: main}\n",
    }
    with StateRepo.discover(state_repo) as repo:
        store = Store(repo)
        for name, on in workflows.items():
            store.put(f"workflows/{name}.yaml", _workflow(on=on), f"add {name}")
        found = load(store)

    def fired(event: Event) -> list[str]:
        return [name for name, _ in found.matching(event)]

    handoff = {"to": "codex", "state": "submitted", "trust": "internal"}
    assert fired(Event("handoff", "k", data={"handoff": handoff})) == [
        "any-handoff",
        "codex-submitted",
    ]
    assert fired(Event("handoff", "k", data={"handoff": handoff | {"state": "working"}})) == [
        "any-handoff"
    ]
    assert fired(Event("request", "k", data={"request": {"model": "chat"}})) == ["chat-requests"]
    assert fired(Event("request", "k", data={"request": {"model": "local"}})) == []
    assert fired(Event("path", "k", paths=("memory/01J.md",), data={"changes": []})) == [
        "memory-changes"
    ]
    assert fired(Event("path", "k", paths=("consent/x.yaml",), data={"changes": []})) == []
    schedule = {"schedule": "@daily", "time": "2026-03-04T00:00:00Z"}
    assert fired(Event("schedule", "k", data=schedule, workflow="nightly")) == ["nightly"]
    assert fired(Event("schedule", "k", data=schedule, workflow="hourly")) == []
    assert fired(Event("schedule", "k", data=schedule)) == []  # meant for no workflow
    push = {"repo": "acme/app", "branch": "main"}
    assert fired(Event("gitea_push", "k", data={"push": push})) == ["pushes"]
    assert fired(Event("gitea_push", "k", data={"push": push | {"branch": "dev"}})) == []
    assert fired(Event("manual", "k")) == []


# -- running workflows -------------------------------------------------------------------------


@pytest.fixture
def gateway(state_repo: Path, local: FakeUpstream, hosted: FakeUpstream) -> Iterator[Gateway]:
    write_config(state_repo, local.base_url, hosted.base_url)
    opened = Gateway(StateRepo.discover(state_repo))
    try:
        yield opened
    finally:
        opened.close()


def _run(
    gateway: Gateway, text: str, event: Event | None = None, **options: Any
) -> tuple[Run, Workflow]:
    [record] = check_file("workflows/test.yaml", text.encode()).records
    assert isinstance(record, Workflow)
    context = RunContext(gateway=gateway, **options)
    ended = run_workflow(context, "test", record, event or Event("manual", "manual:test"))
    return ended, record


def _steps(text: str) -> str:
    return f"schema_version: 1\non:\n  - path: x/**\nsteps:\n{text}"


def test_step_outputs_reach_later_steps(gateway: Gateway) -> None:
    text = _steps(
        "  - name: greet\n    uses: run\n    with: {command: 'echo hello $GITGW_WORKFLOW'}\n"
        "  - name: ask\n    uses: complete\n"
        "    with: {model: local, messages: [{role: system, content: Be brief.},"
        " {role: user, content: 'Said: {{ steps.greet.output | trim }}'}]}\n"
        "  - name: keep\n    uses: memory\n"
        "    with:\n      title: 'From run {{ run.id }}'\n      tags: [workflow]\n"
        "      body: '{{ steps.greet.output | trim }} / {{ steps.ask.output }}"
        " / code {{ steps.greet.exit_code }}'\n"
    )
    ended, _ = _run(gateway, text)

    assert ended.status == "succeeded", ended.error
    run_id = ended.follows
    assert [(s.name, s.outcome) for s in ended.steps] == [
        ("greet", "succeeded"), ("ask", "succeeded"), ("keep", "succeeded"),
    ]  # fmt: skip
    [receipt] = ended.receipts
    assert ended.steps[1].receipts == [receipt]
    [hit] = memory.search(gateway.repo, "hello")
    note = memory.find(gateway.store, hit.id)
    assert note.note.title == f"From run {run_id}"
    assert note.body == "hello test / hello from local / code 0"
    assert note.note.author == "workflow:test"
    assert receipt in receipts_on_branch(gateway.repo.path)


def test_the_asked_model_gets_the_rendered_messages(gateway: Gateway, local: FakeUpstream) -> None:
    text = _steps(
        "  - name: ask\n    uses: complete\n"
        "    with: {model: local, prompt: 'About {{ topic }}', params: {temperature: 0.5}}\n"
    )
    ended, _ = _run(gateway, text, Event("manual", "m", data={"topic": "retries"}))
    assert ended.status == "succeeded", ended.error
    [body] = local.received
    assert body["messages"] == [{"role": "user", "content": "About retries"}]
    assert body["temperature"] == 0.5


def test_an_undefined_template_variable_fails_the_run_naming_it(gateway: Gateway) -> None:
    text = _steps(
        "  - name: ask\n    uses: complete\n"
        "    with: {model: local, prompt: 'Hi {{ handoff.title }}'}\n"
        "  - name: after\n    uses: run\n    with: {command: 'echo never'}\n"
    )
    ended, _ = _run(gateway, text)
    assert ended.status == "failed"
    assert ended.error is not None
    assert "step 'ask' (complete) failed: with.prompt: template: 'handoff' is undefined" in (
        ended.error
    )
    assert [(s.name, s.outcome) for s in ended.steps] == [("ask", "failed"), ("after", "skipped")]
    assert ended.receipts == []  # nothing was sent


def test_a_prompt_template_cannot_reach_pythons_internals(gateway: Gateway, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    prompt = f"{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}"
    text = _steps(
        f'  - name: ask\n    uses: complete\n    with: {{model: local, prompt: "{prompt}"}}\n'
    )
    ended, _ = _run(gateway, text)
    assert ended.status == "failed"
    assert "template: not allowed: access to attribute '__init__'" in (ended.error or "")
    assert not marker.exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


def test_a_hanging_command_is_killed_with_its_children_at_the_timeout(
    gateway: Gateway, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    text = _steps(
        "  - name: hang\n    uses: run\n    timeout_s: 0.5\n"
        f"    with: {{command: 'sleep 60 & echo $! > {pids}; echo $$ >> {pids}; wait'}}\n"
        "  - name: after\n    uses: run\n    with: {command: 'echo never'}\n"
    )
    ended, _ = _run(gateway, text)
    assert ended.status == "failed"
    assert ended.error == "step 'hang' (run) failed: timed out after 0.5 s; the command was killed"
    assert [s.outcome for s in ended.steps] == ["failed", "skipped"]
    started = {int(line) for line in pids.read_text().split()}
    assert len(started) == 2
    assert not any(_alive(pid) for pid in started)


def test_the_step_timeout_defaults_to_the_context(gateway: Gateway) -> None:
    text = _steps("  - name: hang\n    uses: run\n    with: {command: [sleep, '30']}\n")
    ended, _ = _run(gateway, text, step_timeout_s=0.3)
    assert ended.error is not None
    assert "timed out after 0.3 s" in ended.error


def test_a_failing_command_fails_the_run_and_skips_the_rest(gateway: Gateway) -> None:
    text = _steps(
        "  - name: first\n    uses: run\n    with: {command: [echo, ok]}\n"
        "  - name: broken\n    uses: run\n    with: {command: 'echo bad news >&2; exit 3'}\n"
        "  - name: later\n    uses: memory\n    with: {body: never}\n"
        "  - name: last\n    uses: run\n    with: {command: [echo, never]}\n"
    )
    began: list[tuple[str, str]] = []
    ended, _ = _run(
        gateway, text, daemon="01M8DAEMON0000000000000000", on_step=lambda *a: began.append(a)
    )
    assert ended.status == "failed"
    assert ended.error == (
        "step 'broken' (run) failed: the command exited with code 3; stderr ends: bad news"
    )
    assert began == [(ended.follows, "first"), (ended.follows, "broken")]  # none skipped
    assert [(s.name, s.outcome) for s in ended.steps] == [
        ("first", "succeeded"), ("broken", "failed"), ("later", "skipped"), ("last", "skipped"),
    ]  # fmt: skip
    view = show_run(gateway.repo, ended.follows or "")
    assert [r.status for r in view.records] == ["started", "failed"]
    assert view.records[0].trigger == {
        "event": "manual", "key": "manual:test", "daemon": "01M8DAEMON0000000000000000",
    }  # fmt: skip
    assert view.records[0].config_commit == gateway.loaded.commit
    assert view.merged().steps[1].error == ended.steps[1].error


def test_a_missing_program_and_a_missing_directory_fail_clearly(gateway: Gateway) -> None:
    ended, _ = _run(gateway, _steps(_one("run", "{command: [no-such-x]}")))
    assert ended.error == "step 'a' (run) failed: no such program: no-such-x"
    ended, _ = _run(gateway, _steps(_one("run", "{command: [ls], cwd: nowhere}")))
    assert ended.error is not None
    assert "nowhere does not exist (with.cwd)" in ended.error


def test_large_output_is_truncated_and_says_so(gateway: Gateway) -> None:
    text = _steps(
        "  - name: big\n    uses: run\n"
        f"    with: {{command: ['{sys.executable}', '-c', 'print(\"a\" * 200000)']}}\n"
        "  - name: keep\n    uses: memory\n"
        "    with: {title: big output, body: '{{ steps.big.output[-70:] }}'}\n"
    )
    ended, _ = _run(gateway, text)
    assert ended.status == "succeeded", ended.error
    [hit] = memory.search(gateway.repo, "big output")
    body = memory.find(gateway.store, hit.id).body
    cut = f"[output truncated: 200001 bytes in all, the first {OUTPUT_LIMIT} kept]"
    assert body.endswith("aaa\n" + cut)


def test_a_refused_call_fails_the_step_with_the_routers_reason(gateway: Gateway) -> None:
    # `hosted` has no consent grant in this repository: the router refuses.
    text = _steps("  - name: ask\n    uses: complete\n    with: {model: hosted, prompt: hi}\n")
    ended, _ = _run(gateway, text)
    assert ended.status == "failed"
    assert ended.error is not None
    assert "the trust router refused the call" in ended.error
    [receipt] = ended.receipts  # a refusal leaves a receipt too, and the run names it
    assert ended.steps[0].receipts == [receipt]
    assert receipts_on_branch(gateway.repo.path)[receipt].outcome == "refused"


def test_every_commit_a_run_writes_carries_its_trailer(gateway: Gateway) -> None:
    handoff = handoffs.create(
        gateway.store,
        {"from": {"agent": "alice"}, "to": "codex", "title": "Fix it", "trust": "confidential"},
        "body",
    )
    before = gateway.repo.require_head()
    text = _steps(
        "  - name: note\n    uses: handoff\n"
        "    with: {handoff: '{{ handoff.id }}', kind: note, note: 'seen {{ handoff.title }}'}\n"
        "  - name: remember\n    uses: memory\n    with: {body: 'about {{ handoff.title }}'}\n"
        "  - name: ask\n    uses: complete\n    with: {model: local, prompt: 'hi'}\n"
        "  - name: next\n    uses: handoff\n"
        "    with: {create: {to: reviewer, title: 'Review {{ handoff.title }}', body: b}}\n"
    )
    view = handoffs.read(gateway.store, handoff.id)
    from gitgw.concepts.events import handoff_context

    event = Event("handoff", "k", before, data={"handoff": handoff_context(view)})
    ended, _ = _run(gateway, text, event)
    assert ended.status == "succeeded", ended.error
    run_id = ended.follows
    assert ended.level == "confidential"  # the handoff's level counts for the run

    messages = git("log", "--format=%B%x00", f"{before}..gitgw", cwd=gateway.repo.path)
    commits = [m.strip() for m in messages.split("\x00") if m.strip()]
    assert len(commits) >= 5  # started, note, memory, handoff, finished (+ receipts)
    for message in commits:
        assert message.endswith(f"Gitgw-Run: {run_id}") or "Gitgw-Writer:" in message, message

    after = handoffs.read(gateway.store, handoff.id)
    assert [(e.kind, e.agent, e.note) for e in after.events[1:]] == [
        ("note", "workflow:test", "seen Fix it")
    ]
    # Notes and new handoffs are never below the level of the handoff they came from.
    [hit] = memory.search(gateway.repo, "about")
    assert hit.trust == "confidential"
    [made] = [v for v in ended.steps if v.name == "next"]
    assert made.outcome == "succeeded"


# -- the fake Gitea API -------------------------------------------------------------------------


class FakeGitea:
    """Gitea's commit status endpoint, recording what it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str | None, dict[str, Any]]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def status(self, request: web.Request) -> web.Response:
        owner, name = request.match_info["owner"], request.match_info["name"]
        if (owner, name) != ("acme", "app"):
            return web.json_response({"message": "repository not found"}, status=404)
        body = await request.json()
        self.received.append((request.path, request.headers.get("Authorization"), body))
        return web.json_response({"id": len(self.received), **body}, status=201)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v1/repos/{owner}/{name}/statuses/{sha}", self.status)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
def gitea(loop: BackgroundLoop) -> Iterator[FakeGitea]:
    fake = FakeGitea()
    loop.run(fake.start())
    try:
        yield fake
    finally:
        loop.run(fake.stop())


SHA = "4b7e2d9c1a5f3e8b0d6c4a2f9e7b5d3c1a0f8e6d"
STATUS_FLOW = """\
schema_version: 1
on:
  - gitea_push: {repo: acme/app, branch: main}
steps:
  - name: test
    uses: run
    with: {command: [echo, tested]}
  - name: status
    uses: gitea-status
    with:
      state: "{{ 'success' if steps.test.exit_code == 0 else 'failure' }}"
      sha: "{{ push.after }}"
      repo: "{{ push.repo }}"
      description: "{{ steps.test.output | trim }}"
      target_url: "https://ci.example.test/{{ run.id }}"
"""


def test_gitea_status_sets_a_commit_status_through_the_api(
    state_repo: Path, gitea: FakeGitea, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(state_repo, "http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1")
    with StateRepo.discover(state_repo) as repo:
        store = Store(repo)
        config = repo.read("gitgw.yaml")
        assert config is not None
        extra = f"gitea:\n  url: {gitea.url}\n  token_env: TEST_GITEA_TOKEN\n"
        store.put("gitgw.yaml", config + extra.encode(), "gitea")
        store.put("workflows/status.yaml", STATUS_FLOW.encode(), "add status")
    monkeypatch.setenv("TEST_GITEA_TOKEN", "gitea-token-value")
    event = state_repo.parent / "push.json"
    push = {"repo": "acme/app", "branch": "main", "after": SHA}
    event.write_text(json.dumps({"kind": "gitea_push", "push": push}))

    ran = run_on(state_repo, "workflows", "run", "status", "--event", str(event), "--json")

    assert ran.exit_code == 0, ran.stdout + ran.stderr
    data = envelope_data(ran)
    assert data["status"] == "succeeded"
    [(path, auth, body)] = gitea.received
    assert path == f"/api/v1/repos/acme/app/statuses/{SHA}"
    assert auth == "token gitea-token-value"
    assert body == {
        "state": "success",
        "context": "gitgw/status",
        "description": "tested",
        "target_url": f"https://ci.example.test/{data['run']}",
    }

    # A repository Gitea does not know fails the step with Gitea's answer.
    push = {"repo": "acme/other", "after": SHA}
    event.write_text(json.dumps({"kind": "gitea_push", "push": push}))
    ran = run_on(state_repo, "workflows", "run", "status", "--event", str(event))
    assert ran.exit_code == 1
    assert "step status (gitea-status): failed: Gitea answered 404" in ran.stdout
    assert "repository not found" in ran.stdout
    assert "gitea-token-value" not in ran.stdout + ran.stderr


# -- `gitgw workflows` ---------------------------------------------------------------------------


def _point_example_at(example_repo: Path, local: FakeUpstream) -> None:
    text = (EXAMPLE / "gitgw.yaml").read_text().replace("http://127.0.0.1:11434/v1", local.base_url)
    with StateRepo.discover(example_repo) as repo:
        Store(repo).put("gitgw.yaml", text.encode(), "use the fake upstream")


def test_the_example_reviews_a_handoff_made_with_only_a_title(
    example_repo: Path, local: FakeUpstream
) -> None:
    _point_example_at(example_repo, local)
    handoff_id = succeeds(example_repo, "handoff", "create", "--to", "x", "--title", "t").strip()
    event = example_repo.parent / "event.yaml"
    event.write_text(f"kind: handoff\nhandoff: {handoff_id}\n")
    ran = run_on(example_repo, "workflows", "run", "review-handoffs", "--event", str(event))
    assert ran.exit_code == 0, ran.stdout + ran.stderr
    [body] = local.received
    assert "Goal: (none given)" in body["messages"][0]["content"]


def test_workflows_run_reviews_a_handoff_of_the_example(
    example_repo: Path, local: FakeUpstream
) -> None:
    _point_example_at(example_repo, local)
    handoff_id = succeeds(
        example_repo, "handoff", "create", "--from", "alice", "--to", "codex",
        "--title", "Add the 429 test", "--goal", "Cover the retry path",
        "--accept", "python -m tests passes", "--verify", "python -m tests",
        "--ref", "memory:01M5C9EDKFBFGEPRV2W147SA69",
    ).strip()  # fmt: skip
    event = example_repo.parent / "event.yaml"
    event.write_text(f"kind: handoff\nhandoff: {handoff_id[:10]}\n")  # a prefix is enough

    ran = run_on(example_repo, "workflows", "run", "review-handoffs", "--event", str(event))

    assert ran.exit_code == 0, ran.stdout + ran.stderr
    assert ran.stderr == ""  # the event fires this workflow: no note
    first, review, comment, last = ran.stdout.splitlines()
    run_id = first.split()[1].rstrip(":")
    assert (
        first
        == f"run {run_id}: workflow review-handoffs, event handoff:{handoff_id}:"
        + (first.rsplit(":", 1)[1])
    )
    assert review.startswith("  step review (complete): succeeded (receipt ")
    assert comment == "  step comment (handoff): succeeded"
    assert last == f"run {run_id} succeeded"

    # The model saw the handoff rendered into the prompt.
    [body] = local.received
    prompt = body["messages"][0]["content"]
    assert "Title: Add the 429 test" in prompt
    assert "- python -m tests passes" in prompt
    assert "Verify commands: python -m tests" in prompt

    # The answer is a note on the handoff; the run is succeeded with its receipt.
    shown = envelope_data(run_on(example_repo, "handoff", "show", handoff_id, "--json"))
    notes = [e for e in shown["events"] if e["kind"] == "note"]
    assert [(n["agent"], n["note"]) for n in notes] == [
        ("workflow:review-handoffs", "hello from local")
    ]
    run = envelope_data(run_on(example_repo, "runs", "show", run_id, "--json"))["run"]
    assert run["status"] == "succeeded"
    assert run["trigger"]["event"] == "handoff"
    [receipt] = run["receipts"]
    assert receipt in review
    assert receipt in receipts_on_branch(example_repo)
    listed = envelope_data(run_on(example_repo, "runs", "list", "--json"))["runs"]
    assert (listed[0]["id"], listed[0]["workflow"], listed[0]["status"]) == (
        run_id, "review-handoffs", "succeeded",
    )  # fmt: skip
    assert run_on(example_repo, "verify").exit_code == 0


def test_templates_see_the_notes_a_handoff_points_to(
    example_repo: Path, local: FakeUpstream
) -> None:
    _point_example_at(example_repo, local)
    flow = _steps(
        "  - name: ask\n    uses: complete\n"
        "    with: {model: chat, prompt: '{% for n in notes %}{{ n.title }}|{{ n.trust }}"
        "{% endfor %}'}\n"
    )
    with StateRepo.discover(example_repo) as repo:
        Store(repo).put("workflows/notes.yaml", flow.encode(), "notes")
        note = memory.find(Store(repo), "01M5C9EDKFBFGEPRV2W147SA69").note
    event = example_repo.parent / "event.json"
    event.write_text('{"kind": "handoff", "handoff": "01M72BN4RPD00B6JMKN1EPWCWX"}')
    ran = run_on(example_repo, "workflows", "run", "notes", "--event", str(event), "--json")
    assert ran.exit_code == 0, ran.stdout + ran.stderr
    assert "does not fire notes by itself" in ran.stderr
    assert local.received[0]["messages"][0]["content"] == f"{note.title}|{note.trust}"


def test_workflows_list_and_show(example_repo: Path) -> None:
    with StateRepo.discover(example_repo) as repo:
        repo.commit({"workflows/broken.yaml": _bad("  - name: a\n    uses: run\n").encode()}, "x")

    listed = succeeds(example_repo, "workflows", "list")
    assert "review-handoffs  handoff state=submitted  review (complete), comment (handoff)" in (
        listed
    )
    assert (
        "invalid: workflows/broken.yaml: does not match the workflow schema: steps.0: step 'a'"
        in (listed)
    )
    data = envelope_data(run_on(example_repo, "workflows", "list", "--json"))
    [flow] = data["workflows"]
    assert flow["name"] == "review-handoffs"
    assert flow["on"] == [{"handoff": {"state": "submitted"}}]
    assert [s["name"] for s in flow["steps"]] == ["review", "comment"]
    assert [p["path"] for p in data["invalid"]] == ["workflows/broken.yaml"]

    shown = succeeds(example_repo, "workflows", "show", "review-handoffs")
    assert "1. review (complete, timeout 120 s)" in shown
    assert "Title: {{ handoff.title }}" in shown
    data = envelope_data(run_on(example_repo, "workflows", "show", "review-handoffs", "--json"))
    assert data["steps"][1]["with"] == {
        "handoff": "{{ handoff.id }}", "kind": "note", "note": "{{ steps.review.output }}",
    }  # fmt: skip

    missing = run_on(example_repo, "workflows", "show", "nope")
    assert missing.exit_code == 1
    assert "no workflow 'nope' on the state branch (there are: review-handoffs)" in missing.stderr
    broken = run_on(example_repo, "workflows", "run", "broken")
    assert broken.exit_code == 1
    assert "workflows/broken.yaml: does not match the workflow schema" in broken.stderr


def test_workflows_run_fails_with_exit_1_and_a_bad_event_file_is_explained(
    example_repo: Path,
) -> None:
    flow = _steps("  - name: boom\n    uses: run\n    with: {command: 'exit 4'}\n")
    with StateRepo.discover(example_repo) as repo:
        Store(repo).put("workflows/boom.yaml", flow.encode(), "boom")

    ran = run_on(example_repo, "workflows", "run", "boom", "--json")
    assert ran.exit_code == 1
    data = envelope_data(ran)
    assert data["status"] == "failed"
    assert data["error"] == "step 'boom' (run) failed: the command exited with code 4"
    assert data["event"]["event"] == "manual"

    event = example_repo.parent / "event.json"
    event.write_text('{"kind": "push"}')
    ran = run_on(example_repo, "workflows", "run", "boom", "--event", str(event))
    assert ran.exit_code == 1
    assert "the event file has kind 'push'; it is one of handoff, request" in ran.stderr
    event.write_text('{"kind": "handoff", "handoff": "01M72BN4RPD00B6JMKN1EPWCWX", "x": 1}')
    ran = run_on(example_repo, "workflows", "run", "boom", "--event", str(event))
    assert "the event file of kind handoff does not take x" in ran.stderr
