"""What an event applier reads from Stripe, outside the pipeline's transaction.

An applier runs inside the transaction that claims its event; it never calls Stripe there
(a slow answer would hold the order's row lock). When it finds it needs something from
Stripe, it raises :class:`NeedsItems` or :class:`NeedsSubscription`; :func:`apply_with_reads`
rolls the transaction back, makes that one call, and runs the apply step again with the
answer in :class:`Reads`. The claim is only committed with the final attempt, so a Stripe
error leaves the event unclaimed for Stripe's redelivery.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import stripe

from ..ledger.orders import items_from_session
from ..ledger.pipeline import Applied, EventClaim, Outcome, Pipeline
from ..ledger.store import StoreTransaction
from ..stripe_api.plain import to_plain

__all__ = ["Fetched", "NeedsItems", "NeedsSubscription", "Reads", "apply_with_reads",
           "fetch_items", "fetch_subscription"]

logger = logging.getLogger("stripe_checkout_mw")


class NeedsItems(Exception):
    """The order must be recorded from Stripe, and its ``line_items`` have not been fetched."""

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.session_id = session_id


class NeedsSubscription(Exception):
    """The apply step needs the subscription fetched from Stripe (outside the transaction)."""

    def __init__(self, subscription_id: str) -> None:
        super().__init__(subscription_id)
        self.subscription_id = subscription_id


@dataclass(frozen=True)
class Fetched:
    """A subscription as Stripe answered, and when the request began (``None``: gone)."""

    subscription: dict[str, Any] | None
    started_at: float


@dataclass
class Reads:
    """What was read from Stripe for one event so far: line items by session id, and
    subscriptions by id."""

    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    subscriptions: dict[str, Fetched] = field(default_factory=dict)


def fetch_items(client: stripe.StripeClient, session_id: str) -> list[dict[str, Any]]:
    """What a session sold, from Stripe's ``line_items`` (for a session with no ledger row).

    :raises stripe.StripeError: Stripe could not be asked; the caller answers 5xx.
    """
    listed = client.v1.checkout.sessions.line_items.list(session_id, params={"limit": 100})
    return items_from_session({"line_items": to_plain(listed)})


def fetch_subscription(client: stripe.StripeClient, subscription_id: str) -> Fetched:
    """What Stripe says the subscription is now. A subscription Stripe does not know
    (``resource_missing``) is ``None``; other Stripe errors propagate (retry).

    :raises stripe.StripeError: Stripe could not answer; the delivery is retried.
    """
    started = time.time()
    try:
        sub = client.v1.subscriptions.retrieve(
            subscription_id, params={"expand": ["latest_invoice"]})
    except stripe.InvalidRequestError as exc:
        if exc.http_status != 404:
            raise
        logger.warning("subscription %s is not known to Stripe; not stored", subscription_id)
        return Fetched(None, started)
    return Fetched(to_plain(sub), started)


def apply_with_reads(
    pipeline: Pipeline,
    client: stripe.StripeClient,
    apply: Callable[[StoreTransaction, Reads], Applied],
    *,
    subject: str,
    event: EventClaim,
    known: Mapping[str, Any],
) -> Outcome:
    """Claim ``event`` and run ``apply`` through ``pipeline``, fetching from Stripe (outside
    the transaction) whatever the apply step says it needs, then trying again.

    :raises stripe.StripeError: a read Stripe could not answer (nothing was committed).
    """
    reads = Reads()
    while True:
        try:
            return pipeline.process(lambda tx: apply(tx, reads), subject=subject,
                                    event=event, known=known)
        except NeedsItems as need:
            reads.items[need.session_id] = fetch_items(client, need.session_id)
        except NeedsSubscription as need:
            reads.subscriptions[need.subscription_id] = fetch_subscription(
                client, need.subscription_id)
