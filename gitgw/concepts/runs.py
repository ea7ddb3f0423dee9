"""The run ledger: what it takes to reproduce a model call or a workflow run.

A run is one record (`runs/<yyyy>/<mm>/<dd>/<id>.yaml`) when it is written whole, as a
model call is, or two when it starts and later ends: the second names the first in
`follows`. Folding a run's records (oldest first, later fields filling in or replacing
earlier ones) gives its current view. Inputs and outputs are recorded by digest (see
`gitgw.concepts.context`), with their text only when content capture is on; a run can
be replayed only when its inputs were captured.

Listing goes through a derived SQLite index under `.git/gitgw/index/`, as receipts do.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gitgw._clock import Clock, default_clock
from gitgw.concepts.index import Index, IndexSpec
from gitgw.concepts.store import Store, Unreadable
from gitgw.errors import GitgwError, InvalidRecord
from gitgw.records import Run, parse_file
from gitgw.records.run import RunPart, RunStep
from gitgw.state import StateRepo

__all__ = [
    "RUNS_INDEX",
    "RunLedger",
    "RunListing",
    "RunSummary",
    "RunView",
    "list_runs",
    "show_run",
]


def _millis(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def _time(millis: int | None) -> datetime | None:
    return None if millis is None else datetime.fromtimestamp(millis / 1000, tz=UTC)


def _apply(db: sqlite3.Connection, path: str, data: bytes | None) -> None:
    db.execute("DELETE FROM runs WHERE path = ?", (path,))
    db.execute("DELETE FROM problems WHERE path = ?", (path,))
    if data is None:
        return
    try:
        [run] = parse_file(path, data).records
    except InvalidRecord as exc:
        db.execute("INSERT INTO problems VALUES (?, ?)", (path, exc.reason))
        return
    assert isinstance(run, Run)
    db.execute(
        "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            run.id,
            run.follows or run.id,
            path,
            run.kind,
            run.status,
            run.provider,
            run.model,
            run.workflow,
            run.level,
            _millis(run.started),
            _millis(run.finished),
            run.error,
        ),
    )


RUNS_INDEX = IndexSpec(
    name="runs",
    version=1,
    schema="""
        CREATE TABLE runs (id TEXT PRIMARY KEY, root TEXT, path TEXT, kind TEXT,
            status TEXT, provider TEXT, model TEXT, workflow TEXT, level TEXT,
            started INTEGER, finished INTEGER, error TEXT);
        CREATE INDEX runs_root ON runs (root);
        CREATE INDEX runs_path ON runs (path);
        CREATE TABLE problems (path TEXT PRIMARY KEY, reason TEXT);
    """,
    prefixes=("runs",),
    apply=_apply,
)


@dataclass(frozen=True)
class RunSummary:
    """One run in a listing: its first record's id and its latest status."""

    id: str
    kind: str
    status: str
    provider: str | None
    model: str | None
    workflow: str | None
    level: str | None
    started: datetime | None
    finished: datetime | None
    error: str | None
    records: int


@dataclass(frozen=True)
class RunListing:
    """Runs newest first, how many there are in all, and run files that could not be read."""

    runs: list[RunSummary]
    total: int
    unreadable: list[Unreadable]


def list_runs(repo: StateRepo, limit: int | None = 50) -> RunListing:
    """Runs newest first, how many there are, and run files that could not be read."""
    with Index(repo, RUNS_INDEX).connect() as db:
        total = db.execute("SELECT COUNT(DISTINCT root) FROM runs").fetchone()[0]
        sql = "SELECT DISTINCT root FROM runs ORDER BY root DESC"
        roots = [r[0] for r in db.execute(sql + (f" LIMIT {int(limit)}" if limit else ""))]
        summaries = []
        for root in roots:
            rows = db.execute(
                "SELECT kind, status, provider, model, workflow, level, started, finished, "
                "error FROM runs WHERE root = ? ORDER BY id",
                (root,),
            ).fetchall()
            first, last = rows[0], rows[-1]

            def latest(column: int, rows: list[Any] = rows) -> Any:
                return next((r[column] for r in reversed(rows) if r[column] is not None), None)

            summaries.append(
                RunSummary(
                    id=root,
                    kind=first[0],
                    status=last[1],
                    provider=latest(2),
                    model=latest(3),
                    workflow=latest(4),
                    level=latest(5),
                    started=_time(first[6]),
                    finished=_time(latest(7)),
                    error=latest(8),
                    records=len(rows),
                )
            )
        problems = [Unreadable(p, r) for p, r in db.execute("SELECT * FROM problems")]
    return RunListing(summaries, total, problems)


