"""The hooks: gitgw's checks on a person's commit and on a push, as on gitgw's own writes.

- `check_paths` runs on files of a clone of the state branch (the pre-commit framework
  passes them): `validate` is the format check (schema, digest, place), `secrets` is the
  secrets guard.
- `staged_append_only` compares what is staged with HEAD: an add-only record must not be
  modified or deleted.
- `pre_receive` runs on a server, on the lines git gives a pre-receive hook. For a push
  to the state branch it checks every commit the push brings: each file it adds or
  changes (format and secrets), that it modifies or deletes no add-only record relative
  to any parent, that no receipt it adds is given already (by the branch, through its
  receipts index, or by the push itself), and that the branch only moves forward.

All of them speak to Git through the `git` command, which sees a push's objects while
git keeps them in quarantine (before the hook accepts them).
"""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gitgw.concepts import receipts
from gitgw.concepts.checks import check_file, is_add_only
from gitgw.concepts.secrets import scan
from gitgw.errors import GitgwError, InvalidRecord
from gitgw.records import parse_file
from gitgw.state import StateRepo

__all__ = [
    "Problem",
    "check_paths",
    "hook_script",
    "install_server_hook",
    "pre_receive",
    "staged_append_only",
]

ZERO = "0" * 40
HOOK_MARK = "gitgw pre-receive hook"
# Files a clone of the state branch may hold that are not gitgw's: the framework's config.
IGNORED = frozenset({".pre-commit-config.yaml"})


@dataclass(frozen=True)
class Problem:
    """A file that fails a check, and why (`commit` when it came from a push)."""

    path: str
    reason: str
    commit: str | None = None

    def __str__(self) -> str:
        where = f" (commit {self.commit[:12]})" if self.commit else ""
        return f"{self.path}: {self.reason}{where}"


def _git(*args: str, cwd: Path | None = None, data: bytes | None = None) -> bytes:
    done = subprocess.run(["git", *args], cwd=cwd, input=data, capture_output=True, check=False)
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip()
        raise GitgwError(f"git {' '.join(args[:2])} failed: {message}")
    return done.stdout


def _toplevel(cwd: Path) -> Path:
    return Path(_git("rev-parse", "--show-toplevel", cwd=cwd).decode().strip())


# -- in a clone (the pre-commit framework) ------------------------------------------------


def check_paths(which: str, paths: Iterable[str], cwd: Path | None = None) -> list[Problem]:
    """Run the `validate` or `secrets` check on files of a clone of the state branch.

    With no paths, every file git tracks in the clone is checked.
    """
    here = Path(cwd or Path.cwd())
    top = _toplevel(here)
    given = list(paths)
    if not given:
        listed = _git("ls-files", "-z", cwd=top).decode("utf-8").split("\0")
        given = [str(top / p) for p in listed if p]
    problems: list[Problem] = []
    for name in given:
        file = (here / name).resolve()
        if not file.is_relative_to(top.resolve()):
            problems.append(Problem(name, f"is outside the repository at {top}"))
            continue
        rel = file.relative_to(top.resolve()).as_posix()
        if rel in IGNORED:
            continue
        try:
            data = file.read_bytes()
        except OSError as exc:
            problems.append(Problem(rel, f"cannot be read: {exc.strerror}"))
            continue
        if which == "validate":
            try:
                parse_file(rel, data)
            except InvalidRecord as exc:
                problems.append(Problem(rel, exc.reason))
        else:
            problems.extend(Problem(rel, f.describe()) for f in scan(rel, data))
    return problems


def staged_append_only(cwd: Path | None = None) -> list[Problem]:
    """Add-only records that the staged changes modify or delete (compared with HEAD)."""
    top = _toplevel(Path(cwd or Path.cwd()))
    try:
        _git("rev-parse", "--verify", "--quiet", "HEAD", cwd=top)
    except GitgwError:
        return []  # the first commit: nothing was added before it
    out = _git("diff", "--cached", "--name-status", "--no-renames", "-z", "HEAD", cwd=top)
    fields = out.decode("utf-8").split("\0")
    problems = []
    for status, path in zip(fields[0::2], fields[1::2], strict=False):
        if status[:1] in ("M", "D", "T") and is_add_only(path):
            what = "deleted" if status.startswith("D") else "modified"
            problems.append(Problem(path, f"add-only record was {what}"))
    return problems


