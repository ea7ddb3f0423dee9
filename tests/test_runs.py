"""The run ledger: start and finish, list and show, and replay through a real fake
upstream (an aiohttp app on 127.0.0.1), including every refusal that sends nothing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gitgw._clock import default_clock
from gitgw._yaml import dump_document
from gitgw.concepts.consent import grant
from gitgw.concepts.context import run_parts
from gitgw.concepts.runs import RunLedger
from gitgw.concepts.store import CONFIG_PATH, Store
from gitgw.records import GatewayConfig, Run
from gitgw.records.run import RunPart
from gitgw.state import StateRepo
from tests.conftest import branch_head as head
from tests.conftest import envelope_data as data
from tests.conftest import git
from tests.conftest import run_on as cli

MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "Answer in one word."},
    {"role": "user", "content": "Capital of France?"},
]


# -- a fake upstream: a real aiohttp app on loopback ---------------------------------------


@dataclass
class Upstream:
    """What the fake upstream was sent, and what it answers."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    answer: str = "Paris."
    status: int = 200
    raw: dict[str, Any] | None = None  # answered as it is, instead of a completion


def _app(upstream: Upstream) -> web.Application:
    async def completions(request: web.Request) -> web.Response:
        upstream.requests.append(await request.json())
        upstream.headers.append(dict(request.headers))
        if upstream.status != 200:
            return web.json_response(
                {"error": {"message": "the model is overloaded"}}, status=upstream.status
            )
        if upstream.raw is not None:
            return web.json_response(upstream.raw)
        return web.json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": upstream.requests[-1]["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": upstream.answer,
                            "refusal": None,
                            "annotations": [],
                        },
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    return app


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstream]:
    """The fake upstream, served from its own event loop in a thread."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    state = Upstream()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_app(state))

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        state.url = f"http://127.0.0.1:{port}/v1"

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield state
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def configure(repo_path: Path, upstream: Upstream, **provider: Any) -> None:
    """Point provider `fake` at the upstream (local, restricted, unless told otherwise)."""
    capture = provider.pop("capture", True)
    mode = provider.pop("mode", "online")
    config = GatewayConfig.model_validate(
        {
            "mode": mode,
            "providers": {
                "fake": {
                    "base_url": upstream.url,
                    "location": "local",
                    "max_trust": "restricted",
                    **provider,
                }
            },
            "proxy": {"capture_content": capture},
        }
    )
    with StateRepo.discover(repo_path) as repo:
        Store(repo).put(CONFIG_PATH, dump_document(config.to_data()).encode(), "configure")


def call_run(
    repo_path: Path,
    *,
    level: str | None = "internal",
    capture: bool = True,
    output: str = "Paris.",
    provider: str = "fake",
) -> Run:
    """Record a finished model call the way the proxy will."""
    clock = default_clock()
    now = clock.now()
    outputs = run_parts([{"role": "assistant", "content": output}], capture=capture)
    run = Run(
        id=clock.new_id(now),
        kind="call",
        status="succeeded",
        provider=provider,
        model="tiny",
        level=level,  # type: ignore[arg-type]
        params={"temperature": 0, "seed": 7, "max_tokens": 16},
        inputs=run_parts(MESSAGES, capture=capture),
        outputs=outputs,
        config_commit=head(repo_path),
        started=now,
        finished=now,
    )
    with StateRepo.discover(repo_path) as repo:
        RunLedger(Store(repo)).record(run)
    return run


# -- the ledger -----------------------------------------------------------------------------


def test_a_run_started_and_finished_lists_once(state_repo: Path) -> None:
    with StateRepo.discover(state_repo) as repo:
        ledger = RunLedger(Store(repo))
        started = ledger.start(
            "workflow", workflow="review", level="internal", trigger={"handoff": "x"}
        )
        finished = ledger.finish(
            started,
            "succeeded",
            outputs=[RunPart(role="assistant", sha256="a" * 64, chars=3)],
            receipts=["01M00000000000000000000000"],
        )
    listing = data(cli(state_repo, "runs", "list", "--json"))
    assert listing["total"] == 1
    [run] = listing["runs"]
    assert (run["id"], run["status"], run["workflow"], run["records"]) == (
        started.id,
        "succeeded",
        "review",
        2,
    )
    for run_id in (started.id, finished.id):
        shown = data(cli(state_repo, "runs", "show", run_id, "--json"))
        assert shown["id"] == started.id
        assert shown["run"]["status"] == "succeeded"
        assert shown["run"]["receipts"] == ["01M00000000000000000000000"]
        assert len(shown["records"]) == 2
    text = cli(state_repo, "runs", "show", started.id).stdout
    assert "status    succeeded" in text
    assert "output  1  assistant" in text
    assert "review" in cli(state_repo, "runs", "list").stdout


def test_an_unknown_run_is_a_clear_error(state_repo: Path) -> None:
    for command in ("show", "replay"):
        ran = cli(state_repo, "runs", command, "01M00000000000000000000000")
        assert ran.exit_code == 1
        assert "gitgw: error: no run 01M00000000000000000000000 on the state branch" in ran.stderr
    assert cli(state_repo, "runs", "list").stdout.endswith("no runs yet\n")


# -- replay ---------------------------------------------------------------------------------


def test_replay_sends_the_captured_call_again_and_diffs(
    state_repo: Path, upstream: Upstream
) -> None:
    configure(state_repo, upstream)
    same = call_run(state_repo)
    changed = call_run(state_repo, output="Lyon.")

    ran = cli(state_repo, "runs", "replay", same.id)
    assert ran.exit_code == 0, ran.stderr
    assert "output 1 (assistant): identical" in ran.stdout
    assert ran.stdout.endswith("outputs identical\n")
    [sent] = upstream.requests
    assert sent == {
        "model": "tiny",
        "messages": MESSAGES,
        "temperature": 0,
        "seed": 7,
        "max_tokens": 16,
        "stream": False,
    }
    assert "authorization" not in {k.lower() for k in upstream.headers[0]}

    ran = cli(state_repo, "runs", "replay", changed.id)
    assert "output 1 (assistant): differs" in ran.stdout
    assert "-Lyon.\n+Paris." in ran.stdout
    result = data(cli(state_repo, "runs", "replay", changed.id, "--json"))
    assert result["identical"] is False
    assert result["outputs"][0]["diff"][-2:] == ["-Lyon.", "+Paris."]

    # The replay is a model call like any other: a receipt and a run of its own.
    shown = data(cli(state_repo, "runs", "show", result["run"], "--json"))["run"]
    assert (shown["kind"], shown["trigger"], shown["receipts"]) == (
        "replay",
        {"replay_of": changed.id},
        [result["receipt"]],
    )
    receipt = data(cli(state_repo, "receipts", "show", result["receipt"], "--json"))["receipt"]
    assert receipt["route"]["location"] == "local"
    assert receipt["usage"]["total_tokens"] == 14
    assert [p["sha256"] for p in receipt["context"]] == [p.sha256 for p in same.inputs]
    assert cli(state_repo, "verify").exit_code == 0


def test_replay_names_the_inputs_that_were_not_captured(
    state_repo: Path, upstream: Upstream
) -> None:
    configure(state_repo, upstream)
    run = call_run(state_repo, capture=False)
    before = head(state_repo)
    ran = cli(state_repo, "runs", "replay", run.id)
    assert ran.exit_code == 1
    assert f"gitgw: error: run {run.id} cannot be replayed: input 1 (system, sha256 " in (
        ran.stderr
    )
    assert "input 2 (user, sha256 " in ran.stderr
    assert "hint: a run keeps its inputs' text only with content capture on" in ran.stderr
    assert upstream.requests == []
    assert head(state_repo) == before


@pytest.mark.parametrize(
    ("provider", "level", "expected"),
    [
        (
            {"max_trust": "internal"},
            "confidential",
            "fake/tiny: confidential is above fake's max_trust (internal)",
        ),
        (
            {"max_trust": "internal"},
            None,
            "the run records no level, so it counts as "
            "restricted; no model may receive this restricted request",
        ),
        ({"location": "hosted"}, "internal", "fake/tiny: provider:fake was never granted"),
        (
            {"location": "hosted", "mode": "offline"},
            "internal",
            "fake/tiny: offline mode: hosted providers are off",
        ),
        (
            {"api_key_env": "FAKE_API_KEY"},
            "internal",
            "provider fake needs its key in $FAKE_API_KEY, which is not set",
        ),
        (
            {"protocol": "anthropic"},
            "internal",
            "provider fake speaks anthropic; replay speaks only OpenAI to upstreams",
        ),
    ],
)
def test_replay_refuses_and_sends_nothing(
    state_repo: Path,
    upstream: Upstream,
    monkeypatch: pytest.MonkeyPatch,
    provider: dict[str, Any],
    level: str | None,
    expected: str,
) -> None:
    monkeypatch.delenv("FAKE_API_KEY", raising=False)
    configure(state_repo, upstream, **provider)
    run = call_run(state_repo, level=level)
    before = head(state_repo)
    ran = cli(state_repo, "runs", "replay", run.id)
    assert ran.exit_code == 1
    [message] = ran.stderr.splitlines()
    assert message.startswith(f"gitgw: error: refused to replay run {run.id}: ")
    assert message.endswith("; nothing was sent")
    assert expected in message
    assert upstream.requests == []
    assert head(state_repo) == before


def _put_config(repo_path: Path, data: dict[str, Any]) -> None:
    config = GatewayConfig.model_validate(data | {"proxy": {"capture_content": True}})
    with StateRepo.discover(repo_path) as repo:
        Store(repo).put(CONFIG_PATH, dump_document(config.to_data()).encode(), "configure")


def test_replay_judges_the_recorded_provider_at_todays_level(
    state_repo: Path, upstream: Upstream
) -> None:
    local = {"base_url": upstream.url, "location": "local", "max_trust": "restricted"}
    hosted = {"base_url": upstream.url, "location": "hosted", "max_trust": "public"}
    # An alias named like the run's PROVIDER/MODEL, pointing at a local model, does not
    # stand in for the hosted provider the run used.
    _put_config(state_repo, {
        "providers": {"fake": hosted, "box": local},
        "models": {"fake/tiny": {"candidates": [{"provider": "box", "model": "tiny"}]}},
    })  # fmt: skip
    run = call_run(state_repo, level="internal")
    ran = cli(state_repo, "runs", "replay", run.id)
    assert ran.exit_code == 1
    assert "internal is above fake's max_trust (public)" in ran.stderr
    # A rule added since the run finds its captured text restricted.
    _put_config(state_repo, {
        "providers": {"fake": local | {"max_trust": "internal"}},
        "trust": {"rules": [{"name": "capitals", "level": "restricted", "keywords": ["France"]}]},
    })  # fmt: skip
    ran = cli(state_repo, "runs", "replay", run.id)
    assert ran.exit_code == 1
    assert "this restricted request" in ran.stderr
    assert "custom.capitals" in ran.stderr
    assert upstream.requests == []


def test_replay_to_a_hosted_provider_needs_consent_and_its_key(
    state_repo: Path, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(state_repo, upstream, location="hosted", api_key_env="FAKE_API_KEY")
    run = call_run(state_repo, level="confidential")
    with StateRepo.discover(state_repo) as repo:
        narrow = grant(repo, "provider:fake", "internal").entry
    ran = cli(state_repo, "runs", "replay", run.id)
    assert "granted only up to internal" in ran.stderr
    assert "or grant consent: gitgw consent grant provider:fake --level confidential" in ran.stderr
    with StateRepo.discover(state_repo) as repo:
        wide = grant(repo, "provider:fake", "confidential").entry
    assert wide.id != narrow.id
    monkeypatch.setenv("FAKE_API_KEY", "sk-test-not-a-real-key")
    result = data(cli(state_repo, "runs", "replay", run.id, "--json"))
    assert upstream.headers[0]["Authorization"] == "Bearer sk-test-not-a-real-key"
    receipt = data(cli(state_repo, "receipts", "show", result["receipt"], "--json"))["receipt"]
    assert receipt["consent"] == [wide.id]
    assert receipt["route"]["location"] == "hosted"
    assert "sk-test-not-a-real-key" not in git("log", "-p", "gitgw", cwd=state_repo)
    audit = cli(state_repo, "audit", "--since", "1h", "--above", "internal")
    assert audit.exit_code == 0
    assert f"fake      confidential  1      {wide.id}" in audit.stdout


def test_an_upstream_error_is_reported_and_recorded(state_repo: Path, upstream: Upstream) -> None:
    configure(state_repo, upstream)
    run = call_run(state_repo)
    upstream.status = 503
    ran = cli(state_repo, "runs", "replay", run.id)
    assert ran.exit_code == 1
    assert (
        "gitgw: error: provider fake answered 503: the model is overloaded (recorded as run "
        in ran.stderr
    )
    listing = data(cli(state_repo, "runs", "list", "--json"))["runs"]
    assert (listing[0]["kind"], listing[0]["status"]) == ("replay", "failed")
    receipts = data(cli(state_repo, "receipts", "list", "--json"))["receipts"]
    assert receipts[0]["outcome"] == "upstream_error"


@pytest.mark.parametrize(
    ("raw", "status", "outcome"),
    [
        ({"choices": [{"message": "ok"}]}, "failed", "upstream_error"),
        ({"choices": [{"message": {"role": "assistant", "content": "Paris."}}],
          "usage": {"prompt_tokens": {"n": 1}, "total_tokens": 1e30}}, "succeeded", "ok"),
    ],
    ids=["a message that is no object", "usage that is no count"],
)  # fmt: skip
def test_an_odd_answer_is_recorded_not_raised_on(
    state_repo: Path, upstream: Upstream, raw: dict[str, Any], status: str, outcome: str
) -> None:
    configure(state_repo, upstream)
    run = call_run(state_repo)
    upstream.raw = raw
    ran = cli(state_repo, "runs", "replay", run.id)
    assert ran.exit_code == (0 if status == "succeeded" else 1), ran.stderr  # never 3
    assert len(upstream.requests) == 1  # the call went out: so it is recorded
    listing = data(cli(state_repo, "runs", "list", "--json"))["runs"]
    assert (listing[0]["kind"], listing[0]["status"]) == ("replay", status)
    [receipt] = data(cli(state_repo, "receipts", "list", "--json"))["receipts"]
    assert receipt["outcome"] == outcome


def test_an_unreachable_upstream_is_a_clear_error(state_repo: Path, upstream: Upstream) -> None:
    upstream.url = "http://127.0.0.1:9/v1"  # the discard port: nothing listens
    configure(state_repo, upstream)
    run = call_run(state_repo)
    ran = cli(state_repo, "runs", "replay", run.id)
    assert ran.exit_code == 1
    assert (
        "gitgw: error: could not reach provider fake at http://127.0.0.1:9/v1/chat/completions"
        in ran.stderr
    )
    assert "hint: is it running" in ran.stderr


def test_a_provider_no_longer_configured_is_named(state_repo: Path, upstream: Upstream) -> None:
    configure(state_repo, upstream)
    run = call_run(state_repo, provider="gone")
    ran = cli(state_repo, "runs", "replay", run.id)
    assert ran.exit_code == 1
    assert f"run {run.id} used provider 'gone', which gitgw.yaml no longer has" in ran.stderr
    assert "hint: providers now: fake" in ran.stderr
    assert upstream.requests == []


# -- tampering with plain git ---------------------------------------------------------------


def test_a_run_edited_or_deleted_in_history_is_named(state_repo: Path, tmp_path: Path) -> None:
    with StateRepo.discover(state_repo) as repo:
        ledger = RunLedger(Store(repo))
        edited = ledger.start("call", provider="fake", model="tiny", level="confidential")
        deleted = ledger.start("call", provider="fake", model="tiny", level="internal")
    paths = data(cli(state_repo, "runs", "show", edited.id, "--json"))["paths"]
    [gone] = data(cli(state_repo, "runs", "show", deleted.id, "--json"))["paths"]
    clone = tmp_path / "clone"
    git("clone", "-q", "--branch", "gitgw", str(state_repo), str(clone))
    record = clone / paths[0]
    record.write_text(record.read_text().replace('"confidential"', '"public"'))
    git("rm", "-q", gone, cwd=clone)
    git("commit", "-qam", "tidy runs", cwd=clone)
    git("push", "-q", "origin", "HEAD:gitgw", cwd=clone)

    shown = cli(state_repo, "runs", "show", edited.id)
    assert shown.exit_code == 1
    assert f"gitgw: error: {paths[0]}: digest does not match its content" in shown.stderr
    listing = cli(state_repo, "runs", "list")
    assert f"warning: {paths[0]}: digest does not match its content" in listing.stderr
    assert cli(state_repo, "runs", "show", deleted.id).exit_code == 1
    verify = cli(state_repo, "verify")
    assert verify.exit_code == 1
    assert f"{paths[0]}: add-only record was modified" in verify.stderr
    assert f"{gone}: add-only record was deleted" in verify.stderr