@dataclass(frozen=True)
class RunView:
    """A run folded from its records (oldest first)."""

    records: tuple[Run, ...]
    paths: tuple[str, ...]

    @property
    def id(self) -> str:
        """The id of the run's first record (a later record names it in `follows`)."""
        return self.records[0].follows or self.records[0].id

    def _latest(self, name: str) -> Any:
        for record in reversed(self.records):
            value = getattr(record, name)
            if value not in (None, [], {}):
                return value
        return getattr(self.records[0], name)

    @property
    def status(self) -> str:
        """The latest status."""
        return self.records[-1].status

    def merged(self) -> Run:
        """One `Run` holding every field's latest value (id and digest of the first)."""
        first = self.records[0]
        fields = {name: self._latest(name) for name in Run.model_fields}
        receipts: list[str] = []
        for record in self.records:
            receipts += [r for r in record.receipts if r not in receipts]
        fields.update(
            id=first.id,
            digest=first.digest,
            follows=None,
            status=self.status,
            receipts=receipts,
            started=first.started,
        )
        return Run.model_construct(**fields)


def show_run(repo: StateRepo, run_id: str) -> RunView:
    """Run `run_id` (the id of any of its records), each record fully checked."""
    run_id = run_id.strip().upper()
    head = repo.require_head()
    with Index(repo, RUNS_INDEX).connect() as db:
        found = db.execute("SELECT root FROM runs WHERE id = ?", (run_id,)).fetchone()
        paths = []
        if found is not None:
            paths = [r[0] for r in db.execute("SELECT path FROM runs WHERE root = ?", found)]
        broken = db.execute(
            "SELECT path, reason FROM problems WHERE path LIKE ?", (f"%/{run_id}.yaml",)
        ).fetchone()
    paths.sort(key=lambda path: path.rsplit("/", 1)[-1])  # by id: oldest record first
    if not paths and broken is not None:
        raise InvalidRecord(broken[0], broken[1], "`gitgw verify` shows when it changed")
    if not paths:
        raise GitgwError(
            f"no run {run_id} on the state branch", "`gitgw runs list` shows the newest runs"
        )
    records = []
    for path in paths:
        data = repo.read(path, head)
        if data is None:
            raise GitgwError(f"run file {path} went away while reading; try again")
        [record] = parse_file(path, data).records
        assert isinstance(record, Run)
        records.append(record)
    return RunView(tuple(records), tuple(paths))


class RunLedger:
    """Writes run records: whole, or as a start and a later end."""

    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock or store.clock or default_clock()

    def record(self, run: Run) -> str:
        """Add one run record; returns the commit id."""
        name = run.workflow or f"{run.provider or '-'}/{run.model or '-'}"
        return self.store.add(run, message=f"gitgw: run {run.kind} {name} {run.status}")

    def start(self, kind: str, **fields: Any) -> Run:
        """Record that a run started (`fields` as in `Run`); returns the record."""
        run = self.begin(kind, **fields)
        self.record(run)
        return run

    def begin(self, kind: str, **fields: Any) -> Run:
        """The record that a run started, not yet written (its id is needed first, e.g.
        to sign the commits the run makes)."""
        now = self.clock.now()
        return Run.model_validate(
            {"id": self.clock.new_id(now), "kind": kind, "status": "started", "started": now}
            | fields
        )

    def finish(self, started: Run, status: str, **details: Any) -> Run:
        """Record how a started run ended (`succeeded`, `failed` or `interrupted`);
        `details` as `ended` takes them."""
        run = self.ended(started, status, **details)
        self.record(run)
        return run

    def ended(
        self,
        started: Run,
        status: str,
        *,
        outputs: Sequence[RunPart] = (),
        receipts: Sequence[str] = (),
        steps: Sequence[RunStep] = (),
        error: str | None = None,
    ) -> Run:
        """The record of how a started run ended, not yet written (to commit it together
        with what the run produced)."""
        if status not in ("succeeded", "failed", "interrupted"):
            raise GitgwError(f"a run ends as succeeded, failed or interrupted, not {status!r}")
        now = self.clock.now()
        run = Run.model_validate(
            {
                "id": self.clock.new_id(now),
                "kind": started.kind,
                "status": status,
                "follows": started.id,
                "workflow": started.workflow,
                "provider": started.provider,
                "model": started.model,
                "level": started.level,
                "outputs": list(outputs),
                "steps": list(steps),
                "receipts": list(receipts),
                "started": started.started,
                "finished": now,
                "error": error,
            }
        )
        return run
