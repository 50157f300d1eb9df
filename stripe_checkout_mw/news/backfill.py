"""The full sync: adopt what Stripe already holds, from its list endpoints.

``sync`` replays the Events API, which keeps 30 days. A shop moving onto the middleware with
customers of its own, or whose ledger was restored from an old backup, needs more: ``sync
--full`` (``mw.sync(full=True)``) walks Stripe's lists instead, one :class:`Step` after the
other (:data:`STEPS`):

1. ``checkout_sessions``: every completed Checkout Session (``GET /v1/checkout/sessions
   ?status=complete``) that carries this shop's marker (:func:`~stripe_checkout_mw.marker
   .is_marked`, the check the webhook makes) or that the ledger knows. Each is recorded as
   its order, with its ``line_items``, and, as a completed session of this shop, links its
   ``client_reference_id`` to its Customer and stores its subscription.
2. ``subscriptions``: every subscription (``GET /v1/subscriptions?status=all``, canceled ones
   too) of a Customer linked to one of the app's users (by step 1 or by
   ``mw.customers.link``) that the ledger does not hold in the listed status.

A later kind of record adds its row to :data:`STEPS` (the invoices, once the ledger keeps
them: a list endpoint, the event type its applier takes, and which objects are this shop's).

How each object is applied: as a webhook delivery of the step's event type would be, through
the same appliers (:class:`~stripe_checkout_mw.news.router.EventRouter`) and the same
pipeline (claim first, then act), under an event id of its own, ``backfill_<object id>``.
A second run finds every claim made and changes nothing; an event Stripe delivers later is
applied as usual and moves nothing that is already where Stripe says. The app's ``mw.on``
handlers do not run for these (they are not Stripe's events); ``subscription_changed`` runs
for each subscription stored, as for a delivery.

**Fulfilment.** Adopted orders were, as a rule, fulfilled by whatever sold them. An order the
backfill records or moves to paid (one the ledger held as paid already keeps its course) is
fulfilled only when its session was created at or after ``fulfil_after`` (``--fulfil-after
DATE``); every other is marked fulfilled in the same transaction, without calling
``fulfill``, so no later delivery, lookup or sync fulfils it either. The default,
no ``fulfil_after``, fulfils none. The report counts them (``not_fulfilled``).

**Order, pace, bounds.** Stripe lists newest first; each step pages to the oldest object once
(keeping only the current page), then walks forward with ``ending_before``, oldest first.
Every call goes through the reconciler's pacing, counting and guard (20 a second by
default). **Resuming.** After each page (and before giving up on a failure) the step's cursor,
the last object applied, is written to the ledger (``stripe_checkout_backfill``); an
interrupted run (a Stripe error, a refusal of the guard, a killed process) continues from it
the next time. A finished run clears the cursors, so the next full sync walks everything
again, finding it all claimed.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import stripe

from ..ledger.backfill import BackfillRows, CustomerLinks
from ..ledger.order_state import FULFIL
from ..ledger.orders import PAID, STATUSES, Order
from ..ledger.pipeline import Applied, EventClaim, JobFailed, JobsPending, Outcome, Pipeline
from ..ledger.store import StoreError, StoreTransaction
from ..marker import is_marked
from ..stripe_api.guard import Refused
from ..stripe_api.plain import id_of, to_plain
from .handlers import WebhookHandlers
from .reconcile import Reconciler, StepCount, SyncReport
from .router import EventRouter

__all__ = ["EVENT_PREFIX", "STEPS", "Backfill", "Step", "StepCount", "start"]

logger = logging.getLogger("stripe_checkout_mw")

#: The prefix of the event ids under which the backfill claims each object.
EVENT_PREFIX = "backfill_"
#: Objects per list page (Stripe's maximum).
PAGE = 100


@dataclass(frozen=True)
class Step:
    """One list the backfill walks.

    :param name: the step's name, and its cursor's key in the ledger.
    :param lister: the SDK's list method for a client (``client.v1.customers.list``).
    :param params: the list's filters (``status=all``...).
    :param event_type: the event type each object is applied as (its router row decides
        the applier).
    :param wanted: whether an object is this shop's and not yet where Stripe says.
    """

    name: str
    lister: Callable[[stripe.StripeClient], Callable[..., Any]]
    params: Mapping[str, Any]
    event_type: str
    wanted: Callable[[Backfill, dict[str, Any]], bool]


def _our_session(backfill: Backfill, session: dict[str, Any]) -> bool:
    return (is_marked(session, backfill.marker)
            or backfill.store.get(str(session["id"])) is not None)


def _subscription_of_a_user(backfill: Backfill, subscription: dict[str, Any]) -> bool:
    customer = id_of(subscription.get("customer"))
    if not customer or backfill.links.owner(customer) is None:
        return False
    return backfill.rows.subscription_status(str(subscription["id"])) != subscription.get(
        "status")


#: The steps, in the order they run: sessions first, as they link the users' Customers
#: whose subscriptions the next step takes. (Invoices: a row here once the ledger keeps them.)
STEPS: tuple[Step, ...] = (
    Step("checkout_sessions", lambda client: client.v1.checkout.sessions.list,
         {"status": "complete"}, "checkout.session.completed", _our_session),
    Step("subscriptions", lambda client: client.v1.subscriptions.list,
         {"status": "all"}, "customer.subscription.updated", _subscription_of_a_user),
)


class _CutOffPipeline(Pipeline):
    """The shop's pipeline, except that an order the backfill makes paid is marked
    fulfilled, in the applying transaction and without a ``fulfil`` job, unless its
    session was created at or after ``fulfil_after``."""

    def __init__(self, inner: Pipeline, fulfil_after: float | None) -> None:
        # Not Pipeline.__init__: every call is delegated to ``inner``.
        self.inner = inner
        self.store = inner.store
        self.fulfil_after = fulfil_after
        self.not_fulfilled: list[str] = []

    def process(self, apply: Callable[[StoreTransaction], Applied] | None, *, subject: str,
                event: EventClaim | None = None,
                known: Mapping[str, Any] | None = None) -> Outcome:
        if apply is None:
            return self.inner.process(None, subject=subject, event=event, known=known)
        step = apply

        def adopting(tx: StoreTransaction) -> Applied:
            before = tx.lock_order(subject)
            was_paid = before is not None and STATUSES[before.status] >= STATUSES[PAID]
            applied = step(tx)
            order = applied.known.get(subject, applied.value)
            if was_paid or not isinstance(order, Order) or self._fulfils(order):
                return applied
            kept = []
            for job in applied.jobs:
                if job.kind == FULFIL and job.key == subject:
                    tx.mark_fulfilled(subject, time.time())
                    self.not_fulfilled.append(subject)
                else:
                    kept.append(job)
            applied.jobs = kept
            return applied

        return self.inner.process(adopting, subject=subject, event=event, known=known)

    def _fulfils(self, order: Order) -> bool:
        created = (order.session or {}).get("created")
        return (self.fulfil_after is not None and isinstance(created, (int, float))
                and created >= self.fulfil_after)


@dataclass
class _Walk:
    """A step's position: the last object applied, whether it is saved, the pages walked
    forward this run, and whether the list's newest object was reached."""

    last: str | None
    saved: bool = True
    pages: int = 0
    done: bool = False


