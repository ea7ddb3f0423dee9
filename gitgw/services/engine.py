"""The daemon's engine: follow the state branch commit by commit and fire what reacts.

`Engine.catch_up()` handles every commit the branch gained since the last one handled,
oldest first. For each commit it:

1. checks it as the hooks check a push (`verify.check_commits`): a commit that brings an
   invalid file, a secret or a changed add-only record is reported and its effects are
   not applied (no workflow fires on it);
2. refreshes the in-memory state: the gateway's configuration and consent, and the
   workflows (a workflow file that became invalid keeps its last valid version);
3. finds its events (`gitgw.concepts.events`) and starts what matches: every workflow
   whose trigger fires, and for each new request file, its answer.

Commits that gitgw wrote by itself (a run's records and writes, signed `Gitgw-Run:`, and
the receipt writer's batches, signed `Gitgw-Writer:`) refresh the state but fire
nothing, so a run never re-triggers on the commits it wrote.

Exactly once. A job (a workflow run or a request's answer) starts by committing its
`started` run record, whose trigger names the event's key, before the cursor (the last
handled commit, under `.git/gitgw/daemon/`) moves. After a crash between the two, the
commits since the cursor are handled again, and the started records among them say
which jobs already exist: none starts twice. On start, the runs this daemon left
`started` are closed as `interrupted`, never silently redone.

The engine is synchronous and not thread-safe: the daemon calls it from one thread and
hands the jobs' execution (`submit`) to a pool.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

import httpx

from gitgw._canonical import format_time
from gitgw._fs import atomic_write
from gitgw.concepts.events import Event, events_of
from gitgw.concepts.runs import RunLedger, list_runs, show_run
from gitgw.concepts.workflows import WorkflowSet
from gitgw.errors import GitgwError
from gitgw.records import Request, Response, Run, Workflow, parse_file
from gitgw.records.cron import Cron
from gitgw.records.layout import kind_of
from gitgw.services import requests
from gitgw.services.gateway import Gateway
from gitgw.services.verify import Problem, check_commits
from gitgw.services.workflow_runner import RunContext, execute_run, start_run
from gitgw.state import StateRepo
from gitgw.state.history import Change, changes_of, commits_since

__all__ = ["Engine", "Fired", "Handled", "Job", "is_automatic", "is_followed"]

log = logging.getLogger("gitgw.daemon")

_AUTOMATIC = re.compile(r"^Gitgw-(Run|Writer): ", re.MULTILINE)
_RECENT_KEYS = 100_000

Job = Callable[[], None]


def is_followed(repo: StateRepo) -> bool:
    """Whether a running engine (`gitgw start`, a demo) follows `repo`'s state branch."""
    return _Place(repo).followed()


def is_automatic(message: str) -> bool:
    """Whether a commit message says gitgw wrote the commit by itself."""
    return _AUTOMATIC.search(message) is not None


@dataclass(frozen=True)
class Fired:
    """A job the engine started: a workflow run, or the answer to a request file."""

    kind: str  # "workflow" or "request"
    name: str  # the workflow's name, or the request's id
    run: str  # the id of its `started` run record
    key: str  # the event's key
    commit: str | None


@dataclass
class Handled:
    """What one `catch_up` did."""

    commits: int = 0
    fired: list[Fired] = field(default_factory=list)
    invalid: list[Problem] = field(default_factory=list)
    head: str | None = None


