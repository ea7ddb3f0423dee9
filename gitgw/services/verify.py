"""`gitgw verify`: prove the state branch is what it claims to be.

Three things are checked. Every file matches its format (schema, digest, and the place
its id says). Over the whole history, no add-only record was modified or deleted after
it was added. And every earlier head this machine has seen (gitgw's own record of
heads, the branch's reflog, remote-tracking branches) is still in the branch's history:
a rewrite with plain git (an amended commit, a force push) leaves such a head behind,
and the records it held are compared with the branch as it is now.

A file's format check depends only on its path and its bytes, and a blob id is the hash
of its bytes: so the (path, blob) pairs already proven are remembered, derived and
rebuildable, under `.git/gitgw/verified/`, in a file named by a fingerprint of this
version of gitgw and its schemas. The history walk and every add-only and rewrite check
run every time; only the parsing of files already proven is skipped. `--no-cache` (or
deleting the directory) makes a run check every file from scratch. With `secrets`, each
file also passes the secrets guard (the hooks and every gitgw write always run it).
"""

from __future__ import annotations

import contextlib
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from gitgw._collector import collector_paused
from gitgw.concepts import receipts
from gitgw.concepts.checks import check_file, is_add_only
from gitgw.concepts.store import CONFIG_PATH
from gitgw.errors import GitgwError, InvalidRecord
from gitgw.records import KINDS, kind_of
from gitgw.records.layout import kind_at
from gitgw.services.verify_cache import ProvenFiles
from gitgw.services.verify_files import PARALLEL_FROM, FileChecks, default_workers
from gitgw.state import (
    StateRepo,
    changes_along,
    changes_of,
    commits_oldest_first,
    last_synced,
)
from gitgw.state.history import commits_since