class Backfill:
    """Walks :data:`STEPS` through the reconciler's pacing and the shop's appliers (see
    the module docstring). Built by :meth:`Reconciler.backfill
    <stripe_checkout_mw.news.reconcile.Reconciler.backfill>`.

    :param fulfil_after: Unix time; orders whose session is older are recorded as
        fulfilled without calling ``fulfill`` (``None``: all of them).
    :param max_pages: list pages per step and run, at most (each of 100 objects).
    """

    def __init__(self, reconciler: Reconciler, *, fulfil_after: float | None = None,
                 max_pages: int = 10_000, steps: tuple[Step, ...] = STEPS) -> None:
        self.reconciler = reconciler
        self.store = reconciler.store
        self.client = reconciler.client
        self.marker = reconciler.marker
        self.rows = BackfillRows(reconciler.store)
        self.links = CustomerLinks(reconciler.store)
        self.max_pages = max_pages
        self.steps = steps
        self.pipeline = _CutOffPipeline(reconciler.pipeline, fulfil_after)
        # The shop's appliers, no handlers: these are not Stripe's events.
        self.router = EventRouter(pipeline=self.pipeline, handlers=WebhookHandlers(),
                                  appliers=reconciler.events.appliers)

    def not_fulfilled_count(self) -> int:
        """Orders recorded as fulfilled without calling ``fulfill`` (before the cut-off)."""
        return len(self.pipeline.not_fulfilled)

    def run(self, report: SyncReport) -> None:
        """Every step in order; stops at the first failure (listed in ``report``), keeping
        the cursors, so the next run continues there."""
        for step in self.steps:
            count = report.backfill.setdefault(step.name, StepCount())
            if not self._step(report, step, count):
                return
        self.rows.clear()

    def _step(self, report: SyncReport, step: Step, count: StepCount) -> bool:
        walk = _Walk(self.rows.get(step.name))
        count.resumed_after = walk.last
        try:
            for obj in self._oldest_first(report, step, walk):
                count.listed += 1
                if step.wanted(self, obj):
                    count.ours += 1
                    count.new += self._applied(report, step, obj)
                walk.last, walk.saved = str(obj["id"]), False
        except (stripe.StripeError, Refused, StoreError) as exc:
            report.failures.append(f"backfill {step.name}: {_cause(exc)}; the next run "
                                   "continues after the last object applied")
            self._save(step, walk)
            return False
        self._save(step, walk)
        if walk.done:
            return True
        report.failures.append(f"backfill {step.name}: more than {self.max_pages} pages; "
                               "the next run continues")
        return False

    def _save(self, step: Step, walk: _Walk) -> None:
        if not walk.saved and walk.last is not None:
            try:
                self.rows.set(step.name, walk.last)
            except StoreError:
                logger.error("backfill %s: its cursor could not be saved; the next run "
                             "repeats what this one applied (claimed: nothing twice)", step.name)
            walk.saved = True

    def _applied(self, report: SyncReport, step: Step, obj: dict[str, Any]) -> bool:
        """Apply one object; whether it was new. A job that failed (or that another worker
        holds) is committed as due: listed, and retried by ``sync`` or ``fulfil-pending``."""
        try:
            return not self._apply(step, obj).duplicate
        except JobFailed as exc:
            report.failures.append(f"backfill {step.name} {obj['id']}: {exc.job.kind} job "
                                   f"failed ({type(exc.cause).__name__}); it will be retried")
            return True
        except JobsPending:
            report.busy += 1
            return False

    def _apply(self, step: Step, obj: dict[str, Any]) -> Outcome:
        payload = {"id": EVENT_PREFIX + str(obj["id"]), "object": "event",
                   "type": step.event_type, "created": obj.get("created"),
                   "data": {"object": obj}}
        return self.router.apply(payload)

    def _oldest_first(self, report: SyncReport, step: Step,
                      walk: _Walk) -> Iterator[dict[str, Any]]:
        """The step's objects after ``walk.last`` (from the oldest when ``None``), oldest
        first; the cursor is saved after each page."""
        lister = step.lister(self.client)
        if walk.last is None:
            oldest = self._oldest(report, step, lister)
            if oldest is None:
                walk.done = True
                return
            yield oldest
        while walk.pages < self.max_pages:
            assert walk.last is not None  # set once the oldest was applied
            walk.pages += 1
            params = {**step.params, "limit": PAGE, "ending_before": walk.last}
            page = self.reconciler.call(report, functools.partial(lister, params=params))
            yield from (to_plain(obj) for obj in reversed(page.data))
            self._save(step, walk)
            if not page.has_more or not page.data:
                walk.done = True
                return

    def _oldest(self, report: SyncReport, step: Step,
                lister: Callable[..., Any]) -> dict[str, Any] | None:
        """The oldest object of the list (paging newest first, one page kept at a time)."""
        params: dict[str, Any] = {**step.params, "limit": PAGE}
        oldest = None
        for _ in range(self.max_pages):
            page = self.reconciler.call(report, functools.partial(lister, params=params))
            if page.data:
                oldest = page.data[-1]
            if not page.has_more or not page.data:
                return to_plain(oldest) if oldest is not None else None
            params = {**params, "starting_after": page.data[-1].id}
        raise _TooLong(step.name)


class _TooLong(stripe.StripeError):
    """More pages than ``max_pages`` before the oldest object."""


def _cause(exc: Exception) -> str:
    if isinstance(exc, _TooLong):
        return "more pages than the run may list"
    if isinstance(exc, Refused):
        return f"refused by the Stripe guard ({exc.message})"
    return type(exc).__name__


def start(reconciler: Reconciler, fulfil_after: float | None) -> Backfill:
    """The full sync of ``reconciler`` (what the shop hands it as ``full_sync``)."""
    return Backfill(reconciler, fulfil_after=fulfil_after)
