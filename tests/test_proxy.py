"""The live proxy, end to end: the real `openai` SDK as the client, real aiohttp fake
upstreams (one local, one hosted) on 127.0.0.1, and receipts read back from the branch."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gitgw.concepts.consent import grant, revoke
from gitgw.concepts.context import context_parts
from gitgw.errors import GitgwError
from gitgw.proxy.metrics import Metrics
from gitgw.proxy.serve import check_host
from gitgw.services.gateway import token_hash
from gitgw.state import StateRepo
from tests.conftest import run_cli
from tests.fakeupstream import (
    HELLO,
    KEY,
    BackgroundLoop,
    FakeUpstream,
    Proxy,
    receipt_files,
    running_proxy,
    wait_for,
    wait_receipt,
    write_config,
)


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


# -- answering ----------------------------------------------------------------------------


def test_a_plain_completion_goes_to_the_local_model_and_leaves_a_receipt(
    client: openai.OpenAI, proxy: Proxy, local: FakeUpstream, state_repo: Path
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="chat", messages=HELLO, temperature=0.2, seed=7, user="alice", max_tokens=50
    )
    answer = raw.parse()

    assert answer.choices[0].message.content == "hello from local"
    assert answer.usage is not None
    assert answer.usage.total_tokens == 18
    [sent] = local.received
    assert sent["model"] == "llama-local"  # only the model name is replaced
    assert {k: sent[k] for k in ("temperature", "seed", "user", "max_tokens")} == {
        "temperature": 0.2, "seed": 7, "user": "alice", "max_tokens": 50,
    }  # fmt: skip
    assert sent["messages"] == HELLO
    assert float(raw.headers["x-gitgw-overhead-ms"]) >= 0
    receipt = wait_receipt(proxy, state_repo, raw.headers["x-gitgw-receipt"])
    assert receipt.outcome == "ok"
    assert receipt.route is not None
    assert (receipt.route.provider, receipt.route.model, receipt.route.location) == (
        "local", "llama-local", "local",
    )  # fmt: skip
    assert receipt.level == "internal"
    assert receipt.rules == []
    assert receipt.usage is not None
    assert receipt.usage.total_tokens == 18
    assert receipt.context == context_parts(HELLO)
    assert receipt.overhead_ms is not None
    assert receipt.latency_ms is not None
    assert receipt.config_commit == proxy.gateway.loaded.commit
    assert b"Say hello" not in receipt_files(state_repo)  # no prompt text by default


def test_a_stream_passes_chunks_through_with_usage(
    client: openai.OpenAI, proxy: Proxy, state_repo: Path
) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="chat", messages=HELLO, stream=True, stream_options={"include_usage": True}
    ) as raw:
        receipt_id = raw.headers["x-gitgw-receipt"]
        chunks = list(raw.parse())

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello from local"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 8
    receipt = wait_receipt(proxy, state_repo, receipt_id)
    assert receipt.outcome == "ok"
    assert receipt.usage is not None
    assert receipt.usage.total_tokens == 8


def test_tools_tool_results_response_formats_and_logprobs_pass_through(
    client: openai.OpenAI, local: FakeUpstream
) -> None:
    tools: list[Any] = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "The weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    turns: list[Any] = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_0", "type":
            "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_0", "content": "sunny"},
    ]  # fmt: skip
    called = client.chat.completions.create(
        model="chat", messages=turns, tools=tools, tool_choice="auto"
    )
    [call] = called.choices[0].message.tool_calls or []
    assert call.function.name == "weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    assert local.received[0]["tools"] == tools
    assert local.received[0]["tool_choice"] == "auto"
    assert local.received[0]["messages"] == turns

    shaped = client.chat.completions.create(
        model="chat", messages=HELLO, response_format={"type": "json_object"}
    )
    assert json.loads(shaped.choices[0].message.content or "") == {"answer": 42}
    assert local.received[1]["response_format"] == {"type": "json_object"}

    scored = client.chat.completions.create(
        model="chat", messages=HELLO, logprobs=True, top_logprobs=2
    )
    assert scored.choices[0].logprobs is not None
    assert scored.choices[0].logprobs.content[0].token == "Hi"  # type: ignore[index]
    assert (local.received[2]["logprobs"], local.received[2]["top_logprobs"]) == (True, 2)


def test_a_hosted_route_gets_its_key_and_the_consent_it_relied_on(
    client: openai.OpenAI, proxy: Proxy, hosted: FakeUpstream, state_repo: Path
) -> None:
    raw = client.chat.completions.with_raw_response.create(model="hosted", messages=HELLO)
    assert raw.parse().choices[0].message.content == "hello from hosted"
    assert hosted.headers[0]["Authorization"] == f"Bearer {KEY}"
    assert hosted.received[0]["model"] == "gpt-hosted"
    receipt = wait_receipt(proxy, state_repo, raw.headers["x-gitgw-receipt"])
    assert receipt.route is not None
    assert receipt.route.location == "hosted"
    [grant_id] = receipt.consent
    assert proxy.gateway.consent.check("provider:hosted", "internal").entry.id == grant_id  # type: ignore[union-attr]
    assert KEY.encode() not in receipt_files(state_repo)


def test_content_capture_puts_the_text_in_the_receipt_only_when_asked(
    state_repo: Path, loop: BackgroundLoop, local: FakeUpstream, hosted: FakeUpstream
) -> None:
    write_config(state_repo, local.base_url, hosted.base_url, capture=True)
    with (
        running_proxy(loop, state_repo) as proxy,
        openai.OpenAI(base_url=proxy.url, api_key="x", max_retries=0) as sdk,
    ):
        raw = sdk.chat.completions.with_raw_response.create(model="local", messages=HELLO)
        receipt = wait_receipt(proxy, state_repo, raw.headers["x-gitgw-receipt"])
    assert [p.content for p in receipt.context] == ["Say hello."]


# -- refusing -----------------------------------------------------------------------------


def test_a_refusal_names_the_level_the_rules_and_a_way_out_and_leaves_a_receipt(
    client: openai.OpenAI, proxy: Proxy, hosted: FakeUpstream, state_repo: Path
) -> None:
    secret = "deploy with AKIAIOSFODNN7EXAMPLE please"
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": secret}])
    error = refused.value
    assert error.status_code == 403
    assert "restricted (detected by secret.aws-access-key)" in error.message
    assert "local" in error.message  # what would allow it
    assert "AKIAIOSFODNN7EXAMPLE" not in error.message
    assert hosted.received == []
    receipt = wait_receipt(proxy, state_repo, error.response.headers["x-gitgw-receipt"])
    assert (receipt.outcome, receipt.level, receipt.rules) == (
        "refused", "restricted", ["secret.aws-access-key"],
    )  # fmt: skip
    assert receipt.route is None
    assert b"AKIAIOSFODNN7EXAMPLE" not in receipt_files(state_repo)


def test_a_declared_level_raises_the_level_and_never_lowers_it(
    proxy: Proxy, hosted: FakeUpstream
) -> None:
    def sdk(level: str) -> openai.OpenAI:
        headers = {"x-gitgw-trust": level}
        return openai.OpenAI(
            base_url=proxy.url, api_key="x", max_retries=0, default_headers=headers
        )

    with sdk("confidential") as raised, pytest.raises(openai.PermissionDeniedError) as refused:
        raised.chat.completions.create(model="hosted", messages=HELLO)
    assert "declared confidential" in refused.value.message
    email = [{"role": "user", "content": "write to me: a@b.example"}]
    with sdk("public") as lowered, pytest.raises(openai.PermissionDeniedError) as refused:
        lowered.chat.completions.create(model="hosted", messages=email)
    assert "confidential request (detected by personal.email)" in refused.value.message
    assert hosted.received == []


def test_consent_revoked_and_granted_while_serving_takes_effect_within_a_second(
    client: openai.OpenAI, proxy: Proxy, hosted: FakeUpstream, state_repo: Path
) -> None:
    assert client.chat.completions.create(model="hosted", messages=HELLO).choices
    with StateRepo.discover(state_repo) as repo:
        revoke(repo, "provider:hosted", reason="test", actor="test")

    messages: list[str] = []

    def refused() -> bool:
        try:
            client.chat.completions.create(model="hosted", messages=HELLO)
        except openai.PermissionDeniedError as error:
            messages.append(error.message)
            return True
        return False

    wait_for(refused, timeout=1.5)
    assert "revoked" in messages[-1]
    assert "gitgw consent grant provider:hosted --level internal" in messages[-1]
    served = len(hosted.received)
    with StateRepo.discover(state_repo) as repo:
        grant(repo, "provider:hosted", "internal", actor="test")
    wait_for(lambda: not refused(), timeout=1.5)
    assert len(hosted.received) == served + 1


# -- clients ------------------------------------------------------------------------------


CLIENTS = f"""\
clients:
  ci:
    token_sha256: {token_hash("ci-token")}
  dev:
    token_env: DEV_TOKEN
