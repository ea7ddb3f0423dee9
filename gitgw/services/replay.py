"""`gitgw runs replay`: send a recorded model call again and compare the outputs.

Before anything is sent, a replay must pass every check, or it is refused with nothing
sent:

- the run's inputs were captured (digests alone cannot be sent again);
- its provider is still in `gitgw.yaml`;
- the trust router allows the route (`gitgw.concepts.router.plan`, with the run's
  recorded level, or `restricted` when it records none): not a hosted provider in
  offline mode, a level at most the provider's `max_trust`, and for a hosted provider a
  consent grant `provider:<name>` covering that level in force now;
- the provider's key variable (`api_key_env`) is set, and it speaks the OpenAI protocol.

A replay that is sent leaves a receipt and a `replay` run record naming the original in
its trigger, as any model call does; the outputs' text is written only when content
capture is on. The outputs are compared by digest, and shown as a diff when the
original outputs were captured.
"""

from __future__ import annotations

import difflib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from gitgw._clock import Clock, default_clock
from gitgw.concepts.consent import ConsentLedger
from gitgw.concepts.context import context_parts, message_of, output_message, run_parts
from gitgw.concepts.receipts import ReceiptLog
from gitgw.concepts.router import plan_exact
from gitgw.concepts.runs import RunLedger, RunView, show_run
from gitgw.concepts.store import Store
from gitgw.concepts.trust import Classifier, request_texts
from gitgw.errors import GitgwError
from gitgw.records import Level, Receipt, Run
from gitgw.records.config import Candidate, ProviderConfig
from gitgw.records.receipt import Route, Usage
from gitgw.records.run import RunPart
from gitgw.services.upstream import chat_completion, endpoint_of
from gitgw.state import StateRepo

__all__ = ["OutputDiff", "ReplayPlan", "ReplayResult", "plan_replay", "replay"]

_NOT_PARAMS = ("model", "messages", "stream", "stream_options")


@dataclass(frozen=True)
class ReplayPlan:
    """A replay that passed every check: what will be sent, where, and on whose consent."""

    original: RunView
    provider_name: str
    provider: ProviderConfig
    level: Level
    body: dict[str, Any]
    api_key: str | None
    consent: list[str]
    config_commit: str
    capture: bool
    offline: bool


def _refuse(run_id: str, why: str, hint: str | None = None) -> GitgwError:
    return GitgwError(f"refused to replay run {run_id}: {why}; nothing was sent", hint)


def plan_replay(repo: StateRepo, run_id: str, env: Mapping[str, str] | None = None) -> ReplayPlan:
    """Check that run `run_id` may be replayed now; a clear error naming what is missing."""
    env = os.environ if env is None else env
    view = show_run(repo, run_id)
    run = view.merged()
    if not run.provider or not run.model:
        raise GitgwError(
            f"run {view.id} records no provider and model, so it cannot be replayed",
            "only runs of one model call can be replayed yet",
        )
    missing = [
        f"input {n} ({p.role}, sha256 {p.sha256[:12]}…, {p.chars} chars)"
        for n, p in enumerate(run.inputs, 1)
        if p.content is None
    ]
    if missing or not run.inputs:
        raise GitgwError(
            f"run {view.id} cannot be replayed: "
            + ("; ".join(missing) + " not captured" if missing else "it records no inputs"),
            "a run keeps its inputs' text only with content capture on "
            "(proxy.capture_content: true in gitgw.yaml); runs recorded without it can be "
            "compared by digest, not sent again",
        )
    store = Store(repo)
    head = repo.require_head()
    config = store.config()
    provider = config.providers.get(run.provider)
    if provider is None:
        raise GitgwError(
            f"run {view.id} used provider {run.provider!r}, which gitgw.yaml no longer has",
            f"providers now: {', '.join(sorted(config.providers)) or 'none'}",
        )
    if provider.protocol != "openai":
        raise _refuse(
            view.id,
            f"provider {run.provider} speaks {provider.protocol}; replay speaks only OpenAI "
            "to upstreams",
        )
    recorded: Level = run.level or "restricted"
    assumed = "" if run.level else "the run records no level, so it counts as restricted; "
    params = {k: v for k, v in run.params.items() if k not in _NOT_PARAMS}
    body = {
        "model": run.model,
        "messages": [message_of(part) for part in run.inputs],
        **params,
        "stream": False,
    }
    # The trust router decides, as for any request: mode, max_trust, and consent for a
    # hosted provider, at the higher of the recorded level and what today's rules find
    # in the captured text; for exactly the recorded provider and model (a name in
    # gitgw.yaml's aliases that looks like PROVIDER/MODEL must not redirect the checks).
    texts = request_texts(({k: v for k, v in body.items() if k != "model"},))
    classification = Classifier(config.trust).classify(texts.main, recorded, texts.minor)
    level = classification.level
    routed = plan_exact(
        config, Candidate(provider=run.provider, model=run.model), classification,
        ConsentLedger(repo).check,
    )  # fmt: skip
    if routed.refusal is not None or not routed.routes:
        why = routed.refusal.message if routed.refusal else "no route"
        raise _refuse(view.id, f"{assumed}{why}")
    route = routed.routes[0]
    consent = [route.consent] if route.consent else []
    api_key = None
    if provider.api_key_env:
        api_key = env.get(provider.api_key_env)
        if not api_key:
            raise _refuse(
                view.id,
                f"provider {run.provider} needs its key in ${provider.api_key_env}, "
                "which is not set",
            )
    return ReplayPlan(
        original=view,
        provider_name=run.provider,
        provider=provider,
        level=level,
        body=body,
        api_key=api_key,
        consent=consent,
        config_commit=head,
        capture=config.proxy.capture_content,
        offline=config.mode == "offline",
    )


