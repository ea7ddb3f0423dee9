"""The workflows on the state branch, kept in memory and followed commit by commit.

A `WorkflowSet` holds the workflows (`workflows/<name>.yaml`) as of some commit.
`refresh(repo, commit)` brings it to another commit and re-parses only the files whose
blob changed, with the same checks the hooks run (`check_file`). A file that became
invalid does not take its workflow away: the last valid version stays in force, and the
file is reported (a `WorkflowProblem`) until it is fixed or deleted. A deleted file
removes its workflow.

`matching(event)` lists the workflows an event fires. `manual_event` builds the event a
person asks for when running a workflow by hand (`gitgw workflows run --event FILE`).
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gitgw.concepts import handoff as handoffs
from gitgw.concepts.checks import check_file
from gitgw.concepts.events import Event, handoff_context, matches
from gitgw.concepts.store import Store
from gitgw.errors import GitgwError, InvalidRecord
from gitgw.records import Request, Workflow, kind_named, kind_of, parse_file
from gitgw.state import StateRepo

__all__ = [
    "EVENT_KINDS",
    "WorkflowProblem",
    "WorkflowSet",
    "load",
    "manual_event",
]

_TOP = "workflows"


@dataclass(frozen=True)
class WorkflowProblem:
    """A workflow file that is not valid at `commit`, and why.

    `kept` says whether an earlier valid version of it stays in force.
    """

    path: str
    commit: str
    reason: str
    name: str
    kept: bool = False


def _name_of(path: str) -> str | None:
    found = kind_of(path)
    if found is None or found[0].name != "workflow":
        return None
    return found[1]["name"]


class WorkflowSet:
    """The workflows on the branch as of one commit (see the module docs)."""

    def __init__(self) -> None:
        self.workflows: dict[str, Workflow] = {}  # name -> the version in force
        self.commit: str | None = None  # the commit the set reflects
        self._blobs: dict[str, str] = {}  # path -> the blob last looked at
        self._problems: dict[str, WorkflowProblem] = {}  # path -> why it is not valid
        self._tree: bytes | None = None  # the `workflows/` tree last looked at

    @property
    def problems(self) -> list[WorkflowProblem]:
        """The workflow files that are not valid now, by path."""
        return [self._problems[path] for path in sorted(self._problems)]

    def refresh(self, repo: StateRepo, head: str) -> list[WorkflowProblem]:
        """Bring the set to commit `head`; the problems of the files that changed."""
        found = repo.trees.lookup(repo.tree_of(head), _TOP)
        tree = found[1] if found is not None and stat.S_ISDIR(found[0]) else None
        self.commit = head
        if tree == self._tree and (tree is not None or not self._blobs):
            return []
        self._tree = tree
        current = {path: blob for path, blob in repo.walk(_TOP, head) if _name_of(path) is not None}
        for path in sorted(set(self._blobs) - set(current)):  # deleted
            del self._blobs[path]
            self._problems.pop(path, None)
            name = _name_of(path)
            if name is not None:
                self.workflows.pop(name, None)
        new: list[WorkflowProblem] = []
        for path, blob in sorted(current.items()):
            if self._blobs.get(path) == blob:
                continue
            self._blobs[path] = blob
            name = _name_of(path)
            assert name is not None
            try:
                [record] = check_file(path, repo.blob(blob)).records
            except InvalidRecord as exc:
                problem = WorkflowProblem(path, head, exc.reason, name, name in self.workflows)
                self._problems[path] = problem
                new.append(problem)
                continue
            assert isinstance(record, Workflow)
            self.workflows[name] = record
            self._problems.pop(path, None)
        return new

    def matching(self, event: Event) -> list[tuple[str, Workflow]]:
        """The workflows `event` fires, by name. An event meant for one workflow (a
        schedule's minute) fires only that one."""
        fired = []
        for name, workflow in sorted(self.workflows.items()):
            if event.workflow is not None and event.workflow != name:
                continue
            if event.kind == "schedule" and event.workflow is None:
                continue
            if any(matches(trigger, event) for trigger in workflow.on):
                fired.append((name, workflow))
        return fired

    def get(self, name: str) -> Workflow:
        """The workflow `name`; a clear error naming the ones there are."""
        found = self.workflows.get(name)
        if found is not None:
            return found
        broken = next((p for p in self._problems.values() if p.name == name), None)
        if broken is not None:
            raise InvalidRecord(broken.path, broken.reason, "fix the file and commit it again")
        known = ", ".join(sorted(self.workflows)) or "none yet"
        raise GitgwError(
            f"no workflow {name!r} on the state branch (there are: {known})",
            f"add one as workflows/{name}.yaml on the state branch; `gitgw workflows list` "
            "shows them",
        )


def load(store: Store, commit: str | None = None) -> WorkflowSet:
    """The workflows on `store`'s branch at `commit` (default: the head)."""
    found = WorkflowSet()
    found.refresh(store.repo, commit or store.repo.require_head())
    return found


# -- events asked for by hand ------------------------------------------------------------------

EVENT_KINDS = ("handoff", "request", "gitea_push", "path", "schedule", "manual")


def _bad_event(message: str) -> GitgwError:
    return GitgwError(
        f"the event file {message}",
        'write one of {"kind": "handoff", "handoff": "<id>"}, {"kind": "request", "request": '
        '"<id>"}, {"kind": "gitea_push", "push": {"repo": "owner/name", ...}}, '
        '{"kind": "path", "paths": ["..."]} or {"kind": "manual", "data": {...}}',
    )


def _only(spec: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(spec) - {"kind", *allowed})
    if unknown:
        raise _bad_event(
            f"of kind {spec['kind']} does not take {', '.join(unknown)} "
            f"(it takes {', '.join(allowed) or 'nothing else'})"
        )


def manual_event(
    store: Store, spec: Mapping[str, Any] | None, workflow: str | None = None
) -> Event:
    """The event `spec` describes, built from the records on the branch as a commit would
    bring it (default: a `manual` event with no data). `workflow` names the workflow it is
    meant for (a schedule event needs it)."""
    spec = dict(spec or {"kind": "manual"})
    kind = spec.get("kind")
    head = store.repo.require_head()
    tag = store.clock.new_id()
    if kind == "handoff":
        _only(spec, ("handoff",))
        handoff_id = spec.get("handoff")
        if not isinstance(handoff_id, str):
            raise _bad_event('of kind handoff needs "handoff": the handoff\'s id')
        view = handoffs.read(store, handoff_id.strip().upper())
        key = f"handoff:{view.handoff.id}:{view.status.updated or 'created'}"
        return Event("handoff", key, head, data={"handoff": handoff_context(view)})
    if kind == "request":
        _only(spec, ("request",))
        request_id = spec.get("request")
        if not isinstance(request_id, str):
            raise _bad_event('of kind request needs "request": the request\'s id')
        path = kind_named("request").path(id=request_id.strip().upper())
        data = store.repo.read(path)
        if data is None:
            raise GitgwError(
                f"no request {request_id} on the state branch ({path})",
                "check the id; requests live under requests/",
            )
        [request] = parse_file(path, data).records
        assert isinstance(request, Request)
        found = request.model_dump(mode="json", exclude_none=True)
        return Event("request", f"request:{request.id}", head, data={"request": found})
    if kind == "gitea_push":
        _only(spec, ("push",))
        push = spec.get("push")
        if not isinstance(push, dict) or not isinstance(push.get("repo"), str):
            raise _bad_event('of kind gitea_push needs "push" with at least "repo" (owner/name)')
        return Event("gitea_push", f"gitea:manual-{tag}", data={"push": push})
    if kind == "path":
        _only(spec, ("paths",))
        paths = spec.get("paths")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise _bad_event('of kind path needs "paths": a list of paths on the branch')
        changes = [{"path": p, "change": "modified"} for p in paths]
        return Event("path", f"manual:{tag}", head, tuple(paths), {"changes": changes})
    if kind == "schedule":
        _only(spec, ("schedule", "time"))
        when = {"schedule": spec.get("schedule"), "time": spec.get("time")}
        return Event("schedule", f"manual:{tag}", data=when, workflow=workflow)
    if kind == "manual":
        _only(spec, ("data",))
        given = spec.get("data", {})
        if not isinstance(given, dict):
            raise _bad_event('of kind manual takes "data": an object')
        return Event("manual", f"manual:{tag}", head, data=given, workflow=workflow)
    raise _bad_event(f"has kind {kind!r}; it is one of {', '.join(EVENT_KINDS)}")
