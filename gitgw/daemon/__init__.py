"""`gitgw start`: the proxy, the Gitea webhook endpoint and the watcher in one process.

One event loop serves HTTP (the proxy's routes and `POST /hooks/gitea`, one aiohttp
application). Work that touches Git runs off the loop:

- the **engine thread** (`gitgw.services.engine.Engine`) handles, one at a time and in
  order, what the loop and the watcher hand it: "the branch moved" (coalesced, from the
  watcher on watchdog's thread), Gitea pushes (a bounded queue: the endpoint answers 503
  when it is full), the minute ticks of schedules and periodic syncs;
- **run workers** (`daemon.max_parallel_runs` threads) execute the jobs the engine
  started, so a slow model call or command never holds up the branch.

Stopping (SIGTERM, SIGINT) stops the watcher and the engine, gives running jobs a grace
period, then stops the proxy, which flushes every queued receipt to the branch. A job
still running after the grace period stays `started` on the branch and is closed as
`interrupted` by the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from gitgw.errors import GitgwError
from gitgw.proxy import ProxySettings, create_app
from gitgw.proxy.serve import SWITCH_INTERVAL_S, Serving, start, stop_event
from gitgw.services.commands import kill_running
from gitgw.services.deliveries import PushEvent
from gitgw.services.engine import Engine, Job
from gitgw.services.gateway import Gateway
from gitgw.services.sync import sync
from gitgw.watcher import RefWatcher

__all__ = ["Daemon", "run_forever"]

log = logging.getLogger("gitgw.daemon")

GRACE_S = 10.0  # how long a stop waits for running jobs
RETRY_S = 2.0  # how soon the engine tries again after a round failed
STOP_ATTEMPTS = 3  # failed rounds in a row after which stopping drops what is left


class _Workers:
    """A fixed set of daemon threads running jobs from a queue (they never block exit)."""

    def __init__(self, count: int) -> None:
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._busy = 0
        self.stopping = False  # set when the daemon stops: queued jobs are not started
        self._lock = threading.Condition()
        self._threads = [
            threading.Thread(target=self._work, name=f"gitgw-run-{n}", daemon=True)
            for n in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Job) -> None:
        with self._lock:
            self._busy += 1
        self._jobs.put(job)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                if self.stopping:
                    continue  # its run stays `started`; the next start closes it
                job()
            except Exception:  # a job logs its own failures; this is the last resort
                log.exception("a job failed")
            finally:
                with self._lock:
                    self._busy -= 1
                    self._lock.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until no job is queued or running; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def stop(self) -> None:
        self.stopping = True
        for _ in self._threads:
            self._jobs.put(None)


@dataclass
class _Inbox:
    """What the engine thread has to do, filled from other threads."""

    limit: int
    moved: bool = True  # catch up once at start
    pushes: deque[PushEvent] = field(default_factory=deque)
    ticks: deque[datetime] = field(default_factory=deque)
    sync: bool = False
    stop: bool = False
    cond: threading.Condition = field(default_factory=threading.Condition)
    hold_until: float = 0.0  # after a failed round: no new round before this (monotonic)
    failures: int = 0  # failed rounds in a row

    def has_work(self) -> bool:
        """Whether there is anything to do (the caller holds `cond`)."""
        return bool(self.moved or self.pushes or self.ticks or self.sync)


class Daemon:
    """The daemon's parts, started and stopped together (see the module docs)."""

    def __init__(
        self,
        gateway: Gateway,
        host: str,
        port: int,
        settings: ProxySettings | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        on_step: Callable[[str, str], None] | None = None,
    ) -> None:
        self.gateway = gateway
        self.host, self.port = host, port
        self.settings = settings or ProxySettings()
        daemon = gateway.config.daemon
        self.workers = _Workers(daemon.max_parallel_runs)
        self.engine = Engine(
            gateway, submit=self.workers.submit, transport=transport, on_step=on_step
        )
        self.inbox = _Inbox(limit=daemon.webhook_queue)
        self.watcher = RefWatcher(gateway.repo.common_dir, gateway.repo.branch, self.wake)
        self._thread = threading.Thread(target=self._engine_loop, name="gitgw-engine")
        self._tasks: list[asyncio.Task[None]] = []
        self.serving: Serving | None = None
        self.handled = 0  # commits handled so far (for tests and metrics)

    # -- what other threads call ------------------------------------------------------------

    def wake(self) -> None:
        """The branch may have moved: have the engine look (cheap, coalesced)."""
        with self.inbox.cond:
            self.inbox.moved = True
            self.inbox.cond.notify()

    def accept(self, event: PushEvent) -> bool:
        """Take a Gitea push for the engine; False when the queue is full (503)."""
        with self.inbox.cond:
            if self.inbox.stop or len(self.inbox.pushes) >= self.inbox.limit:
                return False  # 503: the delivery is forgotten, so a redelivery is taken
            self.inbox.pushes.append(event)
            self.inbox.cond.notify()
            return True

    # -- the engine thread ----------------------------------------------------------------------

    def _engine_loop(self) -> None:
        inbox = self.inbox
        while True:
            with inbox.cond:
                while True:
                    # Pushes accepted (answered 202) are handled before stopping, unless
                    # rounds keep failing: then stopping wins, and says what is left.
                    if inbox.stop and (not inbox.pushes or inbox.failures >= STOP_ATTEMPTS):
                        if inbox.pushes:
                            log.error("stopping with %d Gitea push(es) not handled: %s",
                                      len(inbox.pushes),
                                      ", ".join(p.delivery for p in inbox.pushes))  # fmt: skip
                        return
                    wait = inbox.hold_until - time.monotonic()
                    if wait <= 0 and inbox.has_work():
                        break
                    inbox.cond.wait(wait if wait > 0 else None)
                moved, inbox.moved = inbox.moved, False
                pushes = list(inbox.pushes)
                inbox.pushes.clear()
                ticks = list(inbox.ticks)
                inbox.ticks.clear()
                wants_sync, inbox.sync = inbox.sync, False
            try:
                self._work(moved, pushes, ticks, wants_sync)
            except Exception:
                log.exception("the engine failed on this round; it tries again in %.0f s", RETRY_S)
                with inbox.cond:  # what the round did not finish goes first, after a pause
                    inbox.pushes.extendleft(reversed(pushes))
                    inbox.ticks.extendleft(reversed(ticks))
                    inbox.moved = True  # and the branch is read again
                    inbox.failures += 1
                    inbox.hold_until = time.monotonic() + RETRY_S
            else:
                with inbox.cond:
                    inbox.failures = 0

    def _work(
        self, moved: bool, pushes: list[PushEvent], ticks: list[datetime], wants_sync: bool
    ) -> None:
        """One round. A push or tick leaves its list once handled: whatever is left when
        this raises is put back (a Gitea push answered 202 is never dropped; firing
        again is harmless, as runs are keyed by their event)."""
        state_repo = self.gateway.config.gitea.state_repo
        while pushes:
            push = pushes[0]
            if push.repo == state_repo and push.branch == self.gateway.repo.branch:
                log.info("Gitea push %s to the state repository: syncing", push.delivery)
                wants_sync = True
            else:
                fired = self.engine.gitea_push(push.as_context(), push.delivery)
                log.info("Gitea push %s to %s (%s): %d workflow(s) fired", push.delivery,
                         push.repo, push.branch, len(fired))  # fmt: skip
            pushes.pop(0)
        if wants_sync:
            self._sync()
            moved = True
        if moved:
            handled = self.engine.catch_up()
            self.handled += handled.commits
        while ticks:
            self.engine.tick(ticks[0])
            ticks.pop(0)

    def _sync(self) -> None:
        remote = self.gateway.config.sync.remote
        try:
            result = sync(self.gateway.repo, remote, self.gateway.clock)
        except GitgwError as exc:
            log.error("sync with %s failed: %s", remote, exc.message)
            return
        log.info("synced with %s: %s", remote, result.action)

    # -- the event loop's side ------------------------------------------------------------------

    async def start(self) -> Serving:
        """Start every part; the proxy is listening when this returns."""
        await asyncio.to_thread(self.engine.start)  # closes (and logs) interrupted runs
        app = create_app(self.gateway, self.settings, webhooks=self)
        self.serving = await start(self.gateway, self.host, self.port, self.settings, app=app)
        self._thread.start()
        self.watcher.start()
        self.wake()  # anything that moved while the watcher was starting
        self._tasks.append(asyncio.create_task(self._ticks(), name="gitgw-schedule"))
        interval = self.gateway.config.daemon.sync_interval_s
        if interval:
            self._tasks.append(asyncio.create_task(self._syncs(interval), name="gitgw-sync"))
        return self.serving

    async def _ticks(self) -> None:
        while True:
            now = time.time()
            await asyncio.sleep(60 - now % 60 + 0.05)
            with self.inbox.cond:
                self.inbox.ticks.append(datetime.now(UTC))
                self.inbox.cond.notify()

    async def _syncs(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            with self.inbox.cond:
                self.inbox.sync = True
                self.inbox.cond.notify()

    async def stop(self) -> None:
        """Stop every part; receipts are flushed, running jobs get a grace period."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.watcher.stop()
        with self.inbox.cond:
            self.inbox.stop = True
            self.inbox.cond.notify()
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)
        self.workers.stopping = True  # what is queued and not started stays queued
        if not await asyncio.to_thread(self.workers.drain, GRACE_S):
            killed = kill_running()
            log.warning("jobs still running after %.0f s (%d command(s) killed); the next "
                        "start closes their runs as interrupted", GRACE_S, killed)  # fmt: skip
        self.workers.stop()
        if self.serving is not None:
            await self.serving.stop()
        self.engine.close()


async def run_forever(daemon: Daemon, *, ready: Callable[[Serving], None] | None = None) -> None:
    """Run `daemon` until SIGTERM or SIGINT, then stop it cleanly."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    stop = stop_event(signal.SIGTERM, signal.SIGINT)
    serving = await daemon.start()
    try:
        if ready is not None:
            ready(serving)
        await stop.wait()
    finally:
        await daemon.stop()
