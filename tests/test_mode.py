"""`gitgw mode`: offline and online, recorded on the state branch, taken at once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from gitgw.services.mode import with_mode
from gitgw.state import StateRepo
from tests.conftest import run_cli
from tests.fakeupstream import (
    BackgroundLoop,
    grant_hosted,
    running_loop,
    running_proxy,
    running_upstreams,
    wait_for,
    write_config,
)


def _config_text(repo: Path) -> str:
    with StateRepo.discover(repo) as state:
        data = state.read("gitgw.yaml")
    assert data is not None
    return data.decode()


def test_offline_changes_only_the_mode_line_and_keeps_the_comments(example_repo: Path) -> None:
    before = _config_text(example_repo)
    ran = run_cli("--repo", str(example_repo), "mode", "offline")
    assert ran.exit_code == 0, ran.stderr
    assert "mode: online -> offline" in ran.stdout
    after = _config_text(example_repo)
    changed = [
        (a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b
    ]
    assert changed == [("mode: online", "mode: offline")]
    assert run_cli("--repo", str(example_repo), "verify").exit_code == 0
    shown = run_cli("--repo", str(example_repo), "mode", "--json")
    assert json.loads(shown.stdout)["data"] == {"mode": "offline"}
    again = run_cli("--repo", str(example_repo), "mode", "offline")
    assert "already offline" in again.stdout
    assert run_cli("--repo", str(example_repo), "mode", "online").exit_code == 0
    assert _config_text(example_repo) == before


def test_the_switch_is_a_commit_on_the_state_branch(example_repo: Path) -> None:
    with StateRepo.discover(example_repo) as repo:
        head = repo.require_head()
    run_cli("--repo", str(example_repo), "mode", "offline")
    with StateRepo.discover(example_repo) as repo:
        info = repo.commit_info(repo.require_head())
    assert list(info.parents) == [head]
    assert "mode offline" in info.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "schema_version: 1\nmode: online  # comment\n",
            "schema_version: 1\nmode: offline  # comment\n",
        ),
        ('schema_version: 1\nmode: "online"\n', "schema_version: 1\nmode: offline\n"),
        ("schema_version: 1\nproviders: {}\n", "schema_version: 1\nmode: offline\nproviders: {}\n"),
        ("# note\nmodels: {}\n", "mode: offline\n# note\nmodels: {}\n"),
    ],
)
def test_with_mode_edits_only_what_it_must(text: str, expected: str) -> None:
    assert with_mode(text, "offline") == expected


def test_an_unknown_mode_is_bad_usage(example_repo: Path) -> None:
    ran = run_cli("--repo", str(example_repo), "mode", "airplane")
    assert ran.exit_code == 2


@pytest.fixture
def loop() -> Iterator[BackgroundLoop]:
    with running_loop() as background:
        yield background


def test_a_running_proxy_takes_the_switch_within_a_second(
    state_repo: Path, loop: BackgroundLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTED_KEY", "sk-test-0123456789abcdef0123")
    hello = [{"role": "user", "content": "Say hello."}]
    with running_upstreams(loop) as (local, hosted):
        write_config(state_repo, local.base_url, hosted.base_url)
        grant_hosted(state_repo)
        with (
            running_proxy(loop, state_repo) as proxy,
            openai.OpenAI(base_url=proxy.url, api_key="x", max_retries=0) as sdk,
        ):
            assert sdk.chat.completions.create(model="hosted", messages=hello).choices
            assert run_cli("--repo", str(state_repo), "mode", "offline").exit_code == 0
            wait_for(lambda: proxy.gateway.config.mode == "offline", timeout=1.5)
            with pytest.raises(openai.PermissionDeniedError) as refused:
                sdk.chat.completions.create(model="hosted", messages=hello)
            assert "offline mode: hosted providers are off" in refused.value.message
            local.mode = "status:503"
            with pytest.raises(openai.APIStatusError) as down:
                sdk.chat.completions.create(model="chat", messages=hello)
            assert down.value.status_code == 503  # hosted is off: no fallback to it
            assert [m.id for m in sdk.models.list()][-1] == "local/llama-local"
            local.mode = "ok"
            assert run_cli("--repo", str(state_repo), "mode", "online").exit_code == 0
            wait_for(lambda: proxy.gateway.config.mode == "online", timeout=1.5)
            assert sdk.chat.completions.create(model="hosted", messages=hello).choices
        assert len(hosted.received) == 2
