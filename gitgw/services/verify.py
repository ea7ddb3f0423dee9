"""`gitgw verify`: prove the state branch is what it claims to be.

Three things are checked. Every file matches its format (schema, digest, and the place
its id says). Over the whole history, no add-only record was modified or deleted after
it was added. And every earlier head this machine has seen (gitgw's own record of
heads, the branch's reflog, remote-tracking branches) is still in the branch's history:
a rewrite with plain git (an amended commit, a force push) leaves such a head behind,
and the records it held are compared with the branch as it is now.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from gitgw.concepts.checks import check_file
from gitgw.errors import GitgwError, InvalidRecord
from gitgw.records import KINDS, kind_of
from gitgw.state import StateRepo, changes_of, commits_oldest_first

__all__ = ["Problem", "Report", "verify"]

Progress = Callable[[int, int], None]

# The top-level names that can hold a mutable file. Everything under any other name is
# add-only or unknown, which the check of mutable files at the head would skip one path
# at a time; it skips those trees whole instead.
_MUTABLE_TOPS = frozenset(kind.template.split("/", 1)[0] for kind in KINDS if not kind.add_only)


@dataclass(frozen=True)
class Problem:
    """One thing that does not hold: where, since which commit, and why."""

    path: str
    commit: str
    reason: str


@dataclass
class Report:
    """What `verify` looked at and what it found."""

    head: str
    commits: int = 0
    files: int = 0
    records: int = 0
    witnesses: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether everything holds."""
        return not self.problems


def verify(repo: StateRepo, progress: Progress | None = None) -> Report:
    """Check the state branch's files, its history and the heads this machine has seen."""
    started = time.perf_counter()
    head = repo.require_head()
    report = Report(head=head)
    commits = commits_oldest_first(repo, head)
    report.commits = len(commits)
    added_in: dict[str, str] = {}
    for number, commit in enumerate(commits, 1):
        for change in changes_of(repo, commit):
            _check_change(repo, commit, change.path, change.old, change.new, added_in, report)
        if progress is not None and (number % 500 == 0 or number == len(commits)):
            progress(number, len(commits))
    _check_mutable_at_head(repo, head, report)
    _check_witnesses(repo, head, set(commits), report)
    repo.witness(head)
    report.seconds = time.perf_counter() - started
    return report


def _check_change(
    repo: StateRepo,
    commit: str,
    path: str,
    old: str | None,
    new: str | None,
    added_in: dict[str, str],
    report: Report,
) -> None:
    found = kind_of(path)
    if found is None:
        if new is not None:
            report.problems.append(Problem(path, commit, "is not a path gitgw knows"))
        return
    kind = found[0]
    if not kind.add_only:
        return  # mutable files are checked as they are at the head
    if old is None and new is not None:
        added_in.setdefault(path, commit)
        report.files += 1
        try:
            report.records += len(check_file(path, repo.blob(new)).records) or 1
        except InvalidRecord as exc:
            report.problems.append(Problem(path, commit, exc.reason))
        return
    first = added_in.get(path)
    since = f" (added in {first[:12]})" if first else ""
    what = "deleted" if new is None else "modified"
    report.problems.append(Problem(path, commit, f"add-only record was {what}{since}"))


def _mutable_candidates(repo: StateRepo, head: str) -> Iterator[tuple[str, str]]:
    """What `repo.walk("", head)` gives, in the same order, minus add-only-only trees."""
    root = repo.tree_of(head)
    if root is None:
        return
    for name, (mode, sha) in sorted(repo.trees.entries(root).items()):
        top = name.decode("utf-8")
        if top not in _MUTABLE_TOPS:
            continue
        if stat.S_ISDIR(mode):
            for path, blob in repo.trees.walk(sha, top + "/"):
                yield path, blob.decode("ascii")
        else:
            yield top, sha.decode("ascii")


def _check_mutable_at_head(repo: StateRepo, head: str, report: Report) -> None:
    for path, blob_id in _mutable_candidates(repo, head):
        found = kind_of(path)
        if found is None or found[0].add_only:
            continue
        report.files += 1
        try:
            check_file(path, repo.blob(blob_id))
        except InvalidRecord as exc:
            report.problems.append(Problem(path, _last_change(repo, head, path), exc.reason))


def _last_change(repo: StateRepo, head: str, path: str) -> str:
    # The newest commit whose version of `path` differs from its first parent's.
    commit = head
    blob = repo.read(path, commit)
    while True:
        parents = repo.commit_info(commit).parents
        if not parents or repo.read(path, parents[0]) != blob:
            return commit
        commit = parents[0]


def _check_witnesses(repo: StateRepo, head: str, history: set[str], report: Report) -> None:
    for sha, source in repo.witnessed_heads():
        report.witnesses += 1
        if sha in history:
            continue
        if not repo.has_object(sha):
            continue  # pruned long ago; nothing left to compare with
        lost = []
        try:
            old_tree = repo.tree_of(sha)
        except GitgwError:
            continue  # not a commit: nothing to compare with
        for path, old, new in repo.trees.diff(old_tree, repo.tree_of(head)):
            found = kind_of(path)
            if old is not None and found is not None and found[0].add_only:
                what = "deleted" if new is None else "modified"
                lost.append(Problem(path, sha, f"add-only record {what} by a rewrite of history"))
        report.problems.extend(lost)
        if not lost:
            report.problems.append(
                Problem(
                    "(history)",
                    sha,
                    f"history was rewritten: this head, known from {source}, "
                    "is no longer part of the branch",
                )
            )
