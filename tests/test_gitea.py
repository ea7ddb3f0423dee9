"""Gitea, both ways: webhook deliveries into the proxy's `POST /hooks/gitea`, and commit
statuses and webhooks out through the REST API.

Deliveries are built as Gitea's source builds them (`services/webhook/deliver.go`: the
same headers, the payload indented as Go's `json.MarshalIndent` writes it, signed with
HMAC-SHA256 of the raw payload) and sent over real HTTP to a real proxy on 127.0.0.1.
The Gitea API side is a fake Gitea served by aiohttp on 127.0.0.1 that records what it
receives (no Gitea server can run in the tests)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from gitgw.concepts.store import Store
from gitgw.errors import GitgwError
from gitgw.proxy import create_app
from gitgw.proxy.serve import Serving, start
from gitgw.records.config import GiteaConfig
from gitgw.services.deliveries import (
    DeliveryLog,
    PushEvent,
    parse_push,
    signature,
    verify_signature,
)
from gitgw.services.gateway import Gateway
from gitgw.services.gitea import GiteaClient, client_from_config, hook_url_of, webhook_config
from gitgw.state import StateRepo
from tests.conftest import fails, succeeds
from tests.fakeupstream import TEST_SETTINGS, BackgroundLoop, wait_for

SECRET = "whsec-3f9c1e0b7d2a4c5e8f6a1b2c3d4e5f60"  # the value of $HOOK_SECRET
TOKEN = "gta-0123456789abcdef0123456789abcdef01234567"  # the value of $GITEA_TOKEN
BEFORE = "28e1879d029cb852e4844d9c718537df08844e03"
AFTER = "bffeb74224043ba2feb48d137756c8a9331c449a"
ZERO = "0" * 40

CONFIG = """\
schema_version: 1
gitea:
  url: {api}
  token_env: GITEA_TOKEN
  webhook_secret_env: {secret_env}
  state_repo: team/state
  max_body_bytes: 20000
