"""``CheckoutMiddleware``: Stripe hosted Checkout for any WSGI application.

Wrap the app once and it owns three paths; every other request goes to the app with
the same ``environ``, its body unread and its response returned as the app made it::

    from stripe_checkout_mw import CheckoutMiddleware, Catalog

    app = CheckoutMiddleware(
        app,
        domain_url="https://shop.example.com",
        price_lookup=Catalog({"tee": {"name": "T-shirt", "unit_amount": 2000,
                                      "currency": "usd"}}),
    )

The paths it owns:

- ``POST {path}`` creates a Checkout Session from the seed's JSON body (or an HTML
  form) and answers ``{"sessionId", "url"}`` (or ``303`` to the hosted page).
- ``POST {webhook_path}`` receives Stripe's signed events and fulfils paid orders once
  their payment is recorded, as the README's fulfil contract says (only when a webhook
  secret is configured).
- ``GET {status_path}?session_id=...`` tells the success page how the order stands.
- ``GET {path}/config`` answers ``{"publishableKey", "uiMode"}``, so the shop's page
  can start Stripe.js in the configured mode without a server-side template.
- ``POST {path}/subscription`` (only with ``subscription_endpoint=True``) previews or
  makes a plan change for the signed-in user (:mod:`.plan_changes`).

With ``ui_mode="embedded_page"`` (Embedded Checkout) or ``"elements"`` the customer
pays on the shop's own page: ``POST {path}`` answers ``{"sessionId", "clientSecret"}``
for Stripe.js, which sends the customer to ``return_url`` afterwards; fulfilment still
comes from the webhook and the return page still asks the status path.

The secret key, the redirect URLs and the prices come from the server only. It is a
security issue to let any value from the request decide what a customer pays or where
they are sent after paying; no option here does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, NoReturn, TypeVar
from urllib.parse import parse_qs

import stripe

from ..billing.changes import ManagedSubscriptions
from ..billing.customers import CustomerDirectory
from ..billing.invoices import Invoice, InvoiceLedger
from ..billing.portal import BillingPortal
from ..billing.subscriptions import Subscription
from ..errors import HTTPError, OptionTypeError
from ..ledger.orders import Order
from ..ledger.pipeline import Pipeline
from ..ledger.store import OrderStore
from ..news.handlers import WebhookHandlers
from ..news.payments import PaymentEvents
from ..news.router import EventRouter
from ..news.status import OrderStatus
from ..news.webhooks import WebhookReceiver
from ..observe import Measurement
from ..observe.exposition import allowed
from ..observe.metrics import Recorder
from ..settings.options import OPTIONS, unknown_option
from ..settings.rules import SessionOptions, Settings, Timeout, load_settings
from ..shop import Shop
from ..stripe_api.client import ObservedRequestsClient
from ..stripe_api.guard import StripeGuard
from .http import (
    FORM_TYPE,
    JSON_TYPE,
    json_response,
    media_type,
    own_origin,
    parse_form_order,
    parse_json_object,
    read_body,
    redirect_response,
    refuse_origin,
    request_origin,
    status_line,
)
from .plan_changes import PlanChangeEndpoint

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ..checkout.prices import CustomPriceLookup, PriceLookup
    from ..checkout.validation import Validator
    from ..news.reconcile import SyncReport

log = logging.getLogger("stripe_checkout_mw")

_Handler = TypeVar("_Handler", bound=Callable[..., Any])
#: Stripe events can be far larger than a cart; they are signed, so the cap is generous.
WEBHOOK_MAX_BODY = 1024 * 1024
_CORS_MAX_AGE = "600"


class CheckoutMiddleware:
    """Adds Stripe hosted Checkout to the wrapped WSGI ``app``.

    :param app: the WSGI application to wrap.
    :param secret_key: Stripe secret key (``sk_test_``/``sk_live_``, or a restricted ``rk_``
        key). Default: ``$STRIPE_SECRET_KEY``.
    :param path: where orders are posted; matched on ``PATH_INFO`` (works under a
        ``SCRIPT_NAME`` mount). Default: ``/create-checkout-session``.
    :param domain_url: the shop's public address, used for the two URLs below. Default:
        ``$WEB_APP_URL``.
    :param success_url: where Stripe sends a paying customer. Default:
        ``{domain_url}/success?session_id={CHECKOUT_SESSION_ID}``.
    :param cancel_url: where Stripe sends a customer who gives up. Default:
        ``{domain_url}/cancel``.
    :param ui_mode: ``"embedded_page"`` (Embedded Checkout) or ``"elements"`` put the payment on
        your own page; see below. Default: ``"hosted_page"``.
    :param return_url: the embedded modes' return page (instead of the two URLs above). Default:
        ``{domain_url}/return?session_id={CHECKOUT_SESSION_ID}``.
    :param redirect_on_completion: ``embedded_page`` only: ``"if_required"`` or ``"never"`` call
        the page's ``onComplete`` instead. Default: ``None`` (Stripe's ``"always"``).
    :param publishable_key: ``pk_test_``/``pk_live_`` (the secret key's mode), served to your
        page; required in the embedded modes. Default: ``$STRIPE_PUBLISHABLE_KEY``.
    :param price_lookup: ``Catalog``, ``StripeLookupKeys``, ``ClientPrices`` or a callable.
        Default: required.
    :param validator: callable ``(body, environ) -> cleaned body``, raising
        ``ValidationError(message, param=None)``. Default: ``DefaultValidator``.
    :param require_email: refuse orders without ``customer_email``. Default: ``False``.
    :param max_quantity: largest quantity of one line item. Default: ``999``.
    :param allowed_countries: shipping countries, e.g. ``["GB", "US"]`` (the seed's), checked
        against the 238 Stripe ships to; ``None`` collects no address. Default: ``None``.
    :param mode: ``"payment"`` or ``"subscription"``; ``None`` decides from the prices. Default:
        ``None``.
    :param session_options: extra session parameters (``allow_promotion_codes``,
        ``automatic_tax``, ``locale``, ``metadata``, ``client_reference_id``, ...), a dict or a
        callable of the cleaned order; the parameters the middleware sets itself are refused
        (``ui_mode="hosted_page"``, the default, may be stated). A dict is checked at
        construction against Stripe's schema (from the installed ``stripe`` package) for every
        mode the middleware can produce, both when ``mode`` is ``None``; a callable's result is
        checked per request, and a refusal is a 500 "misconfigured" that logs the parameter. A
        ``customer`` here replaces the browser's ``customer_email``. Default: ``None``.
    :param stripe_api_base: another API address, e.g. the emulator's; when set, one warning
        naming it is logged at construction (``check`` uses the same address). Default:
        ``$STRIPE_API_BASE``, else Stripe.
    :param max_network_retries: SDK retries of network errors, 409 and 5xx, all with the same
        idempotency key. Default: ``2``.
    :param timeout: seconds per attempt to Stripe, or ``(connect, read)``; a number ``t`` means
        ``(min(t, 5), t)``. Worst case for one checkout: ``(max_network_retries + 1) * timeout``
        plus backoff (0.5 s, 1 s). Default: ``10.0``.
    :param max_body: largest order body in bytes; larger ones get 413 without being read.
        Default: ``65536``.
    :param allowed_origins: other origins allowed to post orders (CORS headers are sent for
        these only). Default: ``()``.
    :param webhook_path: where Stripe posts events; giving it without a secret is an error.
        Default: ``/stripe-webhook`` when a secret is set.
    :param webhook_secret: ``whsec_...`` signing secret, or a list of them while rotating.
        Default: ``$STRIPE_WEBHOOK_SECRET``.
    :param status_path: ``GET ?session_id=cs_...`` for the success page (served when there is a
        store: ``store``, ``$STRIPE_CHECKOUT_STORE`` or a webhook secret). Default:
        ``/checkout-session``.
    :param store: order ledger URL: ``sqlite:///path.db`` or ``postgresql://...``. Default:
        ``$STRIPE_CHECKOUT_STORE``, else ``sqlite:///stripe-checkout-orders.db``.
    :param fulfill: ``fulfill(order)``, called for each paid order after its payment is
        committed (see the ``fulfill`` contract). Default: ``None``.
    :param max_concurrent_stripe_calls: the ceiling of the Stripe calls (checkout, price
        look-up, billing portal, status look-up) in flight at once per process, and so of the
        threads a hanging Stripe can hold; the limit under it follows Stripe's latency. A call
        beyond it waits for a slot while Stripe answers in time and gets 503 with
        ``Retry-After`` once Stripe is slow. Set it to the server's threads minus two (see
        "Serving in production"). Default: ``3``.
    :param circuit_cooldown: after 5 connection failures or timeouts in a row, checkouts answer
        503 at once for this many seconds; then one probe checkout decides whether Stripe is
        back. Default: ``10.0``.
    :param status_stripe_budget: Stripe retrieves per second the status path may make, per
        process; beyond it the status path answers from the ledger. Default: ``5.0``.
    :param allow_free_orders: accept orders whose total is 0. Default: ``False``.
    :param status_shows_email: show the customer's email in full on the status path; by default
        it is masked (``a***@example.com``). Default: ``False``.
    :param job_lease: seconds a worker holds an order's fulfilment (or an event's handlers)
        while running it; more than ``fulfill`` can take, 1 to 86400. Default: ``300.0``.
    :param event_retention_days: days a processed event id is kept to refuse duplicates (Stripe
        retries for 3); older ones are pruned. Default: ``30.0``.
    :param customer_ref: ``customer_ref(environ)`` -> the signed-in user's id (a string) or
        ``None``, from your app's own session: checkouts reuse the user's Stripe Customer and
        ``mw.subscriptions``/``mw.customers`` answer per user (see Subscriptions and customers).
        Default: ``None``.
    :param portal_path: ``POST`` here opens Stripe's billing portal for the signed-in user
        (served when ``customer_ref`` is set and there is a store). Default:
        ``/billing-portal``.
    :param portal_return_url: where the billing portal sends the customer back. Default:
        ``{domain_url}/account``.
    :param subscription_changed: ``subscription_changed(subscription)``, called once per stored
        change of a user's subscription status or items, after the commit (retried while it
        raises). Default: ``None``.
    :param past_due_is_active: whether a ``past_due`` subscription (Stripe still retrying the
        payment) gives access in ``is_active``. Default: ``True``.
    :param past_due_grace_days: days a ``past_due`` subscription keeps giving access
        (``is_active``, features) after its payment first failed: Stripe's recommended retry
        window (2 weeks); 0 ends access at once, as ``past_due_is_active=False`` does.
        Default: ``14``.
    :param incomplete_grace_days: days an ``incomplete`` subscription (first payment failed
        or awaiting the customer's authentication) gives access; 0 (none) until Stripe says
        it is paid. Default: ``0``.
    :param features: the features each price gives, ``{price id or lookup key: [feature,
        ...]}`` (in an ``.ini`` a JSON object, or ``price = feature feature`` lines), for
        ``mw.subscriptions.has_feature(user, feature)`` (see "Features and grants").
        Default: ``None``.
    :param entitling_prices: price ids or lookup keys whose subscriptions give access
        without the shop's marker (sold before it existed, or made in the Dashboard); others
        made outside this shop's checkout give none. Default: ``()``.
    :param refunded: ``refunded(order)``, called after a refund of a paid order is recorded,
        once per new refunded amount (see "Refunds, disputes and missed webhooks"). Default:
        ``None``.
    :param disputed: ``disputed(order)``, called after a dispute of the payment is recorded or
        changes status. Default: ``None``.
    :param multiple_subscriptions: let a signed-in user with an active subscription buy another
        (add-ons); by default that checkout is refused with 409, pointing to a plan change.
        Default: ``False``.
    :param subscription_endpoint: serve ``POST {path}/subscription``: the signed-in user
        previews or makes a plan change from the shop's page (needs ``customer_ref`` and a
        store; see "Plan changes"). Default: ``False``.
    :param metrics_path: ``GET`` here answers Prometheus metrics (needs
        ``prometheus-client``, the ``[metrics]`` extra); see "Metrics and health". Default:
        ``None``.
    :param metrics_allow: networks (``"10.0.0.0/8 192.168.1.7"``) whose requests
        (``REMOTE_ADDR``) may read ``metrics_path``; others get 403. Default: ``127.0.0.1
        ::1`` (loopback).
    :param metrics_hook: ``hook(measurement)`` (or ``"module:function"``), called with each
        measurement as it is recorded, for statsd, OpenTelemetry and the like. Default:
        ``None``.
    :param health_path: ``GET`` here answers 200 or 503 for a load balancer: ledger
        reachable, breaker state, oldest due job; never calls Stripe. Default: ``None``.
    :param invoice_paid: ``invoice_paid(invoice)``, called once per paid invoice of a user: the
        first, each renewal, a change, a manual one (``invoice.billing_reason`` says which).
        Default: ``None``.
    :param payment_failed: ``payment_failed(invoice)``, called once per failed payment attempt
        of a user's open invoice (dunning: email ``invoice.hosted_invoice_url``). Default:
        ``None``.
    :param action_required: ``action_required(invoice)``, called once for an invoice whose
        payment needs the customer's authentication (3-D Secure) at
        ``invoice.hosted_invoice_url``. Default: ``None``.
    :param trial_will_end: ``trial_will_end(subscription)``, called once per trial end Stripe
        announces (about three days before) while the subscription is trialing. Default:
        ``None``.
    :param shop_id: names this shop in its sessions' marker, so shops sharing one Stripe
        account (developers on one test account) never take each other's sessions; sessions
        marked before it was set are still recognised (see "Sharing a Stripe account").
        Default: ``$STRIPE_CHECKOUT_SHOP_ID``, else derived from ``success_url``.
    :param client: a ready ``stripe.StripeClient``, instead of building one.

    Each option is converted and checked by the table in :mod:`stripe_checkout_mw.settings.options`,
    the same code the PasteDeploy filter and ``check`` use: a value may be given as Python
    or as an ``.ini`` file writes it (``timeout="3 10"``, ``require_email="yes"``,
    ``fulfill="shop.orders:fulfill"``). A refused value, or a misspelt keyword (with the
    nearest option suggested), raises :class:`~stripe_checkout_mw.OptionError`.

    ``with CheckoutMiddleware(...) as mw:`` calls :meth:`close` at the end of the block.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        secret_key: str | None = None,
        path: str = "/create-checkout-session",
        domain_url: str | None = None,
        success_url: str | None = None,
        cancel_url: str | None = None,
        ui_mode: str = "hosted_page",
        return_url: str | None = None,
        redirect_on_completion: str | None = None,
        publishable_key: str | None = None,
        price_lookup: PriceLookup | CustomPriceLookup | None = None,
        validator: Validator | None = None,
        require_email: bool = False,
        max_quantity: int = 999,
        allowed_countries: Iterable[str] | None = None,
        mode: str | None = None,
        session_options: SessionOptions = None,
        stripe_api_base: str | None = None,
        max_network_retries: int = 2,
        timeout: Timeout = 10.0,
        max_body: int = 65536,
        allowed_origins: Iterable[str] = (),
        webhook_path: str | None = None,
        webhook_secret: str | Sequence[str] | None = None,
        status_path: str | None = "/checkout-session",
        store: str | None = None,
        fulfill: Callable[[Order], None] | None = None,
        job_lease: float = 300.0,
        event_retention_days: float = 30.0,
        customer_ref: Callable[[WSGIEnvironment], str | None] | None = None,
        portal_path: str = "/billing-portal",
        portal_return_url: str | None = None,
        subscription_changed: Callable[[Subscription], None] | None = None,
        past_due_is_active: bool = True,
        past_due_grace_days: float = 14,
        incomplete_grace_days: float = 0,
        features: Mapping[str, Sequence[str]] | str | None = None,
        entitling_prices: Sequence[str] | str = (),
        refunded: Callable[[Order], object] | None = None,
        disputed: Callable[[Order], object] | None = None,
        multiple_subscriptions: bool = False,
        subscription_endpoint: bool = False,
        invoice_paid: Callable[[Invoice], object] | None = None,
        payment_failed: Callable[[Invoice], object] | None = None,
        action_required: Callable[[Invoice], object] | None = None,
        trial_will_end: Callable[[Subscription], object] | None = None,
        client: stripe.StripeClient | None = None,
        max_concurrent_stripe_calls: int = 3,
        circuit_cooldown: float = 10.0,
        status_stripe_budget: float = 5.0,
        allow_free_orders: bool = False,
        status_shows_email: bool = False,
        metrics_path: str | None = None,
        metrics_allow: str | Iterable[str] = ("127.0.0.1", "::1"),
        metrics_hook: Callable[[Measurement], object] | None = None,
        health_path: str | None = None,
        shop_id: str | None = None,
        **misspelt: NoReturn,
    ) -> None:
        if not callable(app):
            raise OptionTypeError(
                "app", "CheckoutMiddleware wraps a WSGI application; pass it first")
        if misspelt:
            raise unknown_option(min(misspelt))
        self.app = app
        # Every keyword above but app and client is a row of the options table; they are
        # converted and checked there, the same way as the .ini filter's and check's.
        given = {name: value for name, value in locals().items() if name in OPTIONS}
        self.shop = shop = Shop.from_settings(load_settings(given), client=client)
        if client is None and shop.settings.stripe_api_base is not None:
            log.warning("Not talking to Stripe: API requests go to %s (stripe_api_base or "
                        "STRIPE_API_BASE)", shop.settings.stripe_api_base)
        checkout = shop.checkout
        assert checkout is not None  # a serving shop's settings always have a marker
        self.checkout = checkout
        # Plain functions, not bound methods: a route table holding self would make the
        # middleware a reference cycle, freed only by the garbage collector.
        settings = shop.settings
        routes = {settings.path: _Route(CheckoutMiddleware._create_session, "POST, OPTIONS"),
                  settings.config_path: _Route(CheckoutMiddleware._page_config,
                                               "GET, HEAD, OPTIONS")}
        if shop.webhooks is not None and settings.webhook_path is not None:
            routes[settings.webhook_path] = _Route(CheckoutMiddleware._receive_webhook, "POST")
        if shop.status is not None and settings.status_path is not None:
            routes[settings.status_path] = _Route(CheckoutMiddleware._order_status,
                                                  "GET, HEAD, OPTIONS")
        if shop.portal is not None and settings.portal_path is not None:
            routes[settings.portal_path] = _Route(CheckoutMiddleware._open_portal,
                                                  "POST, OPTIONS")
        self.plan_changes: PlanChangeEndpoint | None = None
        if (settings.subscription_path is not None and shop.subscriptions is not None
                and settings.customer_ref is not None):
            self.plan_changes = PlanChangeEndpoint(shop.subscriptions, settings.customer_ref)
            routes[settings.subscription_path] = _Route(CheckoutMiddleware._change_plan,
                                                        "POST, OPTIONS")
        if settings.metrics_path is not None:
            routes[settings.metrics_path] = _Route(CheckoutMiddleware._serve_metrics, "GET, HEAD")
        if settings.health_path is not None:
            routes[settings.health_path] = _Route(CheckoutMiddleware._check_health, "GET, HEAD")
        self._routes = routes

    # The shop's parts, as the middleware has always offered them.

    @property
    def settings(self) -> Settings:
        return self.shop.settings

    @property
    def client(self) -> stripe.StripeClient:
        return self.shop.client

    @property
    def metrics(self) -> Recorder:
        """What the parts record into; ``mw.metrics.sample()`` reads the gauges now."""
        return self.shop.metrics

    @property
    def handlers(self) -> WebhookHandlers:
        return self.shop.handlers

    @property
    def guard(self) -> StripeGuard:
        return self.shop.guard

    @property
    def store(self) -> OrderStore | None:
        return self.shop.store

    @property
    def pipeline(self) -> Pipeline | None:
        return self.shop.pipeline

    @property
    def webhooks(self) -> WebhookReceiver | None:
        return self.shop.webhooks

    @property
    def events(self) -> EventRouter | None:
        return self.shop.events

    @property
    def status(self) -> OrderStatus | None:
        return self.shop.status

    @property
    def customers(self) -> CustomerDirectory | None:
        return self.shop.customers

    @property
    def subscriptions(self) -> ManagedSubscriptions | None:
        return self.shop.subscriptions

    @property
    def billing(self) -> InvoiceLedger | None:
        """The invoices of the app's users (:mod:`stripe_checkout_mw.billing.invoices`)."""
        return self.shop.billing

    @property
    def portal(self) -> BillingPortal | None:
        return self.shop.portal

    @property
    def payment_events(self) -> PaymentEvents | None:
        return self.shop.payment_events

    @property
    def http_client(self) -> ObservedRequestsClient | None:
        """The HTTP client the middleware built for Stripe (``None`` when given ``client``)."""
        return self.shop.http_client

    def close(self) -> None:
        """Release the store and the calling thread's connections to Stripe.

        For tests and orderly shutdowns; a long-running server need not call it.
        """
        self.shop.close()

    def __enter__(self) -> CheckoutMiddleware:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def sync(self, since: timedelta = timedelta(days=3), *, full: bool = False,
             fulfil_after: datetime | None = None) -> SyncReport:
        """Recover what webhooks missed: replay Stripe's events back to ``since`` (at most 30
        days), run the jobs still due and settle open orders past their session's expiry.

        See :mod:`stripe_checkout_mw.news.reconcile`; safe to run on every host at once.

        ``full=True`` adopts what Stripe holds instead, from its lists: this shop's completed
        sessions as orders, its users' Customers and their subscriptions (canceled ones
        too), resumable and idempotent (:mod:`stripe_checkout_mw.news.backfill`). Orders
        whose session was created before ``fulfil_after`` (a ``datetime``, UTC if naive;
        default: all of them) are recorded as fulfilled without calling ``fulfill``.
        """
        return self.shop.sync(since, full=full, fulfil_after=fulfil_after)

    def on(self, event_type: str) -> Callable[[_Handler], _Handler]:
        """Register a handler for a webhook event type (``"*"`` for all)::

            @mw.on("checkout.session.expired")
            def expired(event): ...

        Handlers run after the event is committed to the ledger, before ``fulfill``;
        raising answers 500 and the redelivery runs them again, so make them idempotent.
        """
        return self.handlers.on(event_type)

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        route = self._routes.get(environ.get("PATH_INFO", ""))
        if route is None:
            return self.app(environ, start_response)
        return self._serve(route, environ, start_response)

    def _serve(
        self, route: _Route, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """Run an owned path's endpoint and render its answer or error as JSON."""
        cors = self._cors_headers(environ)
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if method not in route.methods:
                raise HTTPError(405, f"Use {route.allow.split(',')[0]} on this path.",
                                headers=[("Allow", route.allow)])
            if method == "OPTIONS":
                return self._preflight(start_response, cors, route.allow)
            answer = route.endpoint(self, environ)
        except HTTPError as exc:
            return _no_body_on_head(method, json_response(
                start_response, exc.status, exc.payload(), [*exc.headers, *cors]))
        except Exception as exc:
            # Only the exception's type is logged: its message or traceback could carry
            # a secret or a customer's details into log files.
            log.error("%s %s failed: %s", method, environ.get("PATH_INFO"), type(exc).__name__)
            error = HTTPError(500, "The request failed; nothing was charged. Try again.",
                              type="api_error")
            return _no_body_on_head(
                method, json_response(start_response, 500, error.payload(), cors))
        if answer.location is not None:
            return redirect_response(start_response, answer.location, cors)
        if answer.raw is not None:
            body, content_type = answer.raw
            start_response(status_line(200), [("Content-Type", content_type), (
                "Content-Length", str(len(body))), ("Cache-Control", "no-store")])
            return _no_body_on_head(method, [body])
        return _no_body_on_head(
            method, json_response(start_response, answer.status, answer.payload, cors))

    # -- the endpoints -----------------------------------------------------------------

    def _create_session(self, environ: WSGIEnvironment) -> _Answer:
        try:
            answer = self._checkout(environ)
        except HTTPError as refused:
            self.metrics.count("checkouts", outcome=_REFUSALS.get(refused.status, "error"))
            raise
        except Exception:
            self.metrics.count("checkouts", outcome="error")
            raise
        self.metrics.count("checkouts", outcome="created")
        return answer

    def _checkout(self, environ: WSGIEnvironment) -> _Answer:
        self._check_origin(environ)
        kind = media_type(environ)
        if kind not in (JSON_TYPE, FORM_TYPE):
            raise HTTPError(415, "Send the order as application/json or as an HTML form.")
        if kind == FORM_TYPE and self.settings.ui_mode != "hosted_page":
            raise HTTPError(400, f"This checkout runs on the shop's page "
                                 f"(ui_mode {self.settings.ui_mode}) and needs JavaScript: "
                                 f"post the order as JSON and start Stripe.js with the "
                                 f"answer's clientSecret.")
        body = read_body(environ, self.settings.max_body)
        order = parse_json_object(body) if kind == JSON_TYPE else parse_form_order(body)
        created = self.checkout.create(order, environ, _idempotency_key(environ))
        if created.url is None:
            return _Answer(200, {"sessionId": created.session_id,
                                 "clientSecret": created.client_secret})
        if kind == FORM_TYPE:
            return _Answer(303, {}, created.url)
        return _Answer(200, {"sessionId": created.session_id, "url": created.url})

    def _open_portal(self, environ: WSGIEnvironment) -> _Answer:
        self._check_origin(environ, "open the billing portal")
        kind = media_type(environ)
        read_body(environ, self.settings.max_body)  # never read for the customer: drained
        assert self.portal is not None  # the route exists only with a portal
        url = self.portal.url_for(environ)
        if kind == FORM_TYPE:
            return _Answer(303, {}, url)
        return _Answer(200, {"url": url})

    def _change_plan(self, environ: WSGIEnvironment) -> _Answer:
        self._check_origin(environ, "change plans")
        if media_type(environ) != JSON_TYPE:
            raise HTTPError(415, "Send the plan change as application/json.")
        body = parse_json_object(read_body(environ, self.settings.max_body))
        assert self.plan_changes is not None  # the route exists only with the endpoint
        return _Answer(200, self.plan_changes.handle(body, environ))

    def _page_config(self, environ: WSGIEnvironment) -> _Answer:
        return _Answer(200, {"publishableKey": self.settings.publishable_key,
                             "uiMode": self.settings.ui_mode})

    def _receive_webhook(self, environ: WSGIEnvironment) -> _Answer:
        assert self.webhooks is not None  # the route exists only with a receiver
        body = read_body(environ, WEBHOOK_MAX_BODY)
        return _Answer(200, self.webhooks.handle(body, environ.get("HTTP_STRIPE_SIGNATURE")))

    def _order_status(self, environ: WSGIEnvironment) -> _Answer:
        assert self.status is not None  # the route exists only with a status lookup
        ids = parse_qs(environ.get("QUERY_STRING", "")).get("session_id", [])
        if len(ids) != 1:
            raise HTTPError(400, "Give one session_id.", param="session_id")
        payload = self.status.lookup(ids[0])
        if self.settings.status_shows_email:
            return _Answer(200, payload)
        return _Answer(200, _with_masked_email(payload))

    def _serve_metrics(self, environ: WSGIEnvironment) -> _Answer:
        exposition = getattr(self.metrics, "exposition", None)
        assert exposition is not None  # the route exists only with an exposition
        if not allowed(environ.get("REMOTE_ADDR"), self.settings.metrics_allow):
            raise HTTPError(403, "Metrics are served to the networks in metrics_allow only.",
                            type="permission_error")
        body, content_type = exposition.render(environ.get("HTTP_ACCEPT"))
        return _Answer(200, {}, raw=(body, content_type))

    def _check_health(self, environ: WSGIEnvironment) -> _Answer:
        assert self.shop.health is not None  # the route exists only with a health check
        status, body = self.shop.health.answer()
        return _Answer(status, body)

    # -- shared helpers ----------------------------------------------------------------

    def _cors_headers(self, environ: WSGIEnvironment) -> list[tuple[str, str]]:
        if not self.settings.allowed_origins:
            return []
        origin = request_origin(environ) if "HTTP_ORIGIN" in environ else None
        if origin is None or origin not in self.settings.allowed_origins:
            return [("Vary", "Origin")]
        return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]

    def _preflight(
        self, start_response: StartResponse, cors: list[tuple[str, str]], allow: str
    ) -> Iterable[bytes]:
        headers = [("Allow", allow), ("Content-Length", "0"), *cors]
        if any(name == "Access-Control-Allow-Origin" for name, _ in cors):
            headers += [
                ("Access-Control-Allow-Methods", allow),
                ("Access-Control-Allow-Headers", "Content-Type, Idempotency-Key"),
                ("Access-Control-Max-Age", _CORS_MAX_AGE),
            ]
        start_response(status_line(204), headers)
        return []

    def _check_origin(self, environ: WSGIEnvironment,
                      action: str = "create checkout sessions") -> None:
        """Refuse cross-site posts (CSRF): only the app's own origin and allowed ones.

        A request naming neither ``Origin`` nor ``Referer`` is not from a current
        browser's cross-site form (they send ``Origin`` on every POST), so it passes.
        """
        origin = request_origin(environ)
        # domain_url says where the shop is; Host is the browser's word (a DNS-rebinding
        # page sends its own), trusted only when no domain_url is configured.
        own = self.settings.shop_origin or own_origin(environ)
        # "null" is what an unparsable Host gives too: it never counts as our own origin.
        if origin is None or (origin != "null" and origin == own):
            return
        if origin not in self.settings.allowed_origins:
            raise refuse_origin(self.guard.refusals, origin, action)


