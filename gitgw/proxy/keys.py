"""The typed keys under which the proxy application keeps its shared state."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import ClientSession, web

from gitgw.proxy.metrics import Metrics
from gitgw.proxy.pool import HttpPool
from gitgw.services.deliveries import DeliveryLog, WebhookSink
from gitgw.services.gateway import Gateway

__all__ = [
    "DELIVERIES",
    "GATEWAY",
    "METRICS",
    "POOL",
    "SESSION",
    "SETTINGS",
    "WEBHOOKS",
    "ProxySettings",
]


@dataclass(frozen=True)
class ProxySettings:
    """How the proxy talks to upstreams and follows the state branch."""

    connect_timeout_s: float = 5.0
    read_timeout_s: float = 120.0  # no byte from an upstream for this long: it hangs
    refresh_interval_s: float = 0.5  # how often the state branch's head is looked at
    keepalive_s: float = 75.0  # a client's connection idle this long is closed


GATEWAY = web.AppKey("gateway", Gateway)
METRICS = web.AppKey("metrics", Metrics)
SETTINGS = web.AppKey("settings", ProxySettings)
SESSION = web.AppKey("session", ClientSession)  # upstreams over HTTPS
POOL = web.AppKey("pool", HttpPool)  # upstreams over plain HTTP
WEBHOOKS: web.AppKey[WebhookSink] = web.AppKey("webhooks")  # takes Gitea push events
DELIVERIES = web.AppKey("deliveries", DeliveryLog)  # Gitea delivery ids already taken
