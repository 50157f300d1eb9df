"""Subscription events: re-fetch the subscription an event is about and store what Stripe
says now (:class:`~stripe_checkout_mw.billing.subscriptions.SubscriptionLedger`).

An event's payload is what the subscription was when the event was made, and events come in
no particular order, so the payload decides nothing: :class:`SubscriptionEvents` claims the
event first (a duplicate fetches nothing), fetches the subscription outside the transaction
(:mod:`stripe_checkout_mw.news.reads`), and has the ledger store it unless a fetch that began
later is stored already. Each stored change of status or items (of a subscription whose
customer this shop knows) records a ``subscription_changed`` job, run after the commit.

The router (:mod:`stripe_checkout_mw.news.router`) says which event types come here; a
completed subscription-mode Checkout Session's applier asks for the same re-fetch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import stripe

from ..billing.customers import CustomerDirectory
from ..billing.subscriptions import Subscription, SubscriptionLedger
from ..ledger.pipeline import Applied, EventClaim, JobFailed, JobKind, Outcome, Pipeline
from ..ledger.store import Job, NewJob, StoreTransaction
from ..stripe_api.guard import StripeGuard
from ..stripe_api.plain import event_object, id_of
from .reads import Fetched, NeedsSubscription, Reads, apply_with_reads, fetch_subscription

__all__ = ["SUBSCRIPTION_CHANGED", "SubscriptionChangedJob", "SubscriptionEvents",
           "refresh_subscription", "subscription_id_of"]

logger = logging.getLogger("stripe_checkout_mw")

#: The job kind of the ``subscription_changed`` hook; its key is ``{id}#{revision}``.
SUBSCRIPTION_CHANGED = "subscription_changed"

SubscriptionChanged = Callable[[Subscription], None]


def subscription_id_of(event_type: str, payload: Mapping[str, Any]) -> str | None:
    """The subscription an event is about, or ``None``."""
    obj = event_object(payload)
    if obj is None:
        return None
    found: Any = None
    if event_type.startswith("customer.subscription."):
        found = obj.get("id")
    elif event_type.startswith("invoice."):
        parent = obj.get("parent")
        details = parent.get("subscription_details") if isinstance(parent, Mapping) else None
        found = details.get("subscription") if isinstance(details, Mapping) else None
    elif event_type.startswith("checkout.session.") and obj.get("mode") == "subscription":
        found = obj.get("subscription")
    found = id_of(found)
    return found if found and found.startswith("sub_") else None


class SubscriptionEvents:
    """Applies subscription events to the subscriptions ledger (see the module docstring).

    :param ledger: where subscriptions are stored (``mw.subscriptions``).
    :param client: asked for the subscription an event is about.
    """

    def __init__(self, ledger: SubscriptionLedger, client: stripe.StripeClient) -> None:
        self.ledger = ledger
        self.client = client

    @property
    def customers(self) -> CustomerDirectory:
        """The map between the app's user ids and Stripe Customers."""
        return self.ledger.customers

    def process(self, pipeline: Pipeline, known: Mapping[str, Any], payload: dict[str, Any],
                handler_jobs: Callable[[str], list[NewJob]]) -> Outcome:
        """Claim one event, re-fetch its subscription and store it, through ``pipeline``.

        :raises stripe.StripeError: Stripe could not be asked (nothing was committed).
        """
        event_id, event_type = str(payload["id"]), str(payload["type"])

        def apply(tx: StoreTransaction, reads: Reads) -> Applied:
            return Applied(handler_jobs(event_id) + self.jobs_for(tx, payload, event_id, reads))

        return apply_with_reads(pipeline, self.client, apply, subject=event_id,
                                event=EventClaim(event_id, event_type, None), known=known)

    def jobs_for(self, tx: StoreTransaction, payload: Mapping[str, Any], subject: str,
                 reads: Reads, *, sold_by_session: bool = False) -> list[NewJob]:
        """Store the subscription ``payload`` is about, if any (see :meth:`apply`)."""
        subscription_id = subscription_id_of(str(payload["type"]), payload)
        if subscription_id is None:
            return []
        return self.apply(tx, subscription_id, reads.subscriptions, subject,
                          sold_by_session=sold_by_session)

    def apply(self, tx: StoreTransaction, subscription_id: str,
              fetched: Mapping[str, Fetched], subject: str, *,
              sold_by_session: bool = False) -> list[NewJob]:
        """Store what Stripe said (``fetched``), unless a later fetch is stored already;
        the ``subscription_changed`` job if status or items changed.

        :raises NeedsSubscription: not fetched yet: fetch it outside the transaction.
        """
        got = fetched.get(subscription_id)
        if got is None:
            raise NeedsSubscription(subscription_id)
        if got.subscription is None:
            return []
        stored = self.ledger.store_fetched(tx, got.subscription, got.started_at,
                                           sold_by_session=sold_by_session)
        if stored is None:
            return []
        new, revision = stored
        if new.customer_ref is None:
            logger.info("subscription %s belongs to Stripe customer %s, which this shop has "
                        "not sold to; stored without a customer_ref", new.id,
                        new.stripe_customer)
            return []
        return [NewJob(SUBSCRIPTION_CHANGED, f"{new.id}#{revision}", subject,
                       {"subscription": new.to_dict()})]


def refresh_subscription(pipeline: Pipeline, client: stripe.StripeClient, guard: StripeGuard,
                         ledger: SubscriptionLedger, subscription_id: str) -> None:
    """Re-fetch ``subscription_id`` (through ``guard``) and store it as an event would:
    what the app's own plan changes call (:mod:`stripe_checkout_mw.billing.changes`), so
    the ledger says what Stripe says as soon as the change returns, and a change of status
    or items records (and runs) its ``subscription_changed`` job.

    A hook that raises is logged and left due: the next ``sync`` (or webhook) runs it again.

    :raises stripe.StripeError, Refused, StoreError: nothing was stored.
    """
    with guard.call("subscription refresh"):
        fetched = fetch_subscription(client, subscription_id)
    events = SubscriptionEvents(ledger, client)
    subject = f"refresh:{subscription_id}"
    try:
        pipeline.process(
            lambda tx: Applied(events.apply(tx, subscription_id, {subscription_id: fetched},
                                            subject)),
            subject=subject)
    except JobFailed as exc:
        logger.warning("subscription %s stored; its %s job failed (%s) and will be retried",
                       subscription_id, exc.job.kind, type(exc.cause).__name__)


class SubscriptionChangedJob(JobKind):
    """Runs the app's ``subscription_changed(subscription)`` for one stored change."""

    kind = SUBSCRIPTION_CHANGED

    def __init__(self, hook: SubscriptionChanged | None) -> None:
        if hook is not None and not callable(hook):
            raise TypeError("subscription_changed: expected a callable or None")
        self.hook = hook

    def run(self, job: Job, known: Mapping[str, Any]) -> None:
        subscription = Subscription.from_dict(job.payload["subscription"])
        if self.hook is not None:
            self.hook(subscription)
        logger.info("subscription %s change %s handled (attempt %d)", subscription.id,
                    job.key, job.attempt)
