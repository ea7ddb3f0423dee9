"""`gitgw status`: where the state branch is and what it holds."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from gitgw.concepts.store import Store
from gitgw.errors import GitgwError
from gitgw.records import KINDS, kind_of
from gitgw.state import StateRepo

__all__ = ["RemoteStatus", "Status", "status"]


@dataclass(frozen=True)
class RemoteStatus:
    """The state branch as last fetched from a remote (no network is used)."""

    name: str
    url: str | None
    head: str | None
    ahead: int
    behind: int


@dataclass
class Status:
    """The head, the files per kind, and the remote's state."""

    repository: str
    branch: str
    head: str | None
    head_time: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    checked_out_in: str | None = None
    remote: RemoteStatus | None = None
    config_problem: str | None = None  # why gitgw.yaml cannot be read, if it cannot


def status(repo: StateRepo, remote: str = "origin") -> Status:
    """The status of `repo`'s state branch; the remote part only if `remote` is configured."""
    head = repo.require_head()
    result = Status(repository=str(repo.path.resolve()), branch=repo.branch, head=head)
    result.head_time = repo.commit_info(head).time
    counts: Counter[str] = Counter({kind.name: 0 for kind in KINDS if kind.model is not None})
    for path, _ in repo.walk():
        found = kind_of(path)
        if found is None:
            result.unknown.append(path)
        elif found[0].model is not None:
            counts[found[0].name] += 1
    result.counts = dict(counts)
    where = repo.checked_out_in()
    result.checked_out_in = None if where is None else str(where)
    result.remote = _remote_status(repo, head, remote)
    try:
        Store(repo).config()
    except GitgwError as exc:  # said here; the counts above do not need it
        result.config_problem = exc.message
    return result


def _remote_status(repo: StateRepo, head: str, remote: str) -> RemoteStatus | None:
    config = repo.config_value(b"remote", remote, b"url")
    if config is None:
        return None
    from gitgw.state import shown_url  # syncing's module, loaded only when there is a remote

    config = shown_url(config)
    remote_head = repo.ref_value(f"refs/remotes/{remote}/{repo.branch}")
    if remote_head is None:
        return RemoteStatus(remote, config, None, 0, 0)
    try:
        ahead, behind = repo.ahead_behind(head, remote_head)
    except GitgwError:
        ahead = behind = 0
    return RemoteStatus(remote, config, remote_head, ahead, behind)
