"""What must never happen, and what happens when things go wrong.

A corpus of sensitive requests must never reach the hosted fake upstream, wherever the
secret sits (any role, any turn, tool calls and tool results, content parts, tool
definitions), with the local upstream up and down. Bad input gets a clear error and a
receipt; upstream faults fall back or end cleanly; an invalid configuration pushed while
serving is reported and the last good one keeps serving."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import ssl
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from gitgw.concepts.store import Store
from gitgw.proxy import ProxySettings, create_app
from gitgw.proxy.serve import start
from gitgw.services.gateway import Gateway
from gitgw.state import StateRepo
from tests.fakeupstream import (
    HELLO,
    KEY,
    TEST_SETTINGS,
    BackgroundLoop,
    FakeUpstream,
    Proxy,
    grant_hosted,
    receipt_files,
    receipts_on_branch,
    running_proxy,
    wait_for,
    wait_receipt,
    write_config,
)


def _post(
    proxy: Proxy, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        proxy.url + "/chat/completions",
        data=data,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), json.loads(answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), json.loads(error.read())


# -- the sensitive corpus -----------------------------------------------------------------


def _call(name: str, arguments: str) -> dict[str, Any]:
    return {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}


TOKEN = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
PRIVATE_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP"
CORPUS: dict[str, dict[str, Any]] = {
    "email in the first of three turns": {"messages": [
        {"role": "user", "content": "I am jane.doe@example.org"},
        {"role": "assistant", "content": "Hello Jane."},
        {"role": "user", "content": "Summarize our chat."},
    ]},
    "cloud key in the system message": {"messages": [
        {"role": "system", "content": "Use AKIAIOSFODNN7EXAMPLE for S3."},
        {"role": "user", "content": "List my buckets."},
    ]},
    "token in an earlier assistant turn": {"messages": [
        {"role": "user", "content": "Make me a token."},
        {"role": "assistant", "content": f"Here: {TOKEN}"},
        {"role": "user", "content": "Thanks, now write a poem."},
    ]},
    "private key in a tool result": {"messages": [
        {"role": "user", "content": "Read the deploy key."},
        {"role": "assistant", "content": None, "tool_calls": [_call("read", '{"p": "id_rsa"}')]},
        {"role": "tool", "tool_call_id": "call_1", "content": PRIVATE_KEY},
        {"role": "user", "content": "What kind of key is it?"},
    ]},
    "API key in tool call arguments": {"messages": [
        {"role": "user", "content": "Call the API."},
        {"role": "assistant", "content": None,
         "tool_calls": [_call("http", '{"auth": "sk-proj-Ab3De5Fg7Hj9Kl1Mn3Pq5Rs7"}')]},
        {"role": "tool", "tool_call_id": "call_1", "content": "200 OK"},
    ]},
    "payment card in the second content part": {"messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "Pay with this card:"},
            {"type": "text", "text": "4111 1111 1111 1111"},
        ]},
    ]},
    "IBAN in a later turn": {"messages": [
        {"role": "user", "content": "Pay the supplier."},
        {"role": "assistant", "content": "To which account?"},
        {"role": "user", "content": "DE89 3704 0044 0532 0130 00"},
    ]},
    "customer id (a custom rule)": {"messages": [
        {"role": "user", "content": "Why did CUST-004211 churn?"},
    ]},
    "social security number in a tool result, third turn": {"messages": [
        {"role": "user", "content": "Look her up."},
        {"role": "assistant", "content": None, "tool_calls": [_call("crm", '{"q": "Jane"}')]},
        {"role": "tool", "tool_call_id": "call_1", "content": "ssn 123-45-6789"},
    ]},
    "JWT in the user message": {"messages": [
        {"role": "user", "content": f"Decode {JWT}"},
    ]},
    "password assignment": {"messages": [
        {"role": "user", "content": "config: password = hunter2hunter2"},
    ]},
    "phone number": {"messages": [{"role": "user", "content": "Call me on +44 20 7946 0958"}]},
    "credentials in a URL": {"messages": [
        {"role": "user", "content": "Connect to postgres://admin:s3cretpass@db.internal/prod"},
    ]},
    "secret in a tool definition": {
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"type": "function", "function": {
            "name": "api", "description": "Uses key sk-ant-api03-Ab3De5Fg7Hj9Kl1Mn3Pq5Rs7Tu"}}],
    },
    "secret in a tool schema's property named role": {
        "messages": [{"role": "user", "content": "Add a user"}],
        "tools": [{"type": "function", "function": {"name": "add_user", "parameters": {
            "type": "object",
            "properties": {"role": {"type": "string", "description": f"use {TOKEN}"}}}}}],
    },
    "secret as the role of a message": {"messages": [{"role": TOKEN, "content": "Hi"}]},
    "secret as a metadata key": {
        "messages": [{"role": "user", "content": "Hi"}], "metadata": {TOKEN: "x"},
    },
    "card number sent as a JSON number": {
        "messages": [{"role": "user", "content": "Pay"}], "metadata": {"card": 4111111111111111},
    },
}  # fmt: skip
MODELS = ("chat", "hosted-first", "hosted", "hosted/gpt-hosted")


def _run_corpus(proxy: Proxy, local_up: bool) -> dict[tuple[str, str], int]:
    statuses = {}
    for name, request in CORPUS.items():
        for model in MODELS:
            status, headers, body = _post(proxy, {**request, "model": model})
            statuses[(name, model)] = status
            assert "x-gitgw-receipt" in headers
            if status != 200:
                assert set(body["error"]) == {"message", "type", "code"}, (name, model)
    return statuses


def _expected(model: str, local_up: bool) -> int:
    if model == "hosted-first":
        return 200 if local_up else 503
    return 403


@pytest.mark.parametrize("local_up", [True, False], ids=["local up", "local down"])
def test_no_sensitive_request_ever_reaches_the_hosted_model(
    proxy: Proxy,
    loop: BackgroundLoop,
    local: FakeUpstream,
    hosted: FakeUpstream,
    state_repo: Path,
    local_up: bool,
) -> None:
    if not local_up:
        loop.run(local.stop())
    statuses = _run_corpus(proxy, local_up)

    assert hosted.received == []  # nothing, for any request, model or state
    wrong = {k: s for k, s in statuses.items() if s != _expected(k[1], local_up)}
    assert not wrong
    if local_up:
        assert len(local.received) == len(CORPUS)  # hosted-first went to the local model
    receipts = receipts_on_branch(state_repo)
    proxy.gateway.flush(10)
    wait_for(lambda: len(receipts_on_branch(state_repo)) == len(CORPUS) * len(MODELS))
    receipts = receipts_on_branch(state_repo)
    assert all(r.level in ("confidential", "restricted") for r in receipts.values())
    assert all(r.route is None or r.route.location == "local" for r in receipts.values())
    # the control: an ordinary request does reach the hosted model
    status, _headers, _body = _post(proxy, {"model": "hosted", "messages": HELLO})
    assert status == 200
    assert len(hosted.received) == 1


def test_the_corpus_is_refused_in_offline_mode_too_and_nothing_is_written_in_clear(
    proxy: Proxy, hosted: FakeUpstream, state_repo: Path
) -> None:
    with StateRepo.discover(state_repo) as repo:
        from gitgw.services.mode import set_mode

        set_mode(repo, "offline")
    wait_for(lambda: proxy.gateway.config.mode == "offline")
    _run_corpus(proxy, True)
    status, _headers, body = _post(proxy, {"model": "hosted", "messages": HELLO})
    assert status == 403
    assert "offline mode" in body["error"]["message"]
    assert hosted.received == []
    proxy.gateway.flush(10)
    stored = receipt_files(state_repo)
    for needle in ("AKIAIOSFODNN7EXAMPLE", "4111 1111", "CUST-004211", "hunter2", TOKEN, JWT):
        assert needle.encode() not in stored


# -- bad input ----------------------------------------------------------------------------


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"\xff\xfe", 400, "invalid_json"),
        ({"model": "chat"}, 400, "missing_messages"),
        ({"model": "chat", "messages": []}, 400, "missing_messages"),
        ({"model": "chat", "messages": ["hi"]}, 400, "invalid_message"),
        ({"messages": HELLO}, 400, "missing_model"),
        ({"model": "gpt-5", "messages": HELLO}, 404, "model_not_found"),
        ({"model": "chat", "messages": [{"role": "user", "content": "x" * 30_000}]}, 413,
         "request_too_large"),
        (b'{"model": "chat", "messages": [{"role": "user", "content": "a \\ud800 b"}]}', 400,
         "invalid_json"),
        ({"model": "chat", "messages": HELLO, "metadata": _nested(300)}, 400,
         "nested_too_deeply"),
        (b'{"model": "chat", "messages": [], "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400,
         "nested_too_deeply"),
    ],
    ids=["malformed", "not utf-8", "no messages", "empty messages", "message not an object",
         "no model", "unknown model", "too large", "half a surrogate pair",
         "nested 300 deep", "nested past the parser's stack"],
)  # fmt: skip
def test_bad_input_gets_a_clear_error_and_a_receipt(
    proxy: Proxy, state_repo: Path, body: Any, status: int, code: str, local: FakeUpstream
) -> None:
    got, headers, answer = _post(proxy, body)
    assert (got, answer["error"]["code"]) == (status, code)
    assert answer["error"]["message"]
    receipt = wait_receipt(proxy, state_repo, headers["x-gitgw-receipt"])
    assert receipt.outcome == "client_error"
    assert local.received == []


def test_escaped_text_that_is_text_passes_and_its_receipt_is_written(
    proxy: Proxy, state_repo: Path, local: FakeUpstream
) -> None:
    # A surrogate pair (an emoji) and nesting within the limit are ordinary requests.
    body = (
        b'{"model": "chat", "messages": [{"role": "user", "content": "hi \\ud83d\\ude00"}], '
        b'"metadata": ' + json.dumps(_nested(150)).encode() + b"}"
    )
    status, headers, _answer = _post(proxy, body)
    assert status == 200
    assert local.received[-1]["messages"][0]["content"] == "hi \N{GRINNING FACE}"
    receipt = wait_receipt(proxy, state_repo, headers["x-gitgw-receipt"])
    assert (receipt.outcome, receipt.context[0].chars) == ("ok", 4)


def test_an_unknown_model_error_lists_the_aliases(proxy: Proxy) -> None:
    _status, _headers, answer = _post(proxy, {"model": "gpt-5", "messages": HELLO})
    assert "chat" in answer["error"]["message"]
    assert "PROVIDER/MODEL" in answer["error"]["message"]


def test_an_invalid_trust_header_is_a_400(proxy: Proxy) -> None:
    status, _headers, answer = _post(
        proxy, {"model": "chat", "messages": HELLO}, {"x-gitgw-trust": "secret"}
    )
    assert (status, answer["error"]["code"]) == (400, "invalid_trust_level")


# -- upstream faults ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["status:500", "status:503", "status:429", "garbage", "hang"])
def test_a_failing_local_model_falls_back_to_the_next_candidate(
    client: openai.OpenAI,
    proxy: Proxy,
    local: FakeUpstream,
    hosted: FakeUpstream,
    state_repo: Path,
    mode: str,
) -> None:
    local.mode = mode
    raw = client.chat.completions.with_raw_response.create(model="chat", messages=HELLO)
    assert raw.parse().choices[0].message.content == "hello from hosted"
    receipt = wait_receipt(proxy, state_repo, raw.headers["x-gitgw-receipt"])
    assert receipt.route is not None
    assert receipt.route.provider == "hosted"
    [failed] = receipt.rejected
    assert failed.provider == "local"
    assert proxy.gateway.health.cooling("local") > 0
    # while it cools down, the next request goes straight to the hosted model
    client.chat.completions.create(model="chat", messages=HELLO)
    assert len(local.received) == 1


@pytest.mark.parametrize(
    ("mode", "status", "words"),
    [
        ("status:502", 503, "answered 502"),
        ("garbage", 502, "not a chat completion"),
        ("hang", 503, "timeout: no answer within 1s"),
    ],
)
def test_when_every_candidate_fails_the_error_says_which_and_why(
    client: openai.OpenAI, proxy: Proxy, local: FakeUpstream, state_repo: Path, mode: str,
    status: int, words: str,
) -> None:  # fmt: skip
    local.mode = mode
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="local", messages=HELLO)
    assert failed.value.status_code == status
    assert "local/llama-local" in failed.value.message
    assert words in failed.value.message
    assert "the request is internal (the default level)" in failed.value.message
    receipt = wait_receipt(proxy, state_repo, failed.value.response.headers["x-gitgw-receipt"])
    assert receipt.outcome == "upstream_error"
    assert words in receipt.rejected[0].reason


def test_an_upstream_client_error_is_passed_through_without_fallback(
    client: openai.OpenAI, local: FakeUpstream, hosted: FakeUpstream
) -> None:
    local.mode = "status:400"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="chat", messages=HELLO)
    assert "local says 400" in bad.value.message
    assert hosted.received == []


def test_a_missing_key_skips_the_candidate_and_never_shows_the_key(
    client: openai.OpenAI,
    proxy: Proxy,
    loop: BackgroundLoop,
    local: FakeUpstream,
    hosted: FakeUpstream,
    state_repo: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop.run(local.stop())
    monkeypatch.delenv("HOSTED_KEY")
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="chat", messages=HELLO)
    assert failed.value.status_code == 503
    assert "hosted/gpt-hosted: key: HOSTED_KEY is not set" in failed.value.message
    assert "set HOSTED_KEY where the proxy runs" in failed.value.message
    assert "connection refused" in failed.value.message
    assert hosted.received == []  # never sent without its key
    monkeypatch.setenv("HOSTED_KEY", KEY)
    assert client.chat.completions.create(model="hosted", messages=HELLO).choices
    proxy.gateway.flush(10)
    assert KEY.encode() not in receipt_files(state_repo)


def test_a_stream_falls_back_before_its_first_byte(
    client: openai.OpenAI, local: FakeUpstream, hosted: FakeUpstream
) -> None:
    local.mode = "empty-stream"
    stream = client.chat.completions.create(model="chat", messages=HELLO, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "hello from hosted"


def test_a_stream_dropped_midway_ends_with_an_error_and_an_interrupted_receipt(
    client: openai.OpenAI, proxy: Proxy, local: FakeUpstream, hosted: FakeUpstream,
    state_repo: Path,
) -> None:  # fmt: skip
    local.mode = "drop"
    received: list[str] = []
    with client.chat.completions.with_streaming_response.create(
        model="chat", messages=HELLO, stream=True
    ) as raw:
        receipt_id = raw.headers["x-gitgw-receipt"]
        chunks = raw.parse()
        with pytest.raises(openai.APIError, match="stopped mid-stream"):
            received.extend(c.choices[0].delta.content or "" for c in chunks)
    assert "hello " in received  # what arrived before the drop reached the client
    assert hosted.received == []  # no fallback once bytes reached the client
    receipt = wait_receipt(proxy, state_repo, receipt_id)
    assert receipt.outcome == "interrupted"
    assert "local" in (receipt.detail or "")


def test_a_client_that_leaves_mid_stream_gets_a_receipt_that_says_so(
    proxy: Proxy, loop: BackgroundLoop, local: FakeUpstream, state_repo: Path
) -> None:
    local.mode = "slow-stream"
    body = json.dumps({"model": "chat", "messages": HELLO, "stream": True}).encode()
    host, port = proxy.url.split("//")[1].split("/")[0].rsplit(":", 1)

    async def leave_after_the_first_bytes() -> str:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        await reader.read(100)  # some of the stream has arrived
        writer.transport.abort()
        return re.search(r"x-gitgw-receipt: (\S+)", head, re.IGNORECASE)[1]  # type: ignore[index]

    receipt_id = loop.run(leave_after_the_first_bytes())
    receipt = wait_receipt(proxy, state_repo, receipt_id)
    assert (receipt.outcome, receipt.detail) == (
        "interrupted",
        "the client disconnected mid-stream",
    )
    wait_for(lambda: local.closed_early)  # and the upstream's stream was closed too


def test_a_stream_from_a_hanging_upstream_falls_back(
    client: openai.OpenAI, local: FakeUpstream
) -> None:
    local.mode = "hang"
    stream = client.chat.completions.create(model="chat", messages=HELLO, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "hello from hosted"


# -- configuration while serving ----------------------------------------------------------


def test_an_invalid_config_is_reported_and_the_last_good_one_keeps_serving(
    client: openai.OpenAI, proxy: Proxy, state_repo: Path, local: FakeUpstream
) -> None:
    good = proxy.gateway.loaded.commit
    with StateRepo.discover(state_repo) as repo:
        text = repo.read("gitgw.yaml")
        assert text is not None
        broken = text.replace(b"location: local", b"location: moon")
        # written past the checks, as a bad push would land
        repo.commit({"gitgw.yaml": broken}, "a bad edit")
    wait_for(lambda: proxy.gateway.problem is not None, timeout=1.5)
    assert client.chat.completions.create(model="local", messages=HELLO).choices
    ready = json.loads(urllib.request.urlopen(proxy.url[:-3] + "/health/ready").read())
    assert ready["config_commit"] == good
    assert "location" in ready["config_problem"]
    with StateRepo.discover(state_repo) as repo:
        fixed = text.replace(b"max_body_bytes: 20000", b"max_body_bytes: 30000")
        Store(repo).put("gitgw.yaml", fixed, "fix it")
    wait_for(lambda: proxy.gateway.problem is None, timeout=1.5)
    assert proxy.gateway.config.proxy.max_body_bytes == 30000


def test_every_request_leaves_exactly_one_receipt_and_stopping_flushes_them(
    state_repo: Path, loop: BackgroundLoop, local: FakeUpstream, hosted: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("HOSTED_KEY", KEY)
    write_config(state_repo, local.base_url, hosted.base_url)
    ids = []
    with running_proxy(loop, state_repo) as proxy:
        bodies: list[Any] = [{"model": "chat", "messages": HELLO}, b"nope",
                             {"model": "x", "messages": HELLO},
                             {"model": "hosted", "messages": HELLO}]  # fmt: skip
        ids.extend(_post(proxy, body)[1]["x-gitgw-receipt"] for body in bodies)
        with openai.OpenAI(base_url=proxy.url, api_key="x", max_retries=0) as sdk:
            for _ in sdk.chat.completions.create(model="local", messages=HELLO, stream=True):
                pass
    on_branch = receipts_on_branch(state_repo)
    assert set(ids) <= set(on_branch)
    outcomes = sorted(on_branch[i].outcome for i in ids)
    assert outcomes == ["client_error", "client_error", "ok", "refused"]
    assert len(on_branch) == 5


# -- HTTPS upstreams go through the ClientSession -----------------------------------------


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a self-signed certificate for 127.0.0.1, and a client
    context that trusts it."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return server, ssl.create_default_context(cafile=str(cert))


def test_an_https_upstream_is_called_through_the_client_session(
    state_repo: Path,
    loop: BackgroundLoop,
    local: FakeUpstream,
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, client_tls = tls
    secure = FakeUpstream("secure")
    loop.run(secure.start(tls=server))
    monkeypatch.setenv("HOSTED_KEY", KEY)
    write_config(state_repo, local.base_url, secure.base_url)
    grant_hosted(state_repo)
    gateway = Gateway(StateRepo.discover(state_repo))

    def session(settings: ProxySettings) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_tls))

    app = create_app(gateway, TEST_SETTINGS, session=session)
    serving = loop.run(start(gateway, "127.0.0.1", 0, app=app))
    try:
        with openai.OpenAI(base_url=serving.url, api_key="x", max_retries=0) as sdk:
            plain = sdk.chat.completions.create(model="hosted", messages=HELLO)
            assert plain.choices[0].message.content == "hello from secure"
            stream = sdk.chat.completions.create(model="hosted", messages=HELLO, stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            assert text == "hello from secure"
            secure.mode = "status:503"
            with pytest.raises(openai.APIStatusError) as failed:
                sdk.chat.completions.create(model="hosted", messages=HELLO)
            assert failed.value.status_code == 503
    finally:
        loop.run(serving.stop())
        gateway.close()
        loop.run(secure.stop())
    assert secure.headers[0]["Authorization"] == f"Bearer {KEY}"
    assert len(secure.received) == 3


def test_a_config_holding_a_secret_at_start_serves_and_is_reported(state_repo: Path) -> None:
    with StateRepo.discover(state_repo) as repo:
        text = repo.read("gitgw.yaml")
        assert text is not None
        leaked = text + b"# deploy key: AKIAIOSFODNN7EXAMPLE\n"
        repo.commit({"gitgw.yaml": leaked}, "a secret, past the checks")  # as a bad push lands
    gateway = Gateway(StateRepo.discover(state_repo))
    try:
        assert gateway.problem is None  # served at once: the format check passed
        gateway.warm()  # what the proxy runs once it is serving
        assert gateway.problem is not None
        assert "AKIA" not in gateway.problem.message  # the finding, never the value
    finally:
        gateway.close()
