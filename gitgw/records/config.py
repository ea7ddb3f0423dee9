"""`gitgw.yaml`: the gateway's configuration, the one file a person edits most."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gitgw.records.base import Level, Record, Sha256, level_rank

__all__ = [
    "AliasConfig",
    "Candidate",
    "ClientConfig",
    "DaemonConfig",
    "GatewayConfig",
    "GiteaConfig",
    "ProviderConfig",
    "ProxyConfig",
    "SyncConfig",
    "TrustConfig",
    "TrustRule",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


class ProviderConfig(_Strict):
    """A model provider: where it is, how to speak to it and what it may see."""

    protocol: Literal["openai", "anthropic"] = "openai"
    base_url: str
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding the key (never the key)."
    )
    location: Literal["local", "hosted"]
    max_trust: Level = Field(description="The highest trust level this provider may receive.")


class Candidate(_Strict):
    """One place an alias may be served from, tried in order."""

    provider: str
    model: str


class AliasConfig(_Strict):
    """A model name clients ask for, served by an ordered list of candidates."""

    description: str | None = None
    max_trust: Level | None = Field(
        default=None,
        description="The highest level this alias accepts; a request above it is refused "
        "or rerouted (trust.on_violation). Default: the highest any candidate may receive.",
    )
    candidates: list[Candidate] = Field(min_length=1)


class TrustRule(_Strict):
    """A custom classification rule: content matching it is at least `level`."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    level: Level
    pattern: str | None = Field(default=None, description="A regular expression.")
    keywords: list[str] | None = None

    @model_validator(mode="after")
    def _one_matcher(self) -> TrustRule:
        if (self.pattern is None) == (self.keywords is None):
            raise ValueError("a trust rule needs exactly one of `pattern` or `keywords`")
        return self


class TrustConfig(_Strict):
    """How requests are classified and what happens when a model may not see one."""

    default_level: Level = "internal"
    rules: list[TrustRule] = Field(default_factory=list)
    on_violation: Literal["refuse", "reroute"] = "refuse"
    reroute_alias: str | None = None


class ClientConfig(_Strict):
    """A client the proxy knows by its bearer token (stored hashed, or read from env)."""

    token_sha256: Sha256 | None = None
    token_env: str | None = None


class ProxyConfig(_Strict):
    """Where and how the proxy listens."""

    host: str = "127.0.0.1"
    port: int = Field(default=8741, ge=1, le=65535)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    capture_content: bool = Field(
        default=False, description="Write prompt and completion text into receipts and runs."
    )


class SyncConfig(_Strict):
    """Which remote `gitgw sync` talks to."""

    remote: str = "origin"


class GiteaConfig(_Strict):
    """The Gitea server gitgw works with: webhooks in, commit statuses and hooks out."""

    url: str | None = Field(
        default=None, description="The server's base URL, e.g. `http://gitea.internal:3000`."
    )
    token_env: str | None = Field(
        default=None,
        description="Environment variable holding an API token (commit statuses, creating "
        "webhooks); never the token itself.",
    )
    webhook_secret_env: str | None = Field(
        default=None,
        description="Environment variable holding the webhook secret. `POST /hooks/gitea` "
        "is disabled unless this names a variable that is set.",
    )
    state_repo: str | None = Field(
        default=None,
        pattern=r"^[^/\s]+/[^/\s]+$",
        description="`owner/name` of the Gitea repository this state branch syncs with: "
        "its push events fetch and sync the branch.",
    )
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)


class DaemonConfig(_Strict):
    """How `gitgw start` works while nobody types."""

    sync_interval_s: float | None = Field(
        default=None, gt=0, description="Sync with the remote this often; off by default."
    )
    max_parallel_runs: int = Field(default=4, ge=1, le=64)
    step_timeout_s: float = Field(
        default=600.0, gt=0, description="A step's time limit when it sets no timeout_s."
    )
    webhook_queue: int = Field(
        default=256, ge=1, description="Webhook deliveries waiting at most; 503 beyond."
    )


class GatewayConfig(Record):
    """The whole of `gitgw.yaml`."""

    mode: Literal["online", "offline"] = "online"
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, AliasConfig] = Field(default_factory=dict)
    trust: TrustConfig = Field(default_factory=TrustConfig)
    clients: dict[str, ClientConfig] = Field(default_factory=dict)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    gitea: GiteaConfig = Field(default_factory=GiteaConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)

    @model_validator(mode="after")
    def _routes_are_sound(self) -> GatewayConfig:
        for alias, config in self.models.items():
            for candidate in config.candidates:
                if candidate.provider not in self.providers:
                    raise ValueError(
                        f"alias {alias!r} names unknown provider {candidate.provider!r}"
                    )
            self._no_fallback_down_to_hosted(alias, config)
        if self.trust.on_violation == "reroute":
            target = self.trust.reroute_alias
            if target is None or target not in self.models:
                raise ValueError(
                    "trust.on_violation is reroute, so trust.reroute_alias must "
                    "name an alias under models"
                )
            hosted = [
                c.provider
                for c in self.models[target].candidates
                if self.providers[c.provider].location == "hosted"
            ]
            if hosted:
                raise ValueError(
                    f"trust.reroute_alias {target!r} must be local only, but "
                    f"names hosted provider {hosted[0]!r}"
                )
        return self

    def _no_fallback_down_to_hosted(self, alias: str, config: AliasConfig) -> None:
        # Fail closed at load time: no fallback order may carry data a candidate is allowed
        # to see on to a hosted candidate allowed less, unless the alias caps its level.
        cap = level_rank(config.max_trust) if config.max_trust else None
        for index, later in enumerate(config.candidates):
            provider = self.providers[later.provider]
            limit = level_rank(provider.max_trust)
            if provider.location != "hosted" or (cap is not None and cap <= limit):
                continue
            for earlier in config.candidates[:index]:
                earlier_level = self.providers[earlier.provider].max_trust
                if level_rank(earlier_level) > limit:
                    raise ValueError(
                        f"alias {alias!r} could fall back from {earlier.provider}/"
                        f"{earlier.model} (up to {earlier_level}) to hosted "
                        f"{later.provider}/{later.model} (up to {provider.max_trust}); set "
                        f"models.{alias}.max_trust: {provider.max_trust}, or remove the "
                        "hosted candidate"
                    )
