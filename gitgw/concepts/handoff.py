"""Handoffs: work one agent passes to another, and the events of its life.

A handoff is `handoffs/<id>/handoff.md` (never changed after it is created) and the
add-only events under `handoffs/<id>/events/`: claims, state changes (A2A's TaskState),
notes and artifacts. Its current state is the fold of its events in id order, by rules
every machine applies the same way, so after any merge every machine agrees:

- the earliest claim (by event id) holds the handoff; a later claim by another agent
  lost, and that agent's state changes are ignored;
- once held, only the holder changes the state (the sender may still cancel);
- before anyone holds it, only `canceled` and `rejected` apply: work needs a claim;
- a terminal state (completed, failed, canceled, rejected) accepts no further change.

The same rules judge a new event before it is written, so gitgw never writes an event
the fold would ignore, and an agent that lost a race learns it at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, get_args

from pydantic import ValidationError

from gitgw._clock import Clock, is_ulid
from gitgw._yaml import YamlError, load_document
from gitgw.concepts.store import Store
from gitgw.errors import GitgwError
from gitgw.records import Handoff, HandoffEvent, kind_named, level_rank, parse_file
from gitgw.records.handoff import TERMINAL_STATES, Artifact, ContextRef, TaskState

__all__ = [
    "EventLike",
    "HandoffError",
    "HandoffView",
    "Status",
    "claim",
    "create",
    "fold",
    "judge",
    "new_event",
    "parse_draft",
    "read",
    "write_events",
]

STATES: tuple[str, ...] = get_args(TaskState)
ANY = "any"  # a handoff's `to` when any agent may take it
_NEEDS_CLAIM = frozenset({"working", "input-required", "completed", "failed"})


class HandoffError(GitgwError):
    """A handoff that does not exist, is malformed, or refuses a change."""


class ClaimLost(HandoffError):
    """Another agent holds the handoff: its claim came first."""


class EventLike(Protocol):
    """What the fold needs of an event (a `HandoffEvent`, or a row of the index)."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def agent(self) -> str: ...
    @property
    def state(self) -> str | None: ...


@dataclass(frozen=True)
class LostClaim:
    """A claim that came after the winning one."""

    agent: str
    event: str


@dataclass(frozen=True)
class Ignored:
    """An event the fold did not apply, and why."""

    event: str
    agent: str
    reason: str


@dataclass
class Status:
    """A handoff's current state, folded from its events."""

    state: str = "submitted"
    holder: str | None = None
    claim: str | None = None  # the winning claim's event id
    updated: str | None = None  # the last applied event's id
    lost: list[LostClaim] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        """Whether the state is final."""
        return self.state in TERMINAL_STATES

    def lost_by(self, agent: str) -> LostClaim | None:
        """`agent`'s losing claim, if it made one."""
        return next((lost for lost in self.lost if lost.agent == agent), None)


def judge(status: Status, sender: str, event: EventLike, recipient: str = ANY) -> str | None:
    """Why `event` cannot apply to a handoff in `status` (sent by `sender` to
    `recipient`, an agent or `any`), or None."""
    if event.kind == "claim":
        if status.terminal:
            return f"the handoff is already {status.state}"
        if status.holder is not None and status.holder != event.agent:
            return f"{status.holder} claimed it first"
        return None
    if event.kind != "state":
        return None  # notes and artifacts always apply: they only add information
    target = event.state
    if status.terminal:
        return f"the handoff is already {status.state}; a terminal state accepts no change"
    if target == "submitted":
        if status.state == "submitted" and status.holder is None:
            return None  # the first event of every handoff
        return "a handoff cannot go back to submitted"
    lost = status.lost_by(event.agent)
    if lost is not None and status.holder != event.agent:
        return f"{event.agent} lost the claim to {status.holder}"
    if status.holder is not None:
        if event.agent == status.holder or (target == "canceled" and event.agent == sender):
            return None
        return f"{status.holder} holds it; only the holder changes its state"
    if target in _NEEDS_CLAIM:
        return f"nobody has claimed it; claim it before setting {target}"
    if target == "canceled" and event.agent != sender:
        return f"only its sender, {sender}, cancels it before it is claimed"
    if target == "rejected" and recipient not in (ANY, event.agent):
        return f"only its addressee, {recipient}, rejects it"
    return None


