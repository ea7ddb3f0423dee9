"""Where gitgw looks: the repository, the state branch's name, and its own home.

Every location comes from an explicit option first, then the environment, then a
default, so tests and scripts can point gitgw anywhere without touching a real home.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Settings", "default_home"]


def default_home() -> Path:
    """gitgw's own directory (crash logs): $GITGW_HOME, else $XDG_STATE_HOME/gitgw."""
    explicit = os.environ.get("GITGW_HOME")
    if explicit:
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "gitgw"


@dataclass(frozen=True)
class Settings:
    """The options every command shares."""

    repo: Path | None = None
    branch: str = "gitgw"
    home: Path | None = None

    @property
    def home_dir(self) -> Path:
        """gitgw's own directory."""
        return self.home or default_home()
