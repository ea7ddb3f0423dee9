"""What a repository must be for gitgw to open it, and who its commits are by.

A state branch's name must be one Git takes; the repository must exist where it says it
does and name its objects by SHA-1, the only ids gitgw writes (a SHA-256 repository
would be damaged by them).
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from dulwich.refs import Ref, check_ref_format
from dulwich.repo import Repo

from gitgw.errors import GitgwError, NotARepository

__all__ = ["check_branch", "check_usable", "identity"]


def check_branch(name: str) -> None:
    """Refuse a state branch name Git would not take (`a..b`, `x y`, `foo.lock`, ``)."""
    if (
        not name
        or name.startswith("-")
        or name == "HEAD"  # git refuses it: `HEAD` would name two things
        or not check_ref_format(Ref(b"refs/heads/" + name.encode()))
    ):
        raise GitgwError(
            f"{name!r} is not a branch name Git accepts",
            "use letters, digits, '-', '_', '/' and '.' (no '..', spaces or a '.lock' end)",
        )


def check_usable(repo: Repo) -> None:
    """Refuse a repository gitgw would damage or write outside of."""
    common = Path(repo.commondir())
    if not (common / "objects").is_dir():  # e.g. a `.git` file naming a directory gone
        raise NotARepository(
            f"not a Git repository: {repo.path} points at {common}, which holds none"
        )
    config = repo.get_config()
    with contextlib.suppress(KeyError):
        if config.get((b"extensions",), b"objectformat").lower() != b"sha1":
            raise GitgwError(
                f"{repo.path} names its objects by SHA-256; gitgw reads and writes "
                "SHA-1 repositories only, and would damage this one",
                "keep the state in a repository of its own: `gitgw init DIR`",
            )


def identity(repo: Repo) -> bytes:
    """Who gitgw's commits here are by: `GITGW_ACTOR`, else git's user, else this host."""
    env = os.environ.get("GITGW_ACTOR")
    if env:
        return env.encode("utf-8") if "<" in env else f"{env} <{env}>".encode()
    config = repo.get_config_stack()
    try:
        name = config.get((b"user",), b"name")
        email = config.get((b"user",), b"email")
        return name + b" <" + email + b">"
    except KeyError:
        host = socket.gethostname() or "localhost"
        return f"gitgw <gitgw@{host}>".encode()
