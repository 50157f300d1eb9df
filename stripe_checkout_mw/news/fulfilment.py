"""The fulfilment job: call the shop's ``fulfill(order)`` once its payment is committed.

:func:`~stripe_checkout_mw.ledger.order_state.move_order` records a ``fulfil`` job keyed by
the session id while an order is paid but not yet fulfilled (in the transaction of the event
or lookup that saw it paid). :class:`FulfilJob` runs that job after the commit: it calls
``fulfill(order)`` with ``order.fulfilment_attempt`` set, and its completion marks the order
fulfilled. The job's lease keeps two workers from running it at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from copy import copy as shallow_copy
from typing import Any

from ..ledger.order_state import FULFIL
from ..ledger.orders import FulfillFunc, Order
from ..ledger.pipeline import JobKind
from ..ledger.store import Job, SqlStore, StoreTransaction

__all__ = ["FulfilJob"]

logger = logging.getLogger("stripe_checkout_mw")


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
