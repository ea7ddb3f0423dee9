"""Serving the proxy on a socket, inside any event loop.

`start` binds and returns a `Serving` (its URL, port and a `stop()`); `serve_forever`
does that and waits for Ctrl-C or SIGTERM, then stops: in-flight requests finish, the
receipt writer is flushed, the upstream session is closed. The socket's connections
start in the fast lane (`gitgw.proxy.fastlane`), which hands anything but plain chat
completions to aiohttp's server, set up by an `AppRunner` as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from gitgw.errors import GitgwError
from gitgw.proxy import ProxySettings, create_app
from gitgw.proxy.fastlane import Lanes
from gitgw.proxy.keys import SETTINGS
from gitgw.services.gateway import Gateway, is_loopback

__all__ = ["Serving", "check_host", "serve_forever", "start", "stop_event"]

SWITCH_INTERVAL_S = 0.0002
SHUTDOWN_S = 10.0  # how long requests in progress may take to finish when stopping


def check_host(host: str, gateway: Gateway) -> None:
    """Refuse to listen beyond loopback unless clients must show a token."""
    if is_loopback(host):
        return
    if not gateway.config.clients:
        raise GitgwError(
            f"refusing to listen on {host}: gitgw.yaml has no clients, so anyone who can "
            "reach that address could send requests",
            "add clients with token_env or token_sha256 to gitgw.yaml, or listen on 127.0.0.1",
        )
    gateway.require_token = True


@dataclass
class Serving:
    """A proxy listening on a socket."""

    runner: web.AppRunner
    server: asyncio.Server
    lanes: Lanes
    host: str
    port: int

    @property
    def url(self) -> str:
        """The base URL clients use (`…/v1`)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    async def stop(self) -> None:
        """Stop listening, let requests finish, flush receipts, close the session."""
        self.server.close()
        await self.lanes.drain(SHUTDOWN_S)  # before the app's clean-up closes the pool
        await self.runner.cleanup()


async def start(
    gateway: Gateway,
    host: str,
    port: int,
    settings: ProxySettings | None = None,
    *,
    app: web.Application | None = None,
) -> Serving:
    """Bind `host:port` (0: any free port) and serve `gateway` there."""
    check_host(host, gateway)
    app = app or create_app(gateway, settings)
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=SHUTDOWN_S,
        keepalive_timeout=app[SETTINGS].keepalive_s,  # for connections handed over
    )
    await runner.setup()
    assert runner.server is not None
    lanes = Lanes(app, runner.server)
    try:
        server = await asyncio.get_running_loop().create_server(lanes, host, port, backlog=128)
    except BaseException as exc:
        await runner.cleanup()
        if not isinstance(exc, OSError):
            raise
        if exc.errno == errno.EADDRINUSE:
            raise GitgwError(
                f"port {port} on {host} is already in use",
                "stop what listens there, or pick another port with --port",
            ) from None
        raise GitgwError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = server.sockets[0].getsockname()
    return Serving(runner, server, lanes, host, int(bound[1]))


def stop_event(*signals: signal.Signals) -> asyncio.Event:
    """An event the running loop sets when one of `signals` arrives (where the platform
    lets a loop handle signals)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    return stop


async def serve_forever(
    gateway: Gateway,
    host: str,
    port: int,
    settings: ProxySettings | None = None,
    *,
    ready: Callable[[Serving], None] | None = None,
) -> None:
    """Serve until interrupted (Ctrl-C, SIGTERM), then stop cleanly.

    The process is the proxy's own, so it also shortens the interpreter's thread switch
    interval: the receipt writer's thread then holds up the event loop for at most
    0.2 ms at a time instead of 5 ms.
    """
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    serving = await start(gateway, host, port, settings)
    stop = stop_event(signal.SIGTERM)
    try:
        if ready is not None:
            ready(serving)
        await stop.wait()
    finally:
        await serving.stop()