"""


@pytest.fixture
def clients_proxy(
    state_repo: Path,
    loop: BackgroundLoop,
    local: FakeUpstream,
    hosted: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Proxy]:
    monkeypatch.setenv("DEV_TOKEN", "dev-token")
    write_config(state_repo, local.base_url, hosted.base_url, clients=CLIENTS)
    with StateRepo.discover(state_repo) as repo:
        grant(repo, "client:ci", "internal", actor="test")
        grant(repo, "client:dev", "restricted", actor="test")
    with running_proxy(loop, state_repo) as served:
        yield served


def test_a_client_token_names_the_client_and_its_consent_counts(
    clients_proxy: Proxy, state_repo: Path
) -> None:
    url = clients_proxy.url
    with openai.OpenAI(base_url=url, api_key="ci-token", max_retries=0) as ci:
        raw = ci.chat.completions.with_raw_response.create(model="local", messages=HELLO)
        receipt = wait_receipt(clients_proxy, state_repo, raw.headers["x-gitgw-receipt"])
        assert receipt.client == "ci"
        assert len(receipt.consent) == 1  # the client's grant
        with pytest.raises(openai.PermissionDeniedError) as refused:
            ci.chat.completions.create(
                model="local", messages=[{"role": "user", "content": "CUST-004211 owes us"}]
            )
        assert "client ci may not send this confidential request" in refused.value.message
        assert "gitgw consent grant client:ci --level confidential" in refused.value.message
    with openai.OpenAI(base_url=url, api_key="dev-token", max_retries=0) as dev:
        raw = dev.chat.completions.with_raw_response.create(
            model="local", messages=[{"role": "user", "content": "CUST-004211 owes us"}]
        )
        assert (
            wait_receipt(clients_proxy, state_repo, raw.headers["x-gitgw-receipt"]).client == "dev"
        )


def test_a_wrong_token_is_401_and_leaves_a_receipt(clients_proxy: Proxy, state_repo: Path) -> None:
    with openai.OpenAI(base_url=clients_proxy.url, api_key="wrong", max_retries=0) as sdk:
        with pytest.raises(openai.AuthenticationError) as denied:
            sdk.chat.completions.create(model="local", messages=HELLO)
        with pytest.raises(openai.AuthenticationError):
            sdk.models.list()
    assert "names no client" in denied.value.message
    receipt = wait_receipt(
        clients_proxy, state_repo, denied.value.response.headers["x-gitgw-receipt"]
    )
    assert (receipt.outcome, receipt.client) == ("client_error", None)
    # A token that is not UTF-8 (sent as the byte 0xff) is as wrong as any other.
    body = {"model": "local", "messages": HELLO}
    status, headers, answer = _post(clients_proxy.url, body, {"Authorization": "Bearer ci\xff"})
    assert (status, json.loads(answer)["error"]["code"]) == (401, "invalid_api_key")
    assert wait_receipt(clients_proxy, state_repo, headers["x-gitgw-receipt"]).client is None


def test_beyond_loopback_clients_are_required_and_so_is_a_token(
    state_repo: Path, clients_proxy: Proxy
) -> None:
    gateway = clients_proxy.gateway
    assert gateway.config.clients  # this state has clients: listening beyond loopback is allowed
    check_host("0.0.0.0", gateway)
    assert gateway.require_token
    status, _headers, body = _post(clients_proxy.url, {"model": "local", "messages": HELLO})
    assert status == 401
    assert json.loads(body)["error"]["code"] == "missing_api_key"


def test_without_clients_the_proxy_refuses_to_listen_beyond_loopback(proxy: Proxy) -> None:
    with pytest.raises(GitgwError, match=r"refusing to listen on 0\.0\.0\.0"):
        check_host("0.0.0.0", proxy.gateway)
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_host(host, proxy.gateway)


def _post(
    base: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        base + "/chat/completions",
        data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


# -- models, health, metrics --------------------------------------------------------------


def test_models_lists_aliases_and_the_models_the_caller_may_use(
    client: openai.OpenAI, proxy: Proxy
) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[:4] == ["chat", "hosted-first", "local", "hosted"]
    assert set(ids[4:]) == {"local/llama-local", "hosted/gpt-hosted"}


def test_health_and_metrics_never_call_a_model(
    client: openai.OpenAI, proxy: Proxy, local: FakeUpstream, hosted: FakeUpstream
) -> None:
    base = proxy.url.removesuffix("/v1")
    assert _get(base + "/health/live")[0] == 200
    status, _headers, body = _get(base + "/health/ready")
    assert status == 200
    ready = json.loads(body)
    assert ready["status"] == "ready"
    assert ready["mode"] == "online"
    assert ready["config_commit"] == proxy.gateway.loaded.commit
    assert local.received == []
    assert hosted.received == []

    client.chat.completions.create(model="chat", messages=HELLO)
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "card 4111 1111 1111 1111"}]
        )
    wait_for(lambda: b"gitgw_receipts_written_total 2.0" in _get(base + "/metrics")[2])
    status, headers, text = _get(base + "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    metrics = text.decode()
    assert 'gitgw_requests_total{outcome="ok",status="200"} 1.0' in metrics
    assert 'gitgw_refusals_total{code="trust_level_exceeded",level="confidential"} 1.0' in metrics
    # Prometheus's own parser reads the whole exposition, and the numbers add up.
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
    }
    assert samples[("gitgw_request_duration_seconds_count", ())] == 2
    assert samples[("gitgw_request_duration_seconds_bucket", (("le", "+Inf"),))] == 2
    assert samples[("gitgw_overhead_seconds_count", ())] == 2
    assert samples[("gitgw_receipts_recorded_total", ())] == 2
    assert samples[("gitgw_receipts_written_total", ())] == 2
    assert samples[("gitgw_receipt_writer_lag", ())] == 0
    assert samples[("gitgw_request_duration_seconds_sum", ())] > 0


def test_metrics_text_reads_back_through_prometheus_parser() -> None:
    metrics = Metrics()
    metrics.request_done(200, "ok", 0.001, 0.25)  # exactly on a bound: counted in it
    metrics.request_done(502, "failed", 99.0, 0.0)  # above every bound
    metrics.fallbacks.labels('ol"la\\ma\nx', "status").inc()
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    buckets = {
        s.labels["le"]: s.value
        for s in families["gitgw_request_duration_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert buckets["0.001"] == 1
    assert buckets["60.0"] == 1
    assert buckets["+Inf"] == 2
    [fallback] = families["gitgw_fallbacks"].samples
    assert fallback.labels == {"provider": 'ol"la\\ma\nx', "reason": "status"}
    assert fallback.value == 1
    assert {s.labels["status"] for s in families["gitgw_requests"].samples} == {"200", "502"}
    with pytest.raises(ValueError, match="only goes up"):
        metrics.receipts_written.inc(-1)


def test_an_unknown_path_gets_the_json_error_shape(proxy: Proxy) -> None:
    status, _headers, body = _get(proxy.url + "/embeddings")
    assert status == 404
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "code"}
    assert "/v1/chat/completions" in error["message"]


# -- the demo -----------------------------------------------------------------------------


def test_the_demo_serves_the_example_and_names_the_model_that_is_down(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "gitgw", "demo", str(tmp_path / "demo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert demo.stdout is not None
        lines = []
        while not any(line.startswith("try:   curl -s ") for line in lines):
            line = demo.stdout.readline()
            assert line, f"the demo ended early: {''.join(lines)}"
            lines.append(line)
        text = "".join(lines)
        base = re.search(r"serving (http://\S+)", text).group(1)  # type: ignore[union-attr]
        # The demo runs `gitgw start`: the watcher follows the branch, with the example's
        # workflow in force.
        assert "watching: branch gitgw" in text
        assert "workflows: review-handoffs" in text
        status, headers, body = _post(base, {"model": "local", "messages": HELLO})
        assert status == 503
        message = json.loads(body)["error"]["message"]
        assert "ollama/llama3.1" in message
        assert "connection refused" in message
        receipt_id = headers["x-gitgw-receipt"]
    finally:
        demo.send_signal(signal.SIGTERM)
        out, _err = demo.communicate(timeout=30)
    assert demo.returncode == 0
    assert "every receipt is on the state branch" in out
    listed = run_cli("--repo", str(tmp_path / "demo"), "receipts", "list", "--json")
    assert receipt_id in listed.stdout
