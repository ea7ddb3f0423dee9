"""`gitgw sync`: fetch the remote's state branch, merge it, push the result.

Add-only records have unique names, so the merge is their union and never conflicts.
When a mutable file (config, workflow, memory note) was changed on both sides, the
local version stays in place, the remote one is kept under `conflicts/<id>/files/`, and
a conflict record says so; when one side deleted a file the other changed, the change
stays and a conflict record says that: nothing is dropped or undone silently. A push
that loses a race (the remote moved meanwhile) is retried after another fetch and merge.

A remote whose history was rewritten (its earlier head is gone, or an add-only record
differs between the two sides) is never merged: sync stops, and `gitgw verify` names
the records the rewrite altered (the fetched head stays in the remote-tracking ref).
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass, field

from gitgw._clock import Clock, default_clock
from gitgw.concepts.checks import check_file, is_add_only
from gitgw.concepts.store import Store
from gitgw.errors import Contention, GitgwError, RemoteError, StateBranchMissing
from gitgw.records import Conflict, render
from gitgw.services.verify import check_incoming
from gitgw.state import (
    StateRepo,
    fetch,
    last_synced,
    merge_heads,
    push,
    remember_synced,
    shown_url,
)

__all__ = ["SyncResult", "configured_remote", "sync"]

_ATTEMPTS = 8
# Pushes in a row that fail while the remote's branch stays where it is: no race, a server
# that cannot move it.
_STUCK = 3


@dataclass
class SyncResult:
    """What a sync did."""

    remote: str
    local_before: str | None
    remote_before: str | None
    head: str | None = None
    action: str = "up-to-date"  # up-to-date | fast-forward | merged | pushed | merged+pushed
    pushed: bool = False
    attempts: int = 0
    conflicts: list[Conflict] = field(default_factory=list)  # set aside by this sync
    # Set aside by a sync elsewhere, and taken in now: one of those versions may be
    # this machine's, replaced by the other side's.
    arrived: list[Conflict] = field(default_factory=list)


def configured_remote(repo: StateRepo) -> str:
    """The remote named by `sync.remote` in gitgw.yaml (default: origin)."""
    try:
        return Store(repo).config().sync.remote
    except GitgwError:
        return "origin"  # an unreadable config must not stop a sync that could repair it


def sync(repo: StateRepo, remote: str, clock: Clock | None = None) -> SyncResult:
    """Bring the local and remote state branches to the same commit."""
    clock = clock or default_clock()
    # Shown as given, but never with credentials a URL may carry: this name goes into
    # messages, the JSON result and the merge commit's message.
    result = SyncResult(remote=shown_url(remote), local_before=repo.head(), remote_before=None)
    shown = result.remote
    # The remote head at each failed push in a row that found it where it was fetched.
    stuck: list[str | None] = []
    for attempt in range(1, _ATTEMPTS + 1):
        result.attempts = attempt
        # gitgw's own record of the remote head it last took in: unlike the tracking ref,
        # a refused fetch does not move it, so a rewrite stays refused until a person acts.
        known = last_synced(repo, remote)
        remote_head = fetch(repo, remote)
        if attempt == 1:
            result.remote_before = remote_head
        if known and (remote_head is None or not repo.is_ancestor(known, remote_head)):
            raise _rewritten(shown, f"its earlier head {known[:12]} is no longer in its history")
        local = repo.head()
        if local is None and remote_head is None:
            raise StateBranchMissing(
                f"neither {repo.path} nor {shown} has a state branch {repo.branch!r}",
                f"{repo.init_hint()}, then sync",
            )
        merged = _integrate(repo, local, remote_head, clock, result)
        if merged is None:
            continue  # the local branch moved while merging: start over
        result.head = merged
        if merged == remote_head:
            remember_synced(repo, remote, merged)
            return result
        _check_outgoing(repo, shown, remote_head, merged)
        missed = push(repo, remote, merged, remote_head)
        if missed is None:
            remember_synced(repo, remote, merged)
            result.pushed = True
            result.action = "pushed" if result.action == "up-to-date" else result.action + "+pushed"
            return result
        stuck = [] if missed.moved else [*stuck, remote_head]
        if len(stuck) >= _STUCK and len(set(stuck[-_STUCK:])) == 1:
            raise RemoteError(
                f"{shown} did not take the push, and its state branch did not move: "
                f"{missed.reason}",
                "your local state is intact; the server could not update the branch (a "
                f"lock left on it, refs/heads/{repo.branch}.lock, does this): once that is "
                "cleared there, run `gitgw sync` again",
            )
        # Someone pushed first (a busy daemon writes several commits a second): back off
        # a random, growing while, so two writers do not keep colliding in step.
        time.sleep(random.uniform(0, min(1.0, 0.025 * 2**attempt)))
    raise Contention(
        f"{shown} kept moving; gave up after {_ATTEMPTS} attempts",
        "your local state is intact; run `gitgw sync` again",
    )


def _check_outgoing(repo: StateRepo, remote: str, remote_head: str | None, head: str) -> None:
    """Refuse to push commits the other machines' syncs (and the remote's hook) would
    refuse to take in: one machine's tampered history would stop everyone's syncs."""
    problems = check_incoming(repo, [remote_head] if remote_head else [], head)
    if problems:
        first = problems[0]
        raise RemoteError(
            f"refusing to push to {remote}: the local history has {len(problems)} "
            f"problem(s), e.g. {first.path}: {first.reason} [commit {first.commit[:12]}]",
            "nothing was pushed; the commits named must be repaired here first (other "
            "machines would refuse them); `gitgw verify` lists the problems of the records",
        )


def _rewritten(remote: str, why: str) -> RemoteError:
    return RemoteError(
        f"refusing to merge: the state branch on {remote} was rewritten ({why})",
        "nothing was merged or pushed; run `gitgw verify` to see which records differ",
    )


def _integrate(
    repo: StateRepo, local: str | None, remote_head: str | None, clock: Clock, result: SyncResult
) -> str | None:
    """The local head after taking in `remote_head`; None if the local branch moved."""
    if remote_head is None or local == remote_head:
        return local
    if local is None or not repo.is_ancestor(remote_head, local):
        # What comes in passes the checks a push would: nothing invalid, no add-only
        # record modified or deleted, whether it arrives by fast-forward or by merge.
        problems = check_incoming(repo, [local] if local else [], remote_head)
        if problems:
            first = problems[0]
            raise RemoteError(
                f"refusing to take in the state branch of {result.remote}: "
                f"{len(problems)} problem(s), e.g. {first.path}: {first.reason} "
                f"[commit {first.commit[:12]}]",
                "nothing was merged; the remote's history must be repaired there "
                "(its pre-receive hook would have refused this push)",
            )
    if local is None or repo.is_ancestor(local, remote_head):
        if not repo.set_head(remote_head, local):
            return None
        result.action = "fast-forward"
        result.arrived = _conflicts_between(repo, local, remote_head)
        return remote_head
    if repo.is_ancestor(remote_head, local):
        return local
    merge = merge_heads(repo, local, remote_head)
    tampered = [c.path for c in merge.conflicts if is_add_only(c.path)]
    if tampered:
        raise _rewritten(result.remote, f"add-only record {tampered[0]} differs on the two sides")
    extra: dict[str, bytes] = {}
    conflicts = []
    for found in merge.conflicts:
        conflict_id = clock.new_id()
        kept_at = None
        if found.theirs is not None:  # changed on both sides: theirs is set aside
            kept_at = f"conflicts/{conflict_id}/files/{found.path}"
            extra.update(_set_aside(repo, found.theirs, found.theirs_tree, kept_at))
        record = Conflict(
            id=conflict_id,
            path=found.path,
            ours=local,
            theirs=remote_head,
            kept_at=kept_at,
            deleted=found.deleted,
            created=clock.now(),
        )
        path, data = render(record)
        check_file(path, data)
        extra[path] = data
        conflicts.append(record)
    tree = repo.add_files(merge.tree, extra) if extra else merge.tree
    message = f"gitgw: sync with {result.remote}" + (
        f" ({len(conflicts)} conflict(s) kept aside)" if conflicts else ""
    )
    new_head = repo.commit_tree(tree, [local, remote_head], message, expect=local)
    if new_head is None:
        return None
    result.conflicts.extend(conflicts)
    result.arrived = _conflicts_between(repo, local, remote_head)
    result.action = "merged"
    return new_head


def _set_aside(repo: StateRepo, theirs: str, is_tree: bool, kept_at: str) -> dict[str, bytes]:
    """The files of the remote version (a file, or a directory that replaced one) at `kept_at`."""
    if not is_tree:
        return {kept_at: repo.blob(theirs)}
    return {
        f"{kept_at}/{path}": repo.blob(blob.decode("ascii"))
        for path, blob in repo.trees.walk(theirs.encode("ascii"))
    }


def _conflicts_between(repo: StateRepo, local: str | None, taken_in: str) -> list[Conflict]:
    """The conflict records `taken_in` holds and `local` did not."""
    if local is None:
        return []  # a first sync: nothing of this machine's was set aside
    found = []
    for path, before, after in repo.trees.diff(repo.tree_of(local), repo.tree_of(taken_in)):
        if before is None and after is not None and path.endswith("/conflict.yaml"):
            with contextlib.suppress(GitgwError):  # verify names a record that is not one
                record = check_file(path, repo.blob(after.decode("ascii"))).records[0]
                if isinstance(record, Conflict):
                    found.append(record)
    return found