# -- on a server (pre-receive) -------------------------------------------------------------


class _Blobs:
    """Blob contents through one `git cat-file --batch` process."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            ["git", "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    def read(self, sha: str) -> bytes:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(sha.encode("ascii") + b"\n")
        self.process.stdin.flush()
        header = self.process.stdout.readline().split()
        if len(header) < 3:
            raise GitgwError(f"git cat-file cannot read {sha}")
        data = self.process.stdout.read(int(header[2]))
        self.process.stdout.read(1)  # the newline after the contents
        return data

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait()


@dataclass(frozen=True)
class _Change:
    status: str
    old: str
    new: str
    path: str


Pair = tuple[str, str | None]  # (commit, the parent it is compared with; None for a root)


def _diffs(pairs: list[Pair]) -> dict[Pair, list[_Change]]:
    """The changes of each commit against the given parent, all from one `git diff-tree`."""
    found: dict[Pair, list[_Change]] = {pair: [] for pair in pairs}
    if not pairs:
        return found
    lines = "".join(f"{commit} {parent or ''}".rstrip() + "\n" for commit, parent in pairs)
    out = _git(
        "diff-tree", "--stdin", "-r", "--raw", "--no-renames", "-z", "--root", "--always",
        "--format=@%H %P", data=lines.encode("ascii"),
    )  # fmt: skip
    tokens = iter(out.decode("utf-8").split("\0"))
    current: list[_Change] = []
    for token in tokens:
        token = token.lstrip("\n")
        if token.startswith("@"):
            commit, _, parent = token[1:].partition(" ")
            current = found.setdefault((commit, parent.strip() or None), [])
        elif token.startswith(":"):
            meta, path = token.split(), next(tokens)
            current.append(_Change(meta[4][:1], meta[2], meta[3], path))
    return found


_Given = dict[str, tuple[str, str]]  # a pushed receipt's id: its batch file, its commit


def _check_commits(
    old: str, new: str, blobs: _Blobs, checked: set[tuple[str, str]], given: _Given
) -> list[Problem]:
    """Every commit the update from `old` to `new` brings to the state branch: those
    reachable from `new` and not from `old` (all of them for a new branch). Not "not
    in any ref": commits pushed to another branch first would pass unchecked."""
    since = ["--not", old] if old != ZERO else []
    listed = _git("rev-list", "--reverse", "--topo-order", "--parents", new, *since)
    commits = [(parts[0], parts[1:]) for parts in map(str.split, listed.decode().splitlines())]
    pairs: list[Pair] = []
    for commit, parents in commits:
        pairs.extend([(commit, parent) for parent in parents] or [(commit, None)])
    diffs = _diffs(pairs)
    problems = []
    for commit, parents in commits:
        first: Pair = (commit, parents[0] if parents else None)
        for change in diffs[first]:  # the files this commit brings, against its first parent
            if change.status in ("A", "M", "T") and (change.path, change.new) not in checked:
                checked.add((change.path, change.new))
                try:
                    parsed = check_file(change.path, blobs.read(change.new))
                except InvalidRecord as exc:
                    problems.append(Problem(change.path, exc.reason, commit))
                    continue
                for record in parsed.batch_ids():
                    first = given.setdefault(record, (change.path, commit))
                    if first != (change.path, commit):  # twice in this push
                        reason = receipts.given_again(record, first[0])
                        problems.append(Problem(change.path, reason, commit))
        for parent in parents:
            for change in diffs[(commit, parent)]:
                if change.status in ("M", "D", "T") and is_add_only(change.path):
                    what = "deleted" if change.status == "D" else "modified"
                    problems.append(Problem(change.path, f"add-only record was {what}", commit))
    return problems


