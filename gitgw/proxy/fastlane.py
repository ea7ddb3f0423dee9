"""The proxy's listening socket: plain chat completions served in a fast lane, the rest
by aiohttp's server.

aiohttp's server spends about 0.2 ms per request on the benchmark machine before and
after the handler (its request and response objects, a task per
request, several turns of the event loop), as much as all of gitgw's own work. Most
requests a gateway sees are one kind: a non-streaming `POST /v1/chat/completions`. Each
connection starts in the fast lane, which reads such requests itself (`http11`), runs
the same gateway code as the aiohttp handler (`prepare`, `call_routes`, `finish`) and
writes the answer.

Anything else hands the connection over to aiohttp's server for good, with every byte
received and not yet answered: another path or method, anything unusual in the head
(`http11.read_head`), a request that cannot be served as it is (a bad body, a refused
or unknown model, a wrong token: aiohttp's handler answers those, with their receipts),
and a streaming request. The decision is made before anything is sent upstream or
recorded, so a request handed over is served exactly as if it had arrived there (one
handed over after `prepare` is prepared again there: the price of a rarer path).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import cast

from aiohttp import web

from gitgw.proxy import handlers
from gitgw.proxy.errors import unexpected_error
from gitgw.proxy.http11 import MORE, OTHER, Head, read_head, response_bytes
from gitgw.proxy.keys import GATEWAY, SETTINGS
from gitgw.proxy.upstream import Call, call_routes
from gitgw.services.gateway import Outcome, Prepared

__all__ = ["Lanes"]

log = logging.getLogger("gitgw.proxy")

_PAUSE_AT = 1 << 20  # bytes received and not yet taken before reading pauses
_DRAIN_POLL_S = 0.05


class Lanes:
    """The connections a listening socket accepted: a protocol factory for it."""

    def __init__(self, app: web.Application, slow: web.Server) -> None:
        self.app = app
        self.slow = slow  # aiohttp's server: makes the protocol a connection is handed to
        self.keepalive_s = app[SETTINGS].keepalive_s
        self.connections: set[_FastLane] = set()
        self.tasks: set[asyncio.Task[None]] = set()  # requests in progress, clients gone or not
        self.closing = False  # stopping: connections close once nothing is in progress
        self.stopped = False  # stopped: no request starts any more

    def __call__(self) -> _FastLane:
        return _FastLane(self)

    async def drain(self, timeout: float) -> None:
        """Let the fast lane's requests in progress, and those still arriving, finish
        within `timeout` seconds (then they are cancelled, still leaving their
        receipts); close every connection as soon as it has nothing in progress. A
        connection handed to aiohttp's server meanwhile stops as that server stops its
        own: a request whose handler runs finishes, one whose body is still arriving
        does not."""
        self.closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            arriving = False
            for lane in list(self.connections):
                if lane.task is not None:
                    continue
                if lane.buffer and not lane.write_paused and not lane.closed:
                    arriving = True  # the rest of a request is on its way
                else:
                    lane.close()  # idle, or its client does not read what it asked for
            left = deadline - loop.time()
            if (not self.tasks and not arriving) or left <= 0:
                break
            if self.tasks:
                await asyncio.wait(list(self.tasks), timeout=min(left, _DRAIN_POLL_S))
            else:
                await asyncio.sleep(min(left, _DRAIN_POLL_S))
        self.stopped = True  # no request starts from here on
        for task in list(self.tasks):
            task.cancel()
        for lane in list(self.connections):
            if lane.task is None:
                lane.close(at_once=left <= 0)
        await asyncio.gather(*self.tasks, return_exceptions=True)


class _FastLane(asyncio.Protocol):
    """One connection, while it holds only requests the fast lane serves.

    One request at a time: the next is read once the answer to this one is written and
    the transport takes more writing (what a client sends meanwhile waits in `buffer`,
    and reading pauses while that is over `_PAUSE_AT`).
    """

    def __init__(self, lanes: Lanes) -> None:
        self.lanes = lanes
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.task: asyncio.Task[None] | None = None
        self.lost = False
        self.closed = False
        self.read_paused = False
        self.write_paused = False
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio's side ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # as aiohttp's server sets them
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.lanes.connections.add(self)
        self._idle()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self._busy:
            self._stop_timer()  # the idle timer starts again if the request is not all here
            self._next()
        elif len(self.buffer) > _PAUSE_AT and self.transport is not None and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        return False  # the client closed its side: close ours too, as aiohttp's server does

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._stop_timer()
        self.lanes.connections.discard(self)

    def pause_writing(self) -> None:
        self.write_paused = True  # the client is not reading: take no further request

    def resume_writing(self) -> None:
        self.write_paused = False
        self._free()

    # -- the lane -------------------------------------------------------------------------

    @property
    def _busy(self) -> bool:
        return self.task is not None or self.write_paused

    def _free(self) -> None:
        """Go on with what waits in the buffer, once nothing is in progress."""
        if self._busy or self.lost or self.transport is None:
            return
        if self.lanes.closing and not self.buffer:
            self.close()
            return
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self._next()

    def _next(self) -> None:
        """Start on the next request in the buffer, if all of it is there."""
        if self.lanes.stopped:
            self.close()
            return
        if not self.buffer:  # the usual case after an answer: wait for the next request
            self._idle()
            return
        head = read_head(self.buffer)
        if head is MORE:
            self._idle()
            return
        if head is OTHER:
            self._hand_over(bytes(self.buffer))
            return
        assert isinstance(head, Head)
        end = head.size + head.content_length
        gateway = self.lanes.app[GATEWAY]
        if head.content_length > gateway.config.proxy.max_body_bytes:
            self._hand_over(bytes(self.buffer))  # its handler answers 413, with a receipt
            return
        if len(self.buffer) < end:
            self._idle()
            return
        self._stop_timer()
        raw = bytes(self.buffer[:end])
        del self.buffer[:end]
        started = time.perf_counter()
        try:
            client = gateway.authenticate(head.authorization)
            prepared = gateway.prepare(raw[head.size :], client, head.trust)
        except Exception:  # a RequestError, or a bug: aiohttp's handler answers either
            prepared = None
        if prepared is None or prepared.refusal is not None or prepared.stream:
            self._hand_over(raw + self.buffer)
            return
        task = asyncio.get_running_loop().create_task(self._serve(prepared, started))
        self.task = task
        self.lanes.tasks.add(task)
        task.add_done_callback(self.lanes.tasks.discard)

    async def _serve(self, prepared: Prepared, started: float) -> None:
        app = self.lanes.app
        gateway = app[GATEWAY]
        call = Call(app, prepared, started)
        answered = False
        try:
            response, outcome = await call_routes(call)
            assert isinstance(response, web.Response)  # nothing is streamed here
            answered = self._write(response_bytes(response))
            if not answered:
                outcome.outcome = "interrupted"
                outcome.detail = "the client disconnected before the answer was sent"
            handlers.finish(app, gateway, prepared, outcome, started, response.status, call)
        except asyncio.CancelledError:  # the server is shutting down: still leave a receipt
            outcome = Outcome("interrupted", failed=call.failed, detail="the proxy shut down")
            handlers.finish(app, gateway, prepared, outcome, started, 499, call)
            self.close()
            raise
        except Exception:  # a bug: answer as aiohttp's error middleware does, then close
            log.exception("unexpected error serving POST /v1/chat/completions")
            if not answered:
                self._write(response_bytes(unexpected_error()))
            self.close()
            return
        self.task = None
        self._free()  # a request the client sent before this answer (pipelining)

    def _write(self, data: bytes) -> bool:
        transport = self.transport
        if transport is None or self.lost or transport.is_closing():
            return False
        transport.write(data)
        return True

    def _hand_over(self, received: bytes) -> None:
        """Give the connection, and what it sent that is not answered yet, to aiohttp
        (never while writing is paused: aiohttp's protocol starts out unpaused)."""
        self._stop_timer()
        self.lanes.connections.discard(self)
        transport = self.transport
        if transport is None or self.lost:
            return
        protocol = self.lanes.slow()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if received:
            protocol.data_received(received)  # when stopping, aiohttp's shutdown follows

    def close(self, *, at_once: bool = False) -> None:
        """Close the connection: once what was written is sent, or `at_once`."""
        self._stop_timer()
        self.closed = True
        if self.transport is not None:
            if at_once:
                self.transport.abort()
            else:
                self.transport.close()

    def _idle(self) -> None:
        # Waiting for (more of) a request: an idle connection is closed in time.
        if self._timer is None and not self.lost:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.lanes.keepalive_s, self.close)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