"""


def write_config(repo_path: Path, *, api: str = "http://127.0.0.1:1", secret_env: str) -> None:
    text = CONFIG.format(api=api, secret_env=secret_env)
    with StateRepo.discover(repo_path) as repo:
        Store(repo).put("gitgw.yaml", text.encode(), "test config")


# -- a delivery, as Gitea sends one -------------------------------------------------------


def go_json(payload: Any) -> bytes:
    """`json.MarshalIndent(p, "", "  ")`: UTF-8, and <, >, &, U+2028, U+2029 escaped."""
    text = json.dumps(payload, indent=2, ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):  # fmt: skip
        text = text.replace(char, escaped)
    return text.encode("utf-8")


def user(login: str, user_id: int) -> dict[str, Any]:
    return {
        "id": user_id, "login": login, "login_name": "", "source_id": 0,
        "full_name": login.title(), "email": f"{login}@example.test",
        "avatar_url": f"http://gitea.test/avatars/{user_id}", "html_url": f"http://gitea.test/{login}",
        "language": "", "is_admin": False, "last_login": "0001-01-01T00:00:00Z",
        "created": "2024-03-01T10:00:00Z", "restricted": False, "active": False,
        "prohibit_login": False, "location": "", "website": "", "description": "",
        "visibility": "public", "followers_count": 0, "following_count": 0,
        "starred_repos_count": 0, "username": login,
    }  # fmt: skip


def commit(sha: str, message: str) -> dict[str, Any]:
    person = {"name": "Ada Lovelace", "email": "ada@example.test", "username": "ada"}
    return {
        "id": sha, "message": message, "url": f"http://gitea.test/team/state/commit/{sha}",
        "author": person, "committer": person, "verification": None,
        "timestamp": "2024-05-02T09:30:00Z", "added": ["handoffs/01HX/handoff.yaml"],
        "removed": [], "modified": ["gitgw.yaml"],
    }  # fmt: skip


def push_payload(
    *, ref: str = "refs/heads/gitgw", before: str = BEFORE, after: str = AFTER
) -> dict[str, Any]:
    """A push payload shaped like Gitea's `PushPayload` (modules/structs/hook.go)."""
    owner = user("team", 2)
    commits = [commit(BEFORE[::-1], "Café: add a handoff <draft> & more"), commit(after, "Merge")]
    repository = {
        "id": 7, "owner": owner, "name": "state", "full_name": "team/state",
        "description": "", "empty": False, "private": True, "fork": False, "template": False,
        "parent": None, "mirror": False, "size": 120, "language": "", "languages_url":
        "http://gitea.test/api/v1/repos/team/state/languages",
        "html_url": "http://gitea.test/team/state", "url": "http://gitea.test/api/v1/repos/team/state",
        "link": "", "ssh_url": "git@gitea.test:team/state.git",
        "clone_url": "http://gitea.test/team/state.git", "original_url": "", "website": "",
        "stars_count": 0, "forks_count": 0, "watchers_count": 1, "open_issues_count": 0,
        "open_pr_counter": 0, "release_counter": 0, "default_branch": "main",
        "archived": False, "created_at": "2024-03-01T10:00:00Z",
        "updated_at": "2024-05-02T09:30:01Z", "archived_at": "1970-01-01T00:00:00Z",
        "permissions": {"admin": True, "push": True, "pull": True}, "has_issues": True,
        "has_wiki": True, "has_pull_requests": True, "has_projects": True,
        "has_releases": True, "has_packages": True, "has_actions": False,
        "ignore_whitespace_conflicts": False, "allow_merge_commits": True,
        "allow_rebase": True, "allow_rebase_explicit": True, "allow_squash_merge": True,
        "allow_fast_forward_only_merge": True, "allow_rebase_update": True,
        "default_delete_branch_after_merge": False, "default_merge_style": "merge",
        "default_allow_maintainer_edit": False, "avatar_url": "", "internal": False,
        "mirror_interval": "", "object_format_name": "sha1",
        "mirror_updated": "0001-01-01T00:00:00Z", "repo_transfer": None, "topics": None,
        "licenses": None,
    }  # fmt: skip
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "compare_url": f"http://gitea.test/team/state/compare/{before}...{after}",
        "commits": commits,
        "total_commits": len(commits),
        "head_commit": commits[-1],
        "repository": repository,
        "pusher": user("ada", 3),
        "sender": user("ada", 3),
    }


def gitea_headers(
    payload: bytes,
    *,
    secret: str | None = SECRET,
    event: str = "push",
    event_type: str | None = None,
    delivery: str | None = None,
    content_type: str = "application/json",
) -> dict[str, str]:
    """The headers deliver.go sets; the signatures are empty when the hook has no secret."""
    delivery = delivery or str(uuid.uuid4())
    event_type = event_type or event
    sha256 = sha1 = ""
    if secret:
        sha256 = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
        sha1 = hmac.new(secret.encode(), payload, hashlib.sha1).hexdigest()
    return {
        "Content-Type": content_type,
        "X-Gitea-Delivery": delivery,
        "X-Gitea-Event": event,
        "X-Gitea-Event-Type": event_type,
        "X-Gitea-Signature": sha256,
        "X-Gogs-Delivery": delivery,
        "X-Gogs-Event": event,
        "X-Gogs-Event-Type": event_type,
        "X-Gogs-Signature": sha256,
        "X-Hub-Signature": "sha1=" + sha1,
        "X-Hub-Signature-256": "sha256=" + sha256,
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Event": event,
        "X-GitHub-Event-Type": event_type,
    }


# -- a proxy with the webhook endpoint ----------------------------------------------------


@dataclass
class Sink:
    """A bounded queue standing in for the daemon's: `room` events at most."""

    room: int = 16
    events: list[PushEvent] = field(default_factory=list)

    def accept(self, event: PushEvent) -> bool:
        if len(self.events) >= self.room:
            return False
        self.events.append(event)
        return True


@dataclass
class Hooked:
    gateway: Gateway
    serving: Serving
    sink: Sink

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.serving.port}/hooks/gitea"

    def deliver(self, payload: bytes, headers: dict[str, str], **extra: Any) -> httpx.Response:
        return httpx.post(self.url, content=payload, headers=headers, timeout=10, **extra)


