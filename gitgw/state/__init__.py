"""The state branch: the only package that imports dulwich.

It moves paths and bytes and knows no record formats: `gitgw.records` defines those,
and the concepts above combine the two.
"""

from __future__ import annotations

from gitgw.state.history import Change, changes_of, commits_oldest_first
from gitgw.state.merge import MergeResult, PathConflict, merge_heads
from gitgw.state.remote import fetch, last_synced, push, remember_synced, remote_url
from gitgw.state.repo import DEFAULT_BRANCH, CommitInfo, StateRepo
from gitgw.state.writer import BatchWriter

__all__ = [
    "DEFAULT_BRANCH",
    "BatchWriter",
    "Change",
    "CommitInfo",
    "MergeResult",
    "PathConflict",
    "StateRepo",
    "changes_of",
    "commits_oldest_first",
    "fetch",
    "last_synced",
    "merge_heads",
    "push",
    "remember_synced",
    "remote_url",
]
