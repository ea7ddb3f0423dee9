"""The format check of the files `verify` found in history, in this process or in a few.

Checking a file (read the blob, parse, schema, digest, place) depends only on its path
and its bytes, never on another file, so the files of a long history can be shared
out among processes and the verdicts put back in history order. The history walk and
every add-only and rewrite check stay in the calling process; only this part, most of
a first run's time, is shared out, once there are enough files to gain from it. The
calling process is one of the checkers: while it walks, the other processes check what
it has found so far, and once the walk is done it checks too, taking the chunks no
other process has started, from the end, so every process is busy until the last.

Workers are forked, so they start in milliseconds with gitgw already imported and
its validators built; each opens the repository itself rather than sharing the
parent's open files. Forking is safe only from a process with a single thread (a
thread holding a lock at the fork would leave it held in the child), such as the CLI,
and on Linux (macOS's system libraries do not support it): anywhere else the files
are checked in this process, as they are on small histories.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from gitgw._collector import collector_paused
from gitgw.concepts.checks import check_guards
from gitgw.errors import InvalidRecord
from gitgw.records.fast_check import prepare_checks, verify_file
from gitgw.state import StateRepo

__all__ = ["PARALLEL_FROM", "Checked", "FileChecks", "Wanted", "check_files", "default_workers"]

Wanted = tuple[int, str, str]  # (sequence number, path, blob id)
# The verdicts on a list of wanted files: the records each holds, in order (0 for a file
# refused), the reason for each one refused, and the record ids of each batch (JSON
# lines), by sequence number. Most files pass: this is what goes back from a worker,
# and all the caller of a first run adds up.
Checked = tuple[list[int], dict[int, str], dict[int, list[str]]]

PARALLEL_FROM = 1_000  # work (see `_weight`) before worker processes are worth starting
_CHUNK = 500  # work per task: large enough that handing it over costs nothing


def _weight(path: str) -> int:
    """About how much work checking the file at `path` is, in records: a receipt batch
    holds dozens (what a proxy hands over twice a second), any other file one."""
    return 32 if path.endswith(".jsonl") else 1


def check_files(repo: StateRepo, wanted: list[Wanted], secrets: bool) -> Checked:
    """The verdicts on the wanted files."""
    counts: list[int] = []
    refused: dict[int, str] = {}
    batches: dict[int, list[str]] = {}
    with collector_paused():  # many short-lived dicts and models, no cycles
        blob_ids = [blob for _, _, blob in wanted]
        try:
            blobs: list[bytes | None] = list(repo.blobs(blob_ids))
        except (KeyError, ValueError):  # one is missing or no blob: read each on its own
            blobs = [_blob_or_none(repo, blob) for blob in blob_ids]
        for (seq, path, blob), data in zip(wanted, blobs, strict=True):
            if data is None:
                refused[seq] = f"cannot be read: its object {blob} is missing or not a file"
                counts.append(0)
                continue
            ids: list[str] | None = [] if path.endswith(".jsonl") else None  # a batch's
            try:
                count = verify_file(path, data, ids)
                if secrets:
                    check_guards(path, data)
            except InvalidRecord as exc:
                refused[seq] = exc.reason
                count = 0
            if ids:
                batches[seq] = ids
            counts.append(count)
    return counts, refused, batches


def _blob_or_none(repo: StateRepo, blob: str) -> bytes | None:
    try:
        return repo.blob(blob)
    except (KeyError, ValueError):
        return None


_opened: dict[str, StateRepo] = {}  # in a worker: the repository, opened once


def _check_in_worker(where: str, wanted: list[Wanted], secrets: bool) -> Checked:
    repo = _opened.get(where)
    if repo is None:
        repo = _opened[where] = StateRepo.discover(Path(where))
        repo.trees.index_packs()  # it reads most of the objects
    return check_files(repo, wanted, secrets)


def default_workers() -> int:
    """How many processes check files on a large history, this one included: the cores,
    at most four; one where forking is not safe."""
    if not sys.platform.startswith("linux") or threading.active_count() > 1:
        return 1
    return max(1, min(os.cpu_count() or 1, 4))


class FileChecks:
    """Files handed in as the walk finds them; verdicts out once the walk is done.

    With one worker (this process) every file is checked here when `results` is called.
    With more, files go out in chunks to `workers - 1` other processes as they arrive,
    once there are enough to be worth it, and `results` checks those still waiting here.
    """

    def __init__(self, repo: StateRepo, secrets: bool, workers: int, threshold: int) -> None:
        self._repo = repo
        self._secrets = secrets
        self._workers = workers
        self._threshold = threshold
        self._pending: list[Wanted] = []
        self._sent: list[tuple[Future[Checked], list[Wanted]]] = []  # and what each checks
        self._pool: ProcessPoolExecutor | None = None
        self._seen = 0  # work added so far
        self._pending_work = 0

    def add(self, seq: int, path: str, blob: str) -> None:
        """Check `path` (blob `blob`); its verdict carries `seq`."""
        self._pending.append((seq, path, blob))
        work = _weight(path)
        self._seen += work
        self._pending_work += work
        if self._shared() and self._pending_work >= _CHUNK:
            self._send()

    def _shared(self) -> bool:
        return self._workers > 1 and self._seen >= self._threshold

    def _send(self) -> None:
        if self._pool is None:
            prepare_checks()  # built once here, not in every worker
            self._pool = ProcessPoolExecutor(
                self._workers - 1, mp_context=multiprocessing.get_context("fork")
            )
        # In chunks of about `_CHUNK` work each: what the walk found before sharing began
        # (`threshold`) would otherwise be one large chunk for one process.
        chunk: list[Wanted] = []
        work = 0
        for wanted in self._pending:
            chunk.append(wanted)
            work += _weight(wanted[1])
            if work >= _CHUNK:
                self._submit(chunk)
                chunk, work = [], 0
        if chunk:
            self._submit(chunk)
        self._pending = []
        self._pending_work = 0

    def _submit(self, chunk: list[Wanted]) -> None:
        assert self._pool is not None
        where = str(self._repo.path)
        self._sent.append((self._pool.submit(_check_in_worker, where, chunk, self._secrets), chunk))

    def send_rest(self) -> None:
        """Hand the files still waiting to the other processes, if they check any: the
        walk is done, and this process has other work before it checks its share."""
        if self._shared() and self._pending:
            self._send()

    def close(self) -> None:
        """Stop the other processes, dropping what they have not started (idempotent)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def results(self) -> Iterator[tuple[list[Wanted], Checked]]:
        """The files added and the verdicts on them, a list at a time, in the order the
        files were added."""
        if not self._shared():
            yield self._pending, check_files(self._repo, self._pending, self._secrets)
            return
        try:
            self.send_rest()
            # The others take chunks from the front; this process from the back, each one
            # still waiting in the pool. One that cannot be cancelled has been handed to
            # a worker (the pool hands over a few ahead of its workers), and so has every
            # chunk before it.
            here: dict[int, Checked] = {}
            for index in range(len(self._sent) - 1, -1, -1):
                future, chunk = self._sent[index]
                if not future.cancel():
                    break
                here[index] = check_files(self._repo, chunk, self._secrets)
            for index, (future, chunk) in enumerate(self._sent):
                yield chunk, here[index] if index in here else future.result()
        finally:
            self.close()
