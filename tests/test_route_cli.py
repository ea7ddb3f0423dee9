"""`gitgw route explain`: the router's decision for a request, without sending it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.fakeupstream import grant_hosted, write_config

REQUEST = {"model": "chat", "messages": [{"role": "user", "content": "Say hello."}]}
EMAIL = {"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "c",
         "content": "jane.doe@example.org"}]}  # fmt: skip


@pytest.fixture
def repo(state_repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOSTED_KEY", "sk-never-printed-0123456789abcdef")
    clients = f'clients:\n  ci:\n    token_sha256: "{"0" * 64}"\n'
    write_config(state_repo, "http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1", clients=clients)
    grant_hosted(state_repo)
    return state_repo


def _explain(repo: Path, body: object, *args: str) -> tuple[int, str, str]:
    ran = run_cli("--repo", str(repo), "route", "explain", "--file", "-", *args,
                  input=json.dumps(body))  # fmt: skip
    return ran.exit_code, ran.stdout, ran.stderr


def test_an_ordinary_request_takes_the_first_candidate(repo: Path) -> None:
    code, out, _err = _explain(repo, REQUEST)
    assert code == 0
    assert "level:      internal (the default level)" in out
    assert "rules:      none" in out
    assert "route:      local/llama-local (if it fails: hosted/gpt-hosted)" in out
    assert "consent " in out  # the hosted candidate names the grant it relies on


def test_a_sensitive_request_names_the_rules_never_the_values(repo: Path) -> None:
    code, out, _err = _explain(repo, EMAIL, "--model", "hosted-first")
    assert code == 0
    assert "level:      confidential (detected by personal.email)" in out
    assert "jane.doe" not in out
    lines = {line.split()[1]: line for line in out.splitlines() if line[:1].isdigit()}
    assert "rejected" in lines["hosted/gpt-hosted"]
    assert "confidential is above hosted's max_trust (internal)" in lines["hosted/gpt-hosted"]
    assert "allowed" in lines["local/llama-local"]
    assert "route:      local/llama-local" in out


def test_a_refusal_exits_1_and_says_what_would_allow_it(repo: Path) -> None:
    code, out, _err = _explain(repo, EMAIL, "--model", "chat")
    assert code == 1
    assert "route:      none: HTTP 403 trust_level_exceeded" in out
    assert "ask for a local model that may see it: local" in out
    assert "not considered" in out


def test_a_missing_key_is_a_skipped_candidate(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOSTED_KEY")
    code, out, _err = _explain(repo, REQUEST, "--model", "hosted", "--json")
    assert code == 1
    data = json.loads(out)["data"]
    [candidate] = data["candidates"]
    assert (candidate["verdict"], candidate["reason"]) == ("skipped", "key: HOSTED_KEY is not set")
    assert data["route"] is None


def test_a_provider_the_proxy_cannot_speak_to_is_skipped_as_the_proxy_skips_it(
    repo: Path,
) -> None:
    from gitgw.concepts.store import Store
    from gitgw.state import StateRepo

    with StateRepo.discover(repo) as state:
        config = (state.read("gitgw.yaml") or b"").decode()
        anthropic = config.replace(
            "    location: local\n", "    location: local\n    protocol: anthropic\n"
        )
        Store(state).put("gitgw.yaml", anthropic.encode(), "local speaks anthropic")
    code, out, _err = _explain(repo, REQUEST)
    assert code == 0
    lines = {line.split()[1]: line for line in out.splitlines() if line[:1].isdigit()}
    assert "skipped" in lines["local/llama-local"]
    assert "protocol: the proxy speaks only OpenAI to upstreams, not anthropic" in out
    assert "route:      hosted/gpt-hosted" in out


def test_an_unknown_client_and_a_body_over_the_limit_are_errors_as_in_the_proxy(
    repo: Path,
) -> None:
    code, _out, err = _explain(repo, REQUEST, "--client", "claude-cod")
    assert code == 1
    assert "gitgw.yaml has no client 'claude-cod'" in err
    big = {**REQUEST, "messages": [{"role": "user", "content": "x" * 30_000}]}
    code, _out, err = _explain(repo, big)
    assert code == 1
    assert "the request body is over 20000 bytes" in err


def test_json_output_reads_a_file_and_shows_a_declared_level(repo: Path, tmp_path: Path) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps(REQUEST))
    ran = run_cli("--repo", str(repo), "route", "explain", "--file", str(request),
                  "--trust", "confidential", "--json")  # fmt: skip
    assert ran.exit_code == 1
    data = json.loads(ran.stdout)["data"]
    assert (data["level"], data["declared"]) == ("confidential", "confidential")
    assert data["because"] == "declared confidential by the client"
    assert "sk-never-printed" not in ran.stdout


def test_offline_mode_shows_as_the_reason(repo: Path) -> None:
    assert run_cli("--repo", str(repo), "mode", "offline").exit_code == 0
    code, out, _err = _explain(repo, REQUEST, "--model", "hosted")
    assert code == 1
    assert "mode: offline mode: hosted providers are off" in out


def test_a_client_without_consent_is_refused(repo: Path) -> None:
    code, out, _err = _explain(repo, REQUEST, "--client", "ci")
    assert code == 1
    assert "consent_refused" in out
    assert "gitgw consent grant client:ci --level internal" in out


@pytest.mark.parametrize(
    ("body", "words"),
    [(b"{nope", "not valid JSON"), (b'{"model": "chat"}', "no `messages`")],
)
def test_bad_requests_are_errors(repo: Path, body: bytes, words: str) -> None:
    ran = run_cli("--repo", str(repo), "route", "explain", "--file", "-", input=body.decode())
    assert ran.exit_code == 1
    assert words in ran.stderr


def test_an_unknown_model_is_explained(repo: Path) -> None:
    code, out, _err = _explain(repo, REQUEST, "--model", "gpt-9")
    assert code == 1
    assert "model_not_found" in out
