"""Gitea webhook deliveries: signatures, push events, and deliveries already seen.

What a delivery looks like is taken from Gitea's own source (`services/webhook/deliver.go`
and `modules/structs/hook.go`):

- the body is the event's JSON payload (`Content-Type: application/json`), or, for a
  hook whose content type is `form`, that payload in a `payload=` form field;
- `X-Gitea-Signature` is the hex HMAC-SHA256 of the payload, keyed with the hook's
  secret, and empty when the hook has no secret. Gitea sends the same value as
  `X-Gogs-Signature` and `X-Hub-Signature-256: sha256=<hex>` (plus a SHA-1
  `X-Hub-Signature`); gitgw checks `X-Gitea-Signature`;
- `X-Gitea-Delivery` is a UUID naming the delivery, `X-Gitea-Event` the event (`push`)
  and `X-Gitea-Event-Type` its finer kind. No time is signed, so a captured delivery can
  be sent again: `DeliveryLog` remembers which deliveries were seen, across restarts.

A push payload (`PushPayload`) carries `ref`, `before`, `after`, `commits` (each with
an `id`), `repository` (`full_name`, `clone_url`, `html_url`) and `pusher` (`login`);
`parse_push` keeps those as a `PushEvent`. Nothing here imports a web framework: the
proxy's `POST /hooks/gitea` handler is built on these pieces.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

from gitgw._fs import atomic_write
from gitgw.errors import GitgwError
from gitgw.state import StateRepo

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "EVENT_TYPE_HEADER",
    "HOOK_PATH",
    "SIGNATURE_HEADER",
    "DeliveryLog",
    "PushEvent",
    "WebhookSink",
    "parse_push",
    "signature",
    "signed_payload",
    "valid_delivery_id",
    "verify_signature",
]

SIGNATURE_HEADER = "X-Gitea-Signature"
DELIVERY_HEADER = "X-Gitea-Delivery"
EVENT_HEADER = "X-Gitea-Event"
EVENT_TYPE_HEADER = "X-Gitea-Event-Type"
HOOK_PATH = "/hooks/gitea"  # where the proxy receives deliveries

REPO = re.compile(r"^[^/\s]+/[^/\s]+$")
SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")  # a commit id (SHA-1 or SHA-256)
_DELIVERY = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_HEADS = "refs/heads/"


# -- signatures ---------------------------------------------------------------------------


def signature(secret: bytes, body: bytes) -> str:
    """The hex HMAC-SHA256 of `body` keyed with `secret`, as Gitea signs a delivery."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether `header` (an `X-Gitea-Signature`) signs `body` with `secret`.

    An empty secret never verifies, nor does a missing or empty header (what Gitea sends
    for a hook without a secret). The comparison takes the same time wherever the
    header differs.
    """
    if not secret or not header:
        return False
    expected = signature(secret, body).encode("ascii")
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "surrogateescape"))


def signed_payload(content_type: str, body: bytes) -> bytes:
    """The bytes Gitea signed: the body itself, or a form delivery's `payload` field.

    A hook with `content_type: form` sends `payload=<the JSON, URL-encoded>` and signs the
    JSON, not the form. Anything that is not such a form is returned unchanged.
    """
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return body
    try:
        fields = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return body
    found = fields.get("payload")
    return found[0].encode("utf-8") if found and len(found) == 1 else body


def valid_delivery_id(delivery: str | None) -> bool:
    """Whether `delivery` looks like a delivery id (Gitea sends a UUID)."""
    return delivery is not None and _DELIVERY.match(delivery) is not None


# -- push events --------------------------------------------------------------------------


@dataclass(frozen=True)
class PushEvent:
    """One push, as a Gitea push delivery describes it."""

    delivery: str  # X-Gitea-Delivery
    repo: str  # owner/name (repository.full_name)
    ref: str  # refs/heads/main, refs/tags/v1, ...
    branch: str | None  # main for refs/heads/main; None for any other ref
    before: str  # the ref's old commit (all zeros: the ref was created)
    after: str  # the ref's new commit (all zeros: the ref was deleted)
    clone_url: str | None = None  # None when the payload has none
    html_url: str | None = None
    commits: Sequence[str] = ()  # the pushed commits' ids, in the payload's order
    pusher: str | None = None  # the pusher's login

    @property
    def created(self) -> bool:
        """The push created the ref."""
        return _zero(self.before)

    @property
    def deleted(self) -> bool:
        """The push deleted the ref."""
        return _zero(self.after)

    def as_context(self) -> dict[str, Any]:
        """The push as templates and triggers see it: plain values only."""
        return {
            "delivery": self.delivery,
            "repo": self.repo,
            "ref": self.ref,
            "branch": self.branch,
            "before": self.before,
            "after": self.after,
            "created": self.created,
            "deleted": self.deleted,
            "clone_url": self.clone_url,
            "html_url": self.html_url,
            "commits": list(self.commits),
            "pusher": self.pusher,
        }


def _zero(sha: str) -> bool:
    return set(sha) == {"0"}


class _Malformed(Exception):
    pass


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise _Malformed(f"{name} is missing or not a string")
    return value


def _optional_text(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Malformed(f"{name} is not a string")
    return value


def _sha(value: Any, name: str) -> str:
    sha = _text(value, name).lower()
    if not SHA.match(sha):
        raise _Malformed(f"{name} is not a commit id: {sha[:80]!r}")
    return sha


def _commit_ids(commits: Any) -> tuple[str, ...]:
    if commits is None:  # Go marshals an empty list of commits as null
        return ()
    if not isinstance(commits, list):
        raise _Malformed("commits is not a list")
    ids: list[str] = []
    for index, commit in enumerate(commits):
        if not isinstance(commit, dict):
            raise _Malformed(f"commits[{index}] is not an object")
        ids.append(_text(commit.get("id"), f"commits[{index}].id"))
    return tuple(ids)


def _login(pusher: Any) -> str | None:
    if pusher is None:
        return None
    if not isinstance(pusher, dict):
        raise _Malformed("pusher is not an object")
    found = pusher.get("login") or pusher.get("username")  # Gitea sends both
    return found if isinstance(found, str) and found else None


def _push(delivery: str, body: bytes) -> PushEvent:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Malformed(f"the body is not JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise _Malformed("the body is not a JSON object")
    ref = _text(payload.get("ref"), "ref")
    repository = payload.get("repository")
    if not isinstance(repository, dict):
        raise _Malformed("repository is missing")
    full_name = _text(repository.get("full_name"), "repository.full_name")
    if not REPO.match(full_name):
        raise _Malformed(f"repository.full_name is not owner/name: {full_name[:80]!r}")
    branch = ref[len(_HEADS) :] if ref.startswith(_HEADS) else None
    return PushEvent(
        delivery=delivery,
        repo=full_name,
        ref=ref,
        branch=branch or None,
        before=_sha(payload.get("before"), "before"),
        after=_sha(payload.get("after"), "after"),
        clone_url=_optional_text(repository.get("clone_url"), "repository.clone_url"),
        html_url=_optional_text(repository.get("html_url"), "repository.html_url"),
        commits=_commit_ids(payload.get("commits")),
        pusher=_login(payload.get("pusher")),
    )


def parse_push(delivery: str, body: bytes) -> PushEvent:
    """The `PushEvent` in a push delivery's JSON payload; `GitgwError` if it is malformed."""
    try:
        return _push(delivery, body)
    except _Malformed as exc:
        raise GitgwError(
            f"Gitea push delivery {delivery}: {exc}",
            "gitgw reads Gitea's push payload (ref, before, after, repository.full_name); "
            "check that the webhook is a Gitea webhook sending JSON",
        ) from None


