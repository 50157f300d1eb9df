"""The emulator's in-memory Stripe: its objects, routes and idempotency.

:class:`StripeState` knows nothing about sockets. It takes a decoded request
(method, path, params) and answers with a status and a JSON body shaped like
Stripe's, so it can be exercised directly and served by
:mod:`stripe_checkout_mw.testing.server`. Every public method takes the one lock the
emulator shares with its webhook delivery thread.

Serving a request is: find its :class:`Route`, replay it if its idempotency key was
seen, :func:`~.validation.validate_params` for the route's endpoint, then the
resource module's handler with an :class:`ApiCall`.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import (
    billing_portal,
    charges,
    checkout_sessions,
    customers,
    disputes,
    events,
    invoices,
    payment_intents,
    prices,
    products,
    refunds,
    subscriptions,
)
from .errors import ApiError, invalid
from .objects import BillingObjects
from .validation import validate_params

__all__ = ["ApiCall", "ApiResponse", "Route", "StripeState"]


@dataclass
class ApiResponse:
    """What the API answers: status, JSON body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ApiCall:
    """One request as a handler sees it."""

    params: dict[str, Any]
    """The decoded form body or query string."""
    ids: tuple[str, ...]
    """The object ids in the path (``/v1/prices/<id>``)."""
    request: dict[str, Any]
    """``{"id", "idempotency_key"}``, stamped on the events the request causes."""
    now: int
    """The request's time."""
    valid: dict[str, Any]
    """The coerced values :func:`~.validation.validate_params` returned."""


Handler = Callable[["StripeState", ApiCall], dict[str, Any]]


@dataclass
class Route:
    """``method`` plus a path pattern, the endpoint's name and its handler."""

    method: str
    pattern: re.Pattern[str]
    endpoint: str
    handler: Handler


def _route(method: str, pattern: str, endpoint: str, handler: Handler) -> Route:
    return Route(method, re.compile(pattern), endpoint, handler)


ROUTES = (
    _route("POST", r"/v1/checkout/sessions", "checkout.sessions.create",
           checkout_sessions.create_session),
    _route("GET", r"/v1/checkout/sessions", "checkout.sessions.list",
           checkout_sessions.list_sessions),
    _route("GET", r"/v1/checkout/sessions/([^/]+)", "checkout.sessions.retrieve",
           checkout_sessions.retrieve_session),
    _route("GET", r"/v1/checkout/sessions/([^/]+)/line_items",
           "checkout.sessions.list_line_items", checkout_sessions.list_line_items),
    _route("POST", r"/v1/checkout/sessions/([^/]+)/expire", "checkout.sessions.expire",
           checkout_sessions.expire_session),
    _route("GET", r"/v1/prices", "prices.list", prices.list_prices),
    _route("POST", r"/v1/prices", "prices.create", prices.create_price),
    _route("GET", r"/v1/prices/([^/]+)", "prices.retrieve", prices.retrieve_price),
    _route("GET", r"/v1/products", "products.list", products.list_products),
    _route("POST", r"/v1/products", "products.create", products.create_product),
    _route("GET", r"/v1/products/([^/]+)", "products.retrieve", products.retrieve_product),
    _route("GET", r"/v1/events", "events.list", events.list_events),
    _route("GET", r"/v1/events/([^/]+)", "events.retrieve", events.retrieve_event),
    _route("POST", r"/v1/customers", "customers.create", customers.create_customer),
    _route("GET", r"/v1/customers", "customers.list", customers.list_customers),
    _route("GET", r"/v1/customers/([^/]+)", "customers.retrieve",
           customers.retrieve_customer),
    _route("GET", r"/v1/subscriptions", "subscriptions.list",
           subscriptions.list_subscriptions),
    _route("GET", r"/v1/subscriptions/([^/]+)", "subscriptions.retrieve",
           subscriptions.retrieve_subscription),
    _route("POST", r"/v1/subscriptions/([^/]+)", "subscriptions.update",
           subscriptions.update_subscription),
    _route("DELETE", r"/v1/subscriptions/([^/]+)", "subscriptions.cancel",
           subscriptions.cancel_subscription),
    _route("GET", r"/v1/invoices", "invoices.list", invoices.list_invoices),
    _route("GET", r"/v1/invoices/([^/]+)", "invoices.retrieve", invoices.retrieve_invoice),
    _route("POST", r"/v1/billing_portal/sessions", "billing_portal.sessions.create",
           billing_portal.create_session),
    _route("GET", r"/v1/payment_intents", "payment_intents.list",
           payment_intents.list_payment_intents),
    _route("GET", r"/v1/payment_intents/([^/]+)", "payment_intents.retrieve",
           payment_intents.retrieve_payment_intent),
    _route("GET", r"/v1/charges", "charges.list", charges.list_charges),
    _route("GET", r"/v1/charges/([^/]+)", "charges.retrieve", charges.retrieve_charge),
    _route("GET", r"/v1/refunds", "refunds.list", refunds.list_refunds),
    _route("GET", r"/v1/refunds/([^/]+)", "refunds.retrieve", refunds.retrieve_refund),
    _route("GET", r"/v1/disputes", "disputes.list", disputes.list_disputes),
    _route("GET", r"/v1/disputes/([^/]+)", "disputes.retrieve", disputes.retrieve_dispute),
)
"""Every URL the emulated API serves."""


@dataclass
class _Stored:
    fingerprint: str
    status: int
    body: dict[str, Any]


