"""The live proxy: OpenAI-compatible, routed by trust level and consent, a receipt per call.

The only package that imports aiohttp. `create_app(gateway)` is the application
factory; its shared state lives under the typed keys in `gitgw.proxy.keys`. Three
cleanup contexts hold what lives as long as the application: the receipt writer
(flushed when the application stops, so every receipt handed over reaches the branch),
one `ClientSession` for every upstream call, and the task that follows the state
branch (configuration and consent reloads within a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from gitgw.proxy import handlers
from gitgw.proxy import webhooks as gitea_webhooks
from gitgw.proxy.errors import error_middleware
from gitgw.proxy.keys import (
    DELIVERIES,
    GATEWAY,
    METRICS,
    POOL,
    SESSION,
    SETTINGS,
    WEBHOOKS,
    ProxySettings,
)
from gitgw.proxy.metrics import Metrics
from gitgw.proxy.pool import HttpPool
from gitgw.services.deliveries import DeliveryLog, WebhookSink
from gitgw.services.gateway import Gateway

__all__ = ["ProxySettings", "create_app"]

log = logging.getLogger("gitgw.proxy")

HAND_OVER_S = 0.5  # how often queued receipts go to the batching writer

SessionFactory = Callable[[ProxySettings], aiohttp.ClientSession]


def default_session(settings: ProxySettings) -> aiohttp.ClientSession:
    """The one client session for upstream calls: pooled, with connect and read timeouts."""
    timeout = aiohttp.ClientTimeout(
        total=None,
        sock_connect=settings.connect_timeout_s,
        sock_read=settings.read_timeout_s,
    )
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
    return aiohttp.ClientSession(
        timeout=timeout,
        connector=connector,
        skip_auto_headers=("User-Agent",),
        headers={"User-Agent": "gitgw"},
        auto_decompress=True,
    )


def create_app(
    gateway: Gateway,
    settings: ProxySettings | None = None,
    *,
    session: SessionFactory = default_session,
    webhooks: WebhookSink | None = None,
) -> web.Application:
    """The proxy application over `gateway` (the caller closes the gateway afterwards).

    With `webhooks`, it also serves `POST /hooks/gitea` and hands accepted push events to
    it (see `gitgw.proxy.webhooks`).
    """
    app = web.Application(middlewares=[error_middleware])
    app[GATEWAY] = gateway
    app[METRICS] = Metrics()
    app[SETTINGS] = settings or ProxySettings()
    app.cleanup_ctx.append(_receipts)
    app.cleanup_ctx.append(_client_session(session))
    app.cleanup_ctx.append(_follow_branch)
    app.router.add_post("/v1/chat/completions", handlers.chat_completions)
    app.router.add_get("/v1/models", handlers.models)
    app.router.add_get("/health/live", handlers.live)
    app.router.add_get("/health/ready", handlers.ready)
    app.router.add_get("/metrics", handlers.metrics)
    if webhooks is not None:
        app[WEBHOOKS] = webhooks
        app[DELIVERIES] = DeliveryLog.for_repo(gateway.repo)
        app.router.add_post("/hooks/gitea", gitea_webhooks.gitea)
    return app


async def _receipts(app: web.Application) -> AsyncIterator[None]:
    gateway = app[GATEWAY]
    gateway.on_batch = app[METRICS].batch_handed_over
    warm = asyncio.create_task(asyncio.to_thread(gateway.warm), name="gitgw-warm-up")

    async def hand_over() -> None:
        while True:
            await asyncio.sleep(HAND_OVER_S)
            try:
                gateway.hand_over()  # builds the lines and queues one file: no waiting
            except Exception:  # a bug: keep handing over what later requests leave
                log.exception("could not hand the queued receipts to the writer")

    task = asyncio.create_task(hand_over(), name="gitgw-hand-over-receipts")
    yield
    # Cleaned up last: every request has finished, so every receipt is queued; commit them.
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await warm
    await asyncio.to_thread(gateway.flush)


def _client_session(
    factory: SessionFactory,
) -> Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def context(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        app[SESSION] = factory(settings)
        app[POOL] = HttpPool(settings.connect_timeout_s, settings.read_timeout_s)
        yield
        await app[POOL].close()
        await app[SESSION].close()

    return context


async def _follow_branch(app: web.Application) -> AsyncIterator[None]:
    gateway, metrics = app[GATEWAY], app[METRICS]
    interval = app[SETTINGS].refresh_interval_s

    async def follow() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                found = await asyncio.to_thread(gateway.refresh)
            except Exception:
                log.exception("could not read the state branch; serving what was loaded")
                continue
            if found.problem is not None:
                metrics.config_reloads.labels("rejected").inc()
                log.error(
                    "gitgw.yaml at %s is invalid, still serving %s: %s",
                    found.problem.commit[:12],
                    gateway.loaded.commit[:12],
                    found.problem.message,
                )
            elif found.config_changed:
                metrics.config_reloads.labels("ok").inc()
                log.info("configuration reloaded at %s", gateway.loaded.commit[:12])

    task = asyncio.create_task(follow(), name="gitgw-follow-branch")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
