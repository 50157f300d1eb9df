"""Which Stripe event goes where: the one table of the event types this shop acts on.

Each row of :data:`ROUTES` names an event type and the applier that takes it. Everything that
lists event types reads this table: the webhook endpoint and ``sync`` hand each event to
:meth:`EventRouter.apply`, ``sync`` asks Stripe's Events API for :func:`event_types`, and the
README's list of events to enable on the Stripe webhook endpoint is checked against it by a
test. An event of any other type is still claimed once and runs the app's handlers
(``mw.on``), and changes nothing else.

To act on a new event type, add its row; for a new kind of news, add an applier (a class with
the :class:`EventApplier` method), its name below, and build it in :meth:`EventRouter.build`.

The appliers (:mod:`~stripe_checkout_mw.news.sessions`, :mod:`~stripe_checkout_mw.news.payments`,
:mod:`~stripe_checkout_mw.news.subscriptions`, :mod:`~stripe_checkout_mw.news.invoices`) change
the ledger in the transaction that claims the event; none of them checks a signature: the
webhook endpoint (:mod:`stripe_checkout_mw.news.webhooks`) does that before handing an event
here, and ``sync`` reads its events from Stripe's API, which authenticates them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import stripe

from ..billing.subscriptions import SubscriptionLedger
from ..ledger.orders import FulfillFunc
from ..ledger.pipeline import Applied, EventClaim, Outcome, Pipeline
from ..ledger.store import NewJob, SqlStore
from ..marker import Marker
from .fulfilment import FulfilJob
from .handlers import HANDLERS, HandlersJob, WebhookHandlers
from .invoices import REFRESH_SUBSCRIPTION, InvoiceEvents
from .payments import PaymentEvents
from .sessions import CheckoutSessionEvents
from .subscriptions import SubscriptionEvents

__all__ = ["CHECKOUT_SESSIONS", "INVOICES", "PAYMENTS", "ROUTES", "SUBSCRIPTIONS", "EventApplier",
           "EventRouter", "Route", "event_types"]

#: The appliers, by name (the second column of :data:`ROUTES`).
CHECKOUT_SESSIONS = "checkout_sessions"
PAYMENTS = "payments"
SUBSCRIPTIONS = "subscriptions"
INVOICES = "invoices"


@dataclass(frozen=True)
class Route:
    """One handled event type and the name of the applier that takes it."""

    event_type: str
    applier: str


#: Every event type this shop acts on, in the order the README lists them.
ROUTES: tuple[Route, ...] = (
    Route("checkout.session.completed", CHECKOUT_SESSIONS),
    Route("checkout.session.async_payment_succeeded", CHECKOUT_SESSIONS),
    Route("checkout.session.async_payment_failed", CHECKOUT_SESSIONS),
    Route("checkout.session.expired", CHECKOUT_SESSIONS),
    Route("charge.refunded", PAYMENTS),
    Route("refund.created", PAYMENTS),
    Route("refund.updated", PAYMENTS),
    Route("refund.failed", PAYMENTS),
    Route("charge.dispute.created", PAYMENTS),
    Route("charge.dispute.updated", PAYMENTS),
    Route("charge.dispute.closed", PAYMENTS),
    Route("customer.subscription.created", SUBSCRIPTIONS),
    Route("customer.subscription.updated", SUBSCRIPTIONS),
    Route("customer.subscription.deleted", SUBSCRIPTIONS),
    Route("customer.subscription.paused", SUBSCRIPTIONS),
    Route("customer.subscription.resumed", SUBSCRIPTIONS),
    Route("customer.subscription.trial_will_end", INVOICES),
    Route("invoice.paid", INVOICES),
    Route("invoice.payment_failed", INVOICES),
    Route("invoice.payment_action_required", INVOICES),
    Route("invoice.finalized", INVOICES),
    Route("invoice.voided", INVOICES),
    Route("invoice.marked_uncollectible", INVOICES),
)

_APPLIER_OF: dict[str, str] = {route.event_type: route.applier for route in ROUTES}


def event_types(applier: str | None = None) -> tuple[str, ...]:
    """The handled event types (of one applier, if named), in :data:`ROUTES` order."""
    return tuple(route.event_type for route in ROUTES
                 if applier is None or route.applier == applier)


class EventApplier(Protocol):
    """What the router needs of an applier: claim one event and apply it."""

    def process(self, pipeline: Pipeline, known: Mapping[str, Any], payload: dict[str, Any],
                handler_jobs: Callable[[str], list[NewJob]]) -> Outcome:
        """Claim the event (``payload``) in ``pipeline`` and change the ledger.

        :param known: what the jobs may use without reading it again (the SDK event, by id).
        :param handler_jobs: the app's handler jobs for the event, given its subject.
        """
        ...


class _HandlersOnly:
    """The applier of any event no row routes (or whose applier is not configured): the
    event is claimed once and runs the app's handlers; the ledger is otherwise unchanged."""

    def process(self, pipeline: Pipeline, known: Mapping[str, Any], payload: dict[str, Any],
                handler_jobs: Callable[[str], list[NewJob]]) -> Outcome:
        event_id = str(payload["id"])
        return pipeline.process(lambda tx: Applied(handler_jobs(event_id)), subject=event_id,
                                event=EventClaim(event_id, str(payload["type"]), None),
                                known=known)


