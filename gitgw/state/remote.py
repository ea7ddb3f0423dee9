"""Fetching and pushing the state branch, over any transport dulwich speaks."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dulwich.client import HTTPProxyUnauthorized, HTTPUnauthorized, get_transport_and_path
from dulwich.errors import GitProtocolError, HangupException, NotGitRepository, SendPackError
from dulwich.file import FileLocked
from dulwich.object_store import ObjectStoreGraphWalker
from dulwich.objects import ObjectID
from dulwich.pack import UnpackedObject, pack_objects_to_data
from dulwich.refs import Ref

from gitgw._fs import atomic_write
from gitgw.errors import RemoteError
from gitgw.state.packing import objects_to_send
from gitgw.state.repo import StateRepo

__all__ = [
    "NotLanded",
    "fetch",
    "last_synced",
    "push",
    "remember_synced",
    "remote_url",
    "shown_url",
]

_ZERO = b"0" * 40
# How long a remote may send nothing, on any one read or write, before it counts as
# unreachable (seconds; GITGW_SYNC_TIMEOUT): a server that accepts a connection and
# never answers would hang a sync, and a daemon's syncs, for ever.
SILENCE_LIMIT = 60.0
_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")


def shown_url(url: str) -> str:
    """`url` as it may be printed or logged: without the user name and password a URL
    can carry (`https://alice:secret@host/...` is shown as `https://***@host/...`)."""
    return _USERINFO.sub("***@", url)


def _silence_seconds() -> float:
    try:
        seconds = float(os.environ.get("GITGW_SYNC_TIMEOUT", SILENCE_LIMIT))
    except ValueError:
        return SILENCE_LIMIT
    return seconds if seconds > 0 else SILENCE_LIMIT


@contextlib.contextmanager
def _silence_limit() -> Iterator[None]:
    # dulwich's clients take no time limit of their own for git://; both it and urllib3
    # (for http) use the default of the sockets they make.
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_silence_seconds())
    try:
        yield
    finally:
        socket.setdefaulttimeout(before)


def remote_url(repo: StateRepo, remote: str) -> tuple[str, str | None]:
    """(url, remote name) for a configured remote name, or (url, None) for a URL or path."""
    config = repo.dulwich_repo.get_config()
    try:
        url = config.get((b"remote", remote.encode("utf-8")), b"url")
    except KeyError:
        if "://" in remote or remote.startswith(("/", ".")) or _SCP_LIKE.match(remote):
            return remote, None
        raise RemoteError(
            f"no remote named {remote!r} in {repo.path}",
            "add one with `git remote add NAME URL`, or pass a URL",
        ) from None
    return _absolute(repo, url.decode("utf-8")), remote


# Git's short form for ssh, `[user@]host:path`: a colon before any slash.
_SCP_LIKE = re.compile(r"[^/:]{2,}:")


def _absolute(repo: StateRepo, url: str) -> str:
    # A configured relative path means relative to the repository, wherever gitgw runs.
    if "://" in url or url.startswith("/") or _SCP_LIKE.match(url):
        return url
    return str((repo.path / url).resolve())


def _record_file(repo: StateRepo, remote: str) -> Path:
    # By the remote's name and where it points: a remote pointed at another server (a
    # migration, a new hub) has no earlier head there, rather than one it must descend
    # from for ever.
    try:
        url, _ = remote_url(repo, remote)
    except RemoteError:
        url = remote
    key = hashlib.sha256(f"{remote}\0{url}".encode()).hexdigest()[:16]
    return repo.gitgw_dir / "remotes" / key / repo.branch


def last_synced(repo: StateRepo, remote: str) -> str | None:
    """The remote head gitgw last took in or pushed (its own record, not a ref git moves)."""
    try:
        return _record_file(repo, remote).read_text().strip() or None
    except FileNotFoundError:
        return None


def remember_synced(repo: StateRepo, remote: str, head: str) -> None:
    """Record `head` as the remote's state branch after a successful sync."""
    atomic_write(_record_file(repo, remote), head.encode("ascii") + b"\n")


