"""`gitgw receipts verify`: is this receipt what it claims, and did its consent hold?

For one receipt it checks, offline, with nothing but a clone:

1. it is on the branch, and its batch file matches its schema and every digest;
2. that file was never modified or deleted after it was added, in any commit of the
   history, nor in any earlier head this machine has seen (a rewrite of history);
3. every consent entry it cites exists, was the entry in force for its subject at the
   receipt's time, and covered the receipt's level;
4. given the original request (`{"messages": [...]}`), every context digest matches.

A receipt that is no longer on the branch is searched for in the history, so a batch
file deleted with plain git is named with the commit that deleted it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from gitgw.concepts.consent import ConsentLedger
from gitgw.concepts.context import compare_context
from gitgw.concepts.receipts import locate, not_found
from gitgw.errors import GitgwError, InvalidRecord
from gitgw.records import LEVEL_RANK, Receipt, parse_file
from gitgw.state import StateRepo, changes_of, commits_oldest_first

__all__ = ["ReceiptCheck", "consent_problems", "path_changes", "verify_receipt"]


@dataclass
class ReceiptCheck:
    """What `verify_receipt` found about one receipt."""

    id: str
    path: str | None = None
    added_in: str | None = None
    receipt: Receipt | None = None
    consent: list[str] = field(default_factory=list)  # cited entries found in force
    context_checked: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every check held."""
        return not self.problems


def path_changes(repo: StateRepo, head: str, path: str) -> Iterator[tuple[str, str, bool]]:
    """(commit, what, first) for each commit that added, modified or deleted `path`.

    A merge counts as changing the path only when its version differs from every parent's.
    """
    for commit in commits_oldest_first(repo, head):
        now = _blob(repo, commit, path)
        before = [_blob(repo, parent, path) for parent in repo.commit_info(commit).parents]
        if now is None:
            if any(b is not None for b in before):
                yield commit, "deleted", False
        elif all(b is None for b in before):
            yield commit, "added", True
        elif all(b != now for b in before):
            yield commit, "modified", False


def _blob(repo: StateRepo, commit: str, path: str) -> bytes | None:
    found = repo.trees.lookup(repo.tree_of(commit), path)
    return None if found is None else found[1]


def consent_problems(ledger: ConsentLedger, receipt: Receipt) -> tuple[list[str], list[str]]:
    """(entries that held, problems) for the consent entries `receipt` cites."""
    held, problems = [], []
    for entry_id in receipt.consent:
        entry = ledger.entry(entry_id)
        if entry is None:
            problems.append(f"cites consent entry {entry_id}, which is not on the branch")
            continue
        decisive = ledger.decisive_at(entry.subject, receipt.created)
        if decisive is None or decisive.id != entry.id:
            then = decisive.describe() if decisive is not None else "nothing"
            problems.append(
                f"cites {entry.describe()}, which was not in force for {entry.subject} at "
                f"the receipt's time ({then} was)"
            )
        elif entry.action != "grant" or entry.level is None:
            problems.append(f"cites {entry.describe()}, which is not a grant")
        elif LEVEL_RANK[receipt.level] > LEVEL_RANK[entry.level]:
            problems.append(
                f"cites {entry.describe()}, which does not cover the receipt's level "
                f"{receipt.level}"
            )
        else:
            held.append(entry_id)
    return held, problems


def verify_receipt(
    repo: StateRepo, receipt_id: str, messages: Sequence[object] | None = None
) -> ReceiptCheck:
    """Every check on receipt `receipt_id`; raises only when no trace of it exists."""
    receipt_id = receipt_id.strip().upper()
    head = repo.require_head()
    check = ReceiptCheck(receipt_id)
    where = locate(repo, receipt_id)
    if where is None:
        lost = _search_lost(repo, head, receipt_id)
        if lost is None:
            raise not_found(receipt_id)
        check.path, check.problems = lost[0], [lost[1]]
        return check
    check.path = where.path
    data = repo.read(where.path, head)
    try:
        if data is None:
            raise not_found(receipt_id)
        records = parse_file(where.path, data).records
    except InvalidRecord as exc:
        check.problems.append(f"{where.path}: {exc.reason}")
        records = ()
    for commit, what, first in path_changes(repo, head, where.path):
        if first:
            check.added_in = check.added_in or commit
        else:
            check.problems.append(f"{where.path}: was {what} in commit {commit[:12]}")
    for problem in _rewrites(repo, head, where.path):
        check.problems.append(problem)
    check.receipt = next(
        (r for r in records if isinstance(r, Receipt) and r.id == receipt_id), None
    )
    if check.receipt is None:
        return check
    held, problems = consent_problems(ConsentLedger(repo), check.receipt)
    check.consent, check.problems = held, check.problems + problems
    if messages is not None:
        check.context_checked = True
        for mismatch in compare_context(check.receipt.context, messages):
            where_in = f"context part {mismatch.number} ({mismatch.role})"
            check.problems.append(f"{where_in}: {mismatch.reason}")
    return check


def _rewrites(repo: StateRepo, head: str, path: str) -> Iterator[str]:
    now = _blob(repo, head, path)
    for sha, source in repo.witnessed_heads():
        if not repo.has_object(sha):
            continue
        try:
            then = _blob(repo, sha, path)
        except GitgwError:
            continue
        if then is not None and then != now:
            what = "deleted" if now is None else "modified"
            yield f"{path}: {what} by a rewrite of history (it differs in {sha[:12]}, {source})"


def _search_lost(repo: StateRepo, head: str, receipt_id: str) -> tuple[str, str] | None:
    needle = f'"id":"{receipt_id}"'.encode()
    for commit in commits_oldest_first(repo, head):
        for change in changes_of(repo, commit):
            if change.old is None or not change.path.startswith("receipts/"):
                continue
            if needle in repo.blob(change.old):
                what = change.kind
                return change.path, (
                    f"{change.path}: held receipt {receipt_id} and was {what} in commit "
                    f"{commit[:12]}"
                )
    tree = repo.tree_of(head)
    for sha, source in repo.witnessed_heads():
        if not repo.has_object(sha):
            continue
        try:
            old_tree = repo.tree_of(sha)
        except GitgwError:
            continue
        for path, old, new in repo.trees.diff(old_tree, tree):
            if old is not None and path.startswith("receipts/") and needle in repo.trees.blob(old):
                what = "deleted" if new is None else "modified"
                return path, (
                    f"{path}: held receipt {receipt_id} and was {what} by a rewrite of "
                    f"history (it is in {sha[:12]}, {source})"
                )
    return None
