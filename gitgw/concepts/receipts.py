"""Context receipts: one per model call, batched into files, found through an index.

A caller hands a `Receipt` to `ReceiptLog.record` and gets a future at once; the state
engine's single writer gathers whatever has arrived into one batch file
(`receipts/<yyyy>/<mm>/<dd>/<hh>/<batch-id>.jsonl`) and one commit, and resolves each future
with the commit id only when the branch points at it. A receipt whose future has not
resolved was never acknowledged: if the process dies first, the caller was not told
it is durable, and it is not.

Listing and lookups go through a derived SQLite index under `.git/gitgw/index/` (one
row per receipt, keyed by the branch's commit, rebuilt when missing or stale), so
`gitgw receipts list` over a million receipts reads no batch files.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gitgw._canonical import canonical_json
from gitgw.concepts.index import Index, IndexSpec
from gitgw.concepts.store import Store
from gitgw.errors import GitgwError
from gitgw.records import LEVEL_RANK, LEVELS, Receipt, jsonl_lines, parse_file
from gitgw.state import BatchWriter, StateRepo

__all__ = [
    "RECEIPTS_INDEX",
    "Listing",
    "Located",
    "ReceiptLog",
    "ReceiptRow",
    "find",
    "query",
    "to_millis",
]


def to_millis(moment: datetime) -> int:
    """A time as milliseconds since the epoch (how the index stores times)."""
    return int(moment.timestamp() * 1000)


def _millis(text: str) -> int:
    return to_millis(datetime.fromisoformat(text))


class ReceiptLog:
    """Hands receipts to the state engine's batching writer."""

    def __init__(self, store: Store, writer: BatchWriter | None = None) -> None:
        self._own = writer is None
        self._writer = writer if writer is not None else store.writer()

    def record(self, receipt: Receipt) -> Future[str]:
        """Queue `receipt`; the future gives the commit id once the receipt is durable."""
        if not isinstance(receipt, Receipt):
            raise GitgwError(f"expected a Receipt, got {type(receipt).__name__}")
        return self._writer.submit_item("receipts", receipt)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every receipt recorded so far is committed."""
        self._writer.flush(timeout)

    def close(self) -> None:
        """Commit what is queued and stop the writer (if this log started it)."""
        if self._own:
            self._writer.close()

    def __enter__(self) -> ReceiptLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the index -----------------------------------------------------------------------------


def _row(path: str, number: int, line: str) -> tuple[Any, ...] | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        return None
    try:
        created = _millis(str(data.get("created")))
        level = LEVEL_RANK[data.get("level", "")]
    except (ValueError, KeyError):
        return None
    digest = data.pop("digest", None)
    ok = digest == "sha256:" + hashlib.sha256(canonical_json(data)).hexdigest()
    route, usage, consent = data.get("route"), data.get("usage"), data.get("consent")
    route = route if isinstance(route, dict) else {}
    usage = usage if isinstance(usage, dict) else {}
    consent = consent if isinstance(consent, list) else []
    return (
        data["id"],
        path,
        number,
        created,
        data.get("client"),
        level,
        route.get("provider"),
        route.get("model"),
        route.get("location"),
        data.get("outcome"),
        " ".join(str(c) for c in consent),
        usage.get("total_tokens"),
        data.get("latency_ms"),
        int(ok),
    )


def _apply(db: sqlite3.Connection, path: str, data: bytes | None) -> None:
    db.execute("DELETE FROM receipts WHERE path = ?", (path,))
    if data is None:
        return
    rows = []
    for number, line in enumerate(jsonl_lines(data.decode("utf-8", "replace")), 1):
        row = _row(path, number, line)
        if row is not None:
            rows.append(row)
    db.executemany(
        "INSERT OR REPLACE INTO receipts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )


RECEIPTS_INDEX = IndexSpec(
    name="receipts",
    version=1,
    schema="""
        CREATE TABLE receipts (id TEXT PRIMARY KEY, path TEXT NOT NULL, line INTEGER,
            created INTEGER, client TEXT, level INTEGER, provider TEXT, model TEXT,
            location TEXT, outcome TEXT, consent TEXT, tokens INTEGER, latency REAL,
            ok INTEGER);
        CREATE INDEX receipts_created ON receipts (created);
        CREATE INDEX receipts_path ON receipts (path);
        CREATE INDEX receipts_provider ON receipts (provider, created);
    """,
    prefixes=("receipts",),
    apply=_apply,
)


@dataclass(frozen=True)
class ReceiptRow:
    """One receipt as the index knows it (enough to list and audit; `show` reads the file)."""

    id: str
    path: str
    line: int
    created: datetime
    client: str | None
    level: str
    provider: str | None
    model: str | None
    location: str | None
    outcome: str | None
    consent: tuple[str, ...]
    tokens: int | None
    latency_ms: float | None
    digest_ok: bool

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> ReceiptRow:
        """A row of the `receipts` table, in column order."""
        return cls(
            id=row[0],
            path=row[1],
            line=row[2],
            created=datetime.fromtimestamp(row[3] / 1000, tz=UTC),
            client=row[4],
            level=LEVELS[row[5]],
            provider=row[6],
            model=row[7],
            location=row[8],
            outcome=row[9],
            consent=tuple(row[10].split()) if row[10] else (),
            tokens=row[11],
            latency_ms=row[12],
            digest_ok=bool(row[13]),
        )


@dataclass(frozen=True)
class Listing:
    """Receipts matching a query, newest first, and how many matched in all."""

    rows: list[ReceiptRow]
    total: int


def query(
    repo: StateRepo,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    provider: str | None = None,
    min_level: str | None = None,
    limit: int | None = 50,
) -> Listing:
    """Receipts newest first, filtered by time, provider and lowest level."""
    where, params = _where(since, until, provider, min_level)
    sql = f"SELECT * FROM receipts{where} ORDER BY created DESC, id DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    with Index(repo, RECEIPTS_INDEX).connect() as db:
        rows = [ReceiptRow.of(r) for r in db.execute(sql, params)]
        if limit is None or len(rows) < limit:
            total = len(rows)
        else:
            total = db.execute(f"SELECT COUNT(*) FROM receipts{where}", params).fetchone()[0]
    return Listing(rows, total)


def _where(
    since: datetime | None, until: datetime | None, provider: str | None, min_level: str | None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if since is not None:
        clauses.append("created >= ?")
        params.append(to_millis(since))
    if until is not None:
        clauses.append("created < ?")
        params.append(to_millis(until))
    if provider is not None:
        clauses.append("provider = ?")
        params.append(provider)
    if min_level is not None:
        clauses.append("level >= ?")
        params.append(LEVEL_RANK[min_level])
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


@dataclass(frozen=True)
class Located:
    """A receipt read from its batch file at the branch's head."""

    receipt: Receipt
    path: str
    line: int
    head: str


