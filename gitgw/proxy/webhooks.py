"""`POST /hooks/gitea`: Gitea webhook deliveries in, push events out to a sink.

The endpoint answers, checking in this order:

| answer | when |
|---|---|
| 404 | `gitea.webhook_secret_env` is unset, or names an unset or empty variable |
| 413 | the body is over `gitea.max_body_bytes` (Content-Length, then while reading) |
| 401 | `X-Gitea-Signature` is missing or does not sign the body with the secret |
| 400 | `X-Gitea-Delivery` is missing or is not a delivery id |
| 200 `duplicate` | this delivery id was taken before: nothing is done again |
| 202 `ignored` | an event other than `push` |
| 400 | a push whose payload is malformed |
| 202 `accepted` | the sink took the push |
| 503 | the sink's queue is full; the delivery is forgotten, so a redelivery is taken |

The secret and the configuration are read on every request, so a configuration reload
or a changed variable applies at once. A refused signature is logged (logger
`gitgw.webhooks`) with the delivery id and event, never the body.
"""

from __future__ import annotations

import asyncio
import logging
import os

from aiohttp import web

from gitgw.errors import GitgwError
from gitgw.proxy.bodies import BodyTooLarge, read_body
from gitgw.proxy.errors import error_response, message_of
from gitgw.proxy.keys import DELIVERIES, GATEWAY, WEBHOOKS
from gitgw.records.config import GiteaConfig
from gitgw.services.deliveries import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    parse_push,
    signed_payload,
    valid_delivery_id,
    verify_signature,
)

__all__ = ["RETRY_AFTER_S", "gitea"]

log = logging.getLogger("gitgw.webhooks")

RETRY_AFTER_S = 30


def _secret(config: GiteaConfig) -> bytes | None:
    if not config.webhook_secret_env:
        return None
    value = os.environ.get(config.webhook_secret_env)
    return value.encode("utf-8") if value else None


def _status(status: int, word: str) -> web.Response:
    return web.json_response({"status": word}, status=status)


async def gitea(request: web.Request) -> web.StreamResponse:
    """`POST /hooks/gitea`: check a Gitea delivery and hand its push to the sink."""
    config = request.app[GATEWAY].config.gitea
    secret = _secret(config)
    if secret is None:
        return error_response(
            404,
            "Gitea webhooks are disabled on this gitgw; to enable them, set "
            "gitea.webhook_secret_env in gitgw.yaml to the name of an environment variable, "
            "and set that variable to the webhook's secret where gitgw runs",
            "webhooks_disabled",
        )
    delivery = request.headers.get(DELIVERY_HEADER, "")
    event = request.headers.get(EVENT_HEADER, "")
    try:
        body = await read_body(request, config.max_body_bytes)
    except BodyTooLarge as exc:
        return error_response(
            413,
            f"the delivery is over {config.max_body_bytes} bytes (at least {exc.size}); "
            "raise gitea.max_body_bytes in gitgw.yaml to take it",
            "request_too_large",
        )
    payload = signed_payload(request.headers.get("Content-Type", ""), body)
    header = request.headers.get(SIGNATURE_HEADER)
    if not verify_signature(secret, payload, header):
        reason = "has a wrong" if header else "has no"
        log.warning(
            "refused Gitea delivery %r (event %r): it %s %s",
            delivery[:128],
            event[:64],
            reason,
            SIGNATURE_HEADER,
        )
        return error_response(
            401,
            f"the delivery {reason} {SIGNATURE_HEADER}; give the Gitea webhook the same "
            "secret as gitgw's (the variable gitea.webhook_secret_env names)",
            "bad_signature" if header else "missing_signature",
        )
    if not valid_delivery_id(delivery):
        return error_response(
            400, f"the delivery has no valid {DELIVERY_HEADER}", "missing_delivery"
        )
    deliveries = request.app[DELIVERIES]
    # A push's body is taken once under any id: only the body is signed (see DeliveryLog).
    signed = payload if event == "push" else None
    if not await asyncio.to_thread(deliveries.first_time, delivery, signed):
        log.info("Gitea delivery %s (event %r) was taken before: ignored", delivery, event[:64])
        return _status(200, "duplicate")
    if event != "push":
        log.info("Gitea delivery %s: event %r ignored (only push is used)", delivery, event[:64])
        return _status(202, "ignored")
    try:
        push = parse_push(delivery, payload)
    except GitgwError as exc:
        await asyncio.to_thread(deliveries.forget, delivery, signed)
        log.warning("Gitea delivery %s: %s", delivery, exc.message)
        return error_response(400, message_of(exc), "malformed_push")
    try:
        taken = request.app[WEBHOOKS].accept(push)
    except BaseException:
        await asyncio.to_thread(deliveries.forget, delivery, signed)
        raise
    if not taken:
        await asyncio.to_thread(deliveries.forget, delivery, signed)
        log.warning("Gitea delivery %s: the queue is full; refused with 503", delivery)
        return error_response(
            503,
            "gitgw's queue of webhook deliveries is full; redeliver this delivery later "
            "(or raise daemon.webhook_queue in gitgw.yaml)",
            "queue_full",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    log.info("Gitea delivery %s: push to %s %s accepted", delivery, push.repo, push.ref)
    return _status(202, "accepted")