__all__ = ["Problem", "Report", "check_incoming", "verify"]

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
    cached: int = 0  # files whose format was proven by an earlier run
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether everything holds."""
        return not self.problems


@dataclass
class _Checker:
    repo: StateRepo
    report: Report
    proven: ProvenFiles
    files: FileChecks
    added_in: dict[str, tuple[str, str]] = field(default_factory=dict)  # commit, blob
    # For commits checked on their own (a push, a sync): the trees of the heads already
    # known, whose records an incoming commit may not add again with other content.
    known_trees: list[bytes] = field(default_factory=list)
    # For commits checked on their way to a head (a sync): the mutable files they
    # change, checked as they are at that head. A whole history's are checked at its head.
    mutable_changed: set[str] | None = None
    # Problems in the order the walk meets them: a file's verdict arrives later, so each
    # carries the number of the change that raised it.
    found: list[tuple[int, Problem]] = field(default_factory=list)
    waiting: dict[int, str] = field(default_factory=dict)  # the commit that added each file
    # Each batch's record ids, whose names are not their files': (change, path, commit, ids).
    batches: list[tuple[int, str, str, list[str]]] = field(default_factory=list)
    given: dict[str, tuple[str, str]] = field(default_factory=dict)  # id: its batch, commit
    seq: int = 0

    def change(self, commit: str, path: str, old: str | None, new: str | None) -> None:
        self.seq += 1
        kind = kind_at(path)
        if kind is None:
            if new is not None:
                self.problem(path, commit, "is not a path gitgw knows")
            return
        if not kind.add_only:
            if self.mutable_changed is not None and new is not None:
                self.mutable_changed.add(path)
            return  # mutable files are checked as they are at the head
        first = self.added_in.get(path)
        since = f" (added in {first[0][:12]})" if first else ""
        if old is None and new is not None:
            if first is None:
                self.added_in[path] = (commit, new)
                if not self.known_trees or not self._known_elsewhere(path, commit, new):
                    self.file(commit, path, new)
            elif first[1] != new:  # a side branch "adds" it again, differently
                self.problem(path, commit, f"add-only record was added again, changed{since}")
            return
        what = "deleted" if new is None else "modified"
        self.problem(path, commit, f"add-only record was {what}{since}")

    def _known_elsewhere(self, path: str, commit: str, blob: str) -> bool:
        for tree in self.known_trees:
            found = self.repo.trees.lookup(tree, path)
            if found is not None and found[1].decode("ascii") != blob:
                self.problem(path, commit, "add-only record is already on the branch, changed")
                return True
        return False

    def file(self, commit: str, path: str, blob: str) -> None:
        self.report.files += 1
        known = self.proven.known.get((path, blob)) if self.proven.known else None
        if known is not None and path.endswith(".jsonl"):
            ids = self.proven.batch_ids(blob, known)
            if ids is None:
                known = None  # proven before its ids were kept: read it again
            else:
                self.batches.append((self.seq, path, commit, ids))
        if known is not None:
            self.report.cached += 1
            self.report.records += known
            return
        self.waiting[self.seq] = commit
        self.files.add(self.seq, path, blob)

    def finish(self) -> None:
        """Take in the verdicts on the files, and order the problems as the walk met them."""
        remember = self.proven.path is not None  # not for a run without the cache
        for files, (counts, refused, batches) in self.files.results():
            self.report.records += sum(counts)
            if refused:
                for seq, path, _blob in files:
                    if seq in refused:
                        self.found.append((seq, Problem(path, self.waiting[seq], refused[seq])))
            if batches:
                for seq, path, _blob in files:
                    if seq in batches:
                        self.batches.append((seq, path, self.waiting[seq], batches[seq]))
            if remember:
                for (seq, path, blob), count in zip(files, counts, strict=True):
                    if seq not in refused:
                        self.proven.add(path, blob, count, batches.get(seq))
        self.waiting.clear()
        self._given_twice()
        self.found.sort(key=lambda item: item[0])
        self.report.problems.extend(problem for _, problem in self.found)
        self.found.clear()

    def _given_twice(self) -> None:
        # A batch's records are named by their ids, not by their file: a record given
        # again in another batch (or twice in one) would stand for the first one.
        first = self.given
        self.batches.sort(key=lambda item: item[0])
        for seq, path, commit, ids in self.batches:
            for record in ids:
                where = first.get(record)
                if where is None:
                    first[record] = (path, commit)
                else:
                    reason = receipts.given_again(record, where[0])
                    self.found.append((seq, Problem(path, commit, reason)))
        self.batches.clear()

    def problem(self, path: str, commit: str, reason: str) -> None:
        self.found.append((self.seq, Problem(path, commit, reason)))

    def passed_over(self, commit: str) -> None:
        """Name what the diff of `commit` passed over: links, submodules, names twice."""
        odd = self.repo.trees.odd
        if odd:
            for path, reason in odd:
                self.problem(path, commit, reason)
            odd.clear()


def verify(
    repo: StateRepo,
    progress: Progress | None = None,
    *,
    secrets: bool = False,
    cache: bool = True,
    workers: int | None = None,
    parallel_from: int = PARALLEL_FROM,
) -> Report:
    """Check the state branch's files, its history and the heads this machine has seen.

    The format checks of files are shared among `workers` processes (default: the
    cores, at most four) once the history holds `parallel_from` records or so to check.
    """
    started = time.perf_counter()
    head = repo.require_head()
    report = Report(head=head)
    repo.trees.index_packs()  # the walk reads every tree in history, and the checks most blobs
    files = FileChecks(repo, secrets, workers or default_workers(), parallel_from)
    checker = _Checker(repo, report, ProvenFiles(repo, secrets, cache), files)
    # The walk makes hundreds of thousands of short-lived tuples and sets and no cycles:
    # the collector's passes over them cost 5-10% of this process's CPU.
    repo.trees.odd = []
    try:
        with collector_paused(keep=True):
            commits = commits_oldest_first(repo, head)
            report.commits = len(commits)
            for number, (commit, changes) in enumerate(
                zip(commits, changes_along(repo, commits), strict=True), 1
            ):
                for path, old, new in changes:
                    checker.change(commit, path, old, new)
                checker.passed_over(commit)
                if progress is not None and (number % 500 == 0 or number == len(commits)):
                    progress(number, len(commits))
            # The mutable files at the head are checked while the other processes check
            # their share of the walk's files, before this one checks its own; their
            # problems come after the walk's in the report.
            files.send_rest()
            at_head = _check_mutable_at_head(checker, head, secrets)
            checker.finish()
    finally:
        files.close()  # after an error too: no process left checking what nobody reads
        repo.trees.odd = None
    # A name twice in a tree that one commit made is met by the walk too: named once.
    named = {(problem.path, problem.reason) for problem in report.problems}
    report.problems.extend(p for p in at_head if (p.path, p.reason) not in named)
    _check_witnesses(repo, head, set(commits), report)
    checker.proven.save()
    repo.witness(head)
    report.seconds = time.perf_counter() - started
    return report


# Commits to check past which reading the packs in bulk pays (a first sync).
_MANY_COMMITS = 100


def check_incoming(repo: StateRepo, known: Iterable[str], incoming: str) -> list[Problem]:
    """The problems the commits of `incoming` that `known` heads lack would bring in: invalid
    files, unknown paths, add-only records modified or deleted (what the hooks refuse), and
    the mutable files they change, as they are at `incoming`."""
    seen: set[str] = set()
    known = list(known)
    for head in known:
        seen |= repo.ancestors(head)
    return check_commits(repo, commits_since(repo, incoming, seen), known, head=incoming)


def check_commits(
    repo: StateRepo, commits: Iterable[str], known: Iterable[str] = (), head: str | None = None
) -> list[Problem]:
    """The problems `commits` (oldest first) bring, judged as the hooks judge a push:
    invalid or unknown files, secrets, add-only records modified or deleted, or added
    again with other content than the `known` heads hold.

    With `head`, the commit they lead to (a sync), the mutable files they change are
    checked as they are there, like verify's at a branch's head: an old version that
    today's rules would refuse stays history. Without it (the daemon, which keeps a
    workflow's last valid version), mutable files are left to their readers."""
    commits, known = list(commits), list(known)
    report = Report(head="")
    # A long history (a first sync) is read in bulk, and its files are checked by the
    # cores as verify's are; a few commits' stay in this process.
    bulk = repo.trees.bulk_reads() if len(commits) > _MANY_COMMITS else contextlib.nullcontext()
    files = FileChecks(repo, secrets=True, workers=default_workers(), threshold=PARALLEL_FROM)
    checker = _Checker(repo, report, ProvenFiles(repo, secrets=True, enabled=False), files)
    checker.known_trees = [tree for head in known if (tree := repo.tree_of(head)) is not None]
    checker.mutable_changed = set() if head is not None else None
    repo.trees.odd = []
    try:
        with bulk:
            for commit in commits:
                for change in changes_of(repo, commit):
                    checker.change(commit, change.path, change.old, change.new)
                checker.passed_over(commit)
            checker.finish()
    finally:
        files.close()
        repo.trees.odd = None
    if head is not None and checker.mutable_changed:
        report.problems.extend(_mutable_changed_at(repo, head, checker.mutable_changed))
    if head is not None and checker.given and known == [repo.head()]:
        # Taking commits in (a sync): the receipts index reflects the branch's head,
        # which is what they are compared with.
        report.problems.extend(_given_before(repo, checker.given))
    return report.problems