class StripeState:
    """Stripe's objects in memory, with the API's routes and the checkout transitions.

    :param lock: the emulator-wide lock every method takes.
    :param api_base: used for the hosted page ``url`` of each session.
    :param on_event: called (under the lock) with each new event, to queue delivery
        and set its ``pending_webhooks``.
    :param clock: seconds since the epoch; injectable so expiry can be tested.
    """

    def __init__(
        self,
        *,
        lock: threading.RLock,
        api_base: str,
        on_event: Callable[[dict[str, Any]], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lock = lock
        self.api_base = api_base
        self.on_event = on_event
        self.clock = clock
        self.prices: dict[str, dict[str, Any]] = {}
        self.products: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.line_items: dict[str, list[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.billing = BillingObjects()
        self._idempotency: dict[str, _Stored] = {}

    def now(self) -> int:
        return int(self.clock())

    # -- dispatch ------------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        params: dict[str, Any],
        *,
        idempotency_key: str | None,
        request_id: str,
    ) -> ApiResponse:
        """Answer one authenticated API request (auth is checked by the caller)."""
        for route in ROUTES:
            match = route.pattern.fullmatch(path)
            if match and route.method == method:
                break
        else:
            raise ApiError(
                f"Unrecognized request URL ({method}: {path}). Please see "
                "https://stripe.com/docs or we can help at https://support.stripe.com/.",
                status=404,
            )
        with self.lock:
            if method == "POST" and idempotency_key is not None:
                return self._idempotent(route, match, params, path, idempotency_key,
                                        request_id)
            return ApiResponse(200, self._serve(route, match, params, {
                "id": request_id, "idempotency_key": None}))

    def _serve(self, route: Route, match: re.Match[str], params: dict[str, Any],
               request: dict[str, Any]) -> dict[str, Any]:
        now = self.now()
        valid = validate_params(route.endpoint, params, now=now,
                                recurring_price=self.recurring_price)
        return route.handler(self, ApiCall(params, match.groups(), request, now, valid))

    def _idempotent(
        self,
        route: Route,
        match: re.Match[str],
        params: dict[str, Any],
        path: str,
        key: str,
        request_id: str,
    ) -> ApiResponse:
        if len(key) > 255:
            raise invalid("Idempotency keys can be at most 255 characters long.",
                          "Idempotency-Key")
        fingerprint = json.dumps([path, params], sort_keys=True)
        stored = self._idempotency.get(key)
        if stored is not None:
            if stored.fingerprint != fingerprint:
                raise ApiError(
                    "Keys for idempotent requests can only be used with the same "
                    "parameters they were first used with. Try using a key other than "
                    f"'{key}' if you meant to execute a different request.",
                    type="idempotency_error",
                )
            return ApiResponse(stored.status, copy.deepcopy(stored.body),
                               [("Idempotent-Replayed", "true")])
        body = self._serve(route, match, params, {"id": request_id, "idempotency_key": key})
        # Like Stripe, only a request that got past validation is saved: a 400 may be
        # retried with the same key once the caller fixed nothing but the transient cause.
        self._idempotency[key] = _Stored(fingerprint, 200, copy.deepcopy(body))
        return ApiResponse(200, body)

    # -- objects and transitions for the emulator's helpers and hosted page -------------

    def new_product(
        self,
        name: str,
        *,
        product_id: str | None = None,
        description: str | None = None,
        active: bool = True,
        metadata: dict[str, str] | None = None,
        images: list[str] | None = None,
    ) -> dict[str, Any]:
        """Store a product (not a copy) from already validated values."""
        return products.new_product(self, name, product_id=product_id,
                                    description=description, active=active,
                                    metadata=metadata, images=images)

    def new_price(
        self,
        *,
        unit_amount: int,
        currency: str,
        product: str,
        lookup_key: str | None = None,
        recurring: dict[str, Any] | None = None,
        nickname: str | None = None,
        active: bool = True,
        metadata: dict[str, str] | None = None,
        unit_amount_decimal: str | None = None,
    ) -> dict[str, Any]:
        """Store a price (not a copy) from already validated values."""
        return prices.new_price(self, unit_amount=unit_amount, currency=currency,
                                product=product, lookup_key=lookup_key,
                                recurring=recurring, nickname=nickname, active=active,
                                metadata=metadata, unit_amount_decimal=unit_amount_decimal)

    def recurring_price(self, price_id: str) -> bool | None:
        """Whether a stored price is recurring (``None``: no such price)."""
        price = self.prices.get(price_id)
        return None if price is None else price["type"] == "recurring"

    def session(self, session_id: str, param: str = "session") -> dict[str, Any]:
        """The stored session (not a copy), expired lazily once past ``expires_at``."""
        return checkout_sessions.stored_session(self, session_id, param)

    def expire(self, session_id: str, *, request: dict[str, Any] | None) -> dict[str, Any]:
        """Expire an open session and emit ``checkout.session.expired``."""
        return checkout_sessions.expire(self, session_id, request=request)

    def complete(
        self, session_id: str, *, email: str | None = None, delayed: bool = False
    ) -> dict[str, Any]:
        """Take payment for an open session; emit ``checkout.session.completed``."""
        return checkout_sessions.complete(self, session_id, email=email, delayed=delayed)

    def settle(self, session_id: str, *, succeeded: bool) -> dict[str, Any]:
        """Finish a delayed payment: emit ``async_payment_succeeded`` or ``_failed``."""
        return checkout_sessions.settle(self, session_id, succeeded=succeeded)

    def emit(
        self, kind: str, obj: dict[str, Any], request: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Record an event and hand it to ``on_event``."""
        return events.emit(self, kind, obj, request)
