"""Gitea's REST API: commit statuses and webhooks out.

`GiteaClient` speaks Gitea's REST API (`/api/v1`, `Authorization: token <token>`):
commit statuses (`CreateStatusOption`) and webhooks (`CreateHookOption`). Its errors
name the HTTP status and Gitea's message, never the token. `webhook_config` is what
`gitgw hooks gitea-setup` prints; deliveries coming in are `gitgw.services.deliveries`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from gitgw.errors import GitgwError
from gitgw.records.config import GiteaConfig
from gitgw.services.deliveries import HOOK_PATH, REPO, SHA

CommitState = Literal["pending", "success", "error", "failure", "warning"]
COMMIT_STATES: tuple[str, ...] = get_args(CommitState)

__all__ = [
    "CommitState",
    "GiteaClient",
    "client_from_config",
    "hook_url_of",
    "webhook_config",
]

# -- the REST API -------------------------------------------------------------------------


def _repo_path(repo: str) -> str:
    if not REPO.match(repo):
        raise GitgwError(f"not a Gitea repository name: {repo!r}", "write it as OWNER/NAME")
    owner, name = repo.split("/")
    return f"{quote(owner, safe='')}/{quote(name, safe='')}"


def _hook_body(
    hook_url: str, secret: str, events: Sequence[str], branch_filter: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "gitea",
        "config": {"url": hook_url, "content_type": "json", "secret": secret},
        "events": list(events),
        "active": True,
    }
    if branch_filter:
        body["branch_filter"] = branch_filter
    return body


def hook_url_of(url: str) -> str:
    """The delivery URL for gitgw at `url`: a bare address gets `/hooks/gitea` added."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise GitgwError(
            f"not an http(s) URL: {url!r}",
            f"give gitgw's address as Gitea reaches it, e.g. http://gitgw.internal:8741{HOOK_PATH}",
        )
    path = parts.path if parts.path not in ("", "/") else HOOK_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def webhook_config(
    hook_url: str, *, secret_env: str, branch_filter: str | None = None
) -> dict[str, Any]:
    """The JSON body that creates gitgw's webhook (`POST /api/v1/repos/{o}/{r}/hooks`).

    The secret is a placeholder naming the variable that holds it, never its value.
    """
    return _hook_body(hook_url, f"<the value of ${secret_env}>", ("push",), branch_filter)


class GiteaClient:
    """A small client for Gitea's REST API (`/api/v1`), authenticated by an API token."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise GitgwError(
                f"gitea.url is not an http(s) URL: {url!r}",
                "set it to the server's base URL, e.g. http://gitea.internal:3000",
            )
        self.url = url.rstrip("/")
        self._token = token
        headers = {"Accept": "application/json", "User-Agent": "gitgw"}
        if token:
            headers["Authorization"] = f"token {token}"
        self._http = httpx.Client(
            base_url=self.url + "/api/v1", headers=headers, transport=transport, timeout=timeout
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> GiteaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, path: str, body: Mapping[str, Any]) -> Any:
        where = f"POST /api/v1{path}"
        try:
            response = self._http.post(path, json=dict(body))
        except httpx.HTTPError as exc:
            raise GitgwError(
                f"cannot reach Gitea at {self.url} ({where}): {self._clean(str(exc))}",
                "check gitea.url in gitgw.yaml and that the server is up",
            ) from None
        if response.status_code >= 400:
            raise GitgwError(
                f"Gitea answered {response.status_code} to {where}: "
                f"{self._clean(_message_of(response))}",
                _HINTS.get(response.status_code),
            )
        try:
            return response.json()
        except ValueError:
            return None

    def _clean(self, text: str) -> str:
        return text.replace(self._token, "<token>") if self._token else text

    def set_commit_status(
        self,
        repo: str,
        sha: str,
        state: CommitState,
        *,
        context: str,
        description: str | None = None,
        target_url: str | None = None,
    ) -> None:
        """Set the status `context` of commit `sha` in `repo` (OWNER/NAME) to `state`."""
        if state not in COMMIT_STATES:
            raise GitgwError(
                f"not a commit status state: {state!r}",
                f"use one of {', '.join(COMMIT_STATES)}",
            )
        if not SHA.match(sha.lower()):
            raise GitgwError(f"not a commit id: {sha!r}")
        body: dict[str, Any] = {"state": state, "context": context}
        if description is not None:
            body["description"] = description
        if target_url is not None:
            body["target_url"] = target_url
        self._post(f"/repos/{_repo_path(repo)}/statuses/{sha.lower()}", body)

    def create_webhook(
        self,
        repo: str,
        hook_url: str,
        secret: str,
        *,
        events: Sequence[str] = ("push",),
        branch_filter: str | None = None,
    ) -> int:
        """Create an active Gitea webhook on `repo` delivering `events` to `hook_url`; its id."""
        if not secret:
            raise GitgwError("a webhook needs a secret", "set the webhook secret variable")
        answer = self._post(
            f"/repos/{_repo_path(repo)}/hooks",
            _hook_body(hook_url, secret, events, branch_filter),
        )
        hook_id = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(hook_id, int) or isinstance(hook_id, bool):
            raise GitgwError(f"Gitea created the webhook on {repo} but answered no hook id")
        return hook_id


_HINTS = {
    401: "the API token was refused: check the token in the variable gitea.token_env names",
    403: "the token lacks a permission: it needs write access to the repository "
    "(scope write:repository)",
    404: "no such repository, or the token cannot see it: check OWNER/NAME",
    422: "Gitea refused the request's content (see its message)",
}


def _message_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"]:
        return str(body["message"])[:500]
    return json.dumps(body)[:200]


def client_from_config(
    config: GiteaConfig,
    environ: Mapping[str, str] = os.environ,
    transport: httpx.BaseTransport | None = None,
) -> GiteaClient:
    """A client for the Gitea server `gitea` in gitgw.yaml configures, with its token."""
    if not config.url:
        raise GitgwError(
            "gitea.url is not set in gitgw.yaml",
            "add `gitea: {url: http://gitea.internal:3000, token_env: GITEA_TOKEN}` to gitgw.yaml",
        )
    if not config.token_env:
        raise GitgwError(
            "gitea.token_env is not set in gitgw.yaml",
            "name the environment variable holding a Gitea API token, e.g. "
            "`token_env: GITEA_TOKEN`, and set that variable",
        )
    token = environ.get(config.token_env)
    if not token:
        raise GitgwError(
            f"the variable {config.token_env} (gitea.token_env) is not set",
            f"create an API token in Gitea (Settings > Applications, scope write:repository) "
            f"and export {config.token_env}=<token>",
        )
    return GiteaClient(config.url, token, transport=transport)
