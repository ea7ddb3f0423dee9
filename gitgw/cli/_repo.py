"""Opening the repository the user pointed at, the same way for every command."""

from __future__ import annotations

import click

from gitgw.settings import Settings
from gitgw.state import StateRepo

__all__ = ["open_repo", "settings"]


def settings() -> Settings:
    """The root options of the running command."""
    obj = click.get_current_context().find_root().obj
    assert isinstance(obj, Settings)
    return obj


def open_repo() -> StateRepo:
    """The repository from --repo, GITGW_REPO, or around the current directory."""
    current = settings()
    return StateRepo.discover(current.repo, current.branch)