@dataclass(frozen=True)
class OutputDiff:
    """One output of the original run beside the replay's."""

    number: int
    role: str
    same: bool
    recorded: RunPart | None
    replayed: RunPart | None
    replayed_text: str | None
    diff: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReplayResult:
    """What the replay sent, what came back, and how it compares."""

    original: RunView
    run: Run
    receipt: Receipt
    outputs: list[OutputDiff]

    @property
    def identical(self) -> bool:
        """Whether every output has the same digest as the original's."""
        return all(o.same for o in self.outputs)


def _compare(
    recorded: list[RunPart], replayed: list[RunPart], texts: list[str | None]
) -> list[OutputDiff]:
    diffs = []
    for i in range(max(len(recorded), len(replayed))):
        old = recorded[i] if i < len(recorded) else None
        new = replayed[i] if i < len(replayed) else None
        text = texts[i] if i < len(texts) else None
        same = old is not None and new is not None and old.sha256 == new.sha256
        lines: list[str] = []
        if not same and old is not None and old.content is not None:
            lines = list(
                difflib.unified_diff(
                    old.content.splitlines(),
                    (text or "").splitlines(),
                    "recorded",
                    "replayed",
                    lineterm="",
                )
            )
        role = old.role if old is not None else new.role if new is not None else "-"
        diffs.append(OutputDiff(i + 1, role, same, old, new, text, lines))
    return diffs


def replay(
    repo: StateRepo,
    run_id: str,
    *,
    env: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
    clock: Clock | None = None,
) -> ReplayResult:
    """Replay run `run_id` through the OpenAI-compatible call path and record it."""
    clock = clock or default_clock()
    plan = plan_replay(repo, run_id, env)
    original = plan.original.merged()
    store = Store(repo, clock)
    started, began = clock.now(), time.perf_counter()
    run_id_new, receipt_id = clock.new_id(started), clock.new_id(started)
    error: GitgwError | None = None
    answer: dict[str, Any] = {}
    latency = None
    try:
        result = chat_completion(
            plan.provider_name, plan.provider, plan.body, api_key=plan.api_key, transport=transport
        )
        answer, latency = result.body, result.latency_ms
    except GitgwError as exc:
        error = exc
    # The call went out: whatever came back is recorded, so an answer that is not quite
    # a chat completion is read leniently rather than raised on.
    choices = answer.get("choices")
    messages = [
        output_message(c["message"])
        for c in (choices if isinstance(choices, list) else [])
        if isinstance(c, dict) and isinstance(c.get("message"), dict)
    ]
    if error is None and not messages:
        error = GitgwError(f"{plan.provider_name} answered something that is not a chat completion")
    outputs = run_parts(messages, capture=plan.capture)
    texts = [p.content for p in run_parts(messages, capture=True)]
    finished = clock.now()
    total_ms = (time.perf_counter() - began) * 1000
    usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else None
    receipt = Receipt(
        id=receipt_id,
        created=started,
        client="gitgw runs replay",
        level=plan.level,
        route=Route(
            provider=plan.provider_name,
            model=str(plan.body["model"]),
            endpoint=urlsplit(endpoint_of(plan.provider)).path,
            location=plan.provider.location,
        ),
        consent=plan.consent,
        context=context_parts(plan.body["messages"], capture=plan.capture),
        usage=_usage(usage),
        latency_ms=round(latency, 1) if latency is not None else None,
        overhead_ms=round(total_ms - (latency or 0.0), 2),
        outcome="ok" if error is None else "upstream_error",
        detail=None if error is None else error.message[:500],
        offline=plan.offline,
        config_commit=plan.config_commit,
        run=run_id_new,
    )
    run = Run(
        id=run_id_new,
        kind="replay",
        status="succeeded" if error is None else "failed",
        trigger={"replay_of": plan.original.id},
        provider=plan.provider_name,
        model=str(plan.body["model"]),
        level=plan.level,
        params={k: v for k, v in plan.body.items() if k not in ("model", "messages")},
        inputs=original.inputs if plan.capture else [_digest_only(p) for p in original.inputs],
        outputs=outputs,
        receipts=[receipt_id],
        config_commit=plan.config_commit,
        started=started,
        finished=finished,
        error=None if error is None else error.message[:500],
    )
    with ReceiptLog(store) as log:
        log.record(receipt).result()
    RunLedger(store, clock).record(run)
    if error is not None:
        raise GitgwError(f"{error.message} (recorded as run {run.id})", error.hint)
    return ReplayResult(plan.original, run, receipt, _compare(original.outputs, outputs, texts))


def _usage(value: dict[str, Any] | None) -> Usage | None:
    counts = {
        key: value[key]
        for key in ("prompt_tokens", "completion_tokens", "total_tokens")
        if value is not None and type(value.get(key)) is int and 0 <= value[key] < 2**53
    }
    return Usage(**counts) if counts else None


def _digest_only(part: RunPart) -> RunPart:
    return part.model_copy(update={"content": None})