class _Place:
    """Where the engine keeps its own small files: `.git/gitgw/daemon/`."""

    def __init__(self, repo: StateRepo) -> None:
        self.dir = repo.gitgw_dir / "daemon"
        safe = repo.branch.replace("/", "%2F")
        self.cursor_file = self.dir / f"{safe}.cursor"
        self.schedule_file = self.dir / f"{safe}.schedule.json"
        self.instance_file = self.dir / "instance"
        self.lock_file = self.dir / f"{safe}.lock"

    def lock(self, branch: str) -> IO[bytes]:
        """Hold `<branch>.lock` for the life of the process: one daemon per branch.

        Two would fire every event twice and close each other's runs as interrupted.
        The lock is the kernel's (flock), so it is released when the process dies.
        """
        import fcntl  # POSIX only, like the daemon's signal handling

        self.dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.lock_file, "a+b")  # noqa: SIM115 (held open: it is the lock)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().decode("ascii", "replace").strip() or "another process"
            handle.close()
            raise GitgwError(
                f"another gitgw start is already following branch {branch} here (pid {holder})",
                "stop it first; one daemon per state branch and repository",
            ) from None
        handle.truncate(0)
        handle.write(str(os.getpid()).encode("ascii"))
        handle.flush()
        return handle

    def followed(self) -> bool:
        """Whether a running engine (`gitgw start`, a demo) holds the lock now."""
        import fcntl

        try:
            handle = open(self.lock_file, "rb")  # noqa: SIM115 (closed below)
        except FileNotFoundError:
            return False
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
        return False  # closing the file dropped the shared lock

    def instance(self, gateway: Gateway) -> str:
        try:
            return self.instance_file.read_text("ascii").strip()
        except FileNotFoundError:
            name = gateway.clock.new_id()
            atomic_write(self.instance_file, name.encode("ascii"))
            return name

    def cursor(self) -> str | None:
        try:
            return self.cursor_file.read_text("ascii").strip() or None
        except FileNotFoundError:
            return None

    def save_cursor(self, commit: str) -> None:
        atomic_write(self.cursor_file, commit.encode("ascii"))

    def schedule(self) -> dict[str, str]:
        try:
            data = json.loads(self.schedule_file.read_text("utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def save_schedule(self, fired: dict[str, str]) -> None:
        atomic_write(self.schedule_file, json.dumps(fired, sort_keys=True).encode("utf-8"))


_JOB_RECORDS = frozenset({"run", "response"})  # what the engine writes for a job it took on


class Engine:
    """Follows one state branch for the daemon (see the module docs)."""

    def __init__(
        self,
        gateway: Gateway,
        *,
        submit: Callable[[Job], None] | None = None,
        transport: httpx.BaseTransport | None = None,
        on_step: Callable[[str, str], None] | None = None,
    ) -> None:
        """`on_step(run id, step name)` is called as each step starts (default: a log line)."""
        self.gateway = gateway
        self.repo = gateway.repo
        self.place = _Place(gateway.repo)
        self.instance = self.place.instance(gateway)
        self.workflows = WorkflowSet()
        self.transport = transport
        self.on_step = on_step or _log_step
        self._submit = submit or (lambda job: job())
        self._known: set[str] | None = None
        self._recent: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.cursor = self.place.cursor()
        self._lock: IO[bytes] | None = None

    def close(self) -> None:
        """Let another daemon follow the branch."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    @property
    def context(self) -> RunContext:
        """What a workflow run needs (built fresh: the step time limit is configuration)."""
        return RunContext(
            gateway=self.gateway,
            transport=self.transport,
            step_timeout_s=self.gateway.config.daemon.step_timeout_s,
            daemon=self.instance,
            on_step=self.on_step,
        )

    # -- starting ---------------------------------------------------------------------------

    def start(self) -> list[Run]:
        """Get ready to follow: on a first start, follow from the current head (nothing
        before it fires); load the workflows; close the runs this daemon left open.
        Returns the runs closed as interrupted."""
        if self._lock is None:
            self._lock = self.place.lock(self.repo.branch)
        head = self.repo.require_head()
        if self.cursor is None or not self.repo.has_object(self.cursor):
            if self.cursor is not None:
                log.warning("the last handled commit %s is gone; following from the head",
                            self.cursor[:12])  # fmt: skip
            self.cursor = head
            self.place.save_cursor(head)
        for invalid in self.workflows.refresh(self.repo, self.cursor):
            log.error("workflow %s is invalid at %s: %s", invalid.path, invalid.commit[:12],
                      invalid.reason)  # fmt: skip
        return self._close_interrupted()

    def _close_interrupted(self) -> list[Run]:
        closed = []
        listing = list_runs(self.repo, limit=None)
        for summary in listing.runs:
            if summary.status != "started" or summary.kind not in ("workflow", "request"):
                continue
            view = show_run(self.repo, summary.id)
            first = view.records[0]
            trigger = first.trigger or {}
            if trigger.get("daemon") != self.instance:
                continue  # another daemon's run, perhaps still going
            closed.append(self._interrupt(first, trigger))
        return closed

    def _interrupt(self, started: Run, trigger: dict[str, Any]) -> Run:
        key = str(trigger.get("key", ""))
        if started.kind == "request" and key.startswith("request:"):
            requests.interrupted_response(self.gateway, key.split(":", 1)[1], started)
            log.warning("request %s was being answered when the daemon stopped; closed as "
                        "interrupted (not sent again)", key.split(":", 1)[1])  # fmt: skip
            return started
        store = self.gateway.store.for_run(started.id)
        ended = RunLedger(store).finish(
            started,
            "interrupted",
            error="the daemon stopped during this run; it was not redone (run the workflow "
            "again with `gitgw workflows run` if it should be)",
        )
        log.warning("run %s of workflow %s was interrupted by a daemon stop; closed",
                    started.id, started.workflow)  # fmt: skip
        return ended

    # -- following the branch -----------------------------------------------------------------

    def catch_up(self) -> Handled:
        """Handle every commit since the last handled one (see the module docs)."""
        handled = Handled()
        head = self.repo.head()
        handled.head = head
        if head is None or head == self.cursor:
            return handled
        if self._known is None:
            self._known = self.repo.ancestors(self.cursor) if self.cursor else set()
        new = commits_since(self.repo, head, self._known)
        if not new:
            self._advance(head)
            return handled
        if self.cursor and not any(
            self.cursor.encode() in self.repo.parents(c.encode()) for c in new
        ):
            # The last handled commit is no longer in the branch's history: someone
            # rewrote it. Its "new" commits are old ones under new ids; firing on them
            # would run every job again. Follow from the new head instead, and say so.
            message = "the state branch was rewritten (%s is gone from its history): %s"
            log.warning(message, self.cursor[:12], f"following from {head[:12]}, firing nothing")
            self._known = self.repo.ancestors(head)
            self.workflows.refresh(self.repo, head)
            self.gateway.refresh()
            self._advance(head)
            return handled
        changes = {commit: list(changes_of(self.repo, commit)) for commit in new}
        messages = {commit: self.repo.commit_info(commit).message for commit in new}
        self._remember_started(new, changes, messages)
        problems = check_commits(self.repo, new, [self.cursor] if self.cursor else [])
        bad = {problem.commit for problem in problems}
        handled.invalid = problems
        for problem in problems:
            log.error("commit %s is invalid, its effects are not applied: %s %s",
                      problem.commit[:12], problem.path, problem.reason)  # fmt: skip
        self.gateway.refresh()
        for commit in new:
            handled.commits += 1
            for invalid in self.workflows.refresh(self.repo, commit):
                log.error("workflow %s is invalid at %s, keeping its last valid version: %s",
                          invalid.path, invalid.commit[:12], invalid.reason)  # fmt: skip
            if is_automatic(messages[commit]):
                continue
            if commit in bad:
                self._reject_requests(commit, changes[commit], problems)
                continue
            # A workflow a handoff or request of this commit matches does not fire again
            # for the commit's paths (its `on:` fires when any trigger matches: once).
            matched: set[str] = set()
            for event in events_of(self.gateway.store, commit, changes[commit]):
                if event.kind != "path":
                    matched.update(name for name, _ in self.workflows.matching(event))
                handled.fired.extend(self.fire(event, skip=matched if event.kind == "path" else ()))
        self._known.update(new)
        self._advance(head)
        return handled

    def _reject_requests(self, commit: str, changes: list[Change], problems: list[Problem]) -> None:
        # An agent without HTTP access waits for a response: a request file that cannot be
        # answered gets one saying why, instead of silence.
        reasons = {p.path: p.reason for p in problems if p.commit == commit}
        for change in changes:
            found = kind_of(change.path)
            if change.old is not None or found is None or found[0].name != "request":
                continue
            request_id = found[1]["id"]
            if change.path in reasons and self._mark("request", f"request:{request_id}"):
                reason = f"{change.path} {reasons[change.path]}"
                requests.rejected_response(self.gateway, request_id, reason)
                log.warning("request %s rejected: %s", request_id, reason)

    def _advance(self, head: str) -> None:
        self.cursor = head
        self.place.save_cursor(head)
        if self._known is not None:
            self._known.add(head)

    def _remember_started(
        self, new: list[str], changes: dict[str, list[Change]], messages: dict[str, str]
    ) -> None:
        # The started records and responses among the new commits name jobs that already
        # exist (a crash came between starting them, or answering a request file that
        # could not be answered, and moving the cursor).
        for commit in new:
            if not is_automatic(messages[commit]):
                continue
            for change in changes[commit]:
                found = kind_of(change.path)
                if change.new is None or found is None or found[0].name not in _JOB_RECORDS:
                    continue
                try:
                    [record] = parse_file(change.path, self.repo.blob(change.new)).records
                except GitgwError:
                    continue
                if isinstance(record, Response):
                    self._mark("request", f"request:{record.request}")
                elif isinstance(record, Run) and record.status == "started":
                    key = (record.trigger or {}).get("key")
                    if key is not None:
                        self._mark(record.workflow or "request", str(key))

    def _mark(self, name: str, key: str) -> bool:
        """Note that job (name, key) exists; False if it already did."""
        if (name, key) in self._recent:
            return False
        self._recent[(name, key)] = None
        if len(self._recent) > _RECENT_KEYS:
            self._recent.popitem(last=False)
        return True

    # -- firing ---------------------------------------------------------------------------

    def fire(self, event: Event, skip: Collection[str] = ()) -> list[Fired]:
        """Start every job `event` calls for: matching workflows (but those named in
        `skip`), a request's answer."""
        fired = []
        if event.kind == "request":
            request = Request.model_validate(event.data["request"])
            if self._mark("request", event.key):
                fired.extend(self._starting("request", event, self._start_answer, request))
        for name, workflow in self.workflows.matching(event):
            if name not in skip and self._mark(name, event.key):
                fired.extend(self._starting(name, event, self._start_workflow, name, workflow))
        return fired

    def _starting(
        self, name: str, event: Event, start: Callable[..., Fired], *args: Any
    ) -> list[Fired]:
        # A job that could not be started (its started record not committed) is not
        # fired: unmark it, so the commit is handled again on the next round.
        try:
            return [start(*args, event)]
        except Exception:
            self._recent.pop((name, event.key), None)
            raise

    def _trigger(self, event: Event) -> dict[str, Any]:
        return event.describe() | {"daemon": self.instance}

    def _start_answer(self, request: Request, event: Event) -> Fired:
        started = requests.start_answer(self.gateway, request, self._trigger(event))
        log.info("answering request %s (run %s)", request.id, started.id)

        def job() -> None:
            self.on_step(started.id, "answer")
            try:
                response = requests.answer(self.gateway, request, started, transport=self.transport)
            except Exception as exc:
                log.exception("answering request %s failed", request.id)
                self._close_failed(started, exc, request.id)
                return
            log.info("request %s answered: %s", request.id, response.outcome)

        self._submit(job)
        return Fired("request", request.id, started.id, event.key, event.commit)

    def _start_workflow(self, name: str, workflow: Workflow, event: Event) -> Fired:
        context = self.context
        started = start_run(context, name, workflow, event)
        log.info("workflow %s fired by %s (run %s)", name, event.key, started.id,
                 extra={"workflow": name, "key": event.key, "run": started.id})  # fmt: skip

        def job() -> None:
            try:
                ended = execute_run(context, name, workflow, event, started)
            except Exception as exc:
                log.exception("workflow %s run %s crashed", name, started.id)
                self._close_failed(started, exc)
                return
            fields = {"workflow": name, "run": started.id, "status": ended.status}
            error = f": {ended.error}" if ended.error else ""
            log.info("workflow %s run %s %s%s", name, started.id, ended.status, error, extra=fields)

        self._submit(job)
        return Fired("workflow", name, started.id, event.key, event.commit)

    def _close_failed(self, started: Run, exc: Exception, request_id: str | None = None) -> None:
        """End a run whose job raised as `failed` with the reason (best effort: if even
        that cannot be written, the next start closes it as interrupted)."""
        reason = f"gitgw failed during this run: {exc}"
        try:
            if request_id is not None:
                requests.failed_response(self.gateway, request_id, started, reason)
            else:
                store = self.gateway.store.for_run(started.id)
                RunLedger(store).finish(started, "failed", error=reason)
        except Exception:
            log.exception("could not record run %s as failed", started.id)

    # -- events from outside the branch ---------------------------------------------------------

    def gitea_push(self, push: dict[str, Any], delivery: str) -> list[Fired]:
        """Fire the workflows a Gitea push to another repository triggers."""
        return self.fire(Event("gitea_push", f"gitea:{delivery}", data={"push": push}))

    def tick(self, now: datetime) -> list[Fired]:
        """Fire the scheduled workflows due in the minute of `now` (once per minute)."""
        minute = now.replace(second=0, microsecond=0)
        stamp = format_time(minute)
        done = self.place.schedule()
        fired = []
        for name, workflow in sorted(self.workflows.workflows.items()):
            for trigger in workflow.on:
                if trigger.schedule is None or done.get(name, "") >= stamp:
                    continue
                if not _due(trigger.schedule, minute):
                    continue
                event = Event(
                    "schedule",
                    f"schedule:{stamp}",
                    data={"schedule": trigger.schedule, "time": stamp},
                    workflow=name,
                )
                done[name] = stamp
                self.place.save_schedule(done)
                fired.extend(self.fire(event))
        return fired


def _log_step(run: str, step: str) -> None:
    log.info("step %s of run %s starting", step, run, extra={"run": run, "step": step})


def _due(expression: str, minute: datetime) -> bool:
    return Cron.parse(expression).matches(minute)
