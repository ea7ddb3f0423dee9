"""The state branch seen as records: typed reads and checked writes.

Every write goes through `check_file` before it reaches the branch, so nothing gitgw
writes can fail `gitgw verify` or the hooks. Add-only records can only be added;
mutable files (config, workflows, memory notes) can be replaced.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from gitgw._clock import Clock, default_clock
from gitgw.concepts.checks import check_file, is_add_only
from gitgw.errors import GitgwError, InvalidRecord
from gitgw.records import (
    GatewayConfig,
    Parsed,
    Receipt,
    Record,
    kind_named,
    kind_of,
    render,
    render_batch,
)
from gitgw.state import BatchWriter, StateRepo

__all__ = ["Store", "Unreadable"]

CONFIG_PATH = "gitgw.yaml"


@dataclass(frozen=True)
class Unreadable:
    """A file a listing skipped, and why (commands report these and go on)."""

    path: str
    reason: str


# Ends the message of every commit gitgw's batching writer makes (receipt batches): the
# daemon fires no workflows on what gitgw wrote by itself.
WRITER_TRAILER = "Gitgw-Writer: receipts"
# Ends the message of every commit a run makes (`Gitgw-Run: <run id>`): the daemon fires
# no workflows on what a run wrote.
RUN_TRAILER = "Gitgw-Run"


class Store:
    """Records on one repository's state branch."""

    def __init__(
        self, repo: StateRepo, clock: Clock | None = None, *, trailer: str | None = None
    ) -> None:
        self.repo = repo
        self.clock = clock or default_clock()
        self.trailer = trailer

    def signed(self, trailer: str) -> Store:
        """The same store, ending every commit message with `trailer` (`Key: value`).

        A workflow run writes through a store signed `Gitgw-Run: <id>`, so the daemon
        knows the commits a run wrote and never fires workflows on them.
        """
        return Store(self.repo, self.clock, trailer=trailer)

    def for_run(self, run_id: str) -> Store:
        """The store a run writes through: every commit signed `Gitgw-Run: <run_id>`."""
        return self.signed(f"{RUN_TRAILER}: {run_id}")

    def _message(self, message: str) -> str:
        return message if self.trailer is None else f"{message}\n\n{self.trailer}"

    # -- reading -------------------------------------------------------------------------

    def read(self, path: str) -> Parsed | None:
        """The checked content of `path`, or None if it is not on the branch."""
        data = self.repo.read(path)
        return None if data is None else check_file(path, data)

    def config(self) -> GatewayConfig:
        """The gateway configuration (`gitgw.yaml`)."""
        data = self.repo.read(CONFIG_PATH)
        if data is None:
            raise GitgwError(
                f"the state branch has no {CONFIG_PATH}", "create one with `gitgw init`"
            )
        record = check_file(CONFIG_PATH, data).records[0]
        assert isinstance(record, GatewayConfig)
        return record

    def iter_kind(
        self, kind: str, skipped: list[Unreadable] | None = None
    ) -> Iterator[tuple[str, Parsed]]:
        """Every valid file of one kind; invalid ones go to `skipped` (or raise)."""
        top = kind_named(kind).template.split("/", 1)[0]
        for path, blob_id in self.repo.walk(top):
            found = _kind_name(path)
            if found != kind:
                continue
            try:
                yield path, check_file(path, self.repo.blob(blob_id))
            except InvalidRecord as exc:
                if skipped is None:
                    raise
                skipped.append(Unreadable(path, exc.reason))

    # -- writing -------------------------------------------------------------------------

    def add(self, *records: Record | tuple[Record, str], message: str) -> str:
        """Add new records (a record, or a (record, markdown body) pair) in one commit."""
        files: dict[str, bytes] = {}
        for item in records:
            record, body = item if isinstance(item, tuple) else (item, None)
            path, data = render(record, body)
            check_file(path, data)
            files[path] = data
        return self.repo.commit(files, self._message(message), add_only=is_add_only)

    def put(self, path: str, data: bytes, message: str, expect_head: str | None = None) -> str:
        """Replace (or create) a mutable file such as `gitgw.yaml`; with `expect_head`,
        only if the branch is still at that commit (else `Contention`)."""
        if is_add_only(path):
            raise InvalidRecord(path, "is an add-only record and cannot be replaced")
        check_file(path, data)
        return self.repo.commit({path: data}, self._message(message), expect_head=expect_head)

    def commit_files(self, files: Mapping[str, bytes], message: str) -> str:
        """Commit ready-made files after checking each one (used by `init` and imports)."""
        for path, data in files.items():
            check_file(path, data)
        return self.repo.commit(files, self._message(message), add_only=is_add_only)

    def create_branch(self, files: Mapping[str, bytes], message: str) -> str:
        """Create the state branch with `files`; fails if it appeared meanwhile."""
        for path, data in files.items():
            check_file(path, data)
        return self.repo.commit(files, message, new_branch=True)

    def writer(self) -> BatchWriter:
        """A batching writer whose `receipts` stream writes one batch file per commit."""

        def receipts(items: Sequence[object]) -> dict[str, bytes]:
            batch = [item for item in items if isinstance(item, Receipt)]
            path, data = render_batch(batch, self.clock.new_id())
            return {path: data}

        return BatchWriter(
            self.repo,
            streams={"receipts": receipts},
            add_only=is_add_only,
            message=lambda n: f"gitgw: add {n} record(s)\n\n{WRITER_TRAILER}",
        )


def _kind_name(path: str) -> str | None:
    found = kind_of(path)
    return None if found is None else found[0].name


__all__ += ["CONFIG_PATH", "RUN_TRAILER", "WRITER_TRAILER"]
