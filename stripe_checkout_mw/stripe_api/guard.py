"""Limits on the Stripe calls that requests cause: a budget, a bulkhead and a circuit breaker.

Anonymous requests must not turn into unbounded Stripe calls, and a Stripe that hangs
must not hold every worker thread (the webhooks and the wrapped app need them too).
Three small pieces, each per process (every worker process of a server has its own, so
the account-wide numbers are these times the number of processes):

- :class:`TokenBucket`: a budget of calls per second for a path anyone can hammer (the
  status page's retrieves). Beyond it the caller does without Stripe (the ledger answers).
- :class:`StripeGuard`: at most ``max_concurrent`` requests wait on Stripe at once (the
  bulkhead); one more is answered 503 with ``Retry-After`` at once instead of queueing.
  After :data:`FAILURES_TO_OPEN` connection failures or timeouts in a row the circuit
  opens: for ``cooldown`` seconds every guarded call fails fast (503), then one probe is
  let through and its outcome closes the circuit again or re-opens it. Each change of
  state is logged once.

Usage::

    guard = StripeGuard(max_concurrent=4, cooldown=10)
    with guard.call():          # raises HTTPError(503) when full or open
        client.v1.checkout.sessions.create(...)

Only the checkout path is guarded; webhooks and pass-through requests never wait on it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable

import stripe

from ..errors import HTTPError

__all__ = ["FAILURES_TO_OPEN", "StripeGuard", "TokenBucket"]

log = logging.getLogger("stripe_checkout_mw")

#: Connection failures or timeouts in a row that open the circuit.
FAILURES_TO_OPEN = 5

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class TokenBucket:
    """``rate`` calls a second on average, at most ``burst`` at once; thread-safe.

    :param rate: tokens added per second (> 0).
    :param burst: the most tokens kept (default: ``rate``, at least 1).
    :param clock: a monotonic clock, for tests.
    """

    def __init__(
        self, rate: float, burst: float | None = None, *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
            raise ValueError("rate must be a number of calls per second > 0")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Spend one token if there is one; ``False`` means "over budget, do without"."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class StripeGuard:
    """The bulkhead and circuit breaker in front of the checkout path's Stripe calls.

    :param max_concurrent: requests that may wait on Stripe at once.
    :param cooldown: seconds the circuit stays open before one probe may try.
    :param clock: a monotonic clock, for tests.
    """

    def __init__(
        self, *, max_concurrent: int, cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_concurrent = max_concurrent
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._in_flight = 0
        self._failures = 0
        self._state = CLOSED
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"`` (cool-down over, probe pending)."""
        with self._lock:
            if self._state == OPEN and self._clock() - self._opened_at >= self.cooldown:
                return HALF_OPEN
            return self._state

    def is_open(self) -> bool:
        """Whether Stripe is taken to be down right now (for paths that can do without)."""
        return self.state == OPEN

    @contextmanager
    def call(self) -> Iterator[None]:
        """Hold a bulkhead slot around Stripe calls; 503 at once when none is free."""
        probe = self._enter()
        try:
            yield
        except stripe.APIConnectionError:  # refused, reset or timed out: Stripe unreachable
            self._leave(probe, failed=True)
            raise
        except BaseException:  # any answer from Stripe, even an error, means it is up
            self._leave(probe, failed=False)
            raise
        self._leave(probe, failed=False)

    def _enter(self) -> bool:
        with self._lock:
            probe = False
            if self._state != CLOSED:
                waited = self._clock() - self._opened_at
                if self._probing or waited < self.cooldown:
                    raise _unavailable(max(1, math.ceil(self.cooldown - waited)))
                probe = self._probing = True
                self._set_state(HALF_OPEN)
            if self._in_flight >= self.max_concurrent:
                if probe:
                    self._probing = False
                    self._set_state(OPEN)
                raise _busy()
            self._in_flight += 1
            return probe

    def _leave(self, probe: bool, *, failed: bool) -> None:
        with self._lock:
            self._in_flight -= 1
            if probe:
                self._probing = False
            if not failed:
                self._failures = 0
                if self._state != CLOSED:
                    self._set_state(CLOSED)
                return
            self._failures += 1
            if probe or (self._state == CLOSED and self._failures >= FAILURES_TO_OPEN):
                self._opened_at = self._clock()
                self._set_state(OPEN)

    def _set_state(self, state: str) -> None:
        if state == self._state:
            return
        previous, self._state = self._state, state
        if state == OPEN:
            log.warning("Stripe circuit %s -> open: %d connection failures or timeouts in a "
                        "row; checkouts answer 503 for %g s", previous, self._failures,
                        self.cooldown)
        elif state == HALF_OPEN:
            log.info("Stripe circuit open -> half-open: one checkout probes Stripe")
        else:
            log.warning("Stripe circuit %s -> closed: Stripe answers again", previous)


def _busy() -> HTTPError:
    return HTTPError(503, "The shop is busy; try again in a moment.", type="api_error",
                     headers=[("Retry-After", "1")])


def _unavailable(retry_after: int) -> HTTPError:
    return HTTPError(503, "The payment provider is unavailable; try again shortly.",
                     type="api_error", headers=[("Retry-After", str(retry_after))])
