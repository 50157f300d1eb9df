"""The measurements the middleware records, and the recorder every part records into.

One table, :data:`METRICS`, names every measurement: its kind, its help text and its
labels. The parts that see an event (the webhook endpoint, the Stripe HTTP client, the
guard, the checkout endpoint, the ledger's store) call the recorder they were given::

    recorder.count("webhooks", type="checkout.session.completed", outcome="processed")
    recorder.observe("stripe_request_seconds", 0.21, endpoint="/v1/checkout/sessions")

By default that recorder is :data:`NO_METRICS`, whose methods do nothing, so a shop that
watches nothing pays one empty method call per event. With ``metrics_path`` or
``metrics_hook`` configured the middleware builds a :class:`Metrics`, which hands each
:class:`Measurement` to its sinks: the Prometheus registry behind ``metrics_path``
(:mod:`.exposition`) and the shop's own ``metrics_hook`` (statsd, OpenTelemetry, ...).

Gauges that describe state rather than events (jobs due in the ledger, the breaker's
state) are read when asked, by :meth:`Metrics.sample`: a scrape of the metrics path asks,
and a shop with only a hook may call ``mw.metrics.sample()`` on a timer of its own.

A hook must be quick, must not raise and must not call back into the middleware: it runs
on the request's thread, some of it under the guard's lock. One that raises
is logged (its exception class, at most once a minute) and the request goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Callable, NamedTuple, Protocol

__all__ = [
    "COUNTER",
    "GAUGE",
    "HISTOGRAM",
    "METRICS",
    "NO_METRICS",
    "PREFIX",
    "GaugeSource",
    "Measurement",
    "Metric",
    "Metrics",
    "Recorder",
    "Sink",
]

logger = logging.getLogger("stripe_checkout_mw")

COUNTER, HISTOGRAM, GAUGE = "counter", "histogram", "gauge"
#: Put before every name in the Prometheus exposition (``stripe_checkout_webhooks_total``).
PREFIX = "stripe_checkout_"


@dataclass(frozen=True)
class Metric:
    """One row of :data:`METRICS`: a measurement's kind, help text and label names."""

    kind: str
    help: str
    labels: tuple[str, ...] = ()


#: Every measurement the middleware records. Counters are exposed with ``_total``; the
#: gauges are read from the ledger and the guard when sampled, never counted.
METRICS: dict[str, Metric] = {
    "webhooks": Metric(COUNTER, "Webhook deliveries by event type and outcome (processed, "
                       "duplicate, bad_signature, failed: answered 500, Stripe retries).",
                       ("type", "outcome")),
    "checkouts": Metric(COUNTER, "Checkout requests by outcome: created, or the reason "
                        "refused (invalid, forbidden, too_large, unavailable, stripe_error, "
                        "error).", ("outcome",)),
    "stripe_requests": Metric(COUNTER, "HTTP requests to Stripe (each attempt) by endpoint, "
                              "method and outcome (2xx, 4xx, 429, 5xx, connection_error).",
                              ("endpoint", "method", "outcome")),
    "stripe_request_seconds": Metric(HISTOGRAM, "Seconds each HTTP request to Stripe took, "
                                     "by endpoint.", ("endpoint",)),
    "refusals": Metric(COUNTER, "Requests and Stripe calls refused, by reason: busy (the "
                       "bulkhead), open (the breaker), portal_user_budget, "
                       "portal_process_budget, status_budget (the ledger answered instead), "
                       "unknown_item, origin.", ("reason",)),
    "ledger_errors": Metric(COUNTER, "Store operations that failed (the database could not "
                            "be used).", ()),
    "breaker_state": Metric(GAUGE, "The Stripe circuit breaker: 1 for its current state "
                            "(closed, half-open, open), 0 for the others.", ("state",)),
    "jobs_due": Metric(GAUGE, "Jobs (fulfil, handlers, hooks) not done that can run now "
                       "(not running, not waiting for their retry time), by kind.", ("kind",)),
    "jobs_failed": Metric(GAUGE, "Jobs not done whose last attempt ended without success "
                          "(those waiting for their retry time included), by kind.",
                          ("kind",)),
    "jobs_oldest_due_seconds": Metric(GAUGE, "Age in seconds of the oldest job not yet done, "
                                      "due or waiting for its retry (0 when none).", ()),
}

#: Upper bounds (seconds) of the Stripe latency histogram's buckets.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Measurement(NamedTuple):
    """One recorded value: a counter's increment, a histogram's observation or a gauge's
    current value, with the labels :data:`METRICS` names for it."""

    name: str
    kind: str
    value: float
    labels: Mapping[str, str]


#: Receives every measurement (the Prometheus registry, a shop's ``metrics_hook``).
Sink = Callable[[Measurement], object]
#: Reads state-describing gauges when :meth:`Metrics.sample` is called.
GaugeSource = Callable[[], Iterable[Measurement]]


class Recorder:
    """What the parts record into. This base class records nothing: it is
    :data:`NO_METRICS`, the recorder of a shop that watches nothing."""

    enabled = False

    def count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount`` to the counter ``name``."""

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Record one observation (seconds) of the histogram ``name``."""


#: The recorder that does nothing (the default of every part).
NO_METRICS = Recorder()


class Exposition(Protocol):
    """What serves the metrics path (:class:`.exposition.PrometheusExposition`); named here
    so that this module needs nothing of the one that renders it."""

    def render(self, accept: str | None) -> tuple[bytes, str]: ...


class Metrics(Recorder):
    """A recorder that hands each measurement to its sinks, and samples its gauges.

    :param sinks: called with each :class:`Measurement`, in order.
    :param clock: for the once-a-minute logging of a failing sink, in tests.
    """

    enabled = True

    def __init__(self, sinks: Iterable[Sink] = (), *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sinks = list(sinks)
        #: The metrics path's registry, when it is served.
        self.exposition: Exposition | None = None
        self._sources: list[GaugeSource] = []
        self._clock = clock
        self._lock = threading.Lock()
        self._next_warning = 0.0

    def count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self._emit(Measurement(name, COUNTER, amount, labels))

    def observe(self, name: str, value: float, **labels: str) -> None:
        self._emit(Measurement(name, HISTOGRAM, value, labels))

    def add_gauges(self, source: GaugeSource) -> None:
        """Read ``source`` at each :meth:`sample` (the ledger's jobs, the breaker)."""
        self._sources.append(source)

    def sample(self) -> list[Measurement]:
        """Read every gauge now, hand each to the sinks, and return them.

        A source that fails (the ledger unreachable) gives no gauges this time; the
        failure is already counted (``ledger_errors``) and logged by the store.
        """
        gauges: list[Measurement] = []
        for source in self._sources:
            try:
                gauges.extend(source())
            except Exception as exc:  # the store logged it; the other sources still count
                logger.debug("a gauge source failed: %s", type(exc).__name__)
        for gauge in gauges:
            self._emit(gauge)
        return gauges

    def _emit(self, measurement: Measurement) -> None:
        for sink in self.sinks:
            try:
                sink(measurement)
            except Exception as exc:  # a broken hook must not fail a payment
                self._warn(sink, exc)

    def _warn(self, sink: Sink, exc: Exception) -> None:
        now = self._clock()
        with self._lock:
            if now < self._next_warning:
                return
            self._next_warning = now + 60.0
        logger.warning("metrics sink %s raised %s; measurements it missed are lost (logged "
                       "at most once a minute)", getattr(sink, "__name__", type(sink).__name__),
                       type(exc).__name__)