def _tracking(repo: StateRepo, remote: str) -> Ref | None:
    _, name = remote_url(repo, remote)
    if name is None:
        return None
    return Ref(b"refs/remotes/" + name.encode("utf-8") + b"/" + repo.branch.encode("utf-8"))


def _client(url: str) -> tuple[Any, str]:
    try:
        return get_transport_and_path(url)
    except ValueError as exc:
        raise RemoteError(f"cannot use remote {shown_url(url)}: {exc}") from exc


def _unreachable(url: str, exc: Exception) -> RemoteError:
    if isinstance(exc, (HTTPUnauthorized, HTTPProxyUnauthorized)):
        return RemoteError(
            f"{shown_url(url)} asks for credentials, and none it takes were given",
            "give them as git does (a credential in the remote's URL, or in ~/.git-credentials); "
            "local state is untouched",
        )
    if isinstance(exc, TimeoutError):
        reason = f"it sent nothing for {_silence_seconds():g} s (GITGW_SYNC_TIMEOUT)"
    elif isinstance(exc, ValueError):  # e.g. a web page where a Git server should answer
        reason = f"it does not answer as a Git server ({exc})"
    else:
        reason = str(exc) or type(exc).__name__
    return RemoteError(
        f"cannot reach {shown_url(url)}: {shown_url(reason)}",
        "local state is untouched; sync again when the remote is back",
    )


# What a remote's failure to answer can raise through dulwich: the network, the protocol,
# a missing repository, credentials refused, a time limit, an answer that is not Git's.
_UNREACHABLE = (
    OSError,
    HangupException,
    GitProtocolError,
    NotGitRepository,
    HTTPUnauthorized,
    HTTPProxyUnauthorized,
    ValueError,
)


def _set_tracking(repo: StateRepo, tracking: Ref, head: bytes) -> None:
    """Point the remote-tracking ref at `head`, if it can be done now. It is a courtesy to
    git's tools (gitgw keeps its own record of what it synced): another sync or `git fetch`
    holding its lock is left to set it, and a lock left by a killed one is broken."""
    for _ in range(2):
        try:
            repo.dulwich_repo.refs[tracking] = ObjectID(head)
            return
        except FileLocked:
            if not repo.break_stale_lock(tracking):
                return


def fetch(repo: StateRepo, remote: str) -> str | None:
    """Fetch the remote's state branch; its commit id, or None if it has none yet.

    A named remote's head is also kept at `refs/remotes/<name>/<branch>`.
    """
    url, _ = remote_url(repo, remote)
    client, path = _client(url)
    ref = repo.ref
    store = repo.dulwich_repo.object_store

    def wants(refs: Mapping[bytes, bytes], depth: int | None = None) -> list[bytes]:
        sha = refs.get(ref)
        return [sha] if sha and sha != _ZERO and ObjectID(sha) not in store else []

    target: Any = repo.dulwich_repo
    offered = _remote_heads_we_have(repo, remote)
    if offered:
        target = _Offering(repo.dulwich_repo, offered)
    try:
        with _silence_limit():
            result = client.fetch(path, target, determine_wants=wants)
    except _UNREACHABLE as exc:
        raise _unreachable(url, exc) from exc
    head: bytes | None = result.refs.get(ref)
    if head is None or head == _ZERO:
        return None
    tracking = _tracking(repo, remote)
    if tracking is not None:
        _set_tracking(repo, tracking, head)
    return head.decode("ascii")


def _remote_heads_we_have(repo: StateRepo, remote: str) -> list[ObjectID]:
    """Commits known to be on the remote that are here too: what a fetch offers."""
    tracking = _tracking(repo, remote)
    heads = [last_synced(repo, remote), repo.ref_value(tracking.decode()) if tracking else None]
    store = repo.dulwich_repo.object_store
    found = {ObjectID(h.encode("ascii")) for h in heads if h}
    return sorted(sha for sha in found if sha in store)


