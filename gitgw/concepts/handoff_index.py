"""The handoff index: every handoff with its folded state, for `gitgw handoff list`.

A derived index (see `gitgw.concepts.index`): one row per handoff and one per event.
Applying a changed file only records it and marks its handoff dirty; a query first
folds the dirty handoffs again with the same rules as `gitgw.concepts.handoff.fold`,
so a rebuild of 10,000 handoffs folds each one once, not once per event.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from gitgw.concepts._quick import fields, text_of
from gitgw.concepts.handoff import ANY, fold
from gitgw.concepts.index import Index, IndexSpec
from gitgw.records import kind_of
from gitgw.state import StateRepo

__all__ = ["SPEC", "Row", "find_ids", "list_handoffs"]


@dataclass(frozen=True)
class Row:
    """One handoff as `list` shows it."""

    id: str
    title: str
    to: str
    sender: str
    trust: str
    created: str
    state: str
    holder: str | None
    updated: str | None
    events: int


@dataclass(frozen=True)
class _Event:
    id: str
    kind: str
    agent: str
    state: str | None


def _apply(db: sqlite3.Connection, path: str, data: bytes | None) -> None:
    found = kind_of(path)
    if found is None or found[0].name not in ("handoff", "handoff-event"):
        return
    kind, parts = found
    handoff_id = parts["id"] if kind.name == "handoff" else parts["handoff"]
    db.execute("INSERT OR IGNORE INTO dirty VALUES (?)", (handoff_id,))
    read = None if data is None else fields(data, markdown=kind.name == "handoff")
    record = read[0] if read is not None else {}
    if kind.name == "handoff":
        db.execute("DELETE FROM handoffs WHERE id = ?", (handoff_id,))
        sender = record.get("from")
        row = (
            handoff_id, text_of(record.get("title")), text_of(record.get("to")),
            text_of(sender.get("agent")) if isinstance(sender, dict) else None,
            text_of(record.get("trust")) or "internal", text_of(record.get("created")),
        )  # fmt: skip
        if record.get("id") == handoff_id and None not in row:
            db.execute(
                "INSERT INTO handoffs (id, title, to_agent, sender, trust, created, state)"
                " VALUES (?, ?, ?, ?, ?, ?, 'submitted')",
                row,
            )
        return
    db.execute("DELETE FROM events WHERE id = ?", (parts["id"],))
    event = (parts["id"], handoff_id, text_of(record.get("kind")), text_of(record.get("agent")))
    if record.get("id") == parts["id"] and None not in event:
        db.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?)", (*event, text_of(record.get("state")))
        )


def _refold(db: sqlite3.Connection) -> None:
    """Fold every handoff whose files changed since the last query."""
    if db.execute("SELECT 1 FROM dirty LIMIT 1").fetchone() is None:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        for (handoff_id,) in db.execute("SELECT id FROM dirty").fetchall():
            parties = db.execute(
                "SELECT sender, to_agent FROM handoffs WHERE id = ?", (handoff_id,)
            )
            row = parties.fetchone()
            if row is not None:
                events = [
                    _Event(*r)
                    for r in db.execute(
                        "SELECT id, kind, agent, state FROM events WHERE handoff = ?",
                        (handoff_id,),
                    )
                ]
                status = fold(row[0], events, row[1] or ANY)
                db.execute(
                    "UPDATE handoffs SET state = ?, holder = ?, updated = ?, events = ?"
                    " WHERE id = ?",
                    (status.state, status.holder, status.updated, len(events), handoff_id),
                )
            db.execute("DELETE FROM dirty WHERE id = ?", (handoff_id,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


SPEC = IndexSpec(
    name="handoffs",
    version=2,  # 2: before a claim, only the sender cancels and only the addressee rejects
    schema="""
        CREATE TABLE handoffs (id TEXT PRIMARY KEY, title TEXT, to_agent TEXT, sender TEXT,
                               trust TEXT, created TEXT, state TEXT, holder TEXT,
                               updated TEXT, events INTEGER DEFAULT 0);
        CREATE INDEX handoffs_to ON handoffs (to_agent);
        CREATE INDEX handoffs_state ON handoffs (state);
        CREATE TABLE events (id TEXT PRIMARY KEY, handoff TEXT, kind TEXT, agent TEXT,
                             state TEXT);
        CREATE INDEX events_handoff ON events (handoff);
        CREATE TABLE dirty (id TEXT PRIMARY KEY)
    """,
    prefixes=("handoffs",),
    apply=_apply,
)


def list_handoffs(
    repo: StateRepo,
    to: str | None = None,
    states: tuple[str, ...] = (),
    limit: int | None = None,
    levels: tuple[str, ...] = (),
) -> tuple[list[Row], int]:
    """Handoffs, newest first, and how many matched in all.

    `to` matches handoffs addressed to that agent or to `any`; `states` keeps only those
    states; `levels` (when given) only those trust levels.
    """
    repo.require_head()
    where: list[str] = []
    args: list[str] = []
    if levels:
        where.append(f"trust IN ({','.join('?' * len(levels))})")
        args.extend(levels)
    if to is not None:
        where.append("to_agent IN (?, 'any')")
        args.append(to)
    if states:
        where.append(f"state IN ({','.join('?' * len(states))})")
        args.extend(states)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    with Index(repo, SPEC).connect() as db:
        _refold(db)
        total = db.execute(f"SELECT count(*) FROM handoffs{clause}", args).fetchone()[0]
        sql = (
            "SELECT id, title, to_agent, sender, trust, created, state, holder, updated, events"
            f" FROM handoffs{clause} ORDER BY id DESC"
        )
        if limit:
            sql += f" LIMIT {int(limit)}"
        rows = [Row(*r) for r in db.execute(sql, args)]
    return rows, total


def find_ids(repo: StateRepo, prefix: str) -> list[str]:
    """Handoff ids starting with `prefix` (so people can type a few characters)."""
    with Index(repo, SPEC).connect() as db:
        rows = db.execute(
            "SELECT id FROM handoffs WHERE id >= ? AND id < ? ORDER BY id LIMIT 10",
            (prefix.upper(), prefix.upper() + "\uffff"),
        ).fetchall()
    return [r[0] for r in rows]