def locate(repo: StateRepo, receipt_id: str) -> ReceiptRow | None:
    """Where the index says receipt `receipt_id` is, or None."""
    with Index(repo, RECEIPTS_INDEX).connect() as db:
        row = db.execute("SELECT * FROM receipts WHERE id = ?", (receipt_id,)).fetchone()
    return None if row is None else ReceiptRow.of(row)


def given_again(receipt_id: str, where: str) -> str:
    """The reason a batch may not give receipt `receipt_id`, which `where` gives first."""
    return f"record {receipt_id} is given again (first in {where})"


def given_before(repo: StateRepo, batch_of: Mapping[str, str]) -> list[tuple[str, str]]:
    """(receipt id, the batch file holding it) for each id in `batch_of` (a new receipt's
    id: the batch that gives it) that another batch on the branch's head gives already,
    as the receipts index knows them: a second one would stand for the first."""
    ids = sorted(batch_of)
    found: list[tuple[str, str]] = []
    with Index(repo, RECEIPTS_INDEX).connect() as db:
        for start in range(0, len(ids), 500):  # SQLite's limit on parameters
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT id, path FROM receipts WHERE id IN ({marks}) ORDER BY id"
            found.extend(row for row in db.execute(query, chunk) if row[1] != batch_of[row[0]])
    return found


def not_found(receipt_id: str) -> GitgwError:
    """The error for a receipt id the branch does not hold."""
    return GitgwError(
        f"no receipt {receipt_id} on the state branch",
        "`gitgw receipts list` shows the newest receipt ids; after `gitgw sync`, receipts "
        "from other machines are there too",
    )


def find(repo: StateRepo, receipt_id: str) -> Located:
    """Receipt `receipt_id`, fully checked (schema and digest of its whole batch file)."""
    head = repo.require_head()
    where = locate(repo, receipt_id.strip().upper())
    if where is None:
        raise not_found(receipt_id)
    data = repo.read(where.path, head)
    if data is None:  # the branch moved between the index and the read
        raise not_found(receipt_id)
    for record in parse_file(where.path, data).records:
        if isinstance(record, Receipt) and record.id == where.id:
            return Located(record, where.path, where.line, head)
    raise not_found(receipt_id)


__all__ += ["given_again", "given_before", "locate", "not_found"]
