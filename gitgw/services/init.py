"""`gitgw init`: create a state branch, empty or seeded with the example state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gitgw._yaml import dump_document
from gitgw.concepts.store import CONFIG_PATH, Store
from gitgw.errors import GitgwError, StateBranchExists
from gitgw.records import GatewayConfig
from gitgw.state import DEFAULT_BRANCH, StateRepo

__all__ = ["InitResult", "example_dir", "init_state"]

_README = """# gitgw state

This branch is gitgw's state: configuration, consent, receipts, runs, handoffs and
shared memory, one file per record. Read it here, with `gitgw status`, or in a clone
of this branch. Do not edit add-only records: `gitgw verify` will notice.
"""


@dataclass(frozen=True)
class InitResult:
    """What `init` made."""

    repository: Path
    branch: str
    head: str
    files: int
    created_repository: bool


def example_dir() -> Path:
    """Where the example state lives: in the installed package, or in a source checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_example", here.parent / "example-repo"):
        if (candidate / CONFIG_PATH).is_file():
            return candidate
    raise GitgwError(
        "the example state is not installed with this copy of gitgw",
        "reinstall gitgw, or run `gitgw init` without --example",
    )


def _default_files() -> dict[str, bytes]:
    config = GatewayConfig().to_data()
    text = "# gitgw configuration: see docs/file-formats.md\n" + dump_document(config)
    return {CONFIG_PATH: text.encode("utf-8"), "README.md": _README.encode("utf-8")}


def _example_files() -> dict[str, bytes]:
    root = example_dir()
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def init_state(path: Path, branch: str, example: bool = False, nest: bool = False) -> InitResult:
    """Create the state branch in the repository at `path` (made if there is none; with
    `nest`, even inside another repository's work tree, as the demo's is).

    Refuses to touch an existing state branch. Never changes the repository's
    checked-out branch, index or files.
    """
    existed = (path / ".git").exists() or (path / "HEAD").is_file()
    with StateRepo.create(path, branch, nest=nest) as repo:
        head = repo.head()
        if head is not None:
            raise StateBranchExists(
                f"{repo.path} already has a state branch {branch!r} (at {head[:12]})",
                "use it as it is (`gitgw status`), or pick another name with --branch",
            )
        tracking = sorted(repo.tracking_refs())
        if tracking:  # a new, unrelated branch would be merged over the team's on sync
            remote = repo.remote_of(tracking[0])
            named = "" if branch == DEFAULT_BRANCH else f" --branch {branch}"
            raise StateBranchExists(
                f"{remote} already has a state branch {branch!r} ({tracking[0]})",
                f"take it with `gitgw{named} sync --remote {remote}` instead of creating a new one",
            )
        files = _example_files() if example else _default_files()
        store = Store(repo)
        new_head = store.create_branch(files, "gitgw: create the state branch")
        return InitResult(repo.path, branch, new_head, len(files), not existed)