class _SubscriptionsOfInvoices:
    """The invoice events' applier when no invoice ledger is kept: the events that move a
    subscription (:data:`~stripe_checkout_mw.news.invoices.REFRESH_SUBSCRIPTION`) refresh
    it, as :class:`InvoiceEvents` would; the others only run the app's handlers."""

    def __init__(self, subscriptions: SubscriptionEvents) -> None:
        self.subscriptions = subscriptions
        self._plain = _HandlersOnly()

    def process(self, pipeline: Pipeline, known: Mapping[str, Any], payload: dict[str, Any],
                handler_jobs: Callable[[str], list[NewJob]]) -> Outcome:
        applier: EventApplier = (self.subscriptions if payload["type"] in REFRESH_SUBSCRIPTION
                                 else self._plain)
        return applier.process(pipeline, known, payload, handler_jobs)


class EventRouter:
    """Apply a verified or API-read Stripe event: look up its applier in :data:`ROUTES` and
    run it, with the app's handlers as jobs of the same claim.

    ``sync`` calls :meth:`apply` directly; the webhook endpoint after checking the
    signature. A duplicate event applies nothing but runs any job of its subject still due.

    :param pipeline: the fulfilment pipeline (claims, jobs) shared with the status lookup.
    :param handlers: the app's handlers (``mw.on``).
    :param appliers: the configured appliers by name; a routed type whose applier is not
        configured (no subscriptions ledger, say) only runs its handlers.
    """

    def __init__(self, *, pipeline: Pipeline, handlers: WebhookHandlers,
                 appliers: Mapping[str, EventApplier]) -> None:
        unknown = set(appliers) - set(_APPLIER_OF.values())
        if unknown:
            raise ValueError(f"router: no route uses the applier(s) {sorted(unknown)}")
        self.pipeline = pipeline
        self.handlers = handlers
        self.appliers = dict(appliers)
        self._plain = _HandlersOnly()

    def __repr__(self) -> str:
        return f"<EventRouter appliers={sorted(self.appliers)} handlers={len(self.handlers)}>"

    @classmethod
    def build(
        cls,
        *,
        store: SqlStore,
        handlers: WebhookHandlers,
        fulfill: FulfillFunc | None,
        client: stripe.StripeClient,
        adopt_unknown_sessions: bool = False,
        marker: Marker | None = None,
        pipeline: Pipeline | None = None,
        subscriptions: SubscriptionLedger | None = None,
        payment_events: PaymentEvents | None = None,
        invoice_events: InvoiceEvents | None = None,
    ) -> EventRouter:
        """The router with every applier its parts allow.

        :param fulfill: the shop's hook, for the default pipeline only.
        :param adopt_unknown_sessions: see
            :class:`~stripe_checkout_mw.news.sessions.CheckoutSessionEvents`.
        :param marker: this shop's session marker (``None``: no session without a row is
            recognised).
        :param pipeline: by default one on ``store`` that runs the handlers and ``fulfill``.
        :param subscriptions: the subscriptions ledger; ``None`` keeps no subscriptions.
        :param payment_events: the refund and dispute applier; ``None`` only runs their
            handlers.
        :param invoice_events: the invoice applier (which also refreshes the subscription of
            a subscription's payment events and sees ``trial_will_end``); ``None``: the
            invoices are not kept, and those events that move a subscription refresh it
            (with a subscriptions ledger) while the others only run their handlers.
        """
        if fulfill is not None and not callable(fulfill):
            raise TypeError("webhooks: fulfill must be callable or None")
        if pipeline is None:
            pipeline = Pipeline(store, [HandlersJob(handlers, client), FulfilJob(store, fulfill)])
        subscription_events = (SubscriptionEvents(subscriptions, client)
                               if subscriptions is not None else None)
        appliers: dict[str, EventApplier] = {CHECKOUT_SESSIONS: CheckoutSessionEvents(
            client, marker=marker, adopt_unknown_sessions=adopt_unknown_sessions,
            subscriptions=subscription_events)}
        if payment_events is not None:
            appliers[PAYMENTS] = payment_events
        if subscription_events is not None:
            appliers[SUBSCRIPTIONS] = subscription_events
        if invoice_events is not None:
            appliers[INVOICES] = invoice_events
        elif subscription_events is not None:
            appliers[INVOICES] = _SubscriptionsOfInvoices(subscription_events)
        return cls(pipeline=pipeline, handlers=handlers, appliers=appliers)

    def applier_for(self, event_type: str) -> EventApplier:
        """The applier an event of ``event_type`` goes to."""
        name = _APPLIER_OF.get(event_type)
        return self.appliers.get(name, self._plain) if name is not None else self._plain

    def apply(self, payload: dict[str, Any], event: stripe.Event | None = None) -> Outcome:
        """Claim and apply one event (a dict with an ``id`` and a ``type``).

        :param event: the SDK object for the handlers, when already built; the handlers'
            job builds it from the payload otherwise.
        :raises StoreError, JobFailed, JobsPending, stripe.StripeError: nothing or not all
            of it took effect; a redelivery or the next ``sync`` completes it.
        """
        event_id = str(payload["id"])
        event_type = str(payload["type"])
        known: dict[str, Any] = {} if event is None else {event_id: event}
        wanted = bool(self.handlers.for_event(event_type))

        def handler_jobs(subject: str) -> list[NewJob]:
            return [NewJob(HANDLERS, event_id, subject, payload)] if wanted else []

        return self.applier_for(event_type).process(self.pipeline, known, payload,
                                                    handler_jobs)
