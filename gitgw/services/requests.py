"""File-based requests: the gateway over `git push` and `git pull`.

An agent without HTTP access commits `requests/<id>.yaml` (a model, and either messages
or a template with inputs) and pushes it. The daemon answers it like any model call:
through the trust router, as the client named by the request's `agent` (so the consent
ledger's `client:<agent>` grant applies), with a receipt. The answer is a
`responses/<id>.yaml` record naming the request, committed together with the end of the
request's run; the agent pulls it.

Answering is a run of kind `request`: its `started` record is committed before the call
is made, so a daemon killed mid-call leaves a started run that the next start marks
`interrupted` (with an `error` response), instead of calling the model a second time.
"""

from __future__ import annotations

from typing import Any

import httpx

from gitgw.concepts.runs import RunLedger
from gitgw.errors import GitgwError
from gitgw.records import Request, Response, Run
from gitgw.render import render_string
from gitgw.services.calls import CallResult, complete
from gitgw.services.gateway import Gateway

__all__ = [
    "answer",
    "body_of",
    "failed_response",
    "interrupted_response",
    "rejected_response",
    "start_answer",
]


def body_of(request: Request) -> dict[str, Any]:
    """The chat completion body a request asks for (its template rendered with its
    inputs, strictly: an undefined input is an error)."""
    if request.messages is not None:
        messages = [m.model_dump(mode="json", exclude_none=True) for m in request.messages]
    else:
        assert request.template is not None
        text = render_string(request.template, dict(request.inputs))
        messages = [{"role": "user", "content": text}]
    return {**request.params, "model": request.model, "messages": messages}


def start_answer(gateway: Gateway, request: Request, trigger: dict[str, Any]) -> Run:
    """Record that answering `request` started (before any model is called)."""
    started = RunLedger(gateway.store).begin(
        "request", model=request.model, trigger=trigger, config_commit=gateway.loaded.commit
    )
    RunLedger(gateway.store.for_run(started.id)).record(started)
    return started


def answer(
    gateway: Gateway,
    request: Request,
    started: Run,
    *,
    transport: httpx.BaseTransport | None = None,
    timeout: float = 120.0,
) -> Response:
    """Call the model `request` asks for and commit the response with the run's end."""
    try:
        body = body_of(request)
    except GitgwError as exc:
        result = CallResult("error", gateway.new_receipt_id(), error=exc.message)
        return _commit(gateway, request, started, result, called=False)
    result = complete(
        gateway,
        body,
        client=request.agent,
        declared=request.trust,
        transport=transport,
        timeout=timeout,
    )
    return _commit(gateway, request, started, result, called=True)


def _commit(
    gateway: Gateway, request: Request, started: Run, result: CallResult, *, called: bool
) -> Response:
    if called:
        gateway.flush()  # the receipt the response names is on the branch first
    return _close(
        gateway,
        request.id,
        started,
        "succeeded" if result.outcome == "ok" else "failed",
        outcome=result.outcome,
        content=result.content,
        receipt=result.receipt if called else None,
        error=result.error,
    )


def interrupted_response(gateway: Gateway, request_id: str, started: Run) -> Response:
    """Close a request run a stopped daemon left open: the run ends `interrupted` and the
    request gets an `error` response saying so (the model is not called again)."""
    reason = (
        "interrupted: the daemon stopped while answering this request; it was not sent "
        "again (commit a new request to retry)"
    )
    return _close(gateway, request_id, started, "interrupted", outcome="error", error=reason)


def failed_response(gateway: Gateway, request_id: str, started: Run, reason: str) -> Response:
    """Close a request run whose answering failed inside gitgw: the run ends `failed` and
    the request gets an `error` response with the reason."""
    return _close(gateway, request_id, started, "failed", outcome="error", error=reason)


def rejected_response(gateway: Gateway, request_id: str, reason: str) -> Response:
    """Answer a request file that is not valid (no digest, a bad field) with an `error`
    response naming the problem; nothing is sent to a model."""
    now = gateway.clock.now()
    response = Response.model_validate(
        {"id": gateway.clock.new_id(now), "request": request_id, "created": now,
         "outcome": "error", "error": f"the request file is invalid: {reason}"}
    )  # fmt: skip
    store = gateway.store.for_run(f"rejected {request_id}")
    store.add(response, message=f"gitgw: request {request_id}: rejected")
    return response


def _close(gateway: Gateway, request_id: str, started: Run, status: str, **answer: Any) -> Response:
    """Commit the response and the end of the request's run together."""
    now = gateway.clock.now()
    response = Response.model_validate(
        {"id": gateway.clock.new_id(now), "request": request_id, "created": now,
         "run": started.id} | answer
    )  # fmt: skip
    store = gateway.store.for_run(started.id)
    receipts = [response.receipt] if response.receipt else []
    ended = RunLedger(store).ended(started, status, receipts=receipts, error=response.error)
    store.add(response, ended, message=f"gitgw: request {request_id}: {response.outcome}")
    return response
