"""The emulated API's route table: which handler answers which method and path.

Like moto's ``urls.py``, this module only maps URLs to code: :data:`ROUTES` pairs a
method and a path pattern with the endpoint's name (the key
:func:`~.validation.validate_params` checks params by) and the resource module's
handler. Adding an endpoint is a row here, a handler in its resource module and an
entry in :data:`~.validation.ENDPOINTS`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from . import (
    billing_portal,
    charges,
    checkout_sessions,
    customers,
    disputes,
    events,
    invoice_actions,
    invoice_payments,
    invoice_preview,
    invoices,
    payment_intents,
    prices,
    products,
    refunds,
    subscription_schedules,
    subscriptions,
    webhook_endpoints,
)
from .errors import ApiError

if TYPE_CHECKING:
    from .state import StripeState

__all__ = ["ROUTES", "ApiCall", "Handler", "Route", "find_route"]


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
    _route("POST", r"/v1/invoices/create_preview", "invoices.create_preview",
           invoice_preview.create_preview),
    _route("GET", r"/v1/invoices/([^/]+)", "invoices.retrieve", invoices.retrieve_invoice),
    _route("GET", r"/v1/invoices/([^/]+)/lines", "invoices.line_items.list",
           invoices.list_lines),
    _route("POST", r"/v1/invoices/([^/]+)/finalize", "invoices.finalize_invoice",
           invoice_actions.finalize_invoice),
    _route("POST", r"/v1/invoices/([^/]+)/pay", "invoices.pay", invoice_actions.pay_invoice),
    _route("POST", r"/v1/invoices/([^/]+)/void", "invoices.void_invoice",
           invoice_actions.void_invoice),
    _route("POST", r"/v1/invoices/([^/]+)/mark_uncollectible", "invoices.mark_uncollectible",
           invoice_actions.mark_uncollectible_invoice),
    _route("POST", r"/v1/subscription_schedules", "subscription_schedules.create",
           subscription_schedules.create_schedule),
    _route("GET", r"/v1/subscription_schedules", "subscription_schedules.list",
           subscription_schedules.list_schedules),
    _route("GET", r"/v1/subscription_schedules/([^/]+)", "subscription_schedules.retrieve",
           subscription_schedules.retrieve_schedule),
    _route("POST", r"/v1/subscription_schedules/([^/]+)", "subscription_schedules.update",
           subscription_schedules.update_schedule),
    _route("POST", r"/v1/subscription_schedules/([^/]+)/cancel",
           "subscription_schedules.cancel", subscription_schedules.cancel_schedule),
    _route("POST", r"/v1/subscription_schedules/([^/]+)/release",
           "subscription_schedules.release", subscription_schedules.release_schedule),
    _route("GET", r"/v1/webhook_endpoints", "webhook_endpoints.list",
           webhook_endpoints.list_endpoints),
    _route("POST", r"/v1/webhook_endpoints", "webhook_endpoints.create",
           webhook_endpoints.create_endpoint),
    _route("GET", r"/v1/webhook_endpoints/([^/]+)", "webhook_endpoints.retrieve",
           webhook_endpoints.retrieve_endpoint),
    _route("POST", r"/v1/webhook_endpoints/([^/]+)", "webhook_endpoints.update",
           webhook_endpoints.update_endpoint),
    _route("DELETE", r"/v1/webhook_endpoints/([^/]+)", "webhook_endpoints.delete",
           webhook_endpoints.delete_endpoint),
    _route("POST", r"/v1/billing_portal/sessions", "billing_portal.sessions.create",
           billing_portal.create_session),
    _route("GET", r"/v1/payment_intents", "payment_intents.list",
           payment_intents.list_payment_intents),
    _route("GET", r"/v1/payment_intents/([^/]+)", "payment_intents.retrieve",
           payment_intents.retrieve_payment_intent),
    _route("GET", r"/v1/invoice_payments", "invoice_payments.list",
           invoice_payments.list_invoice_payments),
    _route("GET", r"/v1/charges", "charges.list", charges.list_charges),
    _route("GET", r"/v1/charges/([^/]+)", "charges.retrieve", charges.retrieve_charge),
    _route("GET", r"/v1/refunds", "refunds.list", refunds.list_refunds),
    _route("GET", r"/v1/refunds/([^/]+)", "refunds.retrieve", refunds.retrieve_refund),
    _route("GET", r"/v1/disputes", "disputes.list", disputes.list_disputes),
    _route("GET", r"/v1/disputes/([^/]+)", "disputes.retrieve", disputes.retrieve_dispute),
)
"""Every URL the emulated API serves."""


def find_route(method: str, path: str) -> tuple[Route, re.Match[str]]:
    """The route serving ``method path`` and its match (the ids in the path).

    Raises Stripe's 404 ``ApiError`` for a path or method nothing serves.
    """
    for route in ROUTES:
        match = route.pattern.fullmatch(path)
        if match and route.method == method:
            return route, match
    raise ApiError(
        f"Unrecognized request URL ({method}: {path}). Please see "
        "https://stripe.com/docs or we can help at https://support.stripe.com/.",
        status=404,
    )
