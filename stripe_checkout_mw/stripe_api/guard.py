"""Limits on the Stripe calls that requests cause: budgets, a bulkhead and a circuit breaker.

Anonymous requests must not turn into unbounded Stripe calls, a Stripe that hangs must not
hold every worker thread (webhooks and the wrapped app need them too), and a healthy Stripe
must never cost a paying customer a refusal. The pieces, each per process (every worker
process of a server has its own, so account-wide numbers are these times the processes):

- :class:`TokenBucket`: a budget of calls per second for a path anyone can hammer (the
  status page's retrieves, the billing portal). :class:`PrincipalBudgets` keeps one bucket
  per principal (a signed-in user), bounded in number.
- :class:`StripeGuard`: the bulkhead and the breaker every path that calls Stripe goes
  through (checkout, price look-ups, billing portal, status look-ups).

  *The bulkhead sheds only when Stripe is the problem.* At most ``limit`` calls are in
  flight; ``limit`` moves between 1 and ``max_concurrent`` (the ceiling) with Stripe's
  observed latency: it grows by one per ``limit`` calls answered within the overdue bound
  and halves (once per bound) when a call fails to connect, times out or runs past it
  (additive increase, multiplicative decrease, as TCP does). The overdue bound is TCP's
  retransmission timeout computed over Stripe's latencies (smoothed mean + 4 x mean
  deviation, Jacobson/Karels), at least :data:`MIN_OVERDUE` and 1 s before any sample.
  A call that finds every slot taken *waits* for one, up to the Stripe ``timeout``, as
  long as the calls in flight are not overdue: with a healthy Stripe a slot frees within
  a latency, so a burst of checkouts queues briefly instead of being refused. Once the
  oldest call in flight is overdue, Stripe is the problem: waiting calls and new ones are
  refused at once (503 with ``Retry-After``), so at most ``max_concurrent`` threads are
  ever held by a hanging Stripe and the rest serve webhooks and the app. Paths that can
  do without Stripe (the status look-up) never wait: ``call(wait=False)``.

  *The breaker:* after :data:`FAILURES_TO_OPEN` connection failures or timeouts in a row
  the circuit opens: for ``cooldown`` seconds every guarded call fails fast (503), then one
  probe is let through and its outcome closes the circuit again or re-opens it. Each change
  of state is logged once.
- :class:`RefusalLog`: one WARNING per kind of refusal per period, with the count, so the
  developer sees why customers are refused without a line per request.

Usage::

    guard = StripeGuard(max_concurrent=6, cooldown=10, timeout=10)
    with guard.call():          # waits for a slot; raises Refused (503) when shedding
        client.v1.checkout.sessions.create(...)

Sizing: ``max_concurrent`` is the most threads a hanging Stripe may hold; set it to the
server's threads minus two (waitress ``threads=8`` -> 6, ``gunicorn --threads 8`` -> 6,
mod_wsgi ``threads=15`` -> 13). The default, 3, fits waitress's default of 4 threads.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from typing import Callable

import stripe

from ..errors import HTTPError
from ..observe.metrics import NO_METRICS, Recorder

__all__ = ["FAILURES_TO_OPEN", "MIN_OVERDUE", "PrincipalBudgets", "RefusalLog", "Refused",
           "StripeGuard", "TokenBucket", "loggable"]

log = logging.getLogger("stripe_checkout_mw")

#: Connection failures or timeouts in a row that open the circuit.
FAILURES_TO_OPEN = 5
#: The shortest time a Stripe call may run before it counts as overdue (seconds): TCP's
#: minimum retransmission timeout (RFC 6298). At half a second, less than twice a healthy
#: Stripe's 300 ms, one moment's delay on a loaded host made the call overdue and the
#: waiting checkouts were refused (4 of 160 in one benchmark run).
MIN_OVERDUE = 1.0
#: The overdue bound before Stripe has answered anything (TCP's initial timeout).
_FIRST_OVERDUE = 1.0

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class Refused(HTTPError):
    """The guard refused a call before it reached Stripe (bulkhead, breaker or budget)."""


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
            self._refill()
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True

    def retry_after(self) -> int:
        """Whole seconds until a token is there (for ``Retry-After``), at least 1."""
        with self._lock:
            self._refill()
            return max(1, math.ceil((1 - self._tokens) / self.rate))

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now


class PrincipalBudgets:
    """A :class:`TokenBucket` per principal (a signed-in user), at most ``size`` kept.

    The least recently used bucket is dropped beyond ``size``; a dropped principal starts
    again with a full burst, so ``size`` must exceed the users active within a refill.

    :param per_minute: calls a minute each principal may make on average.
    :param burst: calls a principal may make at once.
    """

    def __init__(
        self, per_minute: float, burst: float, *, size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self.size = size
        self._clock = clock
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def bucket(self, principal: Hashable) -> TokenBucket:
        """The principal's bucket (made full on first use)."""
        with self._lock:
            bucket = self._buckets.get(principal)
            if bucket is None:
                bucket = self._buckets[principal] = TokenBucket(
                    self.rate, self.burst, clock=self._clock)
                if len(self._buckets) > self.size:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(principal)
            return bucket


