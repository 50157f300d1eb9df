"""The success page's order status lookup.

The customer often lands on the success page before Stripe's webhook arrives. Rather than show
"unpaid" for an order that is paid, :class:`OrderStatus` asks Stripe when the ledger has not
seen the payment yet and, if Stripe says paid, settles the order right there through the same
pipeline the webhook uses (:mod:`stripe_checkout_mw.ledger.pipeline`): the payment is committed
first, then the fulfilment job runs, so whichever of the two comes first fulfils and the other
finds it done. An order that is paid but whose fulfilment is still due (an earlier attempt
failed) has its jobs driven again by the lookup, without asking Stripe.

It only ever answers about this shop's sessions, and only with
:meth:`Order.public_view() <stripe_checkout_mw.ledger.orders.Order.public_view>`: a session in the
ledger, or one whose checkout write failed in this process (:meth:`OrderStatus.note_unrecorded`)
and that Stripe reports carrying this shop's marker (:mod:`stripe_checkout_mw.marker`): it is
recorded from Stripe now. Any other id is a 404 without asking Stripe, so made-up ids cost
Stripe nothing; a session whose row was lost otherwise is recorded by its webhook.

Usage, framework-free::

    status = OrderStatus(store=store, client=client, fulfill=ship)
    body = status.lookup(request.args.get("session_id", ""))  # or raises HTTPError
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from dataclasses import replace
from typing import Any, Callable

import stripe

from ..errors import HTTPError
from ..ledger.order_state import FULFIL, move_order, order_from_stripe
from ..ledger.orders import (
    AWAITING_PAYMENT,
    OPEN,
    PAID,
    STATUSES,
    FulfillFunc,
    Order,
    status_for_session,
)
from ..ledger.payments import PaymentLedger
from ..ledger.pipeline import Applied, JobFailed, JobsPending, JobsScheduled, Pipeline
from ..ledger.store import OrderStore, StoreError, StoreTransaction
from ..marker import Marker, is_marked
from ..stripe_api.guard import Refused, StripeGuard
from ..stripe_api.plain import id_of, to_plain
from .fulfilment import FulfilJob
from .reads import Fetched, fetch_items, fetch_subscription
from .subscriptions import SubscriptionEvents

__all__ = ["SESSION_ID_PATTERN", "OrderStatus"]

logger = logging.getLogger("stripe_checkout_mw")

#: What a Checkout Session id looks like; anything else is refused before any lookup.
SESSION_ID_PATTERN = re.compile(r"cs_(?:test|live)_[A-Za-z0-9_]{1,240}")

_REFRESHABLE = (OPEN, AWAITING_PAYMENT)


class OrderStatus:
    """Answer ``GET <status path>?session_id=cs_...`` for the success page.

    :param store: the ledger.
    :param client: the Stripe client used to retrieve a session the ledger has not seen paid.
    :param fulfill: the same hook the webhook receiver calls; it still runs once per order.
    :param min_refresh_interval: seconds between two Stripe retrievals of one session by this
        process. A success page that polls then costs Stripe (rate limit: 25 requests/s in
        test mode) at most one call per interval; the answers in between come from the
        ledger. ``0`` asks Stripe every time.
    :param may_call_stripe: asked before each retrieval (the process's Stripe budget);
        ``False`` answers from the ledger instead. Default: always allowed.
    :param guard: the middleware's bulkhead and breaker. A retrieval never waits for a
        slot: with the circuit open or every slot taken the ledger answers at once (an
        order not in the ledger gets 503 with ``Retry-After``), so polling success pages
        never wait behind a hung Stripe. Default: one of its own.
    """

    def __init__(
        self,
        *,
        store: OrderStore,
        client: stripe.StripeClient,
        fulfill: FulfillFunc | None,
        min_refresh_interval: float = 2.0,
        may_call_stripe: Callable[[], bool] | None = None,
        marker: Marker | None = None,
        pipeline: Pipeline | None = None,
        guard: StripeGuard | None = None,
        subscriptions: SubscriptionEvents | None = None,
    ) -> None:
        if fulfill is not None and not callable(fulfill):
            raise TypeError("status: fulfill must be callable or None")
        if min_refresh_interval < 0:
            raise ValueError("status: min_refresh_interval must be 0 or more seconds")
        self.store = store
        self.client = client
        self.fulfill = fulfill
        self.min_refresh_interval = min_refresh_interval
        self.may_call_stripe = may_call_stripe
        self.guard = guard or StripeGuard(max_concurrent=3, cooldown=10)
        self.marker = marker
        self.pipeline = pipeline or Pipeline(store, [FulfilJob(store, fulfill)])
        self.payments = PaymentLedger(store)
        self.subscriptions = subscriptions
        # Sessions created here whose ledger write failed: the only unknown ids worth a
        # question to Stripe. Bounded; losing it (a restart) leaves the work to the webhook.
        self._unrecorded: dict[str, None] = {}
        # Only throttles calls to Stripe; correctness never depends on it.
        self._last_refresh: dict[str, float] = {}
        self._refresh_lock = threading.Lock()

    def lookup(self, session_id: str) -> dict[str, object]:
        """The public view of one order (:meth:`Order.public_view()
        <stripe_checkout_mw.ledger.orders.Order.public_view>`), answered with 200.

        :raises HTTPError: 400 ``invalid_request_error`` (param ``session_id``): not a
            Checkout Session id; 404: not this shop's session; 502: the ledger has not seen
            the payment and Stripe could not be asked; 503: the ledger is unavailable, or
            Stripe says paid and the fulfilment is still being processed (it is retried by
            the next lookup or the webhook).
        """
        if not isinstance(session_id, str) or not SESSION_ID_PATTERN.fullmatch(session_id):
            raise HTTPError(
                400, "session_id must be a Checkout Session id (cs_test_... or cs_live_...)",
                param="session_id",
            )
        try:
            order = self.store.get(session_id)
        except StoreError:
            raise _unavailable() from None
        if order is None:
            return self._lookup_unrecorded(session_id)
        if order.status == PAID and not order.fulfilled:
            # Paid is final: only the jobs are still due, and Stripe need not be asked.
            return self._settle(order, session_id, None, None, None)
        if STATUSES[order.status] >= STATUSES[PAID]:
            return self._paid_view(order)
        if order.status not in _REFRESHABLE or not self._due(session_id):
            return order.public_view()
        if self.may_call_stripe is not None and not self.may_call_stripe():
            return order.public_view()  # over this process's budget: the ledger answers
        try:
            session = self._retrieve(session_id)
        except Refused:
            return order.public_view()  # Stripe down or every slot taken: the ledger answers
        target = status_for_session(session)
        if target is None:
            return order.public_view()
        return self._settle(order, session_id, target, session, None)

    def _paid_view(self, order: Order) -> dict[str, object]:
        """A paid order's view, with what was refunded or disputed since."""
        try:
            return self.payments.attach(order).public_view()
        except StoreError:
            raise _unavailable() from None

    def note_unrecorded(self, session_id: str) -> None:
        """Remember a session this process created but could not write to the ledger, so
        its lookups ask Stripe (and record it) instead of answering 404."""
        with self._refresh_lock:
            if len(self._unrecorded) >= 10_000:
                self._unrecorded.pop(next(iter(self._unrecorded)))
            self._unrecorded[session_id] = None

    def _lookup_unrecorded(self, session_id: str) -> dict[str, object]:
        """A session the ledger lacks: ours only if Stripe shows this shop's marker."""
        if self.marker is None or session_id not in self._unrecorded:
            raise _not_found()
        if not self._due(session_id) or (
            self.may_call_stripe is not None and not self.may_call_stripe()
        ):
            raise HTTPError(503, "the order is still being recorded; try again shortly",
                            type="api_error", headers=[("Retry-After", "2")])
        session = self._retrieve(session_id, missing_is_404=True)
        if not is_marked(session, self.marker):
            raise _not_found()
        try:
            with self.guard.call("status", wait=False):
                items = fetch_items(self.client, session_id)
        except stripe.StripeError as exc:
            _log_stripe_error(session_id, exc)
            raise _unreachable() from None
        record = order_from_stripe(session, items)
        view = self._settle(record, session_id, status_for_session(session), session, record)
        with self._refresh_lock:
            self._unrecorded.pop(session_id, None)
        return view

    def _settle(
        self,
        order: Order,
        session_id: str,
        target: str | None,
        session: dict[str, Any] | None,
        record: Order | None,
    ) -> dict[str, object]:
        fetched = self._subscription_of(session) if target == PAID else None

        def apply(tx: StoreTransaction) -> Applied:
            applied = move_order(tx, session_id, target, session, record=record)
            if fetched is not None and applied.value is not None and session is not None:
                assert self.subscriptions is not None
                # The ref is the one this shop sent, read from its own order row.
                self.subscriptions.customers.record_session(
                    tx, session, applied.value.client_reference_id)
                applied.jobs += self.subscriptions.apply(
                    tx, fetched[0], {fetched[0]: fetched[1]}, session_id)
            return applied

        try:
            outcome = self.pipeline.process(apply, subject=session_id)
        except (StoreError, JobFailed, JobsPending) as exc:
            if isinstance(exc, JobsScheduled):
                # Not a new failure: the one that scheduled the retry was logged when it
                # happened, and anyone may poll a success page, so this costs one DEBUG line.
                logger.debug("status: order %s has a job waiting for its retry; nothing ran",
                             session_id)
            else:
                cause = exc.cause if isinstance(exc, JobFailed) else exc
                logger.error("status: settling order %s failed with %s; it will be retried",
                             session_id, type(cause).__name__)
            paid = target == PAID or order.status == PAID
            message = (
                "payment received; the order is still being processed, try again shortly"
                if paid
                else "the order could not be updated; try again shortly"
            )
            raise HTTPError(503, message, type="api_error",
                            headers=[("Retry-After", _retry_after(exc))]) from None
        settled = outcome.value if isinstance(outcome.value, Order) else order
        if outcome.ran_kind(FULFIL):
            settled = replace(settled, fulfilled=True)
        return settled.public_view()

    def _subscription_of(self, session: dict[str, Any] | None) -> tuple[str, Fetched] | None:
        """The subscription of a paid subscription-mode session, as Stripe says now; ``None``
        when there is none, no subscriptions are kept, or Stripe cannot be asked (the
        webhook records it then)."""
        if self.subscriptions is None or session is None:
            return None
        subscription_id = id_of(session.get("subscription"))
        if session.get("mode") != "subscription" or subscription_id is None:
            return None
        try:
            with self.guard.call("status", wait=False):
                return subscription_id, fetch_subscription(self.client, subscription_id)
        except Refused:
            return None
        except stripe.StripeError as exc:
            logger.warning("status: subscription %s of session %s could not be read (%s); "
                           "its webhook records it", subscription_id, session.get("id"),
                           type(exc).__name__)
            return None

    def _retrieve(self, session_id: str, *, missing_is_404: bool = False) -> dict[str, Any]:
        try:
            with self.guard.call("status", wait=False):
                session = to_plain(self.client.v1.checkout.sessions.retrieve(session_id))
        except stripe.InvalidRequestError as exc:
            if missing_is_404 and exc.http_status == 404:
                raise _not_found() from None
            _log_stripe_error(session_id, exc)
            raise _unreachable() from None
        except stripe.StripeError as exc:
            _log_stripe_error(session_id, exc)
            raise _unreachable() from None
        if session.get("id") != session_id:
            logger.error("status: Stripe returned another session for %s", session_id)
            raise HTTPError(502, "the payment provider gave an unexpected answer",
                            type="api_error")
        return session

    def _due(self, session_id: str) -> bool:
        """Whether this process may ask Stripe about ``session_id`` now."""
        if self.min_refresh_interval <= 0:
            return True
        now = time.monotonic()
        with self._refresh_lock:
            last = self._last_refresh.get(session_id)
            if last is not None and now - last < self.min_refresh_interval:
                return False
            if len(self._last_refresh) >= 10_000:
                cutoff = now - self.min_refresh_interval
                self._last_refresh = {k: v for k, v in self._last_refresh.items() if v >= cutoff}
            self._last_refresh[session_id] = now
        return True


def _log_stripe_error(session_id: str, exc: stripe.StripeError) -> None:
    # The class, status and request id identify the failure; Stripe's message is left out
    # because some (authentication errors) quote part of the API key.
    level = logging.ERROR if isinstance(exc, stripe.AuthenticationError) else logging.WARNING
    logger.log(
        level,
        "status: retrieving %s from Stripe failed: %s (HTTP %s, request %s)",
        session_id,
        type(exc).__name__,
        exc.http_status,
        exc.request_id,
    )


#: Bounds of the ``Retry-After`` a waiting job's lookup answers: a page that polls comes
#: back when the job is due, but at least once in this many seconds (and never at once).
RETRY_AFTER_MIN = 1
RETRY_AFTER_MAX = 60


def _retry_after(exc: Exception) -> str:
    """Seconds until the job that blocked a lookup is due, bounded; 2 when unknown."""
    due_at = exc.due_at if isinstance(exc, JobsPending) else 0.0
    if due_at <= 0:
        return "2"
    wait = math.ceil(due_at - time.time())
    return str(min(RETRY_AFTER_MAX, max(RETRY_AFTER_MIN, wait)))


def _not_found() -> HTTPError:
    return HTTPError(404, "no such checkout session in this shop", param="session_id")


def _unreachable() -> HTTPError:
    return HTTPError(502, "could not check the payment with the payment provider; try again "
                     "shortly", type="api_error")


def _unavailable() -> HTTPError:
    return HTTPError(503, "the order ledger is unavailable; try again shortly",
                     type="api_error", headers=[("Retry-After", "2")])
