"""Reconciliation: recover from Stripe what the webhooks missed.

When the webhook endpoint was down or misconfigured for longer than Stripe's three days of
retries, paid orders stay ``open`` and refunds go unrecorded. :class:`Reconciler` (behind
``mw.sync()`` and ``python -m stripe_checkout_mw sync``) repairs that in three steps:

1. **Replay events.** ``GET /v1/events`` for the event types the middleware handles, created
   since ``since`` (at most Stripe's 30 days), 100 a page, newest first as Stripe lists them,
   then processed oldest first through the same pipeline a delivery takes. An event already
   processed is a duplicate and changes nothing, so a replay is harmless. An event about a
   session that carries another marker than this sync's and has no ledger row is left
   unclaimed (``events_left``): the shop that made it, or Stripe's redelivery, still can.
2. **Run the jobs still due** (fulfilments and hooks whose last attempt failed).
3. **Settle stale orders.** Orders of this shop still ``open`` after their session's
   ``expires_at`` are retrieved from Stripe and moved to what Stripe says (paid, expired).

Safe to run from cron on every host at once: the event claims and the jobs' leases are in the
ledger (SQLite or PostgreSQL), so two runs fulfil an order once; a job another run holds is
counted as ``busy``, not as a failure. Stripe calls are bounded (``max_pages`` event pages,
``max_orders`` retrievals) and paced below the test-mode rate limit, and a 429 is retried
after a pause. With the middleware's own HTTP client every call of the run is paced,
counted (``stripe_calls``) and goes through the middleware's guard, the ``line_items``
fetches of replayed events included: a hanging Stripe opens the circuit and the rest of
the run fails fast (each step listed in the report) instead of waiting out every timeout.

:meth:`Reconciler.backfill` (``sync --full``) reaches further back than the 30 days of
events, from Stripe's lists, with the same pacing and guard (:mod:`.backfill`).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, TypeVar

import stripe

from ..ledger.order_state import move_order
from ..ledger.orders import OPEN, Order, status_for_session
from ..ledger.pipeline import JobFailed, JobsPending, Pipeline
from ..ledger.store import SqlStore, StoreError
from ..marker import MARKER_KEY, Marker
from ..stripe_api.client import ObservedRequestsClient
from ..stripe_api.guard import Refused, StripeGuard
from ..stripe_api.plain import to_plain
from .router import EventRouter, event_types

__all__ = ["HANDLED_EVENTS", "MAX_SINCE", "FullSync", "Reconciler", "StepCount", "SyncReport",
           "parse_duration", "parse_since"]

logger = logging.getLogger("stripe_checkout_mw")

#: The event types replayed: the ones the router acts on.
HANDLED_EVENTS = event_types()
#: Stripe lists events of at most 20 types at once.
MAX_TYPES_PER_LIST = 20
#: Stripe lists events of the last 30 days only.
MAX_SINCE = timedelta(days=30)
#: Sessions live at least 30 minutes: a younger open order cannot be past its expiry.
_MIN_SESSION_LIFE = 1800.0
_T = TypeVar("_T")


def parse_duration(text: str, flag: str = "--since") -> timedelta:
    """``"3d"``, ``"12h"``, ``"90m"`` or ``"2w"`` as a duration.

    :raises ValueError: a one-line message, naming ``flag``, for anything else.
    """
    units = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    value = text.strip().lower()
    number, unit = value[:-1], value[-1:]
    if unit not in units or not number.isdigit() or int(number) == 0 or len(number) > 6:
        raise ValueError(f"{flag} {text!r}: expected a positive number and a unit, m, h, d "
                         "or w (for example 3d or 12h)")
    return timedelta(seconds=int(number) * units[unit])


def parse_since(text: str) -> tuple[timedelta, bool]:
    """A ``--since`` of :func:`parse_duration`, clamped to :data:`MAX_SINCE`; returns
    ``(duration, clamped)``."""
    return _clamp(parse_duration(text))


def _clamp(since: timedelta) -> tuple[timedelta, bool]:
    return (MAX_SINCE, True) if since > MAX_SINCE else (since, False)


class FullSync(Protocol):
    """A full sync from Stripe's lists (``news.backfill.Backfill``)."""

    def run(self, report: SyncReport) -> None: ...

    def not_fulfilled_count(self) -> int: ...


@dataclass
class StepCount:
    """What one step saw: objects listed, this shop's, newly applied (claimed)."""

    listed: int = 0
    ours: int = 0
    new: int = 0
    resumed_after: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"listed": self.listed, "ours": self.ours, "new": self.new,
                "resumed_after": self.resumed_after}