class _Route:
    """An owned path: its endpoint and the methods it answers (``allow``, as in ``Allow``)."""

    __slots__ = ("allow", "endpoint", "methods")

    def __init__(
        self, endpoint: Callable[[CheckoutMiddleware, WSGIEnvironment], _Answer], allow: str
    ) -> None:
        self.endpoint = endpoint
        self.allow = allow
        self.methods = frozenset(method.strip() for method in allow.split(","))


class _Answer(NamedTuple):
    status: int
    payload: Mapping[str, Any]
    location: str | None = None
    #: A body that is not JSON (the metrics): ``(bytes, content type)``.
    raw: tuple[bytes, str] | None = None


#: A refused checkout's status -> the ``checkouts`` counter's outcome.
_REFUSALS = {400: "invalid", 403: "forbidden", 413: "too_large", 415: "invalid",
             429: "unavailable", 500: "error", 502: "stripe_error", 503: "unavailable"}


def _no_body_on_head(method: str, body: list[bytes]) -> list[bytes]:
    """A HEAD answer carries the GET answer's headers and no body (RFC 9110, 9.3.2)."""
    return [] if method == "HEAD" else body


def _with_masked_email(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    email = payload.get("customer_email")
    if not isinstance(email, str):
        return payload
    return {**payload, "customer_email": mask_email(email)}


def mask_email(email: str) -> str:
    """``alice@example.com`` -> ``a***@example.com``: enough to recognise, not to use."""
    local, at, domain = email.rpartition("@")
    if not at or not local:
        return "***"
    return f"{local[0]}***@{domain}"


def _idempotency_key(environ: WSGIEnvironment) -> str | None:
    """The request's own ``Idempotency-Key`` if it sent one (checked), else None."""
    key: str | None = environ.get("HTTP_IDEMPOTENCY_KEY")
    if key is None:
        return None
    if not 0 < len(key) <= 255 or not key.isascii() or not key.isprintable():
        raise HTTPError(400, "Idempotency-Key must be 1 to 255 printable ASCII characters.",
                        param="Idempotency-Key")
    return key
