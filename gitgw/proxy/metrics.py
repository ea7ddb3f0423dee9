"""The proxy's metrics, in the Prometheus text format (0.0.4), held by the application.

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

The counters are plain numbers rather than a client library's metrics: every request
updates four of them, and a library's locks and bucket loops cost more per request
than the rest of the bookkeeping (and its import a twentieth of the proxy's start-up).
Each metric is only ever updated by one thread: the event loop's, or the receipt
writer's for what it reports; a scrape reads numbers, which the interpreter reads whole.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future

__all__ = ["Counter", "Histogram", "Metrics"]

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_OVERHEAD = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)


def _number(value: float) -> str:
    # The exposition format's numbers: Go's forms of the infinities and NaN.
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    pairs = sorted(zip(names, values, strict=True))
    return "{" + ",".join(f'{name}="{_label_value(value)}"' for name, value in pairs) + "}"


def _head(name: str, help_text: str, kind: str) -> list[str]:
    escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
    return [f"# HELP {name} {escaped}", f"# TYPE {name} {kind}"]


class _Count:
    """One counter's value (a labelled counter has one per set of label values)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add `amount` (at least 0)."""
        if amount < 0:
            raise ValueError("a counter only goes up")
        self.value += amount


class Counter:
    """A counter, with or without labels; exposed as `<name>_total`."""

    def __init__(self, name: str, help_text: str, labelnames: tuple[str, ...] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = labelnames
        self._children: dict[tuple[str, ...], _Count] = {}
        if not labelnames:
            self._children[()] = _Count()

    def labels(self, *values: str) -> _Count:
        """The counter for these label values (in the order of `labelnames`)."""
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = _Count()
        return child

    def inc(self, amount: float = 1.0) -> None:
        """Add `amount` to a counter without labels."""
        self._children[()].inc(amount)

    @property
    def value(self) -> float:
        """A counter without labels: its value."""
        return self._children[()].value

    def lines(self) -> Iterator[str]:
        total = f"{self.name}_total"
        yield from _head(total, self.help, "counter")
        for values, child in list(self._children.items()):
            yield f"{total}{_labels(self.labelnames, values)} {_number(child.value)}"


class Histogram:
    """A histogram with fixed upper bounds (each bucket counts values ≤ its bound)."""

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        self.name = name
        self.help = help_text
        self.bounds = tuple(float(bound) for bound in buckets)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one value."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def lines(self) -> Iterator[str]:
        yield from _head(self.name, self.help, "histogram")
        counts = list(self.counts)  # one copy: the buckets and the count agree
        running = 0
        for bound, count in zip((*self.bounds, math.inf), counts, strict=True):
            running += count
            yield f'{self.name}_bucket{{le="{_number(bound)}"}} {_number(running)}'
        yield f"{self.name}_count {_number(running)}"
        yield f"{self.name}_sum {_number(self.sum)}"


class Gauge:
    """A gauge whose value a function gives at each scrape."""

    def __init__(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.name = name
        self.help = help_text
        self.read = read

    def lines(self) -> Iterator[str]:
        yield from _head(self.name, self.help, "gauge")
        yield f"{self.name} {_number(self.read())}"


class Metrics:
    """Counters and histograms of one proxy application."""

    def __init__(self) -> None:
        self.requests = Counter("gitgw_requests", "Chat completion requests", ("status", "outcome"))
        self.latency = Histogram("gitgw_request_duration_seconds", "Time to answer", _LATENCY)
        self.overhead = Histogram(
            "gitgw_overhead_seconds",
            "Time gitgw spent on a request, upstream waits excluded",
            _OVERHEAD,
        )
        self.refusals = Counter("gitgw_refusals", "Requests refused", ("level", "code"))
        self.fallbacks = Counter(
            "gitgw_fallbacks",
            "Candidates that failed or were skipped at run time",
            ("provider", "reason"),
        )
        self.receipts_recorded = Counter("gitgw_receipts_recorded", "Receipts handed to the writer")
        self.receipts_written = Counter(
            "gitgw_receipts_written", "Receipts committed to the state branch"
        )
        self.receipt_failures = Counter(
            "gitgw_receipt_failures", "Receipts the writer failed to commit"
        )
        self.receipt_write = Histogram(
            "gitgw_receipt_write_seconds",
            "From hand-off to the writer until the receipt is on the branch",
            _LATENCY,
        )
        self.config_reloads = Counter(
            "gitgw_config_reloads", "Configurations taken or rejected", ("result",)
        )
        lag = Gauge(
            "gitgw_receipt_writer_lag",
            "Receipts handed to the writer and not yet on the branch",
            lambda: self.receipts_recorded.value - self._settled,
        )
        self._settled = 0  # receipts the writer is done with, written or failed
        self.last_receipt_error: str | None = None
        self._all: tuple[Counter | Histogram | Gauge, ...] = (
            self.requests,
            self.latency,
            self.overhead,
            self.refusals,
            self.fallbacks,
            self.receipts_recorded,
            self.receipts_written,
            self.receipt_failures,
            self.receipt_write,
            self.config_reloads,
            lag,
        )
        self._recorded = self.receipts_recorded.labels()

    def request_done(self, status: int, outcome: str, seconds: float, overhead_ms: float) -> None:
        """Count one answered request (on the event loop's thread)."""
        self.requests.labels(str(status), outcome).value += 1
        self.latency.observe(seconds)
        self.overhead.observe(overhead_ms / 1000)
        self._recorded.value += 1

    def batch_handed_over(self, count: int, future: Future[str]) -> None:
        """Watch one batch of `count` receipts until the writer is done with it."""
        since = time.perf_counter()
        future.add_done_callback(lambda done: self._settled_batch(count, since, done))

    def _settled_batch(self, count: int, since: float, future: Future[str]) -> None:
        # called on the writer's thread
        error = future.exception()
        if error is None:
            self.receipts_written.inc(count)
            self.receipt_write.observe(time.perf_counter() - since)
            self.last_receipt_error = None
        else:
            self.receipt_failures.inc(count)
            self.last_receipt_error = f"{type(error).__name__}: {error}"
        self._settled += count

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        lines = [line for metric in self._all for line in metric.lines()]
        return ("\n".join(lines) + "\n").encode("utf-8")
