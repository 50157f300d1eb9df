"""The health path: whether this process can do its work, for a load balancer to poll.

It answers from what the process already knows and one small ledger read, never a Stripe
call, so it can be polled every second: the ledger read (:meth:`SqlStore.job_stats
<stripe_checkout_mw.ledger.store.SqlStore.job_stats>`) is made at most once a second and
by one thread at a time; the polls in between share its answer.

- ``200 {"healthy": true, ...}``: the ledger answers.
- ``503 {"healthy": false, "failed": ["ledger"], ...}``: the ledger does not (a database
  down, a SQLite file gone or unreadable): this process cannot record payments, so Stripe's
  webhooks and the success page need another one.

The body also says the circuit breaker's state (``closed``, ``half-open``, ``open``) and the
age of the oldest job not yet done. They do not fail the check: every process shares one
Stripe and one ledger, so a load balancer that took out every process whose breaker is open,
or while ``fulfill`` fails, would take the wrapped app down with them; alert on them from the
metrics instead (``stripe_checkout_breaker_state``, ``stripe_checkout_jobs_oldest_due_seconds``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any, Callable, Generic, Protocol, TypeVar

from .metrics import GAUGE, Measurement

__all__ = ["CachedProbe", "HealthCheck", "JobCounts", "job_gauges"]

T = TypeVar("T")
#: Seconds a ledger probe's answer is reused.
PROBE_MAX_AGE = 1.0


class JobCounts(Protocol):
    """What the ledger says of its jobs (:class:`~stripe_checkout_mw.ledger.store.JobStats`)."""

    @property
    def due(self) -> Mapping[str, int]: ...
    @property
    def failed(self) -> Mapping[str, int]: ...
    @property
    def oldest_due_age(self) -> float | None: ...


class CachedProbe(Generic[T]):
    """``read()`` at most once per ``max_age`` seconds and by one thread at a time.

    A caller that finds another thread reading gets the previous answer (or its error)
    instead of waiting, so a slow database holds one thread, not every poll.
    """

    def __init__(self, read: Callable[[], T], *, max_age: float = PROBE_MAX_AGE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._reader = read
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._last: tuple[float, T | None, Exception | None] | None = None

    def get(self) -> T:
        """The fresh or shared answer; raises what the read raised."""
        last = self._last
        stale = last is None or self._clock() - last[0] >= self._max_age
        if stale and self._lock.acquire(blocking=last is None):
            try:
                last = self._refresh()
            finally:
                self._lock.release()
        assert last is not None  # a first caller waited for the lock
        if last[2] is not None:
            raise last[2]
        return last[1]  # type: ignore[return-value]  # None only beside an error

    def _refresh(self) -> tuple[float, T | None, Exception | None]:
        last = self._last
        if last is not None and self._clock() - last[0] < self._max_age:
            return last  # another thread refreshed it while this one waited
        try:
            fresh: tuple[float, T | None, Exception | None] = (self._clock(), self._reader(), None)
        except Exception as exc:  # the answer is "unreachable"
            fresh = (self._clock(), None, exc)
        self._last = fresh
        return fresh


def job_gauges(stats: JobCounts) -> list[Measurement]:
    """The ledger's job counts as the ``jobs_*`` gauges of :data:`~.metrics.METRICS`."""
    gauges = [Measurement("jobs_due", GAUGE, float(n), {"kind": kind})
              for kind, n in sorted(stats.due.items())]
    gauges += [Measurement("jobs_failed", GAUGE, float(n), {"kind": kind})
               for kind, n in sorted(stats.failed.items())]
    gauges.append(Measurement("jobs_oldest_due_seconds", GAUGE,
                              round(stats.oldest_due_age or 0.0, 3), {}))
    return gauges


class HealthCheck:
    """The health path's answer (see the module docstring).

    :param jobs: the cached ledger probe, or ``None`` when no ledger is kept.
    :param breaker: the circuit breaker's state, read as is.
    """

    def __init__(self, jobs: CachedProbe[Any] | None, breaker: Callable[[], str]) -> None:
        self._jobs = jobs
        self._breaker = breaker

    def answer(self) -> tuple[int, dict[str, Any]]:
        """``(status, body)``: 200 when healthy, 503 naming the failed checks."""
        body: dict[str, Any] = {"healthy": True, "ledger": "none", "breaker": self._breaker(),
                                "oldest_due_job_seconds": None}
        if self._jobs is not None:
            try:
                stats: JobCounts = self._jobs.get()
            except Exception:  # logged by the store; the answer says which
                body.update(healthy=False, failed=["ledger"], ledger="unreachable")
                return 503, body
            body.update(ledger="reachable",
                        oldest_due_job_seconds=round(stats.oldest_due_age or 0.0, 3))
        return 200, body
