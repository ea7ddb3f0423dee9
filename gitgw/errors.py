"""The one error type that reaches users, and its shallow tree.

    GitgwError(message, hint)         every failure a user can act on
    ├── NotARepository                no Git repository where one was expected
    ├── StateBranchMissing            the repository has no state branch yet
    ├── StateBranchExists             `init` would overwrite an existing state branch
    ├── BranchCheckedOut              the state branch is checked out; gitgw will not move it
    ├── InvalidRecord                 a file does not match its format (schema, digest, path)
    ├── Contention                    the branch kept moving under a writer
    └── RemoteError                   a remote could not be reached or refused a push

The core raises these with a hint written where the context is known; the CLI turns
them into a message and exit code 1 in exactly one place (`gitgw.cli`).
"""

from __future__ import annotations

__all__ = [
    "BranchCheckedOut",
    "Contention",
    "GitgwError",
    "InvalidRecord",
    "MissingObject",
    "NotARepository",
    "RemoteError",
    "StateBranchExists",
    "StateBranchMissing",
]


class GitgwError(Exception):
    """A failure a user can act on: what went wrong, and what to do about it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\nhint: {self.hint}"


class NotARepository(GitgwError):
    """No Git repository at (or above) the given path."""


class StateBranchMissing(GitgwError):
    """The repository exists but has no state branch."""


class StateBranchExists(GitgwError):
    """A state branch already exists and would be overwritten."""


class BranchCheckedOut(GitgwError):
    """The state branch is checked out in a work tree, so gitgw will not move it."""


class InvalidRecord(GitgwError):
    """A file on the state branch does not match its format."""

    def __init__(self, path: str, reason: str, hint: str | None = None) -> None:
        super().__init__(f"{path}: {reason}", hint)
        self.path = path
        self.reason = reason


class MissingObject(GitgwError, KeyError):
    """An object the branch names is not in the repository (a shallow or partial clone).

    A `KeyError` too, as the object store's own lookup raises, so a caller that reads
    past a missing object keeps doing so."""

    def __init__(self, sha: str) -> None:
        super().__init__(
            f"object {sha} is missing from this repository: the state branch's history is "
            "incomplete (a shallow or partial clone?)",
            "fetch all of it: `git fetch --unshallow`, or `git fetch --refetch` for a "
            "partial clone",
        )
        self.sha = sha

    __str__ = GitgwError.__str__


class Contention(GitgwError):
    """A writer could not move the branch after retrying."""


class RemoteError(GitgwError):
    """A remote could not be reached, or refused what was pushed."""