class WebhookSink(Protocol):
    """Whoever takes accepted push events (the daemon's bounded queue)."""

    def accept(self, event: PushEvent) -> bool:
        """Take `event`, or return False at once when the queue is full (never block)."""
        ...


# -- remembering deliveries ---------------------------------------------------------------


class DeliveryLog:
    """The deliveries already seen, kept across restarts (the last `keep` entries).

    Gitea signs no time and not the delivery id (only the body), so a captured delivery
    can be replayed, under its own id or a new one: a delivery is taken at most once by
    its id and at most once by the SHA-256 of its signed body (a redelivery from Gitea's
    page, a new id for the same body, is a duplicate too: its push was taken). The
    entries live in one file under the repository's gitgw directory, one a line, oldest
    first, replaced atomically on every change; it is derived data and may be deleted
    (replays of older deliveries would then be taken once more).
    """

    KEEP = 10_000

    def __init__(self, path: Path, *, keep: int = KEEP) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.path = path
        self.keep = keep
        self._lock = threading.Lock()
        self._ids: OrderedDict[str, None] | None = None  # read on first use

    @classmethod
    def for_repo(cls, repo: StateRepo, *, keep: int = KEEP) -> DeliveryLog:
        """The log of the repository `repo` (`<git dir>/gitgw/gitea/deliveries`)."""
        return cls(repo.gitgw_dir / "gitea" / "deliveries", keep=keep)

    def _loaded(self) -> OrderedDict[str, None]:
        if self._ids is None:
            ids: OrderedDict[str, None] = OrderedDict()
            try:
                lines = self.path.read_text("utf-8").splitlines()
            except FileNotFoundError:
                lines = []
            for line in lines[-self.keep :]:
                if valid_delivery_id(line) or _BODY_KEY.fullmatch(line):
                    ids[line] = None
            self._ids = ids
        return self._ids

    def _save(self, ids: OrderedDict[str, None]) -> None:
        atomic_write(self.path, "".join(f"{i}\n" for i in ids).encode("utf-8"))

    def first_time(self, delivery_id: str, body: bytes | None = None) -> bool:
        """Record `delivery_id` (and its signed `body`); True only the first time either
        is seen."""
        if not valid_delivery_id(delivery_id):
            raise GitgwError(f"not a delivery id: {delivery_id[:80]!r}")
        keys = _keys(delivery_id, body)
        with self._lock:
            ids = self._loaded()
            if any(key in ids for key in keys):
                return False
            for key in keys:
                ids[key] = None
            while len(ids) > self.keep:
                ids.popitem(last=False)
            try:
                self._save(ids)
            except BaseException:
                for key in keys:
                    ids.pop(key, None)
                raise
            return True

    def forget(self, delivery_id: str, body: bytes | None = None) -> None:
        """Forget `delivery_id` (and its `body`): it was not accepted, so its
        redelivery is taken."""
        with self._lock:
            ids = self._loaded()
            keys = [key for key in _keys(delivery_id, body) if key in ids]
            for key in keys:
                del ids[key]
            if keys:
                self._save(ids)

    def __contains__(self, delivery_id: object) -> bool:
        with self._lock:
            return delivery_id in self._loaded()


_BODY_KEY = re.compile(r"sha256:[0-9a-f]{64}")


def _keys(delivery_id: str, body: bytes | None) -> list[str]:
    keys = [delivery_id]
    if body is not None:
        keys.append("sha256:" + hashlib.sha256(body).hexdigest())
    return keys