class RefusalLog:
    """One WARNING per kind of refusal per ``period`` seconds, with the count since the last.

    ``note(kind, message, *args)``: the first refusal of a kind is logged at once, later
    ones are counted and the next line (after ``period``) says how many there were. The
    message must hold nothing secret; values from a request go through :func:`loggable`.
    """

    #: Counts every refusal by kind (``refusals``); the middleware gives it its recorder.
    metrics: Recorder = NO_METRICS

    def __init__(self, period: float = 60.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.period = period
        self._clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[str, tuple[int, float]] = {}  # kind -> (count unlogged, logged at)

    def note(self, kind: str, message: str, *args: object) -> None:
        """Count one refusal of ``kind``; log it when the kind was not logged this period."""
        self.metrics.count("refusals", reason=kind.replace(" ", "_"))
        with self._lock:
            now = self._clock()
            count, logged_at = self._kinds.get(kind, (0, -math.inf))
            count += 1
            if now - logged_at < self.period:
                self._kinds[kind] = (count, logged_at)
                return
            self._kinds[kind] = (0, now)
        log.warning(message + " (%d refused since the last such line)", *args, count)


_PLAIN = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")


def loggable(value: object) -> str:
    """A request-given value fit for a log line: as is when short and plain, else a hash.

    Anything longer than 64 characters or holding other characters (spaces, quotes,
    newlines that could forge log lines) is shown as ``sha256:`` and 12 hex digits, enough
    to tell two values apart and to find a known one.
    """
    text = value if isinstance(value, str) else repr(value)
    if _PLAIN.fullmatch(text):
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12]