def _given_before(repo: StateRepo, given: dict[str, tuple[str, str]]) -> list[Problem]:
    """A receipt of the new batches whose id a batch on the branch gives already."""
    batch_of = {record: path for record, (path, _) in given.items()}
    return [
        Problem(given[record][0], given[record][1], receipts.given_again(record, where))
        for record, where in receipts.given_before(repo, batch_of)
    ]


def _mutable_changed_at(repo: StateRepo, head: str, paths: set[str]) -> list[Problem]:
    """The problems of the mutable files at `paths` as they are at `head`, and any name
    a tree holding mutable files gives twice there (a commit that makes one changes a
    mutable path too)."""
    problems = _named_twice_at(repo, head)
    for path in sorted(paths):
        data = repo.read(path, head)
        if data is None:
            continue  # deleted again on the way
        try:
            check_file(path, data)
        except InvalidRecord as exc:
            problems.append(Problem(path, _last_change(repo, head, path), exc.reason))
    return problems


def _mutable_candidates(repo: StateRepo, head: str) -> Iterator[tuple[str, str]]:
    """What `repo.walk("", head)` gives, in the same order, minus add-only-only trees."""
    root = repo.tree_of(head)
    if root is None:
        return
    for name, (mode, sha) in sorted(repo.trees.entries(root).items()):
        top = name.decode("utf-8", "backslashreplace")
        if top not in _MUTABLE_TOPS:
            continue
        if stat.S_ISDIR(mode):
            for path, blob in repo.trees.walk(sha, top + "/"):
                yield path, blob.decode("ascii")
        elif stat.S_ISREG(mode):  # a link or a submodule was named where the walk met it
            yield top, sha.decode("ascii")


def _names_twice(repo: StateRepo, tree: bytes, prefix: str = "") -> Iterator[str]:
    """The paths a tree holding mutable files gives twice, at any depth: git and gitgw
    may each read another of the two (git's fsck refuses such a tree)."""
    for name in repo.trees.names_twice(tree):
        yield prefix + name.decode("utf-8", "backslashreplace")
    for name, (mode, sha) in sorted(repo.trees.entries(tree).items()):
        top = name.decode("utf-8", "backslashreplace")
        if stat.S_ISDIR(mode) and (prefix or top in _MUTABLE_TOPS):
            yield from _names_twice(repo, sha, f"{prefix}{top}/")


def _named_twice_at(repo: StateRepo, head: str) -> list[Problem]:
    root = repo.tree_of(head)
    return [
        Problem(path, _last_change(repo, head, path), "the tree holds this name twice")
        for path in (_names_twice(repo, root) if root is not None else ())
    ]


def _check_mutable_at_head(checker: _Checker, head: str, secrets: bool) -> list[Problem]:
    repo, report = checker.repo, checker.report
    problems = _named_twice_at(repo, head)
    for path, blob_id in _mutable_candidates(repo, head):
        found = kind_of(path)
        if found is None or found[0].add_only:
            continue
        report.files += 1
        try:
            check_file(path, repo.blob(blob_id), guards=secrets)
        except InvalidRecord as exc:
            problems.append(Problem(path, _last_change(repo, head, path), exc.reason))
    if repo.read(CONFIG_PATH, head) is None:
        problems.append(
            Problem(
                CONFIG_PATH,
                _last_change(repo, head, CONFIG_PATH),
                "is missing: every command that needs the config refuses to run",
            )
        )
    return problems


