"""Fetching and pushing the state branch, over any transport dulwich speaks."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from dulwich.client import get_transport_and_path
from dulwich.errors import GitProtocolError, HangupException, NotGitRepository, SendPackError
from dulwich.object_store import ObjectStoreGraphWalker
from dulwich.objects import ObjectID
from dulwich.pack import UnpackedObject, pack_objects_to_data
from dulwich.refs import Ref

from gitgw._fs import atomic_write
from gitgw.errors import RemoteError
from gitgw.state.packing import objects_to_send
from gitgw.state.repo import StateRepo

__all__ = ["fetch", "last_synced", "push", "remember_synced", "remote_url"]

_ZERO = b"0" * 40


def remote_url(repo: StateRepo, remote: str) -> tuple[str, str | None]:
    """(url, remote name) for a configured remote name, or (url, None) for a URL or path."""
    config = repo.dulwich_repo.get_config()
    try:
        url = config.get((b"remote", remote.encode("utf-8")), b"url")
    except KeyError:
        if "://" in remote or remote.startswith(("/", ".")) or "@" in remote:
            return remote, None
        raise RemoteError(
            f"no remote named {remote!r} in {repo.path}",
            "add one with `git remote add NAME URL`, or pass a URL",
        ) from None
    return _absolute(repo, url.decode("utf-8")), remote


def _absolute(repo: StateRepo, url: str) -> str:
    # A configured relative path means relative to the repository, wherever gitgw runs.
    if "://" in url or url.startswith("/") or ("@" in url and ":" in url):
        return url
    return str((repo.path / url).resolve())


def _record_file(repo: StateRepo, remote: str) -> Path:
    key = hashlib.sha256(remote.encode("utf-8")).hexdigest()[:16]
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
        raise RemoteError(f"cannot use remote {url}: {exc}") from exc


def _unreachable(url: str, exc: Exception) -> RemoteError:
    reason = str(exc) or type(exc).__name__
    return RemoteError(
        f"cannot reach {url}: {reason}",
        "local state is untouched; sync again when the remote is back",
    )


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
        result = client.fetch(path, target, determine_wants=wants)
    except (OSError, HangupException, GitProtocolError, NotGitRepository) as exc:
        raise _unreachable(url, exc) from exc
    head: bytes | None = result.refs.get(ref)
    if head is None or head == _ZERO:
        return None
    tracking = _tracking(repo, remote)
    if tracking is not None:
        repo.dulwich_repo.refs[tracking] = ObjectID(head)
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


def push(repo: StateRepo, remote: str, new: str, expected: str | None) -> bool:
    """Move the remote's state branch from `expected` to `new`.

    The remote checks `expected` itself (git's push protocol names the old value), so
    this is a compare-and-swap: False means the remote moved and the caller should
    fetch, merge and try again.
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

    try:
        result = client.send_pack(path.encode("utf-8"), update_refs, pack_data)
    except SendPackError as exc:
        message = exc.args[0].decode("utf-8", "replace") if exc.args else str(exc)
        raise RemoteError(f"{url} refused the push: {message}") from exc
    except (OSError, HangupException, GitProtocolError, NotGitRepository) as exc:
        raise _unreachable(url, exc) from exc
    if moved:
        return False
    error = (result.ref_status or {}).get(ref)
    if error is None:
        tracking = _tracking(repo, remote)
        if tracking is not None:
            repo.dulwich_repo.refs[tracking] = ObjectID(new.encode("ascii"))
        return True
    # C git's receive-pack says only "failed to update ref" when its compare-and-swap
    # finds the branch moved after it advertised it (another push landed meanwhile).
    lost = ("non-fast-forward", "stale", "lock", "fetch first", "failed to update ref")
    if any(word in error for word in lost):
        return False
    raise RemoteError(f"{url} refused the push of {repo.branch}: {error}")
