"""The order's state change: move an order to what Stripe says, in the caller's transaction.

:func:`move_order` is the one way an order's status changes on Stripe's news. Every event
applier (a session's events, a refund that finds its payment unseen), the success page's
lookup and ``sync``'s stale-order step call it inside the pipeline's transaction
(:mod:`stripe_checkout_mw.ledger.pipeline`): it locks the order row, moves the order up the
status ranking (:data:`~stripe_checkout_mw.ledger.orders.STATUSES`), records the PaymentIntent
of a newly paid order and, while the order is paid but not yet fulfilled, returns a
:data:`FULFIL` job keyed by the session id. One job per session, so an order is fulfilled at
most once however many events, lookups and retries reach it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from .orders import OPEN, PAID, STATUSES, Order, advance
from .payments import record_payment_intent
from .pipeline import Applied
from .store import NewJob, StoreTransaction

__all__ = ["FULFIL", "move_order", "order_from_stripe"]

logger = logging.getLogger("stripe_checkout_mw")

#: The job kind of an order's fulfilment; its key and subject are the session id.
FULFIL = "fulfil"


def move_order(
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


def order_from_stripe(session: Mapping[str, Any], items: list[dict[str, Any]]) -> Order:
    """The ledger row of a session recorded from Stripe rather than at checkout."""
    return Order.from_session(dict(session), items=items, status=OPEN)
