"""What an operator watches: the measurements every part records, the Prometheus
exposition of them and the load balancer's health check.

At the bottom of the layers, beside :mod:`~stripe_checkout_mw.stripe_api` and
:mod:`~stripe_checkout_mw.ledger`: every part may record into it; it imports nothing above it
(the ledger and the guard are read through the callables the middleware gives it).

A middleware builds its recorder first (:func:`new_recorder`: the Stripe client records
into it), then, once its parts exist, :func:`watch` gives it the state-describing gauges
and builds the health check::

    metrics = new_recorder(hook=settings.metrics_hook, serve=bool(settings.metrics_path))
    ...
    health = watch(metrics, breaker_state=lambda: guard.state, job_stats=store.job_stats)
"""

from __future__ import annotations

from typing import Callable

from .health import CachedProbe, HealthCheck, JobCounts, job_gauges
from .metrics import GAUGE, NO_METRICS, Measurement, Metrics, Recorder

__all__ = ["Measurement", "Metrics", "Recorder", "new_recorder", "watch"]

#: The breaker's states, each exposed as one ``breaker_state`` series.
BREAKER_STATES = ("closed", "half-open", "open")


def new_recorder(*, hook: Callable[[Measurement], object] | None, serve: bool) -> Recorder:
    """:data:`~.metrics.NO_METRICS` when nothing watches; else a :class:`Metrics` that hands
    each measurement to ``hook`` and, with ``serve``, keeps it for the metrics path
    (``metrics.exposition``).

    :raises OptionError: ``serve`` without ``prometheus_client`` installed.
    """
    if hook is None and not serve:
        return NO_METRICS
    metrics = Metrics([hook] if hook is not None else [])
    if serve:
        from .exposition import PrometheusExposition

        metrics.exposition = PrometheusExposition(metrics)
    return metrics


def watch(metrics: Recorder, *, breaker_state: Callable[[], str],
          job_stats: Callable[[], JobCounts] | None) -> HealthCheck:
    """Add the breaker's and the ledger's gauges to ``metrics`` (when it records) and
    return the health check; both read the ledger through one cached probe."""
    probe = CachedProbe(job_stats) if job_stats is not None else None
    if isinstance(metrics, Metrics):
        def breaker() -> list[Measurement]:
            current = breaker_state()
            return [Measurement("breaker_state", GAUGE, float(state == current),
                                {"state": state}) for state in BREAKER_STATES]

        metrics.add_gauges(breaker)
        if probe is not None:
            metrics.add_gauges(lambda: job_gauges(probe.get()))
    return HealthCheck(probe, breaker_state)
