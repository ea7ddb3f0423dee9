"""`gitgw mode offline|online`: switch the gateway's mode on the state branch.

`gitgw.yaml` is written by hand, with comments, so the switch edits only its `mode:`
line (keeping any comment on it), or adds one after `schema_version:` when the file has
none. The new file is checked like every write, and committed with a compare-and-swap
against the head it was read at, so an edit made meanwhile elsewhere is never lost: the
switch is simply made again on top of it. A running proxy takes it on its next refresh.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gitgw.concepts.checks import check_file
from gitgw.concepts.store import CONFIG_PATH
from gitgw.errors import Contention, GitgwError
from gitgw.records import GatewayConfig
from gitgw.state import StateRepo

__all__ = ["MODES", "ModeChange", "current_mode", "set_mode", "with_mode"]

MODES = ("online", "offline")
_MODE_LINE = re.compile(r"^mode:[ \t]*([^\s#]*)", re.MULTILINE)
_SCHEMA_LINE = re.compile(r"^schema_version:.*\n", re.MULTILINE)


@dataclass(frozen=True)
class ModeChange:
    """The mode before and after, and the commit that switched it (None: no change)."""

    previous: str
    mode: str
    commit: str | None


def _config_text(repo: StateRepo, head: str) -> tuple[str, GatewayConfig]:
    data = repo.read(CONFIG_PATH, head)
    if data is None:
        raise GitgwError(f"the state branch has no {CONFIG_PATH}", "create one with `gitgw init`")
    record = check_file(CONFIG_PATH, data).records[0]
    assert isinstance(record, GatewayConfig)
    return data.decode("utf-8"), record


def current_mode(repo: StateRepo) -> str:
    """The mode in force on the state branch."""
    return _config_text(repo, repo.require_head())[1].mode


def with_mode(text: str, mode: str) -> str:
    """`text` (a gitgw.yaml) with its `mode:` set to `mode`, nothing else changed."""
    match = _MODE_LINE.search(text)
    if match is not None:
        return text[: match.start(1)] + mode + text[match.end(1) :]
    schema = _SCHEMA_LINE.search(text)
    at = schema.end() if schema is not None else 0
    return text[:at] + f"mode: {mode}\n" + text[at:]


def set_mode(repo: StateRepo, mode: str, attempts: int = 50) -> ModeChange:
    """Switch the gateway to `mode` (`online` or `offline`) with one commit."""
    if mode not in MODES:
        raise GitgwError(f"unknown mode {mode!r}", f"use one of: {', '.join(MODES)}")
    for _ in range(attempts):
        head = repo.require_head()
        text, config = _config_text(repo, head)
        if config.mode == mode:
            return ModeChange(config.mode, mode, None)
        data = with_mode(text, mode).encode("utf-8")
        switched = check_file(CONFIG_PATH, data).records[0]
        if not isinstance(switched, GatewayConfig) or switched.mode != mode:
            raise GitgwError(
                f"could not set mode in {CONFIG_PATH}: its `mode:` line is not a plain "
                "top-level key",
                f"edit {CONFIG_PATH} on the state branch by hand",
            )
        try:
            commit = repo.commit({CONFIG_PATH: data}, f"gitgw: mode {mode}", expect_head=head)
        except Contention:
            continue  # the branch moved (receipts, say): read the file again and retry
        return ModeChange(config.mode, mode, commit)
    raise Contention("the state branch kept moving while switching the mode")
