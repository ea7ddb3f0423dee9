"""The proxy's Prometheus metrics, in a registry of the application's own (no globals).

Names, all prefixed `gitgw_`:

- `requests_total{status,outcome}` and `request_duration_seconds`: chat completions.
- `overhead_seconds`: the time gitgw itself spent on a request (everything but waiting
  for upstreams), the figure the `x-gitgw-overhead-ms` header carries.
- `refusals_total{level,code}`: requests refused for trust, consent or availability.
- `fallbacks_total{provider,reason}`: candidates that failed or were skipped at run
  time, so the next one was tried.
- `receipts_recorded_total`, `receipts_written_total`, `receipt_failures_total`,
  `receipt_writer_lag` (recorded, not yet on the branch) and
  `receipt_write_seconds` (from a batch's hand-over to the writer until it is on the
  branch).
- `config_reloads_total{result}`: configurations taken (`ok`) or rejected (`rejected`).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_OVERHEAD = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)


class Metrics:
    """Counters and histograms of one proxy application."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "gitgw_requests", "Chat completion requests", ("status", "outcome"), registry=r
        )
        self.latency = Histogram(
            "gitgw_request_duration_seconds", "Time to answer", buckets=_LATENCY, registry=r
        )
        self.overhead = Histogram(
            "gitgw_overhead_seconds",
            "Time gitgw spent on a request, upstream waits excluded",
            buckets=_OVERHEAD,
            registry=r,
        )
        self.refusals = Counter("gitgw_refusals", "Requests refused", ("level", "code"), registry=r)
        self.fallbacks = Counter(
            "gitgw_fallbacks",
            "Candidates that failed or were skipped at run time",
            ("provider", "reason"),
            registry=r,
        )
        self.receipts_recorded = Counter(
            "gitgw_receipts_recorded", "Receipts handed to the writer", registry=r
        )
        self.receipts_written = Counter(
            "gitgw_receipts_written", "Receipts committed to the state branch", registry=r
        )
        self.receipt_failures = Counter(
            "gitgw_receipt_failures", "Receipts the writer failed to commit", registry=r
        )
        self.receipt_write = Histogram(
            "gitgw_receipt_write_seconds",
            "From hand-off to the writer until the receipt is on the branch",
            buckets=_LATENCY,
            registry=r,
        )
        self.config_reloads = Counter(
            "gitgw_config_reloads", "Configurations taken or rejected", ("result",), registry=r
        )
        lag = Gauge(
            "gitgw_receipt_writer_lag",
            "Receipts handed to the writer and not yet on the branch",
            registry=r,
        )
        lag.set_function(lambda: float(self._recorded - self._settled))
        self._lock = threading.Lock()
        self._recorded = 0
        self._settled = 0
        self.last_receipt_error: str | None = None
        self._children: dict[tuple[int, str], Counter] = {}

    def request_done(self, status: int, outcome: str, seconds: float, overhead_ms: float) -> None:
        """Count one answered request (children of labelled metrics are looked up once)."""
        key = (status, outcome)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(str(status), outcome)
        child.inc()
        self.latency.observe(seconds)
        self.overhead.observe(overhead_ms / 1000)
        self.receipt_recorded()

    def receipt_recorded(self) -> None:
        """Count a receipt queued for the writer."""
        self.receipts_recorded.inc()
        with self._lock:
            self._recorded += 1

    def batch_handed_over(self, count: int, future: Future[str]) -> None:
        """Watch one batch of `count` receipts until the writer is done with it."""
        since = time.perf_counter()
        future.add_done_callback(lambda done: self._settled_batch(count, since, done))

    def _settled_batch(self, count: int, since: float, future: Future[str]) -> None:
        # called on the writer's thread
        with self._lock:
            self._settled += count
        error = future.exception()
        if error is None:
            self.receipts_written.inc(count)
            self.receipt_write.observe(time.perf_counter() - since)
            self.last_receipt_error = None
        else:
            self.receipt_failures.inc(count)
            self.last_receipt_error = f"{type(error).__name__}: {error}"

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