def pre_receive(lines: Iterable[str], branch: str) -> list[Problem]:
    """Check the pushed updates (``<old> <new> <ref>`` lines) of the state branch."""
    target = f"refs/heads/{branch}"
    problems: list[Problem] = []
    blobs = _Blobs()
    checked: set[tuple[str, str]] = set()
    given: _Given = {}
    branch_exists = False
    try:
        for line in lines:
            parts = line.split()
            if len(parts) != 3 or parts[2] != target:
                continue
            old, new, _ = parts
            branch_exists = branch_exists or old != ZERO
            if new == ZERO:
                problems.append(
                    Problem(target, "deleting the state branch would lose every record")
                )
                continue
            if old != ZERO and not _is_ancestor(old, new):
                problems.extend(_rewritten(old, new))
            problems.extend(_check_commits(old, new, blobs, checked, given))
    finally:
        blobs.close()
    if given and branch_exists:
        problems.extend(_given_on_the_branch(branch, given))
    return problems


def _given_on_the_branch(branch: str, given: _Given) -> list[Problem]:
    """Pushed receipts whose ids a batch on the branch gives already (the receipts index
    of this repository, at the branch's head: the objects git keeps in quarantine during
    the push are not among those it reads)."""
    batch_of = {record: path for record, (path, _) in given.items()}
    try:
        with StateRepo.discover(Path.cwd(), branch) as repo:
            found = receipts.given_before(repo, batch_of)
    except (GitgwError, OSError, sqlite3.Error) as exc:
        reason = f"cannot compare the pushed receipts with the branch's: {exc}"
        return [Problem("(receipts)", reason)]
    return [
        Problem(given[record][0], receipts.given_again(record, where), given[record][1])
        for record, where in found
    ]


def _is_ancestor(old: str, new: str) -> bool:
    done = subprocess.run(["git", "merge-base", "--is-ancestor", old, new], capture_output=True)
    return done.returncode == 0


def _rewritten(old: str, new: str) -> list[Problem]:
    found = [
        Problem(c.path, f"add-only record was {'deleted' if c.status == 'D' else 'modified'} "
                "by a rewrite of history", new)
        for c in _diffs([(new, old)])[(new, old)]
        if c.status in ("M", "D", "T") and is_add_only(c.path)
    ]  # fmt: skip
    found.append(
        Problem(
            "(history)",
            f"not a fast-forward: the push would drop {old[:12]} from the state branch's "
            "history; the state branch only moves forward",
            new,
        )
    )
    return found


# -- installing ----------------------------------------------------------------------------


def hook_script() -> str:
    """The pre-receive script shipped with gitgw (hooks/pre-receive)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_hooks" / "pre-receive", here.parent / "hooks" / "pre-receive"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise GitgwError(
        "the pre-receive hook script is not installed with this copy of gitgw",
        "reinstall gitgw",
    )


def install_server_hook(repo: Path, branch: str, force: bool = False) -> Path:
    """Install the pre-receive hook into the repository at `repo` (bare or not)."""
    try:
        hooks = _git("rev-parse", "--git-path", "hooks", cwd=repo).decode().strip()
    except (GitgwError, FileNotFoundError, NotADirectoryError):
        raise GitgwError(
            f"not a Git repository: {repo}", "give the path of the repository that receives pushes"
        ) from None
    target = (repo / hooks).resolve() / "pre-receive"
    if target.exists() and HOOK_MARK not in target.read_text(errors="replace") and not force:
        raise GitgwError(
            f"{target} exists and is not gitgw's",
            "merge it by hand, or pass --force to replace it",
        )
    script = hook_script()
    script = script.replace(':-python3}"', f':-{sys.executable}}}"', 1)
    script = script.replace(':-gitgw}"', f':-{branch}}}"', 1)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(script, encoding="utf-8")
    mode = target.stat().st_mode
    target.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return target


__all__ += ["HOOK_MARK", "IGNORED"]
