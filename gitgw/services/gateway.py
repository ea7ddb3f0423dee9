"""The gateway's in-memory state: what the proxy's request path reads, and nothing slower.

A `Gateway` holds the last good configuration and the commit it was read at, a
`Classifier` built from it, the folded consent ledger, provider `Health` and the
receipt writer. The request path never touches Git:

- `authenticate` names the client from its bearer token (tokens are known only as
  SHA-256 hashes, from `token_sha256` or from the variable `token_env` names);
- `prepare` parses and checks a chat completion body, classifies every string in it
  (messages of every role, tool calls and tool results, tool definitions), checks the
  client's consent and plans the routes (`gitgw.concepts.router.plan`);
- `record` queues what happened for its receipt and returns at once; `seal` builds
  the queued receipts' lines (the proxy runs it while an upstream works) and
  `hand_over` gives the lines to the batching writer as one batch file.

`refresh()` follows the state branch: when its head has not moved it costs one ref
read; when it moved, it compares the blob id of `gitgw.yaml` (parsing only a changed
file) and lets the consent ledger fold what changed under `consent/`. An invalid new
configuration is reported and the last good one keeps serving. Only one thread may call
`refresh()` at a time; the request path only reads the snapshot it publishes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from gitgw._clock import Clock, default_clock
from gitgw.concepts.checks import check_file
from gitgw.concepts.consent import ConsentLedger
from gitgw.concepts.router import Health
from gitgw.concepts.store import CONFIG_PATH, Store
from gitgw.concepts.trust import Classifier
from gitgw.errors import GitgwError
from gitgw.records import GatewayConfig
from gitgw.services.gateway_request import (
    Attempt,
    Loaded,
    Outcome,
    Prepared,
    RequestError,
    prepare_request,
)
from gitgw.services.receipt_lines import batch_file, fallback_line, guard_text, receipt_line
from gitgw.state import BatchWriter, StateRepo

__all__ = [
    "Attempt",
    "ConfigProblem",
    "Gateway",
    "Loaded",
    "Outcome",
    "Prepared",
    "Refreshed",
    "RequestError",
    "is_loopback",
]

DEFAULT_COOLDOWN_S = 10.0
# Receipts recorded and not yet built (each holds its request's body): at this many,
# `record()` builds them itself rather than wait for an upstream call to hide them in
# (about 1.5 ms of work, where nothing calls an upstream: refusals, HTTPS upstreams).
_UNSEALED_MAX = 16

log = logging.getLogger("gitgw.proxy")


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (127.0.0.0/8, ::1 or `localhost`)."""
    import ipaddress

    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_hash(token: str) -> str:
    """The hex SHA-256 of a client token, as `clients.NAME.token_sha256` stores it."""
    # A header's bytes that are not UTF-8 arrive as escaped surrogates (as do an
    # environment variable's): hashed as the bytes they were, they name no client.
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True)
class ConfigProblem:
    """A configuration that failed to load; the last good one keeps serving."""

    commit: str
    message: str


@dataclass(frozen=True)
class Refreshed:
    """What one `refresh()` found."""

    moved: bool = False  # the state branch's head moved
    config_changed: bool = False  # a new configuration is now in force
    consent_changed: bool = False
    problem: ConfigProblem | None = None  # a new configuration was rejected


def _load(config: GatewayConfig, commit: str, blob: bytes | None) -> Loaded:
    tokens: dict[str, str] = {}
    unset: list[str] = []
    for name, client in sorted(config.clients.items()):
        if client.token_sha256:
            tokens[client.token_sha256] = name
        if client.token_env:
            value = os.environ.get(client.token_env)
            if value:
                tokens[token_hash(value)] = name
            elif not client.token_sha256:
                unset.append(name)
    return Loaded(config, commit, blob, Classifier(config.trust), tokens, tuple(unset))


@dataclass
class _Counters:
    refreshes: int = 0
    config_reloads: int = 0
    config_failures: int = 0