@pytest.fixture
def hooked(
    state_repo: Path, loop: BackgroundLoop, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Hooked]:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    write_config(state_repo, secret_env="HOOK_SECRET")
    gateway = Gateway(StateRepo.discover(state_repo))
    sink = Sink()
    app = create_app(gateway, TEST_SETTINGS, webhooks=sink)
    serving = loop.run(start(gateway, "127.0.0.1", 0, TEST_SETTINGS, app=app))
    try:
        yield Hooked(gateway, serving, sink)
    finally:
        loop.run(serving.stop())
        gateway.close()


def test_a_signed_push_is_accepted_and_reaches_the_sink(hooked: Hooked) -> None:
    body = go_json(push_payload())
    headers = gitea_headers(body)
    answer = hooked.deliver(body, headers)

    assert answer.status_code == 202, answer.text
    assert answer.json() == {"status": "accepted"}
    [event] = hooked.sink.events
    assert event == PushEvent(
        delivery=headers["X-Gitea-Delivery"],
        repo="team/state",
        ref="refs/heads/gitgw",
        branch="gitgw",
        before=BEFORE,
        after=AFTER,
        clone_url="http://gitea.test/team/state.git",
        html_url="http://gitea.test/team/state",
        commits=(BEFORE[::-1], AFTER),
        pusher="ada",
    )


def test_a_tampered_body_is_refused_and_logged_without_the_body(
    hooked: Hooked, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gitgw.webhooks")
    body = go_json(push_payload())
    headers = gitea_headers(body)
    tampered = body.replace(b"refs/heads/gitgw", b"refs/heads/evil")

    answer = hooked.deliver(tampered, headers)

    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "bad_signature"
    assert answer.json()["error"]["type"] == "authentication_error"
    assert hooked.sink.events == []
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "gitgw.webhooks")
    assert headers["X-Gitea-Delivery"] in logged
    assert "'push'" in logged
    assert "refs/heads" not in logged
    assert "team/state" not in logged
    assert SECRET not in logged


def test_an_unsigned_delivery_is_refused(hooked: Hooked) -> None:
    body = go_json(push_payload())
    unsigned = gitea_headers(body, secret=None)  # what a hook without a secret sends
    assert unsigned["X-Gitea-Signature"] == ""

    answer = hooked.deliver(body, unsigned)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "missing_signature"

    del unsigned["X-Gitea-Signature"]
    assert hooked.deliver(body, unsigned).status_code == 401
    # A GitHub-style signature alone is not enough: gitgw checks X-Gitea-Signature.
    github_only = gitea_headers(body)
    del github_only["X-Gitea-Signature"]
    assert hooked.deliver(body, github_only).status_code == 401
    # Signed with another secret.
    assert hooked.deliver(body, gitea_headers(body, secret="not-the-secret")).status_code == 401
    assert hooked.sink.events == []


def test_a_replayed_delivery_is_taken_once(hooked: Hooked, state_repo: Path) -> None:
    body = go_json(push_payload())
    headers = gitea_headers(body)

    first = hooked.deliver(body, headers)
    again = hooked.deliver(body, headers)

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate"}
    assert len(hooked.sink.events) == 1
    # remembered on disk, under the repository's gitgw directory, across restarts
    with StateRepo.discover(state_repo) as repo:
        assert headers["X-Gitea-Delivery"] in DeliveryLog.for_repo(repo)
    # The id is not signed: the same signed body under a new id is the same delivery.
    renamed = hooked.deliver(body, gitea_headers(body))
    assert (renamed.status_code, renamed.json()) == (200, {"status": "duplicate"})
    assert len(hooked.sink.events) == 1


def test_a_full_queue_answers_503_and_the_redelivery_is_taken(hooked: Hooked) -> None:
    body = go_json(push_payload())
    headers = gitea_headers(body)
    hooked.sink.room = 0

    refused = hooked.deliver(body, headers)

    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "30"
    assert refused.json()["error"]["code"] == "queue_full"
    assert hooked.sink.events == []

    hooked.sink.room = 1
    redelivered = hooked.deliver(body, headers)  # Gitea redelivers with the same UUID
    assert redelivered.status_code == 202
    assert redelivered.json() == {"status": "accepted"}
    assert [e.delivery for e in hooked.sink.events] == [headers["X-Gitea-Delivery"]]
    # A replay from the hook's page (a new id) of a refused delivery is taken too.
    hooked.sink.room = 0
    other = go_json(push_payload(after="c" * 40))
    assert hooked.deliver(other, gitea_headers(other)).status_code == 503
    hooked.sink.room = 2
    assert hooked.deliver(other, gitea_headers(other)).status_code == 202