class StripeGuard:
    """The bulkhead and circuit breaker in front of every request path's Stripe calls.

    :param max_concurrent: the ceiling of the adaptive limit: the most calls in flight,
        and so the most server threads a hanging Stripe can hold.
    :param cooldown: seconds the circuit stays open before one probe may try.
    :param timeout: the Stripe read timeout (seconds): the longest a call waits for a slot.
    :param clock: a monotonic clock, for tests.
    """

    def __init__(
        self, *, max_concurrent: int, cooldown: float, timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_concurrent = max_concurrent
        self.cooldown = cooldown
        self.max_wait = timeout
        self.refusals = RefusalLog(clock=clock)
        self._clock = clock
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._limit = float(max_concurrent)
        self._in_flight: dict[int, float] = {}  # call number -> when it started
        self._numbers = itertools.count()
        self._mean: float | None = None  # smoothed latency of answered calls
        self._deviation = 0.0
        self._decreased_at = -math.inf
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

    @property
    def limit(self) -> int:
        """The calls that may be in flight now (1 to ``max_concurrent``)."""
        with self._lock:
            return self._slots()

    @property
    def overdue_after(self) -> float:
        """Seconds after which a call in flight counts as overdue (Stripe is slow)."""
        with self._lock:
            return self._overdue_after()

    def is_open(self) -> bool:
        """Whether Stripe is taken to be down right now (for paths that can do without)."""
        return self.state == OPEN

    @contextmanager
    def call(self, what: str = "checkout", *, wait: bool = True) -> Iterator[None]:
        """Hold a slot around Stripe calls.

        :param what: the path, for the refusal's log line.
        :param wait: wait for a slot while Stripe is healthy; ``False`` for a path that
            can do without Stripe.
        :raises Refused: 503 with ``Retry-After`` when the circuit is open, or no slot
            is free and Stripe is slow (or ``wait`` is false, or ``timeout`` passed).
        """
        number, probe = self._enter(what, wait)
        try:
            yield
        except stripe.APIConnectionError:  # refused, reset or timed out: Stripe unreachable
            self._leave(number, probe, failed=True)
            raise
        except BaseException:  # any answer from Stripe, even an error, means it is up
            self._leave(number, probe, failed=False)
            raise
        self._leave(number, probe, failed=False)

    # -- inside the lock ----------------------------------------------------------------

    def _slots(self) -> int:
        return max(1, min(self.max_concurrent, int(self._limit)))

    def _overdue_after(self) -> float:
        if self._mean is None:
            bound = _FIRST_OVERDUE
        else:
            bound = max(MIN_OVERDUE, self._mean + 4 * self._deviation)
        return min(bound, self.max_wait)

    def _enter(self, what: str, wait: bool) -> tuple[int, bool]:
        with self._lock:
            probe = False
            if self._state != CLOSED:
                waited = self._clock() - self._opened_at
                if self._probing or waited < self.cooldown:
                    retry = max(1, math.ceil(self.cooldown - waited))
                    self.refusals.note("open", "A %s call to Stripe refused: the circuit "
                                       "is open (Stripe timed out or was unreachable)", what)
                    raise _unavailable(retry)
                probe = self._probing = True
                self._set_state(HALF_OPEN)
            deadline = self._clock() + self.max_wait
            while len(self._in_flight) >= self._slots():
                now = self._clock()
                oldest = min(self._in_flight.values())
                overdue_at = oldest + self._overdue_after()
                if not wait or probe or now >= overdue_at or now >= deadline:
                    if now >= overdue_at:
                        self._decrease(now)
                    if probe:
                        self._probing = False
                        self._set_state(OPEN)
                    self._note_busy(what, now >= overdue_at)
                    raise _busy()
                self._freed.wait(min(overdue_at, deadline) - now)
            number = next(self._numbers)
            self._in_flight[number] = self._clock()
            return number, probe

    def _leave(self, number: int, probe: bool, *, failed: bool) -> None:
        with self._lock:
            now = self._clock()
            took = now - self._in_flight.pop(number)
            self._freed.notify()
            if probe:
                self._probing = False
            if failed or took > self._overdue_after():
                self._decrease(now)
            else:
                self._limit = min(float(self.max_concurrent), self._limit + 1 / self._limit)
            if not failed:
                self._sample(took)
                self._failures = 0
                if self._state != CLOSED:
                    self._set_state(CLOSED)
                return
            self._failures += 1
            if probe or (self._state == CLOSED and self._failures >= FAILURES_TO_OPEN):
                self._opened_at = now
                self._set_state(OPEN)

    def _sample(self, took: float) -> None:
        """Fold one answered call's latency into the mean and deviation (Jacobson/Karels)."""
        if self._mean is None:
            self._mean, self._deviation = took, took / 2
        else:
            self._deviation += (abs(took - self._mean) - self._deviation) / 4
            self._mean += (took - self._mean) / 8

    def _decrease(self, now: float) -> None:
        """Halve the limit, once per overdue bound (one slow spell is one signal)."""
        if now - self._decreased_at >= self._overdue_after():
            self._decreased_at = now
            # Never below two slots (where the ceiling allows two): one call that hangs (a
            # price refresh in the background, one slow create) must not shut every
            # checkout out while Stripe answers the others; a hanging Stripe still holds at
            # most the ceiling.
            self._limit = max(float(min(2, self.max_concurrent)), self._limit / 2)

    def _note_busy(self, what: str, slow: bool) -> None:
        self.refusals.note(
            "busy", "A %s call to Stripe refused: the bulkhead is full (%d in flight, limit "
            "%d of at most %d, %s)", what, len(self._in_flight), self._slots(),
            self.max_concurrent,
            "the oldest overdue: Stripe is slow" if slow else "no slot free in time")

    def _set_state(self, state: str) -> None:
        if state == self._state:
            return
        previous, self._state = self._state, state
        if state == OPEN:
            log.warning("Stripe circuit %s -> open: %d connection failures or timeouts in a "
                        "row; calls to Stripe answer 503 for %g s", previous, self._failures,
                        self.cooldown)
        elif state == HALF_OPEN:
            log.info("Stripe circuit open -> half-open: one call probes Stripe")
        else:
            log.warning("Stripe circuit %s -> closed: Stripe answers again", previous)


def _busy() -> Refused:
    return Refused(503, "The shop is busy; try again in a moment.", type="api_error",
                   headers=[("Retry-After", "1")])


def _unavailable(retry_after: int) -> Refused:
    return Refused(503, "The payment provider is unavailable; try again shortly.",
                   type="api_error", headers=[("Retry-After", str(retry_after))])