def fold(sender: str, events: Iterable[EventLike], recipient: str = ANY) -> Status:
    """The current state of a handoff sent by `sender` to `recipient`, from its events
    (any order)."""
    status = Status()
    for event in sorted(events, key=lambda e: e.id):
        reason = judge(status, sender, event, recipient)
        if reason is not None:
            if event.kind == "claim" and status.lost_by(event.agent) is None:
                status.lost.append(LostClaim(event.agent, event.id))
            status.ignored.append(Ignored(event.id, event.agent, reason))
            continue
        if event.kind == "claim" and status.holder is None:
            status.holder, status.claim = event.agent, event.id
        elif event.kind == "state" and event.state is not None:
            status.state = event.state
        status.updated = event.id
    return status


# -- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandoffView:
    """A handoff, its body, its events in order, and its folded status."""

    handoff: Handoff
    body: str
    events: list[HandoffEvent]
    status: Status


def handoff_path(handoff_id: str) -> str:
    """Where the handoff `handoff_id` lives."""
    return kind_named("handoff").path(id=handoff_id)


def read(store: Store, handoff_id: str, commit: str | None = None) -> HandoffView:
    """The handoff `handoff_id` with its events (at the head, or as of `commit`); a clear
    error if there is none."""
    data = store.repo.read(handoff_path(handoff_id), commit) if is_ulid(handoff_id) else None
    if data is None:
        raise HandoffError(
            f"no handoff {handoff_id} on the state branch",
            "list them with `gitgw handoff list` (after `gitgw sync`, if it was made elsewhere)",
        )
    parsed = parse_file(handoff_path(handoff_id), data)
    handoff = parsed.records[0]
    assert isinstance(handoff, Handoff)
    events = []
    for path, blob in store.repo.walk(f"handoffs/{handoff_id}/events", commit):
        record = parse_file(path, store.repo.blob(blob)).records[0]
        assert isinstance(record, HandoffEvent)
        events.append(record)
    events.sort(key=lambda e: e.id)
    status = fold(handoff.from_.agent, events, handoff.to)
    return HandoffView(handoff, parsed.body or "", events, status)


# -- writing ------------------------------------------------------------------------------


def parse_draft(text: str) -> tuple[dict[str, Any], str]:
    """A draft's front matter fields (optional, YAML) and its markdown body."""
    if not text.startswith("---\n"):
        return {}, text
    end = text.find("\n---\n", 3)
    if end < 0:
        raise HandoffError(
            "the draft's front matter is not closed by a `---` line",
            "end the YAML block with a line holding only ---",
        )
    try:
        fields = load_document(text[4 : end + 1])
    except YamlError as exc:
        raise HandoffError(f"the draft's front matter is not valid YAML: {exc}") from None
    return fields, text[end + 5 :]


def _explain(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False)[:6]:
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        if error["type"] == "missing":
            problems.append(f"{where} is required")
        else:
            problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def create(
    store: Store,
    fields: dict[str, Any],
    body: str,
    message: str | None = None,
) -> Handoff:
    """Create a handoff from `fields` (front matter, without id/created) and `body`.

    Writes the handoff and its `submitted` event in one commit and returns it. Context
    references to memory notes must exist and be at or below the handoff's trust level.
    """
    store.repo.require_head()  # a handoff is no way to make a state branch without gitgw.yaml
    clock: Clock = store.clock
    reserved = {"id", "created", "digest", "schema_version"} & fields.keys()
    if reserved:
        raise HandoffError(
            f"a draft may not set {', '.join(sorted(reserved))}: gitgw sets them",
            "remove those keys from the front matter",
        )
    now = clock.now()
    try:
        handoff = Handoff.model_validate({**fields, "id": clock.new_id(now), "created": now})
    except ValidationError as exc:
        raise HandoffError(
            f"the handoff is not valid: {_explain(exc)}",
            "pass the missing fields as options (see `gitgw handoff create --help`) "
            "or in the draft's front matter",
        ) from None
    _check_context(store, handoff)
    first = HandoffEvent(
        id=clock.new_id(now),
        handoff=handoff.id,
        kind="state",
        agent=handoff.from_.agent,
        state="submitted",
        created=now,
    )
    store.add(
        (handoff, body),
        first,
        message=message or f"gitgw: handoff {handoff.id} to {handoff.to}: {handoff.title}",
    )
    return handoff


def _check_context(store: Store, handoff: Handoff) -> None:
    from gitgw.concepts import memory  # memory and handoffs refer to each other

    for ref in handoff.context:
        if ref.kind == "memory":
            note = memory.find(store, ref.ref).note
            if level_rank(note.trust) > level_rank(handoff.trust):
                raise HandoffError(
                    f"memory note {note.id} is {note.trust}, above this handoff's level "
                    f"({handoff.trust})",
                    f"raise the handoff's level (--trust {note.trust}) or leave the note out",
                )
        elif ref.kind == "handoff" and store.repo.read(handoff_path(ref.ref)) is None:
            raise HandoffError(
                f"the context names handoff {ref.ref}, which is not on the state branch",
                "check the id with `gitgw handoff list`",
            )


