"""The checks every way into the state branch runs: gitgw's own writes, a person's
commit (pre-commit hook), and a push (pre-receive hook).

A check looks at one file's path and bytes and raises `InvalidRecord` with the reason.
The format check (schema, digest, place) always runs; more checks, such as the secrets
guard, register themselves here so every path into the repository gets them at once.
"""

from __future__ import annotations

from collections.abc import Callable

from gitgw.concepts.secrets import check_secrets
from gitgw.records import Parsed, parse_file
from gitgw.records.layout import kind_at

__all__ = ["FileCheck", "check_file", "check_guards", "is_add_only", "register_check"]

# A guard: the path, the bytes, and what `parse_file` made of them when the caller has it.
FileCheck = Callable[[str, bytes, Parsed | None], None]

_checks: list[FileCheck] = []


def register_check(check: FileCheck) -> None:
    """Run `check` on every file after its format check passes."""
    if check not in _checks:
        _checks.append(check)


register_check(check_secrets)  # the secrets guard: every way into the branch runs it


def check_file(path: str, data: bytes, *, guards: bool = True) -> Parsed:
    """Every check on one file; raises `InvalidRecord` naming the path and the reason.

    With `guards` false only the format check runs (schema, digest, place): `verify`
    proves history with it, and scans for secrets only when asked.
    """
    parsed = parse_file(path, data)
    if guards:
        check_guards(path, data, parsed)
    return parsed


def check_guards(path: str, data: bytes, parsed: Parsed | None = None) -> None:
    """The guards alone (the secrets guard), on a file whose format check has passed."""
    for check in _checks:
        check(path, data, parsed)


def is_add_only(path: str) -> bool:
    """Whether `path` holds an add-only record (never modified or deleted once added)."""
    kind = kind_at(path)
    return kind is not None and kind.add_only
