"""The state branch: the only package that imports dulwich.

It moves paths and bytes and knows no record formats: `gitgw.records` defines those,
and the concepts above combine the two.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gitgw.state.history import Change, changes_along, changes_of, commits_oldest_first
from gitgw.state.repo import DEFAULT_BRANCH, CommitInfo, StateRepo
from gitgw.state.writer import BatchWriter

if TYPE_CHECKING:
    from gitgw.state.merge import MergeResult, PathConflict, merge_heads
    from gitgw.state.remote import (
        fetch,
        last_synced,
        push,
        remember_synced,
        remote_url,
        shown_url,
    )

# Syncing (dulwich's client and the merge) is imported on first use: the proxy never
# syncs, and it must be serving within a second of its start.
_LAZY = {
    "MergeResult": "gitgw.state.merge",
    "PathConflict": "gitgw.state.merge",
    "merge_heads": "gitgw.state.merge",
    "fetch": "gitgw.state.remote",
    "last_synced": "gitgw.state.remote",
    "push": "gitgw.state.remote",
    "remember_synced": "gitgw.state.remote",
    "remote_url": "gitgw.state.remote",
    "shown_url": "gitgw.state.remote",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "DEFAULT_BRANCH",
    "BatchWriter",
    "Change",
    "CommitInfo",
    "MergeResult",
    "PathConflict",
    "StateRepo",
    "changes_along",
    "changes_of",
    "commits_oldest_first",
    "fetch",
    "last_synced",
    "merge_heads",
    "push",
    "remember_synced",
    "remote_url",
    "shown_url",
]
