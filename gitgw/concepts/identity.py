"""Who is acting, on which machine, and which trust levels they may see.

An agent names itself with ``--as`` / ``--from``, else with ``$GITGW_AGENT``, else it is
the Git user of the repository. What a caller may see is ``$GITGW_CLEARANCE`` (a trust
level): whoever starts an agent session sets it, so an agent that talks to a hosted
model can be kept from confidential notes. Unset, the caller is the person at the
terminal, who can read every file of their own clone anyway: everything is visible.
"""

from __future__ import annotations

import os
import socket

from gitgw.errors import GitgwError
from gitgw.records import LEVELS, Level, level_rank
from gitgw.state import StateRepo

__all__ = ["TrustAboveClearance", "check_level", "clearance", "current_agent", "machine_name"]

AGENT_ENV = "GITGW_AGENT"
CLEARANCE_ENV = "GITGW_CLEARANCE"


class TrustAboveClearance(GitgwError):
    """A caller asked to see a trust level above its clearance."""


def current_agent(repo: StateRepo, explicit: str | None = None) -> str:
    """The acting agent: `explicit`, else $GITGW_AGENT, else the repository's Git user."""
    if explicit:
        return explicit
    from_env = os.environ.get(AGENT_ENV, "").strip()
    if from_env:
        return from_env
    identity = repo.identity.decode("utf-8", "replace")
    return identity.split(" <", 1)[0].strip() or "unknown"


def machine_name() -> str:
    """This machine's host name."""
    return socket.gethostname() or "localhost"


def check_level(value: str, what: str) -> Level:
    """`value` as a trust level, or a clear error naming the levels."""
    if value not in LEVELS:
        raise GitgwError(
            f"{what} {value!r} is not a trust level",
            f"use one of: {', '.join(LEVELS)} (lowest to highest)",
        )
    return value  # type: ignore[return-value]


def clearance() -> Level:
    """The highest trust level the caller may see ($GITGW_CLEARANCE; default: all)."""
    value = os.environ.get(CLEARANCE_ENV, "").strip()
    return check_level(value, f"${CLEARANCE_ENV}") if value else "restricted"


def allowed(level: str, ceiling: str) -> bool:
    """Whether something at `level` may be shown to a caller limited to `ceiling`."""
    return level_rank(level) <= level_rank(ceiling)


def require_clearance(wanted: str, what: str) -> None:
    """Refuse when `wanted` is above the caller's clearance."""
    limit = clearance()
    if not allowed(wanted, limit):
        raise TrustAboveClearance(
            f"{what} is {wanted}, above what you may see ({limit}, from ${CLEARANCE_ENV})",
            f"ask for {limit} or lower; whoever started this session set ${CLEARANCE_ENV}",
        )


__all__ += ["AGENT_ENV", "CLEARANCE_ENV", "allowed", "require_clearance"]