class Gateway:
    """The in-memory state the proxy serves from (see the module docs)."""

    def __init__(
        self,
        repo: StateRepo,
        *,
        clock: Clock | None = None,
        health: Health | None = None,
        require_token: bool = False,
    ) -> None:
        self.repo = repo
        self.clock = clock or default_clock()
        self.store = Store(repo, self.clock)
        self.health = health or Health(DEFAULT_COOLDOWN_S)
        self.require_token = require_token
        self._refresh_lock = threading.Lock()
        self.counters = _Counters()
        head = repo.require_head()
        found = repo.trees.lookup(repo.tree_of(head), CONFIG_PATH)
        if found is None:
            raise GitgwError(
                f"the state branch has no {CONFIG_PATH}", "create one with `gitgw init`"
            )
        # The format check (schema, references) is all serving needs. The secrets guard
        # loads detect-secrets, a tenth of a second of a start-up that should take less
        # than a second, and what it finds does not change how requests are answered:
        # `warm()` runs it once the proxy is serving (see there).
        data = repo.blob(found[1].decode("ascii"))
        record = check_file(CONFIG_PATH, data, guards=False).records[0]
        assert isinstance(record, GatewayConfig)
        self.loaded: Loaded = _load(record, head, found[1])
        self.problem: ConfigProblem | None = None
        self._seen_blob = self.loaded.blob
        self._head: str | None = head
        self.consent = ConsentLedger(repo)
        self._writer: BatchWriter | None = None
        self.on_batch: Callable[[int, Future[str]], None] | None = None
        self._unsealed: deque[tuple[Loaded, Prepared, Outcome]] = deque()
        self._seal_lock = threading.Lock()
        self._lines: deque[str] = deque()  # receipts built, not yet handed over
        self._hand_over_lock = threading.Lock()
        self._start_lock = threading.Lock()

    @property
    def writer(self) -> BatchWriter:
        """The batching writer receipts go to (started on first use: a dry run never
        starts it)."""
        with self._start_lock:
            if self._writer is None:
                self._writer = self.store.writer()
            return self._writer

    @classmethod
    def open(cls, path: Path | None, branch: str, *, require_token: bool = False) -> Gateway:
        """A gateway over the state branch `branch` of the repository at `path`."""
        return cls(StateRepo.discover(path, branch), require_token=require_token)

    @property
    def config(self) -> GatewayConfig:
        """The configuration in force."""
        return self.loaded.config

    # -- following the branch -------------------------------------------------------------

    def refresh(self) -> Refreshed:
        """Catch up with the state branch (cheap when its head has not moved)."""
        with self._refresh_lock:
            self.counters.refreshes += 1
            head = self.repo.head()
            if head is None or head == self._head:
                return Refreshed()
            found = self.repo.trees.lookup(self.repo.tree_of(head), CONFIG_PATH)
            blob = found[1] if found else None
            changed, problem = False, None
            if blob != self._seen_blob:
                self._seen_blob = blob
                try:
                    self.loaded = self._parse(head, blob)
                except GitgwError as exc:
                    text = exc.message + (f" ({exc.hint})" if exc.hint else "")
                    problem = self.problem = ConfigProblem(head, text)
                    self.counters.config_failures += 1
                else:
                    changed, self.problem = True, None
                    self.counters.config_reloads += 1
            consent = self.consent.refresh()
            self._head = head
            return Refreshed(True, changed, consent, problem)

    def _parse(self, head: str, blob: bytes | None) -> Loaded:
        if blob is None:
            raise GitgwError(f"the state branch no longer has {CONFIG_PATH}")
        record = check_file(CONFIG_PATH, self.repo.blob(blob.decode("ascii"))).records[0]
        assert isinstance(record, GatewayConfig)
        return _load(record, head, blob)

    # -- the request path -----------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> str | None:
        """The client a bearer token names, None for an anonymous caller; 401 otherwise.

        With no clients configured, tokens are not checked (the proxy then listens on
        loopback only). With clients, a token must name one; a caller without a token is
        anonymous on loopback and refused elsewhere.
        """
        loaded = self.loaded
        if not loaded.config.clients:
            if self.require_token:
                raise RequestError(
                    401, "invalid_api_key", "this proxy has no clients configured",
                    "add clients to gitgw.yaml, or listen on loopback only",
                )  # fmt: skip
            return None
        token = None
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                token = value.strip()
        if token is None:
            if self.require_token:
                raise RequestError(
                    401, "missing_api_key", "this proxy needs a client token",
                    "send Authorization: Bearer TOKEN with a token from clients in gitgw.yaml",
                )  # fmt: skip
            return None
        client = loaded.tokens.get(token_hash(token))
        if client is None:
            raise RequestError(
                401, "invalid_api_key", "the bearer token names no client of this proxy",
                "use a token from clients in gitgw.yaml (token_env or token_sha256)",
            )  # fmt: skip
        return client

    def prepare(self, body: bytes, client: str | None, declared: str | None = None) -> Prepared:
        """Parse, check, classify and plan one chat completion request."""
        created = self.clock.now()
        return prepare_request(
            self.loaded,
            body,
            client,
            declared,
            self.consent.check,
            self.health,
            receipt_id=self.clock.new_id(created),
            created=created,
        )

    def record(self, prepared: Prepared | None, outcome: Outcome) -> str:
        """Queue the receipt of one request; its id, at once.

        Nothing is written here, and the receipt of a prepared request is not even
        built: `seal()` builds what is queued, and the proxy runs it while it waits for
        an upstream, so that work overlaps the upstream's rather than delaying the next
        request. `hand_over()` (which the proxy runs every 0.5 s, and `flush()` runs first)
        seals what is left and gives the lines to the batching writer as one batch file,
        so a busy proxy makes two commits a second, not one per request.
        """
        if prepared is None:
            if outcome.receipt_id is None:
                outcome.receipt_id = self.clock.new_id()
            self._lines.append(self._line(self.loaded, None, outcome))  # its time is now
            return outcome.receipt_id
        outcome.receipt_id = prepared.receipt_id
        self._unsealed.append((self.loaded, prepared, outcome))
        if len(self._unsealed) >= _UNSEALED_MAX:  # nothing waits on an upstream: do it now
            self.seal_if_free()  # (a thread that is sealing builds these too)
        return prepared.receipt_id

    def seal(self) -> None:
        """Build the lines of the receipts queued by `record()`.

        Under a lock, so that once any caller's `seal()` returns, every receipt recorded
        before it was called is a line, waiting for `hand_over()` or already handed over.
        """
        with self._seal_lock:
            self._seal_queued()

    def seal_if_free(self) -> None:
        """`seal()`, unless another thread is sealing now (it builds what is queued): for
        the event loop, which must not wait on a worker thread."""
        if not self._seal_lock.acquire(blocking=False):
            return
        try:
            self._seal_queued()
        finally:
            self._seal_lock.release()

    def _seal_queued(self) -> None:
        unsealed = self._unsealed
        while unsealed:
            loaded, prepared, outcome = unsealed.popleft()
            try:
                self._lines.append(self._line(loaded, prepared, outcome))
            except Exception:  # even the fallback failed: the others still get theirs
                log.exception("lost the receipt of %s", outcome.receipt_id)

    def _line(self, loaded: Loaded, prepared: Prepared | None, outcome: Outcome) -> str:
        try:
            return receipt_line(loaded, prepared, outcome, self.clock)
        except Exception as exc:  # a bug; the request still leaves a receipt
            log.exception("could not build the receipt of %s", outcome.receipt_id)
            return fallback_line(loaded, prepared, outcome, self.clock, exc)

    def hand_over(self) -> int:
        """Give the recorded receipts to the writer as one batch file; how many."""
        self.seal()
        with self._hand_over_lock:
            lines = []
            while self._lines:
                lines.append(self._lines.popleft())
            if not lines:
                return 0
            path, data = batch_file(lines, self.clock.new_id())
            future = self.writer.submit({path: data})
            if self.on_batch is not None:
                self.on_batch(len(lines), future)
            return len(lines)

    def warm(self) -> None:
        """What may wait until the proxy serves: start the receipt writer, load the
        secrets guard's detectors (receipts' free text goes through them), and run the
        guard on the configuration read at start.

        A configuration the guard flags was pushed past every check into the branch; it
        keeps serving (it is the only one), and `problem` says so, as it does for an
        invalid new configuration.
        """
        self.writer  # noqa: B018
        guard_text(self.clock.new_id(), "detail", "HTTP 401 (invalid_api_key): warm-up")
        with self._refresh_lock:
            loaded = self.loaded
            if loaded.blob is None or self._seen_blob != loaded.blob:
                return  # a refresh has read a newer file, with every check
            try:
                check_file(CONFIG_PATH, self.repo.blob(loaded.blob.decode("ascii")))
            except GitgwError as exc:
                text = exc.message + (f" ({exc.hint})" if exc.hint else "")
                self.problem = ConfigProblem(loaded.commit, text)
                log.error("%s at %s: %s", CONFIG_PATH, loaded.commit[:12], text)

    def new_receipt_id(self) -> str:
        """An id for a receipt of a request that could not be prepared."""
        return self.clock.new_id()

    def key_of(self, env: str | None) -> str | None:
        """The value of a provider's key variable (never logged, never printed)."""
        return os.environ.get(env) if env else None

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every receipt recorded so far is on the branch."""
        self.hand_over()
        if self._writer is not None:
            self._writer.flush(timeout)

    def close(self) -> None:
        """Commit what is queued and release the repository."""
        self.hand_over()
        if self._writer is not None:
            self._writer.close()
        self.repo.close()