def test_other_events_are_ignored(hooked: Hooked) -> None:
    body = go_json({"action": "opened", "number": 3, "repository": {"full_name": "team/state"}})
    for event, event_type in (("issues", "issues"), ("pull_request", "pull_request_sync")):
        answer = hooked.deliver(body, gitea_headers(body, event=event, event_type=event_type))
        assert answer.status_code == 202
        assert answer.json() == {"status": "ignored"}
    assert hooked.sink.events == []


def test_a_malformed_push_is_refused_with_400(hooked: Hooked) -> None:
    for body in (
        b"not json",
        go_json(["a", "list"]),
        go_json({"ref": "refs/heads/main", "before": BEFORE, "after": AFTER}),
        go_json({**push_payload(), "after": "not-a-sha"}),
        go_json({**push_payload(), "commits": [{"message": "no id"}]}),
    ):
        headers = gitea_headers(body)
        answer = hooked.deliver(body, headers)
        assert answer.status_code == 400, body
        assert answer.json()["error"]["code"] == "malformed_push"
        assert headers["X-Gitea-Delivery"] in answer.json()["error"]["message"]
    assert hooked.sink.events == []


def test_a_delivery_without_an_id_is_refused(hooked: Hooked) -> None:
    body = go_json(push_payload())
    headers = gitea_headers(body)
    del headers["X-Gitea-Delivery"]
    answer = hooked.deliver(body, headers)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "missing_delivery"


def test_an_oversized_delivery_is_refused_with_413(hooked: Hooked) -> None:
    body = go_json({**push_payload(), "padding": "x" * 30_000})  # gitea.max_body_bytes: 20000
    headers = gitea_headers(body)

    declared = hooked.deliver(body, headers)  # refused on Content-Length
    assert declared.status_code == 413
    assert "gitea.max_body_bytes" in declared.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:
        for start_at in range(0, len(body), 4096):
            yield body[start_at : start_at + 4096]

    streamed = hooked.deliver(chunks(), gitea_headers(body))  # type: ignore[arg-type]
    assert streamed.status_code == 413  # no Content-Length: refused while reading
    assert hooked.sink.events == []


def test_a_form_delivery_is_verified_on_its_payload_field(hooked: Hooked) -> None:
    payload = go_json(push_payload())
    form = urllib.parse.urlencode({"payload": payload.decode()}).encode()
    headers = gitea_headers(
        payload, content_type="application/x-www-form-urlencoded"
    )  # Gitea signs the JSON, not the form
    answer = hooked.deliver(form, headers)
    assert answer.status_code == 202, answer.text
    assert hooked.sink.events[0].repo == "team/state"