class _Offering:
    """The repository as a fetch sees it, offering only commits the remote already has.

    By default a fetch offers every local commit, newest first, until the server has
    seen enough, which walks the whole history on every sync. Offering the remote heads
    this repository already holds is enough for the server to send only what is new;
    after a rewrite on the remote it sends more, never less.
    """

    def __init__(self, repo: Any, heads: list[ObjectID]) -> None:
        self._repo = repo
        self._heads = heads

    def get_graph_walker(self, heads: Any = None) -> ObjectStoreGraphWalker:
        return ObjectStoreGraphWalker(self._heads, lambda sha: [])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._repo, name)


@dataclass(frozen=True)
class NotLanded:
    """Why a push did not land; the caller fetches, merges and tries again."""

    reason: str
    moved: bool  # the remote was not at the head expected: a race, not a stuck server


def push(repo: StateRepo, remote: str, new: str, expected: str | None) -> NotLanded | None:
    """Move the remote's state branch from `expected` to `new`: None once it has moved.

    The remote checks `expected` itself (git's push protocol names the old value), so
    this is a compare-and-swap. Otherwise why the server did not move it (the branch was
    not at `expected`, or it could not update it, e.g. a lock). A refusal (a hook's, a
    permission) raises.
    """
    url, _ = remote_url(repo, remote)
    client, path = _client(url)
    ref = repo.ref
    moved = False

    def update_refs(refs: dict[bytes, bytes]) -> dict[bytes, bytes]:
        nonlocal moved
        current = refs.get(ref)
        current = None if current in (None, _ZERO) else current
        if current != (expected.encode("ascii") if expected else None):
            moved = True
            return dict(refs)
        return {**refs, ref: new.encode("ascii")}

    def pack_data(
        have: Any,
        want: Any,
        *,
        ofs_delta: bool = False,
        progress: Callable[..., None] | None = None,
    ) -> tuple[int, Iterator[UnpackedObject]]:
        return pack_objects_to_data(objects_to_send(repo, want, have), ofs_delta=ofs_delta)

    said = bytearray()  # what the server says on the way (a hook's reasons, as `remote:`)
    try:
        with _silence_limit():
            result = client.send_pack(
                path.encode("utf-8"), update_refs, pack_data, progress=said.extend
            )
    except FileLocked as exc:  # a repository reached by its path: its ref is locked
        return NotLanded(f"its branch is locked ({exc})", moved=False)
    except SendPackError as exc:
        message = exc.args[0].decode("utf-8", "replace") if exc.args else str(exc)
        raise RemoteError(f"{shown_url(url)} refused the push: {message}{_told(said)}") from exc
    except _UNREACHABLE as exc:
        raise _unreachable(url, exc) from exc
    if moved:
        return NotLanded("its state branch moved", moved=True)
    error: str | None = (result.ref_status or {}).get(ref)
    if error is None:
        tracking = _tracking(repo, remote)
        if tracking is not None:
            _set_tracking(repo, tracking, new.encode("ascii"))
        return None
    # C git's receive-pack says only "failed to update ref" when its compare-and-swap
    # finds the branch moved after it advertised it (another push landed meanwhile).
    lost = ("non-fast-forward", "stale", "lock", "fetch first", "failed to update ref")
    if any(word in error for word in lost):
        return NotLanded(error + _told(said), moved=False)
    raise RemoteError(f"{shown_url(url)} refused the push of {repo.branch}: {error}{_told(said)}")


def _told(said: bytes | bytearray) -> str:
    """What the server said while refusing, as git shows it: one `remote:` line each."""
    lines = said.decode("utf-8", "replace").replace("\r", "\n").split("\n")
    # No control characters: a server's words must not drive the terminal they reach.
    lines = [_CONTROL.sub("", line).rstrip() for line in lines]
    shown = [f"\nremote: {line}" for line in lines if line]
    return "".join(shown[-20:])  # the reasons come last; a hook may say much before
