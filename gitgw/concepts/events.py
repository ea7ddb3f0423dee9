"""What a workflow reacts to: events, found in commits or delivered, and trigger matching.

An `Event` is one thing that happened: a handoff created or changed, a request file
added, a commit that changed some paths, a minute of a schedule, a Gitea push, or a run
asked for by hand. Its `key` names it uniquely (the daemon fires a workflow at most once
per key) and its `data` is what the workflow's templates see (`handoff`, `request`,
`push`, `changes`).

`events_of(store, commit, changes)` finds the events one commit brings; `matches`
decides whether a workflow trigger fires on an event.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from gitgw.concepts import handoff as handoffs
from gitgw.concepts.store import Store
from gitgw.errors import GitgwError
from gitgw.records import Request, parse_file
from gitgw.records.layout import kind_of
from gitgw.records.workflow import Trigger
from gitgw.state.history import Change

__all__ = ["Event", "EventKind", "events_of", "glob_matches", "matches"]

EventKind = Literal["handoff", "request", "path", "schedule", "gitea_push", "manual"]


@dataclass(frozen=True)
class Event:
    """Something a workflow may react to (see the module docs)."""

    kind: EventKind
    key: str
    commit: str | None = None
    paths: tuple[str, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)
    workflow: str | None = None  # a schedule's minute is meant for one workflow only

    def describe(self) -> dict[str, Any]:
        """What a run record keeps of its trigger (never template data: it may be large)."""
        found: dict[str, Any] = {"event": self.kind, "key": self.key}
        if self.commit:
            found["commit"] = self.commit
        return found


def handoff_context(view: handoffs.HandoffView) -> dict[str, Any]:
    """A handoff as templates see it: its fields, `body`, `state`, `holder`, `events`."""
    data = view.handoff.model_dump(mode="json", exclude_none=True)
    data["from"] = data.pop("from_", None)
    data.update(
        body=view.body,
        state=view.status.state,
        holder=view.status.holder,
        events=[e.model_dump(mode="json", exclude_none=True) for e in view.events],
    )
    return data


def _handoff_ids(changes: Iterable[Change]) -> list[str]:
    found: dict[str, None] = {}
    for change in changes:
        if change.new is None:
            continue
        kind = kind_of(change.path)
        if kind is None:
            continue
        spec, fields = kind
        if spec.name == "handoff":
            found[fields["id"]] = None
        elif spec.name == "handoff-event":
            found[fields["handoff"]] = None
    return list(found)


def events_of(store: Store, commit: str, changes: list[Change]) -> list[Event]:
    """The events `commit` brings: one per handoff it created or changed, one per request
    file it added, and one for the paths it changed (for path triggers).

    Handoffs and requests are read as of `commit`. A file that does not parse brings no
    event (the commit's checks report it).
    """
    events: list[Event] = []
    for handoff_id in _handoff_ids(changes):
        try:
            view = handoffs.read(store, handoff_id, commit)  # as of the commit
        except GitgwError:
            continue
        updated = view.status.updated or "created"
        events.append(
            Event(
                "handoff",
                f"handoff:{handoff_id}:{updated}",
                commit,
                data={"handoff": handoff_context(view)},
            )
        )
    for change in changes:
        kind = kind_of(change.path)
        if change.old is None and change.new is not None and kind and kind[0].name == "request":
            try:
                [request] = parse_file(change.path, store.repo.blob(change.new)).records
            except GitgwError:
                continue
            assert isinstance(request, Request)
            events.append(
                Event(
                    "request",
                    f"request:{request.id}",
                    commit,
                    data={"request": request.model_dump(mode="json", exclude_none=True)},
                )
            )
    paths = tuple(change.path for change in changes)
    if paths:
        changed = [{"path": c.path, "change": c.kind} for c in changes]
        events.append(Event("path", f"commit:{commit}", commit, paths, {"changes": changed}))
    return events


@lru_cache(maxsize=256)
def _glob_regex(glob: str) -> re.Pattern[str]:
    # `**` spans directories, `*` and `?` stay within one; a glob with no wildcard
    # matches that path and everything under it.
    if not any(ch in glob for ch in "*?["):
        stem = re.escape(glob.rstrip("/"))
        return re.compile(f"{stem}(/.*)?")
    out, i = [], 0
    while i < len(glob):
        ch = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append("[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch))
        i += 1
    return re.compile("".join(out))


def glob_matches(glob: str, path: str) -> bool:
    """Whether `path` is matched by the workflow path glob `glob`."""
    return _glob_regex(glob).fullmatch(path) is not None


def matches(trigger: Trigger, event: Event) -> bool:
    """Whether `trigger` fires on `event`."""
    if trigger.handoff is not None:
        if event.kind != "handoff":
            return False
        handoff = event.data["handoff"]
        want = trigger.handoff
        return all(handoff.get(name) == value for name, value in want.items())
    if trigger.request is not None:
        if event.kind != "request":
            return False
        request = event.data["request"]
        return all(request.get(name) == value for name, value in trigger.request.items())
    if trigger.path is not None:
        glob = trigger.path
        return event.kind == "path" and any(glob_matches(glob, p) for p in event.paths)
    if trigger.schedule is not None:
        return event.kind == "schedule" and event.data.get("schedule") == trigger.schedule
    if trigger.gitea_push is not None:
        if event.kind != "gitea_push":
            return False
        push = event.data["push"]
        want = trigger.gitea_push
        return want.get("repo") in (None, push.get("repo")) and want.get("branch") in (
            None,
            push.get("branch"),
        )
    return False
