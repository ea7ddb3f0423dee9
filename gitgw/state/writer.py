"""One writer thread that many threads or tasks hand records to.

It commits whatever has arrived as one commit (group commit: while one commit is being
written, the next batch gathers), and resolves each caller's future with the commit id
only once the branch points at a commit holding the caller's record. A caller that was
told its record is durable will find it on the branch, even if the process is killed
right after; a record still queued when a process dies was never acknowledged.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from gitgw.errors import GitgwError
from gitgw.state.housekeeping import LOOSE_OBJECTS, Housekeeper
from gitgw.state.repo import StateRepo

__all__ = ["BatchWriter", "StreamRenderer"]

# Turns the items of one stream gathered in a batch into files (e.g. one receipt batch).
StreamRenderer = Callable[[list[Any]], Mapping[str, bytes]]


@dataclass
class _Submission:
    future: Future[str]
    files: Mapping[str, bytes] | None = None
    stream: str | None = None
    item: Any = None


@dataclass
class WriterStats:
    """Counters a benchmark or `/metrics` can read."""

    commits: int = 0
    submissions: int = 0
    largest_batch: int = 0
    retries: int = field(default=0)


_STOP = object()


class BatchWriter:
    """Commits submitted files in batches on a thread of its own."""

    def __init__(
        self,
        repo: StateRepo,
        *,
        streams: Mapping[str, StreamRenderer] | None = None,
        add_only: Callable[[str], bool] = lambda path: False,
        message: Callable[[int], str] = lambda n: f"gitgw: add {n} record(s)",
        max_batch: int = 10_000,
        gc_every: int = LOOSE_OBJECTS,
    ) -> None:
        # The thread gets its own handle: dulwich repositories are not shared across threads.
        self._repo = StateRepo.discover(repo.path, repo.branch)
        self._streams = dict(streams or {})
        self._add_only = add_only
        self._message = message
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Submission | object] = queue.SimpleQueue()
        self._closed = False
        self.stats = WriterStats()
        # A writer runs for long and commits often: it packs what it writes (see there).
        self.housekeeper = Housekeeper(self._repo.common_dir, gc_every)
        self._thread = threading.Thread(target=self._run, name="gitgw-writer", daemon=True)
        self._thread.start()

    def submit(self, files: Mapping[str, bytes]) -> Future[str]:
        """Queue `files` for the next commit; the future gives its commit id."""
        return self._put(_Submission(Future(), files=dict(files)))

    def submit_item(self, stream: str, item: Any) -> Future[str]:
        """Queue one item of a stream (its renderer makes the files of each batch)."""
        if stream not in self._streams:
            raise GitgwError(f"the writer has no stream named {stream!r}")
        return self._put(_Submission(Future(), stream=stream, item=item))

    def _put(self, submission: _Submission) -> Future[str]:
        if self._closed:
            raise GitgwError("the writer is closed")
        self._queue.put(submission)
        return submission.future

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything submitted so far is committed."""
        self.submit({}).result(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Commit what is queued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._repo.close()
        self.housekeeper.wait(timeout)

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch: list[_Submission] = [first]  # type: ignore[list-item]
            while len(batch) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                batch.append(nxt)  # type: ignore[arg-type]
            self._commit(batch)

    def _commit(self, batch: list[_Submission]) -> None:
        files: dict[str, bytes] = {}
        items: dict[str, list[Any]] = {}
        for sub in batch:
            if sub.files is not None:
                files.update(sub.files)
            else:
                assert sub.stream is not None
                items.setdefault(sub.stream, []).append(sub.item)
        try:
            for stream, stream_items in items.items():
                files.update(self._streams[stream](stream_items))
            commit_id = self._repo.head() or ""
            if files:
                commit_id = self._repo.commit(
                    files, self._message(len(batch)), add_only=self._add_only
                )
                self.stats.commits += 1
        except BaseException as exc:  # every waiting caller must hear of it
            for sub in batch:
                sub.future.set_exception(exc)
            return
        trees = self._repo.trees
        self.housekeeper.written(trees.loose_written, trees.loose_bytes_written)
        trees.loose_written = trees.loose_bytes_written = 0
        self.stats.submissions += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        self.stats.retries = self._repo.retries
        for sub in batch:
            sub.future.set_result(commit_id)