def test_the_endpoint_is_disabled_until_the_secret_is_set_and_read_per_request(
    hooked: Hooked, state_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = go_json(push_payload())
    monkeypatch.delenv("HOOK_SECRET")
    disabled = hooked.deliver(body, gitea_headers(body))
    assert disabled.status_code == 404
    error = disabled.json()["error"]
    assert error["code"] == "webhooks_disabled"
    assert "gitea.webhook_secret_env" in error["message"]

    monkeypatch.setenv("HOOK_SECRET", "")  # set but empty: still disabled
    assert hooked.deliver(body, gitea_headers(body)).status_code == 404

    monkeypatch.setenv("HOOK_SECRET", SECRET)  # no restart needed
    assert hooked.deliver(body, gitea_headers(body)).status_code == 202

    body = go_json(push_payload(after="d" * 40))  # each push its own body
    monkeypatch.setenv("HOOK_SECRET", "a-rotated-secret")
    assert hooked.deliver(body, gitea_headers(body)).status_code == 401
    assert hooked.deliver(body, gitea_headers(body, secret="a-rotated-secret")).status_code == 202

    # A configuration reload names another variable: it applies to the next delivery.
    body = go_json(push_payload(after="e" * 40))
    monkeypatch.setenv("OTHER_SECRET", "the-other-secret")
    write_config(state_repo, secret_env="OTHER_SECRET")
    wait_for(lambda: hooked.gateway.config.gitea.webhook_secret_env == "OTHER_SECRET")
    assert hooked.deliver(body, gitea_headers(body, secret="a-rotated-secret")).status_code == 401
    assert hooked.deliver(body, gitea_headers(body, secret="the-other-secret")).status_code == 202
    assert len(hooked.sink.events) == 3


def test_without_a_sink_there_is_no_webhook_route(
    state_repo: Path, loop: BackgroundLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    write_config(state_repo, secret_env="HOOK_SECRET")
    gateway = Gateway(StateRepo.discover(state_repo))
    serving = loop.run(start(gateway, "127.0.0.1", 0, TEST_SETTINGS))
    try:
        body = go_json(push_payload())
        url = f"http://127.0.0.1:{serving.port}/hooks/gitea"
        answer = httpx.post(url, content=body, headers=gitea_headers(body), timeout=10)
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"
    finally:
        loop.run(serving.stop())
        gateway.close()


# -- the pieces ---------------------------------------------------------------------------


def test_signature_is_hex_hmac_sha256() -> None:
    # RFC 4231, test case 2
    expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert signature(b"Jefe", b"what do ya want for nothing?") == expected
    assert verify_signature(b"Jefe", b"what do ya want for nothing?", expected)
    assert not verify_signature(b"Jefe", b"what do ya want for nothing!", expected)
    assert not verify_signature(b"Jefe", b"x", None)
    assert not verify_signature(b"Jefe", b"x", "")
    assert not verify_signature(b"", b"x", signature(b"", b"x"))  # no secret never verifies
    assert not verify_signature(b"Jefe", b"x", "sha256=" + signature(b"Jefe", b"x"))
    assert not verify_signature(b"Jefe", b"x", "\u00e9" * 64)  # non-ASCII: False, no crash


def test_parse_push_reads_gitea_push_payloads() -> None:
    created = parse_push("d-1", go_json(push_payload(before=ZERO)))
    assert created.created
    assert not created.deleted
    assert created.branch == "gitgw"

    tag = parse_push("d-2", go_json(push_payload(ref="refs/tags/v1.0")))
    assert tag.branch is None

    deleted = go_json({**push_payload(after=ZERO), "commits": None, "head_commit": None})
    gone = parse_push("d-3", deleted)  # Go marshals no commits as null
    assert gone.deleted
    assert gone.commits == ()

    bare = push_payload()
    bare["repository"].update(clone_url="", html_url=None)
    bare["pusher"] = None
    sparse = parse_push("d-6", go_json(bare))
    assert (sparse.clone_url, sparse.html_url, sparse.pusher) == (None, None, None)

    assert tag.as_context() == {
        "delivery": "d-2",
        "repo": "team/state",
        "ref": "refs/tags/v1.0",
        "branch": None,
        "before": BEFORE,
        "after": AFTER,
        "created": False,
        "deleted": False,
        "clone_url": "http://gitea.test/team/state.git",
        "html_url": "http://gitea.test/team/state",
        "commits": [BEFORE[::-1], AFTER],
        "pusher": "ada",
    }
    json.dumps(tag.as_context())  # plain values only

    with pytest.raises(GitgwError, match="d-4: repository is missing"):
        parse_push("d-4", go_json({"ref": "refs/heads/main", "before": BEFORE, "after": AFTER}))
    payload = push_payload()
    payload["repository"]["full_name"] = "just-a-name"
    with pytest.raises(GitgwError, match="full_name is not owner/name"):
        parse_push("d-5", go_json(payload))


def test_the_delivery_log_is_bounded_persistent_and_thread_safe(tmp_path: Path) -> None:
    path = tmp_path / "deliveries"
    log = DeliveryLog(path, keep=3)
    assert log.first_time("a")
    assert not log.first_time("a")
    for name in ("b", "c", "d"):
        assert log.first_time(name)
    assert path.read_text().splitlines() == ["b", "c", "d"]  # "a" fell out

    reopened = DeliveryLog(path, keep=3)
    assert not reopened.first_time("d")
    reopened.forget("d")
    assert reopened.first_time("d")
    assert not DeliveryLog(path, keep=3).first_time("d")
    with pytest.raises(GitgwError):
        reopened.first_time("line\nbreak")

    shared = DeliveryLog(tmp_path / "shared")
    results: list[bool] = []
    ids = [str(uuid.uuid4()) for _ in range(20)]

    def work() -> None:
        for delivery in ids:
            results.append(shared.first_time(delivery))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == len(ids)
    assert sorted((tmp_path / "shared").read_text().splitlines()) == sorted(ids)


def test_the_delivery_log_lives_under_the_repositorys_gitgw_directory(state_repo: Path) -> None:
    with StateRepo.discover(state_repo) as repo:
        log = DeliveryLog.for_repo(repo)
        assert log.first_time("0f0e7c1e-5c50-4d7a-9d1a-2f3b4c5d6e7f")
        assert log.path.is_relative_to(repo.gitgw_dir)
        assert log.path.is_file()
        assert log.keep == 10_000


def test_webhook_config_shows_the_secret_as_a_placeholder() -> None:
    body = webhook_config(
        "http://gitgw.test:8741/hooks/gitea", secret_env="HOOK_SECRET", branch_filter="gitgw"
    )
    assert body == {
        "type": "gitea",
        "config": {
            "url": "http://gitgw.test:8741/hooks/gitea",
            "content_type": "json",
            "secret": "<the value of $HOOK_SECRET>",
        },
        "events": ["push"],
        "active": True,
        "branch_filter": "gitgw",
    }
    assert hook_url_of("http://gitgw.test:8741") == "http://gitgw.test:8741/hooks/gitea"
    assert hook_url_of("https://gw.test/custom/path") == "https://gw.test/custom/path"
    with pytest.raises(GitgwError):
        hook_url_of("gitgw.test:8741")


# -- the REST API, against a fake Gitea ----------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeGitea:
    """Gitea's API for statuses and hooks, as far as gitgw uses it; records requests.

    `mode`: ok | forbidden (the token lacks a scope) | missing (no such repository)
    """

    mode: str = "ok"
    received: list[Received] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _record(self, request: web.Request) -> web.Response | None:
        self.received.append(
            Received(request.method, request.path, dict(request.headers), await request.json())
        )
        if self.mode == "forbidden":
            message = (
                "token does not have at least one of required scope(s), "
                "required=[write:repository], token scope=read:repository"
            )
            scope = {"message": message, "url": f"{self.url}/api/swagger"}
            return web.json_response(scope, status=403)
        if self.mode == "missing":
            missing = {"errors": None, "message": "GetRepositoryByName", "url": ""}
            return web.json_response(missing, status=404)
        return None

    async def status(self, request: web.Request) -> web.Response:
        refused = await self._record(request)
        if refused is not None:
            return refused
        body = self.received[-1].body
        return web.json_response(
            {"id": 1, "status": body["state"], "target_url": body.get("target_url", ""),
             "description": body.get("description", ""), "context": body["context"],
             "url": "", "creator": user("bot", 9)},
            status=201,
        )  # fmt: skip

    async def hook(self, request: web.Request) -> web.Response:
        refused = await self._record(request)
        if refused is not None:
            return refused
        body = self.received[-1].body
        config = {"url": body["config"]["url"], "content_type": body["config"]["content_type"]}
        return web.json_response(
            {"id": 42, "type": body["type"], "branch_filter": body.get("branch_filter", "*"),
             "config": config, "events": body["events"], "authorization_header": "",
             "active": body["active"], "updated_at": "2024-05-02T09:30:00Z",
             "created_at": "2024-05-02T09:30:00Z"},
            status=201,
        )  # fmt: skip

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v1/repos/{owner}/{repo}/statuses/{sha}", self.status)
        app.router.add_post("/api/v1/repos/{owner}/{repo}/hooks", self.hook)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = int(self.runner.addresses[0][1])

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
def fake_gitea(loop: BackgroundLoop) -> Iterator[FakeGitea]:
    server = FakeGitea()
    loop.run(server.start())
    try:
        yield server
    finally:
        loop.run(server.stop())


def test_set_commit_status_posts_a_create_status_option(fake_gitea: FakeGitea) -> None:
    with GiteaClient(fake_gitea.url + "/", TOKEN) as client:
        client.set_commit_status(
            "team/state",
            AFTER,
            "success",
            context="gitgw/workflow",
            description="3 steps done",
            target_url="http://gitgw.test/runs/01HX",
        )
        client.set_commit_status("team/state", AFTER, "pending", context="gitgw/review")

    first, second = fake_gitea.received
    assert first.method == "POST"
    assert first.path == f"/api/v1/repos/team/state/statuses/{AFTER}"
    assert first.headers["Authorization"] == f"token {TOKEN}"
    assert first.headers["Content-Type"] == "application/json"
    assert first.body == {
        "state": "success",
        "context": "gitgw/workflow",
        "description": "3 steps done",
        "target_url": "http://gitgw.test/runs/01HX",
    }
    assert second.body == {"state": "pending", "context": "gitgw/review"}


def test_create_webhook_posts_a_create_hook_option(fake_gitea: FakeGitea) -> None:
    with GiteaClient(fake_gitea.url, TOKEN) as client:
        hook_id = client.create_webhook(
            "team/state", "http://gitgw.test:8741/hooks/gitea", SECRET, branch_filter="gitgw"
        )

    assert hook_id == 42
    [sent] = fake_gitea.received
    assert (sent.method, sent.path) == ("POST", "/api/v1/repos/team/state/hooks")
    assert sent.headers["Authorization"] == f"token {TOKEN}"
    assert sent.body == {
        "type": "gitea",
        "config": {
            "url": "http://gitgw.test:8741/hooks/gitea",
            "content_type": "json",
            "secret": SECRET,
        },
        "events": ["push"],
        "active": True,
        "branch_filter": "gitgw",
    }


def test_api_errors_name_the_status_and_message_never_the_token(fake_gitea: FakeGitea) -> None:
    fake_gitea.mode = "forbidden"
    with GiteaClient(fake_gitea.url, TOKEN) as client:
        with pytest.raises(GitgwError) as refused:
            client.set_commit_status("team/state", AFTER, "failure", context="gitgw/workflow")
        fake_gitea.mode = "missing"
        with pytest.raises(GitgwError) as missing:
            client.create_webhook("team/nothing", "http://gitgw.test/hooks/gitea", SECRET)
        with pytest.raises(GitgwError, match="not a commit status state"):
            client.set_commit_status("team/state", AFTER, "done", context="x")  # type: ignore[arg-type]
        with pytest.raises(GitgwError, match="OWNER/NAME"):
            client.set_commit_status("no-owner", AFTER, "success", context="x")

    assert "403" in refused.value.message
    assert "required=[write:repository]" in refused.value.message
    assert f"/api/v1/repos/team/state/statuses/{AFTER}" in refused.value.message
    assert "404" in missing.value.message
    assert "GetRepositoryByName" in missing.value.message
    for error in (refused.value, missing.value):
        assert TOKEN not in str(error)
        assert SECRET not in str(error)

    with (
        GiteaClient("http://127.0.0.1:1", TOKEN, timeout=2) as unreachable,
        pytest.raises(GitgwError, match="cannot reach Gitea") as down,
    ):
        unreachable.set_commit_status("team/state", AFTER, "success", context="x")
    assert TOKEN not in str(down.value)


def test_client_from_config_names_what_is_missing(fake_gitea: FakeGitea) -> None:
    with pytest.raises(GitgwError, match=r"gitea\.url is not set"):
        client_from_config(GiteaConfig(token_env="GITEA_TOKEN"), environ={"GITEA_TOKEN": TOKEN})
    with pytest.raises(GitgwError, match=r"gitea\.token_env is not set"):
        client_from_config(GiteaConfig(url=fake_gitea.url), environ={})
    configured = GiteaConfig(url=fake_gitea.url, token_env="GITEA_TOKEN")
    with pytest.raises(GitgwError, match="the variable GITEA_TOKEN") as unset:
        client_from_config(configured, environ={"GITEA_TOKEN": ""})
    assert TOKEN not in str(unset.value)

    with client_from_config(configured, environ={"GITEA_TOKEN": TOKEN}) as client:
        client.set_commit_status("team/state", AFTER, "warning", context="gitgw/x")
    assert fake_gitea.received[0].headers["Authorization"] == f"token {TOKEN}"


# -- gitgw hooks gitea-setup ---------------------------------------------------------------


def _json_block(text: str) -> Any:
    lines = text.splitlines()
    start_at = lines.index("{")
    end_at = lines.index("}", start_at)
    return json.loads("\n".join(lines[start_at : end_at + 1]))


def test_gitea_setup_prints_the_webhook_without_the_secret(
    state_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    write_config(state_repo, secret_env="HOOK_SECRET")
    out = succeeds(
        state_repo,
        "hooks", "gitea-setup", "--url", "http://gitgw.test:8741", "--repo", "team/state",
        "--branch-filter", "gitgw",
    )  # fmt: skip

    assert SECRET not in out
    assert "POST /api/v1/repos/team/state/hooks" in out
    assert _json_block(out) == webhook_config(
        "http://gitgw.test:8741/hooks/gitea", secret_env="HOOK_SECRET", branch_filter="gitgw"
    )
    assert "$HOOK_SECRET" in out
    assert "export HOOK_SECRET=" in out


def test_gitea_setup_teaches_the_secret_variable_when_none_is_configured(
    state_repo: Path,
) -> None:
    out = succeeds(
        state_repo, "hooks", "gitea-setup", "--url", "http://gw.test", "--repo", "team/state"
    )
    assert "webhook_secret_env" in out
    assert "404" in out
    assert _json_block(out)["config"]["secret"] == "<the value of $GITEA_WEBHOOK_SECRET>"


def test_gitea_setup_create_makes_the_hook_through_the_api(
    state_repo: Path, fake_gitea: FakeGitea, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(state_repo, api=fake_gitea.url, secret_env="HOOK_SECRET")
    monkeypatch.setenv("HOOK_SECRET", SECRET)

    unset = fails(
        state_repo, "hooks", "gitea-setup", "--url", "http://gitgw.test:8741",
        "--repo", "team/state", "--create",
    )  # fmt: skip
    assert "GITEA_TOKEN" in unset
    assert fake_gitea.received == []

    monkeypatch.setenv("GITEA_TOKEN", TOKEN)
    out = succeeds(
        state_repo, "hooks", "gitea-setup", "--url", "http://gitgw.test:8741",
        "--repo", "team/state", "--create",
    )  # fmt: skip
    assert "created webhook 42 on team/state" in out
    assert SECRET not in out
    assert TOKEN not in out
    [sent] = fake_gitea.received
    assert sent.path == "/api/v1/repos/team/state/hooks"
    assert sent.headers["Authorization"] == f"token {TOKEN}"
    assert sent.body["config"] == {
        "url": "http://gitgw.test:8741/hooks/gitea",
        "content_type": "json",
        "secret": SECRET,
    }

    fake_gitea.mode = "forbidden"
    refused = fails(
        state_repo, "hooks", "gitea-setup", "--url", "http://gitgw.test:8741",
        "--repo", "team/state", "--create",
    )  # fmt: skip
    assert "403" in refused
    assert TOKEN not in refused
    assert SECRET not in refused


def test_gitea_setup_create_needs_the_secret_variable(
    state_repo: Path, fake_gitea: FakeGitea, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(state_repo, api=fake_gitea.url, secret_env="HOOK_SECRET")
    monkeypatch.setenv("GITEA_TOKEN", TOKEN)
    stderr = fails(
        state_repo, "hooks", "gitea-setup", "--url", "http://gitgw.test:8741",
        "--repo", "team/state", "--create",
    )  # fmt: skip
    assert "HOOK_SECRET" in stderr
    assert fake_gitea.received == []
