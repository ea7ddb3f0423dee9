"""The trust router and the configuration rules that keep fallbacks from leaking."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gitgw._clock import default_clock
from gitgw.concepts.consent import ConsentLedger
from gitgw.concepts.router import Health, UnknownModel, plan
from gitgw.concepts.store import Store
from gitgw.concepts.trust import Classification, Classifier
from gitgw.errors import InvalidRecord
from gitgw.records import ConsentEntry, GatewayConfig, parse_file
from gitgw.state import StateRepo

PROVIDERS = {
    "ollama": {
        "base_url": "http://127.0.0.1:11434/v1",
        "location": "local",
        "max_trust": "restricted",
    },
    "lmstudio": {
        "base_url": "http://127.0.0.1:1234/v1",
        "location": "local",
        "max_trust": "confidential",
    },
    "openai": {
        "base_url": "https://api.openai.com/v1",
        "api_key_env": "OPENAI_API_KEY",
        "location": "hosted",
        "max_trust": "internal",
    },
}


def _config(**overrides: Any) -> GatewayConfig:
    data: dict[str, Any] = {
        "providers": PROVIDERS,
        "models": {
            "chat": {
                "max_trust": "internal",
                "candidates": [
                    {"provider": "ollama", "model": "llama3.1"},
                    {"provider": "openai", "model": "gpt-4o-mini"},
                ],
            },
            "hosted-first": {
                "candidates": [
                    {"provider": "openai", "model": "gpt-4o-mini"},
                    {"provider": "ollama", "model": "llama3.1"},
                ]
            },
            "local": {"candidates": [{"provider": "ollama", "model": "llama3.1"}]},
        },
    }
    data.update(overrides)
    return GatewayConfig.model_validate(data)


@pytest.fixture
def ledger(state_repo: Path) -> ConsentLedger:
    with StateRepo.discover(state_repo) as repo:
        clock = default_clock()
        grant = ConsentEntry(
            id=clock.new_id(),
            action="grant",
            subject="provider:openai",
            level="internal",
            actor="alice",
            created=clock.now(),
        )
        Store(repo).add(grant, message="grant openai")
        ledger = ConsentLedger(StateRepo.discover(state_repo))
    return ledger


def _at(level: str, *rules: str) -> Classification:
    return Classification(level, rules)  # type: ignore[arg-type]


def test_a_public_request_goes_local_first_then_hosted_with_its_consent(
    ledger: ConsentLedger,
) -> None:
    result = plan(_config(), "chat", _at("public"), ledger.check)
    assert [(r.provider, r.model) for r in result.routes] == [
        ("ollama", "llama3.1"),
        ("openai", "gpt-4o-mini"),
    ]
    assert result.routes[1].consent is not None
    assert result.refusal is None


def test_a_confidential_request_never_reaches_the_hosted_model(ledger: ConsentLedger) -> None:
    result = plan(_config(), "hosted-first", _at("confidential", "personal.email"), ledger.check)
    assert [r.provider for r in result.routes] == ["ollama"]
    [rejected] = result.rejected
    assert (rejected.provider, rejected.kind) == ("openai", "trust")
    assert "confidential is above openai's max_trust (internal)" in rejected.reason


def test_above_the_alias_cap_is_refused_naming_the_rules_and_a_way_out(
    ledger: ConsentLedger,
) -> None:
    result = plan(_config(), "chat", _at("restricted", "secret.openai-key"), ledger.check)
    assert result.routes == []
    assert result.refusal is not None
    assert result.refusal.status == 403
    assert "restricted (detected by secret.openai-key)" in result.refusal.message
    assert "local" in result.refusal.message


def test_reroute_sends_it_to_the_local_alias_instead(ledger: ConsentLedger) -> None:
    config = _config(trust={"on_violation": "reroute", "reroute_alias": "local"})
    result = plan(config, "chat", _at("restricted", "secret.private-key"), ledger.check)
    assert result.rerouted_from == "chat"
    assert [r.provider for r in result.routes] == ["ollama"]


def test_without_consent_the_hosted_model_is_refused_with_the_grant_to_make(
    state_repo: Path,
) -> None:
    empty = ConsentLedger(StateRepo.discover(state_repo))
    config = _config(models={"gpt": {"candidates": [{"provider": "openai", "model": "gpt-4o"}]}})
    result = plan(config, "gpt", _at("internal"), empty.check)
    assert result.refusal is not None
    assert result.refusal.status == 403
    assert "gitgw consent grant provider:openai --level internal" in result.refusal.message
    assert result.rejected[0].kind == "consent"


def test_offline_mode_removes_hosted_providers(ledger: ConsentLedger) -> None:
    result = plan(_config(mode="offline"), "hosted-first", _at("public"), ledger.check)
    assert [r.provider for r in result.routes] == ["ollama"]
    assert result.rejected[0].reason == "offline mode: hosted providers are off"


def test_a_failed_provider_cools_down_and_then_everything_down_is_503(
    ledger: ConsentLedger,
) -> None:
    now = [100.0]
    health = Health(cooldown_s=30, clock=lambda: now[0])
    health.failed("ollama")
    result = plan(_config(), "local", _at("public"), ledger.check, health)
    assert result.refusal is not None
    assert result.refusal.status == 503
    assert "cooling down for 30s" in result.refusal.message
    now[0] += 31
    assert plan(_config(), "local", _at("public"), ledger.check, health).routes


def test_direct_provider_model_and_unknown_models(ledger: ConsentLedger) -> None:
    result = plan(_config(), "lmstudio/qwen2.5", _at("confidential"), ledger.check)
    assert [(r.provider, r.model) for r in result.routes] == [("lmstudio", "qwen2.5")]
    with pytest.raises(UnknownModel, match="unknown model 'gpt-5'"):
        plan(_config(), "gpt-5", _at("public"), ledger.check)


def test_a_fallback_that_could_carry_data_down_to_a_hosted_model_is_rejected_at_load() -> None:
    text = (
        "providers:\n"
        "  ollama: {base_url: 'http://127.0.0.1:11434/v1', location: local,\n"
        "           max_trust: restricted}\n"
        "  openai: {base_url: 'https://api.openai.com/v1', location: hosted,\n"
        "           max_trust: internal}\n"
        "models:\n"
        "  chat:\n"
        "    candidates:\n"
        "      - {provider: ollama, model: llama3.1}\n"
        "      - {provider: openai, model: gpt-4o-mini}\n"
    )
    with pytest.raises(InvalidRecord) as caught:
        parse_file("gitgw.yaml", text.encode())
    reason = caught.value.reason
    assert "alias 'chat' could fall back from ollama/llama3.1 (up to restricted)" in reason
    assert "to hosted openai/gpt-4o-mini (up to internal)" in reason
    assert "models.chat.max_trust: internal" in reason
    capped = text.replace("  chat:\n", "  chat:\n    max_trust: internal\n")
    assert parse_file("gitgw.yaml", capped.encode()).records


def test_reroute_must_name_a_local_alias() -> None:
    with pytest.raises(ValueError, match="reroute_alias must name an alias"):
        _config(trust={"on_violation": "reroute"})
    with pytest.raises(ValueError, match="must be local only"):
        _config(trust={"on_violation": "reroute", "reroute_alias": "hosted-first"})


def test_classifier_and_router_together_keep_a_secret_local(ledger: ConsentLedger) -> None:
    config = _config()
    level = Classifier(config.trust).classify(["deploy with AKIAIOSFODNN7EXAMPLE"])
    result = plan(config, "hosted-first", level, ledger.check)
    assert [r.provider for r in result.routes] == ["ollama"]
