"""The fulfilment step: move an order to what Stripe says and, once it is paid, fulfil it.

:func:`settle` is the ``apply`` step the webhook and the status lookup give the pipeline
(:mod:`stripe_checkout_mw.ledger.pipeline`): inside the pipeline's transaction it locks the order
row, moves the order up the status ranking (:data:`~stripe_checkout_mw.ledger.orders.STATUSES`) and,
while the order is paid but not yet fulfilled, records a ``fulfil`` job keyed by the session
id. :class:`FulfilJob` runs that job after the commit: it calls ``fulfill(order)`` with
``order.fulfilment_attempt`` set, and its completion marks the order fulfilled.

One job per session, so an order is fulfilled at most once however many events, lookups and
retries reach it; the job's lease keeps two workers from running it at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from copy import copy as shallow_copy
from typing import Any

import stripe

from ..ledger.orders import (
    OPEN,
    PAID,
    STATUSES,
    FulfillFunc,
    Order,
    advance,
    items_from_session,
)
from ..ledger.payments import record_payment_intent
from ..ledger.pipeline import Applied, JobKind
from ..ledger.store import Job, NewJob, SqlStore, StoreTransaction
from ..stripe_api.plain import to_plain

__all__ = ["FULFIL", "FulfilJob", "NeedsItems", "fetch_items", "order_from_stripe", "settle"]

logger = logging.getLogger("stripe_checkout_mw")

#: The job kind of an order's fulfilment; its key and subject are the session id.
FULFIL = "fulfil"


class NeedsItems(Exception):
    """The order must be recorded from Stripe, and its ``line_items`` have not been fetched."""


def settle(
    tx: StoreTransaction,
    session_id: str,
    new_status: str | None,
    session: Mapping[str, Any] | None,
    *,
    record: Order | None = None,
    locked: tuple[Order | None] | None = None,
) -> Applied:
    """Move the order (row locked) and record its fulfilment job while it is due.

    :param new_status: the status Stripe's news implies, or ``None`` to move nothing (only
        make sure a paid order's job is recorded).
    :param session: the Stripe session that says so; refreshes the order's fields.
    :param record: the order to add first when the ledger has no row for the session (a
        marked session whose checkout write was lost, or an adopted one).
    :param locked: ``(order,)`` when the caller already locked and read the row in ``tx``.
    :returns: the order as saved (``value``, ``None`` when the session is not in the
        ledger) and its fulfilment job, if due.
    """
    if new_status is not None and new_status not in STATUSES:
        raise ValueError(f"order: unknown status {new_status!r}")
    order = tx.lock_order(session_id) if locked is None else locked[0]
    if order is None and record is not None:
        if tx.insert_order(record):
            logger.info("session %s was not in the ledger; recorded from Stripe", session_id)
        order = tx.lock_order(session_id)
    if order is None:
        return Applied()
    if new_status is not None and STATUSES[new_status] > STATUSES[order.status]:
        order = advance(order, new_status, session, time.time())
        tx.save_order(order)
        if order.status == PAID and session is not None:
            record_payment_intent(tx, session_id, session.get("payment_intent"))
    jobs = []
    if order.status == PAID and not order.fulfilled:
        jobs.append(NewJob(FULFIL, session_id, session_id))
    return Applied(jobs, value=order, known={session_id: order})


class FulfilJob(JobKind):
    """Runs an order's ``fulfil`` job: ``fulfill(order)``, then marks the order fulfilled.

    :param store: where the order is read when the pipeline does not already hold it.
    :param fulfill: the shop's hook, or ``None`` (the order is then only marked fulfilled).
    """

    kind = FULFIL

    def __init__(self, store: SqlStore, fulfill: FulfillFunc | None) -> None:
        if fulfill is not None and not callable(fulfill):
            raise TypeError("fulfill: expected a callable fulfill(order) or None")
        self.store = store
        self.fulfill = fulfill

    def run(self, job: Job, known: Mapping[str, Any]) -> None:
        order = known.get(job.subject)
        if not isinstance(order, Order):
            order = self.store.get(job.subject)
        if order is None:  # the row went away (a restored backup); nothing to fulfil
            logger.error("fulfilment: order %s is no longer in the ledger", job.subject)
            return
        if self.fulfill is not None:
            # The hook gets its own copy so that whatever it mutates cannot leak elsewhere
            # (copied field by field: replace() would check every field again).
            copy = shallow_copy(order)
            copy.metadata = dict(order.metadata)
            copy.items = [dict(item) for item in order.items]
            copy.fulfilment_attempt = job.attempt
            self.fulfill(copy)
        logger.info("order %s fulfilled (attempt %d)", job.subject, job.attempt)

    def done(self, tx: StoreTransaction, job: Job) -> None:
        tx.mark_fulfilled(job.subject, time.time())


def fetch_items(client: stripe.StripeClient, session_id: str) -> list[dict[str, Any]]:
    """What a session sold, from Stripe's ``line_items`` (for a session with no ledger row).

    :raises stripe.StripeError: Stripe could not be asked; the caller answers 5xx.
    """
    listed = client.v1.checkout.sessions.line_items.list(session_id, params={"limit": 100})
    return items_from_session({"line_items": to_plain(listed)})


def order_from_stripe(session: Mapping[str, Any], items: list[dict[str, Any]]) -> Order:
    """The ledger row of a session recorded from Stripe rather than at checkout."""
    return Order.from_session(dict(session), items=items, status=OPEN)