def parse_ref(text: str) -> ContextRef:
    """``KIND:REF`` (memory, file, receipt, handoff or url) as a context reference."""
    kind, sep, ref = text.partition(":")
    kinds = ("memory", "file", "receipt", "handoff", "url")
    if kind == "http" or kind == "https":
        kind, ref, sep = "url", text, ":"
    if not sep or kind not in kinds or not ref:
        raise HandoffError(
            f"cannot read the reference {text!r}",
            f"write KIND:REF with KIND one of {', '.join(kinds)} (e.g. memory:01J…, "
            "file:src/app.py, url:https://…)",
        )
    return ContextRef.model_validate({"kind": kind, "ref": ref})


def new_event(
    store: Store,
    view: HandoffView,
    kind: str,
    agent: str,
    *,
    state: str | None = None,
    note: str | None = None,
    artifact: Artifact | None = None,
    status: Status | None = None,
) -> HandoffEvent:
    """A new event, judged against the handoff's status; a clear error if it cannot apply."""
    if state is not None:
        validate_states([state])
    now = store.clock.now()
    try:
        event = HandoffEvent.model_validate(
            {
                "id": store.clock.new_id(now),
                "handoff": view.handoff.id,
                "kind": kind,
                "agent": agent,
                "state": state,
                "note": note,
                "artifact": artifact,
                "created": now,
            }
        )
    except ValidationError as exc:
        raise HandoffError(f"the event is not valid: {_explain(exc)}") from None
    current = status or view.status
    reason = judge(current, view.handoff.from_.agent, event, view.handoff.to)
    if reason is not None:
        lost = current.lost_by(agent) is not None
        error = ClaimLost if lost or (kind == "claim" and current.holder) else HandoffError
        raise error(
            f"handoff {view.handoff.id}: {agent} cannot {_verb(event)}: {reason}",
            _hint_for(current, agent),
        )
    return event


def write_events(store: Store, view: HandoffView, *events: HandoffEvent) -> None:
    """Add judged events to the branch in one commit."""
    what = ", ".join(f"{e.kind} {e.state}" if e.state else e.kind for e in events)
    agent = events[0].agent
    store.add(*events, message=f"gitgw: handoff {view.handoff.id}: {what} by {agent}")


def _verb(event: EventLike) -> str:
    return "claim it" if event.kind == "claim" else f"set it {event.state}"


def _hint_for(status: Status, agent: str) -> str:
    if status.terminal:
        return "it is finished; create a new handoff for further work"
    if status.holder is not None and status.holder != agent:
        return f"{status.holder} holds it (claim {status.claim}); leave it to them"
    return "claim it first: gitgw handoff claim ID --as AGENT"


def claim(store: Store, handoff_id: str, agent: str) -> HandoffView:
    """Claim a handoff for `agent` and set it working, or say who holds it.

    A claim already held by `agent` is kept as it is. When two machines claimed the same
    handoff, the earliest claim wins everywhere after a sync, and the other agent is told
    here that it lost.
    """
    view = read(store, handoff_id)
    status = view.status
    lost = status.lost_by(agent)
    if lost is not None:
        raise ClaimLost(
            f"handoff {handoff_id}: {agent} lost the claim: {status.holder} claimed it "
            f"first (claim {status.claim}; yours, {lost.event}, came later)",
            "both claims reached the branch (a sync merged them) and the earliest holds it "
            "on every machine; leave this one to them",
        )
    if status.holder == agent:
        return view
    claimed = new_event(store, view, "claim", agent)
    events = [claimed]
    after = fold(view.handoff.from_.agent, [*view.events, claimed], view.handoff.to)
    if after.state == "submitted":
        events.append(new_event(store, view, "state", agent, state="working", status=after))
    write_events(store, view, *events)
    final = read(store, handoff_id)
    if final.status.holder != agent:  # another process on this machine claimed it first
        raise ClaimLost(
            f"handoff {handoff_id}: {agent} lost the claim to {final.status.holder}, "
            "whose claim came first",
            "leave this one to them",
        )
    return final


def validate_states(states: Sequence[str]) -> None:
    """Refuse names that are not A2A TaskStates."""
    for state in states:
        if state not in STATES:
            raise HandoffError(
                f"unknown state {state!r}",
                f"use one of: {', '.join(STATES)} (A2A TaskState)",
            )


__all__ += ["STATES", "ClaimLost", "handoff_path", "parse_ref", "validate_states"]