@dataclass
class SyncReport:
    """What one reconciliation found and did."""

    since: float
    clamped: bool = False
    events_seen: int = 0
    events_new: int = 0
    #: Events of sessions that carry another marker (another shop's, or this shop's when
    #: the sync was not given its configuration) and have no ledger row: left unclaimed.
    events_left: int = 0
    jobs_run: int = 0
    busy: int = 0
    orders_checked: int = 0
    orders_settled: int = 0
    stripe_calls: int = 0
    failures: list[str] = field(default_factory=list)
    #: A full sync (:mod:`~stripe_checkout_mw.news.backfill`): what each step did, and the
    #: orders recorded as fulfilled without calling ``fulfill`` (before ``fulfil_after``).
    full: bool = False
    backfill: dict[str, StepCount] = field(default_factory=dict)
    not_fulfilled: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def lines(self) -> list[str]:
        since = datetime.fromtimestamp(self.since, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        lines = []
        if self.full:
            return self._full_lines()
        if self.clamped:
            lines.append("warning: --since is limited to Stripe's 30 days of events; using 30d")
        lines += [
            f"events since {since}: {self.events_seen} seen, {self.events_new} new"
            + (f", {self.events_left} left unclaimed (sessions with another shop's marker)"
               if self.events_left else ""),
            f"jobs run: {self.jobs_run}" + (f" ({self.busy} held by another worker)"
                                           if self.busy else ""),
            f"open orders past expiry: {self.orders_checked} checked, "
            f"{self.orders_settled} settled",
            f"Stripe calls: {self.stripe_calls}",
            f"failures: {len(self.failures)}",
            *(f"  {failure}" for failure in self.failures),
        ]
        return lines

    def _full_lines(self) -> list[str]:
        lines = []
        for name, count in self.backfill.items():
            resumed = (f" (resumed after {count.resumed_after})"
                       if count.resumed_after else "")
            lines.append(f"{name}: {count.listed} listed, {count.ours} this shop's, "
                         f"{count.new} new{resumed}")
        return [
            *lines,
            f"orders recorded as fulfilled without calling fulfill: {self.not_fulfilled}",
            f"jobs run: {self.jobs_run}",
            f"Stripe calls: {self.stripe_calls}",
            f"failures: {len(self.failures)}",
            *(f"  {failure}" for failure in self.failures),
        ]


class Reconciler:
    """Replays events, runs due jobs and settles stale orders (see the module docstring).

    :param events: applies each event as a webhook delivery would (no signature: the
        Events API authenticates what it lists).
    :param marker: this shop's marker; only orders carrying it are retrieved (``None``: all).
    :param page_interval: seconds between two Stripe calls (0.05: at most 20 a second).
    :param http_client: ``client``'s HTTP client, when it is the middleware's own: then
        every request of the run (the event appliers' too) is paced, counted and guarded.
    :param guard: the bulkhead and breaker the run's calls go through (with ``http_client``).
    """

    def __init__(self, *, store: SqlStore, client: stripe.StripeClient,
                 events: EventRouter, pipeline: Pipeline, marker: Marker | None,
                 page_interval: float = 0.05, max_pages: int = 100,
                 max_orders: int = 500, http_client: ObservedRequestsClient | None = None,
                 guard: StripeGuard | None = None,
                 full_sync: Callable[[Reconciler, float | None], FullSync] | None = None,
                 ) -> None:
        self.store = store
        #: Builds the full sync (``news.backfill.Backfill``); handed in by the shop, so that
        #: this module imports nothing of the backfill, which stands on it.
        self.full_sync = full_sync
        self.client = client
        self.events = events
        self.pipeline = pipeline
        self.marker = marker
        self.page_interval = page_interval
        self.max_pages = max_pages
        self.max_orders = max_orders
        self.http_client = http_client
        self.guard = guard
        self._observed = False  # inside _observing: the HTTP client paces and counts
        self._last_call = 0.0

    def run(self, since: timedelta = timedelta(days=3)) -> SyncReport:
        """One reconciliation; never raises for a failure, which the report lists."""
        if not isinstance(since, timedelta) or since <= timedelta(0):
            raise ValueError("sync: since must be a positive timedelta, e.g. timedelta(days=3)")
        since, clamped = _clamp(since)
        if clamped:
            logger.warning("sync: since is limited to Stripe's 30 days of events; using 30 days")
        report = SyncReport(since=time.time() - since.total_seconds(), clamped=clamped)
        with self._observing(report):
            self._steps(report)
        logger.info("sync: %s", "; ".join(report.lines()))
        return report

    def backfill(self, fulfil_after: float | None = None) -> SyncReport:
        """A full sync from Stripe's lists (:mod:`~stripe_checkout_mw.news.backfill`), then
        the jobs still due; never raises for a failure, which the report lists.

        :param fulfil_after: Unix time; orders adopted from sessions created before it are
            recorded as fulfilled without calling ``fulfill`` (``None``: every one).
        """
        if self.full_sync is None:
            raise ValueError("sync --full: this reconciler was built without the backfill "
                             "(build it through Shop.from_settings)")
        report = SyncReport(since=0.0, full=True)
        with self._observing(report):
            backfill = self.full_sync(self, fulfil_after)
            backfill.run(report)
            report.not_fulfilled = backfill.not_fulfilled_count()
            self._guard(report, "running due jobs", lambda: self.run_due_jobs(report))
        logger.info("sync --full: %s", "; ".join(report.lines()))
        return report

    def _steps(self, report: SyncReport) -> None:
        try:
            events = self._events(report)
        except (stripe.StripeError, Refused) as exc:
            report.failures.append(f"listing events: {_cause(exc)}")
            events = []
        for payload in reversed(events):  # Stripe lists newest first
            report.events_seen += 1
            self._guard(report, f"event {payload.get('id')} ({payload.get('type')})",
                        functools.partial(self._replay, report, payload))
        self._guard(report, "running due jobs", lambda: self.run_due_jobs(report))
        self._guard(report, "settling open orders", lambda: self.settle_stale_orders(report))

    # -- steps ------------------------------------------------------------------------

    def _events(self, report: SyncReport) -> list[dict[str, Any]]:
        """Every handled event since ``report.since``, newest first as Stripe lists them.

        Stripe takes at most :data:`MAX_TYPES_PER_LIST` types in one list, so a router with
        more rows is listed in batches of types, merged by creation time.
        """
        batches = [HANDLED_EVENTS[i:i + MAX_TYPES_PER_LIST]
                   for i in range(0, len(HANDLED_EVENTS), MAX_TYPES_PER_LIST)]
        found: list[dict[str, Any]] = []
        for types in batches:
            found += self._events_of(report, types)
        if len(batches) > 1:
            found.sort(key=lambda event: int(event.get("created") or 0), reverse=True)
        return found

    def _events_of(self, report: SyncReport, types: Sequence[str]) -> list[dict[str, Any]]:
        # A plain dict (not EventListParams): each page adds starting_after to a copy.
        params: dict[str, Any] = {"types": list(types), "limit": 100,
                                  "created": {"gte": int(report.since)}}
        found: list[dict[str, Any]] = []
        for _ in range(self.max_pages):
            page = self._call(report, functools.partial(self.client.v1.events.list,
                                                        params=params))  # type: ignore[arg-type]
            found += [to_plain(event) for event in page.data]
            if not page.has_more or not page.data:
                return found
            params = {**params, "starting_after": page.data[-1].id}
        report.failures.append(f"more than {self.max_pages * 100} events since then; the "
                               "oldest were not replayed (use a shorter --since)")
        return found

    def _replay(self, report: SyncReport, payload: dict[str, Any]) -> None:
        if self._not_ours_to_apply(payload):
            report.events_left += 1
            return
        outcome = self.events.apply(payload)
        report.events_new += not outcome.duplicate
        report.jobs_run += len(outcome.ran)

    def _not_ours_to_apply(self, payload: dict[str, Any]) -> bool:
        """Whether the event is about a session carrying a marker that is not this sync's,
        and that the ledger does not know: not applied, and not claimed either.

        Claiming it would record it as processed with nothing done, and then neither
        Stripe's redelivery nor a sync configured as its shop could recover the order.
        """
        data = payload.get("data")
        session = data.get("object") if isinstance(data, dict) else None
        if not isinstance(session, dict) or session.get("object") != "checkout.session":
            return False
        metadata = session.get("metadata")
        theirs = metadata.get(MARKER_KEY) if isinstance(metadata, dict) else None
        if not theirs or (self.marker is not None and self.marker.matches(theirs)):
            return False
        return self.store.get(str(session.get("id"))) is None

    def run_due_jobs(self, report: SyncReport) -> None:
        """Step 2: drive every subject with a job due and not leased (``fulfil-pending``)."""
        with self._observing(report):
            self._run_due_jobs(report)

    def _run_due_jobs(self, report: SyncReport) -> None:
        for subject in self.store.subjects_with_jobs_due(time.time()):
            self._guard(report, f"jobs of {subject}",
                        functools.partial(self._drive, report, subject))

    def _drive(self, report: SyncReport, subject: str) -> None:
        report.jobs_run += len(self.pipeline.process(None, subject=subject).ran)

    def settle_stale_orders(self, report: SyncReport) -> None:
        """Step 3: retrieve this shop's orders still open after their session's expiry."""
        with self._observing(report):
            self._settle_stale_orders(report)

    def _settle_stale_orders(self, report: SyncReport) -> None:
        now = time.time()
        for session_id in self.store.orders_in_status(OPEN, now - _MIN_SESSION_LIFE,
                                                      self.max_orders):
            order = self.store.get(session_id)
            if order is None or not self._stale_and_ours(order, now):
                continue
            report.orders_checked += 1
            self._guard(report, f"order {order.session_id}",
                        functools.partial(self._settle, report, order))

    def _stale_and_ours(self, order: Order, now: float) -> bool:
        if self.marker is not None and not self.marker.matches(order.metadata.get(MARKER_KEY)):
            return False
        expires = (order.session or {}).get("expires_at")
        return isinstance(expires, (int, float)) and expires < now

    def _settle(self, report: SyncReport, order: Order) -> None:
        session_id = order.session_id
        session = to_plain(self._call(
            report, lambda: self.client.v1.checkout.sessions.retrieve(session_id)))
        target = status_for_session(session)
        if target is None:
            return
        outcome = self.pipeline.process(
            lambda tx: move_order(tx, session_id, target, session), subject=session_id)
        report.jobs_run += len(outcome.ran)
        if isinstance(outcome.value, Order) and outcome.value.status != order.status:
            report.orders_settled += 1

    # -- helpers ----------------------------------------------------------------------

    def _guard(self, report: SyncReport, what: str, step: Callable[[], object]) -> None:
        """Run one step; a failure is recorded (class only: no secret, no customer data).

        After a store failure the remaining steps are skipped: the store would refuse each
        of them again (and each would wait for it); the next run starts over."""
        if report.failures and report.failures[-1].endswith(_STOPPED):
            return
        try:
            step()
        except JobsPending:
            report.busy += 1
        except JobFailed as exc:
            report.failures.append(f"{what}: {exc.job.kind} job failed "
                                   f"({type(exc.cause).__name__}); it will be retried")
        except StoreError as exc:
            # The store's message names the store (no user or password) and the cause.
            report.failures.append(f"{what}: {exc}{_STOPPED}")
        except (stripe.StripeError, Refused) as exc:
            report.failures.append(f"{what}: {_cause(exc)}")

    @contextmanager
    def _observing(self, report: SyncReport) -> Iterator[None]:
        """Pace, count and guard every HTTP request of this thread while in the block."""
        if self.http_client is None or self._observed:
            yield
            return
        self._observed = True
        try:
            with self.http_client.observed(functools.partial(self._request, report)):
                yield
        finally:
            self._observed = False

    @contextmanager
    def _request(self, report: SyncReport) -> Iterator[None]:
        """Around each HTTP request of the run (with the middleware's client): paced,
        counted and guarded."""
        self._pace()
        report.stripe_calls += 1
        with self.guard.call("sync") if self.guard is not None else nullcontext():
            yield

    def _pace(self) -> None:
        wait = self._last_call + self.page_interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_call = time.monotonic()

    def call(self, report: SyncReport, call: Callable[[], _T]) -> _T:
        """One Stripe call, paced, with a 429 retried after a pause (three times at most).
        (With the middleware's HTTP client, :meth:`_request` paces and counts instead.)"""
        return self._call(report, call)

    def _call(self, report: SyncReport, call: Callable[[], _T]) -> _T:
        for attempt in range(4):
            if not self._observed:
                self._pace()
                report.stripe_calls += 1
            try:
                return call()
            except stripe.RateLimitError:
                if attempt == 3:
                    raise
                time.sleep(2.0 ** attempt)
        raise AssertionError("unreachable")


#: Ends the failure line of a store error, after which a run tries nothing more.
_STOPPED = "; stopped here"


def _cause(exc: Exception) -> str:
    """The failure's class; for a refusal by the guard, which one (breaker or bulkhead)."""
    if isinstance(exc, Refused):
        return f"refused by the Stripe guard ({exc.message})"
    return type(exc).__name__
