"""A handoff in other shapes: an A2A Task (lossless), and the context of a prompt.

The A2A Task carries the handoff natively (status, history of messages, artifacts) and,
under ``metadata.gitgw``, the exact records: the handoff's front matter with its digest,
its body, and every event as written. `from_a2a_task` rebuilds the files byte for byte,
so nothing is lost either way; their digests prove it.
"""

from __future__ import annotations

from typing import Any

from gitgw._canonical import compute_digest, format_time
from gitgw.concepts.handoff import HandoffError, HandoffView, fold
from gitgw.concepts.identity import allowed, clearance
from gitgw.concepts.store import Store
from gitgw.errors import InvalidRecord
from gitgw.records import Handoff, HandoffEvent, parse_file, render

__all__ = ["A2A_METADATA_KEY", "from_a2a_task", "prompt_context", "to_a2a_task"]

A2A_METADATA_KEY = "gitgw"


def _text(text: str) -> dict[str, Any]:
    return {"kind": "text", "text": text}


def _message(view: HandoffView, message_id: str, agent: str, parts: list[Any]) -> dict[str, Any]:
    role = "user" if agent == view.handoff.from_.agent else "agent"
    return {
        "kind": "message",
        "messageId": message_id,
        "taskId": view.handoff.id,
        "contextId": view.handoff.id,
        "role": role,
        "parts": parts,
        "metadata": {"agent": agent},
    }


def to_a2a_task(view: HandoffView) -> dict[str, Any]:
    """The handoff as an A2A Task object (JSON-ready)."""
    handoff = view.handoff
    sealed = _sealed_front_matter(view)
    brief = {k: v for k, v in sealed.items() if k not in ("schema_version", "digest")}
    history = [_message(view, handoff.id, handoff.from_.agent, [_text(view.body), _data(brief)])]
    artifacts = []
    status_time, status_note = format_time(handoff.created), None
    applied = {e.id for e in view.events} - {i.event for i in view.status.ignored}
    for event in view.events:
        if event.note:
            history.append(_message(view, event.id, event.agent, [_text(event.note)]))
        if event.artifact is not None:
            part: dict[str, Any] = {"kind": "file", "file": {"uri": event.artifact.uri}}
            artifacts.append(
                {
                    "artifactId": event.id,
                    "name": event.artifact.name,
                    "parts": [part],
                    "metadata": {"agent": event.agent, "sha256": event.artifact.sha256},
                }
            )
        if event.kind == "state" and event.id in applied:
            status_time, status_note = format_time(event.created), event
    status: dict[str, Any] = {"state": view.status.state, "timestamp": status_time}
    if status_note is not None and status_note.note:
        status["message"] = _message(
            view, status_note.id, status_note.agent, [_text(status_note.note)]
        )
    return {
        "kind": "task",
        "id": handoff.id,
        "contextId": handoff.id,
        "status": status,
        "history": history,
        "artifacts": artifacts,
        "metadata": {
            A2A_METADATA_KEY: {
                "schema_version": 1,
                "handoff": sealed,
                "body": view.body,
                "events": [event.sealed() for event in view.events],
                "holder": view.status.holder,
            }
        },
    }


def _data(value: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "data", "data": value}


def _sealed_front_matter(view: HandoffView) -> dict[str, Any]:
    # The handoff as read from its file carries the digest of its front matter and body.
    meta = view.handoff.to_data()
    meta["digest"] = meta.pop("digest")  # last, as in the file
    return meta


def from_a2a_task(task: dict[str, Any]) -> dict[str, bytes]:
    """The files of the handoff an exported A2A Task carries, checked against their digests."""
    try:
        carried = task["metadata"][A2A_METADATA_KEY]
        meta, body, events = carried["handoff"], carried["body"], carried["events"]
    except (KeyError, TypeError):
        raise HandoffError(
            "this A2A Task does not carry a gitgw handoff (no metadata.gitgw)",
            "only tasks exported by `gitgw handoff export --format a2a` can be imported",
        ) from None
    files: dict[str, bytes] = {}
    try:
        if compute_digest({**meta, "body": body}) != meta.get("digest") or any(
            compute_digest(item) != item.get("digest") for item in events
        ):
            raise ValueError("a digest does not match its content")
        handoff = Handoff.model_validate(meta)
        path, data = render(handoff, body)
        parse_file(path, data)  # proves the digest: the bytes are the ones exported
        files[path] = data
        for item in events:
            event = HandoffEvent.model_validate(item)
            event_path, event_data = render(event)
            parse_file(event_path, event_data)
            files[event_path] = event_data
    except (ValueError, InvalidRecord) as exc:
        raise HandoffError(f"the A2A Task's gitgw records do not check out: {exc}") from None
    return files


def prompt_context(store: Store, view: HandoffView, agent: str) -> dict[str, Any]:
    """What the handoff prompt template needs: the handoff, its notes, memory it names.

    Memory notes are included only up to the handoff's trust level and the caller's
    clearance; others are named as withheld, with the reason.
    """
    from gitgw.concepts import memory  # memory and handoffs refer to each other

    ceiling = view.handoff.trust
    if not allowed(ceiling, clearance()):
        ceiling = clearance()
    notes, withheld, others = [], [], []
    for ref in view.handoff.context:
        if ref.kind != "memory":
            others.append(ref.model_dump())
            continue
        try:
            found = memory.find(store, ref.ref)
        except memory.NoteError as exc:
            withheld.append({"id": ref.ref, "reason": exc.message})
            continue
        if allowed(found.note.trust, ceiling):
            notes.append({"id": found.note.id, "title": found.note.title, "body": found.body})
        else:
            withheld.append({"id": ref.ref, "reason": f"it is {found.note.trust}"})
    status = fold(view.handoff.from_.agent, view.events, view.handoff.to)
    return {
        "agent": agent,
        "as_name": agent if " " not in agent else "YOUR-NAME",
        # Every field present (None when unset), so the template can test any of them.
        "handoff": view.handoff.model_dump(mode="json", by_alias=True),
        "body": view.body,
        "status": {"state": status.state, "holder": status.holder},
        "events_notes": [
            {"created": format_time(e.created), "agent": e.agent, "note": e.note}
            for e in view.events
            if e.note
        ],
        "memory": notes,
        "withheld": withheld,
        "other_refs": others,
    }
