"""Checkout Session events: move the session's order to what the event says.

:class:`CheckoutSessionEvents` applies ``checkout.session.completed``,
``async_payment_succeeded``, ``async_payment_failed`` and ``expired`` (the router,
:mod:`stripe_checkout_mw.news.router`, sends them here). In the transaction that claims the
event it moves the order (:func:`~stripe_checkout_mw.ledger.order_state.move_order`), which
records the fulfilment job once the order is paid. A session missing from the ledger is
recorded from Stripe first when it carries this shop's marker (its ``line_items`` fetched
outside the transaction, :mod:`stripe_checkout_mw.news.reads`) or when unknown sessions are
adopted; any other is only logged. A completed session of this shop's ledger records its
customer, and a subscription-mode session re-fetches its subscription.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import stripe

from ..ledger.order_state import move_order, order_from_stripe
from ..ledger.orders import AWAITING_PAYMENT, EXPIRED, PAID, PAYMENT_FAILED, Order
from ..ledger.pipeline import Applied, EventClaim, Outcome, Pipeline
from ..ledger.store import NewJob, StoreTransaction
from ..marker import Marker, is_marked
from ..stripe_api.plain import event_object
from .reads import NeedsItems, Reads, apply_with_reads
from .subscriptions import SubscriptionEvents

__all__ = ["CheckoutSessionEvents", "session_of"]

logger = logging.getLogger("stripe_checkout_mw")

_COMPLETED = "checkout.session.completed"
#: The status each event other than ``completed`` moves its order to.
_MOVES_TO = {
    "checkout.session.async_payment_succeeded": PAID,
    "checkout.session.async_payment_failed": PAYMENT_FAILED,
    "checkout.session.expired": EXPIRED,
}


class CheckoutSessionEvents:
    """Applies Checkout Session events to the orders ledger (see the module docstring).

    :param client: asked for the ``line_items`` of a marked session with no ledger row.
    :param marker: this shop's session marker (:mod:`stripe_checkout_mw.marker`); ``None``
        recognises no session without a row.
    :param adopt_unknown_sessions: record a session this ledger never saw (and carrying no
        marker) from the event, and fulfil it like any other order.
    :param subscriptions: re-fetches the subscription of a subscription-mode session and
        records the customer of a completed one; ``None`` keeps no subscriptions.
    """

    def __init__(self, client: stripe.StripeClient, *, marker: Marker | None = None,
                 adopt_unknown_sessions: bool = False,
                 subscriptions: SubscriptionEvents | None = None) -> None:
        self.client = client
        self.marker = marker
        self.adopt_unknown_sessions = adopt_unknown_sessions
        self.subscriptions = subscriptions

    def process(self, pipeline: Pipeline, known: Mapping[str, Any], payload: dict[str, Any],
                handler_jobs: Callable[[str], list[NewJob]]) -> Outcome:
        """Claim one event and apply it through ``pipeline``.

        :raises stripe.StripeError: Stripe could not be asked (nothing was committed).
        """
        event_id, event_type = str(payload["id"]), str(payload["type"])
        session = session_of(event_type, payload)
        session_id = session["id"] if session is not None else None

        def apply(tx: StoreTransaction, reads: Reads) -> Applied:
            return self._apply(tx, payload, session, reads, handler_jobs)

        return apply_with_reads(pipeline, self.client, apply, subject=session_id or event_id,
                                event=EventClaim(event_id, event_type, session_id),
                                known=known)

    def _apply(self, tx: StoreTransaction, payload: dict[str, Any],
               session: dict[str, Any] | None, reads: Reads,
               handler_jobs: Callable[[str], list[NewJob]]) -> Applied:
        event_id = str(payload["id"])
        event_type = str(payload["type"])
        jobs = handler_jobs(session["id"] if session is not None else event_id)
        target = _target_status(event_type, session)
        if session is None or target is None:
            return Applied(jobs + self._subscription_jobs(tx, payload, event_id, reads))
        record: Order | None = None
        order = tx.lock_order(session["id"])
        if order is None and is_marked(session, self.marker):
            items = reads.items.get(session["id"])
            if items is None:
                raise NeedsItems(session["id"])  # fetched outside the transaction
            record = order_from_stripe(session, items)
        elif order is None and self.adopt_unknown_sessions:
            record = Order.from_session(session, status="open")
        applied = move_order(tx, session["id"], target, session, record=record,
                             locked=(order,))
        if applied.value is None:
            logger.info(
                "webhook event %s: session %s is not in this ledger (created elsewhere); "
                "not fulfilled",
                event_id,
                session["id"],
            )
        applied.jobs[:0] = jobs
        if (self.subscriptions is not None and applied.value is not None
                and target in (PAID, AWAITING_PAYMENT)):
            # The ref is the one this shop sent, read from its own order row.
            self.subscriptions.customers.record_session(
                tx, session, applied.value.client_reference_id)
        # A session in this shop's ledger sold its subscription here, marker or not.
        applied.jobs += self._subscription_jobs(tx, payload, session["id"], reads,
                                                sold_by_session=applied.value is not None)
        return applied

    def _subscription_jobs(self, tx: StoreTransaction, payload: dict[str, Any], subject: str,
                           reads: Reads, *, sold_by_session: bool = False) -> list[NewJob]:
        if self.subscriptions is None:
            return []
        return self.subscriptions.jobs_for(tx, payload, subject, reads,
                                           sold_by_session=sold_by_session)


def session_of(event_type: str, payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Checkout Session a ``checkout.session.*`` event is about, as a plain dict."""
    if not event_type.startswith("checkout.session."):
        return None
    obj = event_object(payload)
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not obj["id"]:
        logger.warning("webhook event %s carries no checkout session", payload.get("id"))
        return None
    return obj


def _target_status(event_type: str, session: Mapping[str, Any] | None) -> str | None:
    if session is None:
        return None
    if event_type == _COMPLETED:
        if session.get("payment_status") in ("paid", "no_payment_required"):
            return PAID
        return AWAITING_PAYMENT
    return _MOVES_TO.get(event_type)
