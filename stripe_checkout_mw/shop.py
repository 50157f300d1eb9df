"""The shop: every part of a configured middleware, built once, in one place.

:meth:`Shop.from_settings` is the one function that turns checked
:class:`~stripe_checkout_mw.settings.rules.Settings` into working parts: the Stripe client
(with the configured timeout and the proxy handling of :mod:`.stripe_api.client`), the
store, the pipeline and its job kinds, the checkout, the status look-up, the billing
portal, the event appliers and the reconciler. Every entry point builds through it:
``CheckoutMiddleware`` (which only routes and converts HTTP), ``mw.sync()``, the
operator's commands (``sync``, ``fulfil-pending``, ``orders``, ``events``), ``check`` (its
Stripe client) and the demo; so the command line and the app see the same shop::

    settings = load_settings(options)
    shop = Shop.from_settings(settings)
    try:
        report = shop.sync()
    finally:
        shop.close()

Nothing is patched in after construction: each part gets what it needs when built.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable

import stripe

from .billing.changes import ManagedSubscriptions
from .billing.customers import CustomerDirectory, resolve_ref
from .billing.invoices import InvoiceLedger
from .billing.portal import BillingPortal
from .checkout.service import CheckoutService
from .ledger.orders import Order
from .ledger.pipeline import JobKind, Pipeline
from .ledger.store import OrderStore, open_store
from .news.fulfilment import FulfilJob
from .news.handlers import HandlersJob, WebhookHandlers
from .news.invoices import InvoiceEvents
from .news.payments import PaymentEvents
from .news.router import EventRouter
from .news.status import OrderStatus
from .news.subscriptions import (
    SubscriptionChangedJob,
    SubscriptionEvents,
    refresh_subscription,
)
from .news.webhooks import WebhookReceiver
from .observe import new_recorder, watch
from .observe.health import HealthCheck
from .observe.metrics import NO_METRICS, Recorder
from .settings.rules import Settings
from .stripe_api.client import ObservedRequestsClient, stripe_http_client
from .stripe_api.guard import StripeGuard, TokenBucket

if TYPE_CHECKING:
    from .checkout.prices import PricedItem
    from .news.reconcile import Reconciler, SyncReport

__all__ = ["Shop", "build_client"]

log = logging.getLogger("stripe_checkout_mw")

def build_client(settings: Settings, metrics: Recorder = NO_METRICS,
                 ) -> tuple[stripe.StripeClient, ObservedRequestsClient]:
    """The Stripe client of ``settings`` and its HTTP client (to close when done): the
    configured timeout, retries and API address, proxies read from the environment once;
    each request measured into ``metrics``."""
    base = settings.stripe_api_base
    http_client = stripe_http_client(settings.timeout, base, metrics)
    client = stripe.StripeClient(
        settings.secret_key, base_addresses={"api": base} if base else None,
        max_network_retries=settings.max_network_retries, http_client=http_client,
    )
    return client, http_client


class Shop:
    """The parts of one configured shop; build it with :meth:`from_settings`.

    The ledger's parts (``store``, ``pipeline``, ``customers``, ``subscriptions``,
    ``payment_events``, ``billing``, ``invoice_events``, ``events``, ``reconciler``) are
    None when the settings keep no ledger; ``webhooks`` (the signature check in front of
    ``events``) exists when a webhook secret is configured, and ``status`` and ``portal``
    when their paths are served.
    """

    def __init__(self) -> None:  # use from_settings
        self.settings: Settings
        self.client: stripe.StripeClient
        self.guard: StripeGuard
        self.handlers = WebhookHandlers()
        self.store: OrderStore | None = None
        self.pipeline: Pipeline | None = None
        self.customers: CustomerDirectory | None = None
        self.subscriptions: ManagedSubscriptions | None = None
        self.payment_events: PaymentEvents | None = None
        #: ``mw.billing``: the invoices of the app's users, and their applier.
        self.billing: InvoiceLedger | None = None
        self.invoice_events: InvoiceEvents | None = None
        #: Applies Stripe's events to the ledger: the webhook's and ``sync``'s.
        self.events: EventRouter | None = None
        self.webhooks: WebhookReceiver | None = None
        self.status: OrderStatus | None = None
        self.checkout: CheckoutService | None = None
        self.portal: BillingPortal | None = None
        self.reconciler: Reconciler | None = None
        #: The HTTP client built for Stripe (None when given a ``client``).
        self.http_client: ObservedRequestsClient | None = None
        #: What the parts record into (:mod:`.observe`); ``sample()`` reads the gauges now.
        self.metrics: Recorder = NO_METRICS
        #: The health path's check, when metrics or the health path are configured.
        self.health: HealthCheck | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, client: stripe.StripeClient | None = None,
        store: OrderStore | None = None, runs_handlers: bool = True,
    ) -> Shop:
        """Build every part of the shop ``settings`` describe, each once.

        :param client: a ready ``stripe.StripeClient`` instead of one built from the settings.
        :param store: an opened store to keep as the ledger, even when the settings keep
            none (the operator's commands, which always work on a ledger).
        :param runs_handlers: whether the jobs of the handlers registered with
            ``mw.on`` run here. The operator's commands pass False: those handlers live in
            the app, so their jobs wait for it (or ``mw.sync()``) instead.
        """
        shop = cls()
        shop.settings = settings
        shop.metrics = metrics = new_recorder(hook=settings.metrics_hook,
                                              serve=settings.metrics_path is not None)
        if client is None:
            client, shop.http_client = build_client(settings, metrics)
        shop.client = client
        shop.guard = guard = StripeGuard(max_concurrent=settings.max_concurrent_stripe_calls,
                                         cooldown=settings.circuit_cooldown,
                                         timeout=settings.timeout[1])
        guard.refusals.metrics = metrics
        if store is None and settings.uses_store:
            store = open_store(settings.store)
        if store is not None:
            store.count_errors_in(metrics)
            shop._build_ledger(store, runs_handlers)
        shop._build_pages()
        if metrics.enabled or settings.health_path is not None:
            shop.health = watch(metrics, breaker_state=lambda: guard.state,
                                job_stats=store.job_stats if store is not None else None)
        return shop

    def _build_ledger(self, store: OrderStore, runs_handlers: bool) -> None:
        # Imported here: the command line's parser, which imports the package, stays light.
        from .news import backfill
        from .news.reconcile import Reconciler

        settings, client, marker = self.settings, self.client, self.settings.marker
        self.store = store
        self.customers = CustomerDirectory(store, client=client)
        kinds: list[JobKind] = [HandlersJob(self.handlers, client)] if runs_handlers else []
        kinds += [FulfilJob(store, settings.fulfill),
                  SubscriptionChangedJob(settings.subscription_changed)]
        self.pipeline = Pipeline(store, kinds, lease=settings.job_lease,
                                 retention_days=settings.event_retention_days)
        self.subscriptions = ManagedSubscriptions(
            store, self.customers, past_due_is_active=settings.past_due_is_active,
            past_due_grace_days=settings.past_due_grace_days,
            incomplete_grace_days=settings.incomplete_grace_days,
            marker=marker, entitling_prices=settings.entitling_prices,
            features=settings.features, client=client, guard=self.guard,
            price_lookup=settings.price_lookup,
            refresh=functools.partial(refresh_subscription, self.pipeline, client,
                                      self.guard))
        # Each applier is built after the parts it needs (the invoices after the
        # subscriptions, whose refresh needs the pipeline; the payments after the invoices),
        # and its hook jobs join the pipeline then.
        self.billing = InvoiceLedger(store)
        self.invoice_events = InvoiceEvents(
            self.billing, client, subscriptions=self.subscriptions, marker=marker,
            invoice_paid=settings.invoice_paid, payment_failed=settings.payment_failed,
            action_required=settings.action_required, trial_will_end=settings.trial_will_end)
        self.payment_events = PaymentEvents(
            store, client, marker=marker, refunded=settings.refunded,
            disputed=settings.disputed, invoices=self.invoice_events)
        for kind in (*self.payment_events.kinds(), *self.invoice_events.kinds()):
            self.pipeline.add_kind(kind)
        self.events = EventRouter.build(
            store=store, handlers=self.handlers, fulfill=settings.fulfill, client=client,
            marker=marker, pipeline=self.pipeline, subscriptions=self.subscriptions,
            payment_events=self.payment_events, invoice_events=self.invoice_events)
        if settings.webhook_path is not None:
            self.webhooks = WebhookReceiver(secrets=settings.webhook_secrets,
                                            events=self.events, client=client)
            self.webhooks.metrics = self.metrics
        self.reconciler = Reconciler(full_sync=backfill.start, store=store, client=client,
                                     events=self.events,
                                     pipeline=self.pipeline, marker=marker,
                                     http_client=self.http_client, guard=self.guard)
        if settings.status_path is not None:
            self.status = OrderStatus(
                store=store, client=client, fulfill=settings.fulfill,
                may_call_stripe=_status_budget(settings.status_stripe_budget, self.metrics),
                marker=marker, pipeline=self.pipeline, guard=self.guard,
                subscriptions=SubscriptionEvents(self.subscriptions, client),
            )

    def _build_pages(self) -> None:
        """The checkout and the billing portal: parts of a shop that serves pages (whose
        settings name a return address, hence a marker)."""
        settings = self.settings
        directory, ref = self.customers, settings.customer_ref
        customers = None
        if directory is not None and ref is not None:
            customers = functools.partial(_checkout_customer, directory, ref)
            self.portal = BillingPortal(self.client, directory, ref,
                                        settings.portal_return_url or "", guard=self.guard)
        if settings.marker is None:
            return
        record = (functools.partial(_record_session, self.store, self.status)
                  if self.store is not None else None)
        subscribed = None
        if (customers is not None and self.subscriptions is not None
                and not settings.multiple_subscriptions):
            subscribed = functools.partial(_has_subscription, self.subscriptions, ref)
        self.checkout = CheckoutService(settings, self.client, record, guard=self.guard,
                                        customers=customers, subscribed=subscribed)

    def sync(self, since: timedelta = timedelta(days=3), *, full: bool = False,
             fulfil_after: datetime | None = None) -> SyncReport:
        """One reconciliation (:class:`~stripe_checkout_mw.news.reconcile.Reconciler`), or
        with ``full`` the backfill from Stripe's lists (:mod:`.news.backfill`)."""
        if self.reconciler is None:
            raise ValueError("sync: the middleware keeps no ledger; configure store= or "
                             "webhook_secret=")
        if fulfil_after is not None and not full:
            raise ValueError("sync: fulfil_after is for a full sync (full=True)")
        if full:
            after = None
            if fulfil_after is not None:
                if not isinstance(fulfil_after, datetime):
                    raise TypeError("sync: fulfil_after must be a datetime (UTC if naive)")
                if fulfil_after.tzinfo is None:
                    fulfil_after = fulfil_after.replace(tzinfo=timezone.utc)
                after = fulfil_after.timestamp()
            return self.reconciler.backfill(after)
        return self.reconciler.run(since)

    def close(self) -> None:
        """Release the store, the jobs' heartbeat and this thread's connections to Stripe."""
        if self.pipeline is not None:
            self.pipeline.close()
        if self.http_client is not None:
            self.http_client.close()  # type: ignore[no-untyped-call]  # untyped in the SDK
        if self.store is not None:
            self.store.close()


def _status_budget(rate: float, metrics: Recorder) -> Callable[[], bool]:
    """The status path's Stripe budget, its refusals counted (the ledger answers them)."""
    budget = TokenBucket(rate)

    def may_call_stripe() -> bool:
        if budget.take():
            return True
        metrics.count("refusals", reason="status_budget")
        return False

    return may_call_stripe


def _checkout_customer(directory: CustomerDirectory, ref: Any, environ: Any) -> Any:
    """The checkout's customer parameters for the signed-in user of ``environ``."""
    return directory.checkout_params(resolve_ref(ref, environ))


def _has_subscription(subscriptions: ManagedSubscriptions, ref: Any, environ: Any) -> bool:
    """Whether the signed-in user of ``environ`` has an active subscription (the ledger)."""
    user = resolve_ref(ref, environ)
    return user is not None and subscriptions.is_active(user)


def _record_session(
    store: OrderStore, status: OrderStatus | None, session: stripe.checkout.Session,
    priced: list[PricedItem], order: dict[str, Any],
) -> None:
    items = [item.ledger_entry() for item in priced]
    try:
        store.record_open(Order.from_session(session, items=items, status="open"))
    except Exception as exc:
        # The session carries the marker: the webhook (or this process's status lookup)
        # records it from Stripe, so the customer still gets to pay.
        log.error("checkout session %s was not written to the ledger (%s); it will be "
                  "recorded from Stripe when it is paid or looked up", session.id,
                  type(exc).__name__)
        if status is not None:
            status.note_unrecorded(session.id)
