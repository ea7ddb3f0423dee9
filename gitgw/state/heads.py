"""The heads the state branch had before, as this machine knows them, and where they
were seen: gitgw's own record of the heads it set or verified, the branch's reflog
(which plain Git writes), and each configured remote's tracking ref and its reflog.
`verify` checks that none of them was rewritten away.

gitgw appends each head to `.git/gitgw/witness/<branch>` rather than writing a reflog
through dulwich, which reads the configuration files again for every reflog line.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from dulwich.refs import Ref
from dulwich.repo import Repo

__all__ = ["KnownHeads"]

_COMMIT_ID = re.compile(r"[0-9a-f]{40}")


class KnownHeads:
    """What `StateRepo` knows of the branch's earlier heads and of its remotes' refs."""

    _repo: Repo
    branch: str
    ref: Ref

    @property
    def gitgw_dir(self) -> Path:
        """Where gitgw keeps derived, rebuildable data: `<git dir>/gitgw`."""
        return Path(self._repo.commondir()) / "gitgw"

    def ref_value(self, ref: str) -> str | None:
        """The commit id a ref points at, or None."""
        try:
            return self._repo.refs[Ref(ref.encode("utf-8"))].decode("ascii")
        except KeyError:
            return None

    @property
    def _witness_file(self) -> Path:
        return self.gitgw_dir / "witness" / self.branch

    def _witness(self, sha: bytes) -> None:
        # A line break before as well as after: a write cut short (a full disk) leaves a
        # torn last line, which the next head then starts after instead of joining (and
        # the file still ends with one, as earlier versions of gitgw expect).
        # A repository this process may read but not write to (verify run by another
        # user) goes without: the reflog and the other records of heads remain.
        path = self._witness_file
        with contextlib.suppress(OSError):
            try:
                with path.open("ab") as handle:
                    handle.write(b"\n" + sha + b"\n")
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("ab") as handle:
                    handle.write(b"\n" + sha + b"\n")

    def witness(self, commit_id: str) -> None:
        """Remember that the branch was once at `commit_id` (verify checks it stays reachable)."""
        self._witness(commit_id.encode("ascii"))

    def witnessed_heads(self) -> list[tuple[str, str]]:
        """Earlier heads this machine knows of: (commit id, where it was seen)."""
        seen: dict[str, str] = {}
        with contextlib.suppress(OSError):  # none yet, or none this process may read
            for line in self._witness_file.read_text(errors="replace").split():
                if _COMMIT_ID.fullmatch(line):  # a line torn by a full disk is skipped
                    seen.setdefault(line, "gitgw's record of earlier heads")
        for sha in self.reflog_heads(self.ref.decode("utf-8")):
            seen.setdefault(sha, "the branch's reflog")
        for ref_name, target in self.tracking_refs().items():
            seen.setdefault(target, ref_name)
        return list(seen.items())

    def reflog_heads(self, ref_name: str) -> list[str]:
        """The commits the reflog of `ref_name` says it pointed at, oldest first (none
        without a reflog; a line that is not a reflog entry, torn or edited, is skipped)."""
        reflog = Path(self._repo.commondir()) / "logs" / ref_name
        heads: dict[str, None] = {}
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
            for line in reflog.read_text(errors="replace").split("\n"):
                for sha in line.split()[:2]:
                    if _COMMIT_ID.fullmatch(sha) and sha.strip("0"):
                        heads.setdefault(sha)
        return list(heads)

    def remote_of(self, ref_name: str) -> str | None:
        """The configured remote whose tracking ref of the state branch `ref_name` is
        (`refs/remotes/<remote>/<branch>`), or None for any other name."""
        for remote in self._remote_names():
            if ref_name == f"refs/remotes/{remote}/{self.branch}":
                return remote
        return None

    def tracking_refs(self) -> dict[str, str]:
        """The remote-tracking refs of the state branch, one per configured remote that
        has one (`refs/remotes/<remote>/<branch>`), and the commit each points at. By the
        remotes' names, not by the refs' ends: `origin`'s code branch `feature/gitgw` is
        no state branch of a remote `origin/feature`."""
        found = {}
        for remote in self._remote_names():
            name = f"refs/remotes/{remote}/{self.branch}"
            target = self.ref_value(name)
            if target is not None:
                found[name] = target
        return found

    def _remote_names(self) -> list[str]:
        config = self._repo.get_config()
        return [
            section[1].decode("utf-8", "replace")
            for section in config.sections()
            if len(section) == 2 and section[0] == b"remote"
        ]