def _last_change(repo: StateRepo, head: str, path: str) -> str:
    # The newest commit whose entry at `path` (a file or a directory) differs from its
    # first parent's.
    commit = head
    entry = repo.trees.lookup(repo.tree_of(commit), path)
    while True:
        parents = repo.commit_info(commit).parents
        if not parents or repo.trees.lookup(repo.tree_of(parents[0]), path) != entry:
            return commit
        commit = parents[0]


def _check_witnesses(repo: StateRepo, head: str, history: set[str], report: Report) -> None:
    for sha, source in repo.witnessed_heads():
        report.witnesses += 1
        if sha in history or repo.remote_of(source) is not None:
            continue  # a remote's head is judged below, with what the remote had before
        if not repo.has_object(sha):  # the branch was there once; its commits were pruned
            report.problems.append(
                Problem(
                    "(history)",
                    sha,
                    f"history was rewritten: this head, known from {source}, is no longer "
                    "part of the branch and its commits are gone (pruned), so the records "
                    "it held cannot be compared",
                )
            )
            continue
        try:
            old_tree = repo.tree_of(sha)
        except GitgwError:
            continue  # not a commit: nothing to compare with
        lost = _lost_records(repo, old_tree, repo.tree_of(head), "by a rewrite of history", sha)
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
    # Every remote's tracking ref, even one pointing at a head known from elsewhere too:
    # its reflog may still hold a head the remote's history has lost since.
    named = {problem.path for problem in report.problems}
    for ref_name, tracked in repo.tracking_refs().items():
        remote = repo.remote_of(ref_name)
        if remote is not None:
            found = _remote_rewrites(repo, head, tracked, remote, tracked in history)
            report.problems.extend(problem for problem in found if problem.path not in named)


def _lost_records(
    repo: StateRepo, old: bytes | None, new: bytes | None, how: str, commit: str
) -> list[Problem]:
    """The add-only records of tree `old` that tree `new` lacks or holds changed."""
    lost = []
    for path, before, after in repo.trees.diff(old, new):
        if before is not None and is_add_only(path):
            what = "deleted" if after is None else "modified"
            lost.append(Problem(path, commit, f"add-only record {what} {how}"))
    return lost


def _remote_rewrites(
    repo: StateRepo, head: str, tracked: str, remote: str, taken_in: bool
) -> list[Problem]:
    """What a remote's head shows of a rewrite (`taken_in`: the branch's history holds it).

    Being ahead (or apart, before a sync) is no rewrite. A remote head that no longer
    descends from one it had before (the head `gitgw sync` last took in from that
    remote, or one its tracking ref's reflog recorded) is: the records that head held
    and this one lacks or changed are named. Of a head not taken in yet, a record it
    holds with other content than the branch is a modification on one side or the
    other; and where the remote is ahead (its history holds the branch's head), a record
    of the branch it lacks was deleted there. (The walk judged a head taken in.)"""
    if not repo.has_object(tracked):
        return []
    ours, theirs = repo.tree_of(head), repo.tree_of(tracked)
    history = repo.ancestors(tracked)
    earlier = [
        last_synced(repo, remote),
        *repo.reflog_heads(f"refs/remotes/{remote}/{repo.branch}"),
    ]
    # The heads the remote had that its history no longer holds, oldest first.
    dropped = [
        sha
        for sha in dict.fromkeys(sha for sha in earlier if sha is not None)
        if sha not in history and repo.has_object(sha)
    ]
    problems: list[Problem] = []
    how = f"by a rewrite of history on {remote}"
    for sha in dropped:
        named = {problem.path for problem in problems}
        problems += [
            problem
            for problem in _lost_records(repo, repo.tree_of(sha), theirs, how, tracked)
            if problem.path not in named
        ]
    named = {problem.path for problem in problems}
    ahead = head in history
    for path, before, after in () if taken_in else repo.trees.diff(ours, theirs):
        if before is None or path in named or not is_add_only(path):
            continue
        if after is not None:
            problems.append(
                Problem(path, tracked, f"add-only record differs on {remote}: one side modified it")
            )
        elif ahead:
            problems.append(Problem(path, tracked, f"add-only record was deleted on {remote}"))
    if dropped and not problems:
        problems.append(
            Problem(
                "(history)",
                tracked,
                f"the state branch on {remote} was rewritten: its earlier head "
                f"{dropped[0][:12]} is no longer in its history",
            )
        )
    return problems
