"""One OpenAI-compatible chat call over HTTP: the outbound call path gitgw has today.

It sends exactly the body it is given to the provider it is given and reports what came
back; it decides nothing. Whoever calls it decides first, through the trust router
(`gitgw.concepts.router.plan`), whether the call may happen: today `runs replay` does;
the proxy and workflows can take this path over for their outbound calls, adding
candidate fallback and streaming. The HTTP transport is injectable
(`httpx.BaseTransport`), so a test or an embedding program can route calls anywhere; by
default they go over the network to the provider's `base_url`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from gitgw.errors import GitgwError
from gitgw.records.config import ProviderConfig

__all__ = ["ChatResult", "chat_completion", "endpoint_of"]

DEFAULT_TIMEOUT = 120.0


@dataclass(frozen=True)
class ChatResult:
    """An upstream's answer: its JSON body and how long it took."""

    body: dict[str, Any]
    latency_ms: float


def endpoint_of(provider: ProviderConfig) -> str:
    """The URL of the provider's chat completions endpoint."""
    return provider.base_url.rstrip("/") + "/chat/completions"


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return str(error or body)[:200]


def chat_completion(
    name: str,
    provider: ProviderConfig,
    body: dict[str, Any],
    *,
    api_key: str | None = None,
    transport: httpx.BaseTransport | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ChatResult:
    """POST `body` to provider `name`'s chat completions endpoint; its JSON answer.

    Raises `GitgwError` when the provider cannot be reached, answers with an error
    status, or answers with something that is not a chat completion.
    """
    if provider.protocol != "openai":
        raise GitgwError(
            f"provider {name} speaks {provider.protocol}; gitgw can call only "
            "OpenAI-compatible providers yet"
        )
    url = endpoint_of(provider)
    headers = {"content-type": "application/json", "user-agent": "gitgw"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    started = time.perf_counter()
    try:
        with httpx.Client(transport=transport, timeout=timeout) as client:
            response = client.post(url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise GitgwError(
            f"could not reach provider {name} at {url}: {exc or type(exc).__name__}",
            f"is it running, and is base_url in gitgw.yaml right ({urlsplit(url).netloc})?",
        ) from None
    latency_ms = (time.perf_counter() - started) * 1000
    if response.status_code >= 400:
        raise GitgwError(
            f"provider {name} answered {response.status_code}: {_error_text(response)}"
        )
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list):
        raise GitgwError(f"provider {name} did not answer with a chat completion ({url})")
    return ChatResult(answer, latency_ms)
