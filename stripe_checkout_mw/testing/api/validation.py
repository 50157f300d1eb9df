"""The one place a request's decoded params are checked: :func:`validate_params`.

Every request is first judged by Stripe's own schema as the installed SDK declares
it (:mod:`stripe_checkout_mw.schema`): unknown keys at every depth, types, enums,
required keys, the documented cross-field rules and limits. :data:`ENDPOINTS` then
adds, per endpoint (named like the SDK's methods, ``"checkout.sessions.create"``),
what the schema cannot say: the hint a removed parameter's error carries and the
rows of the endpoint's table that coerce values and check what only a running
Stripe knows (a well-formed URL, a ``cus_`` id). Checks that need the stored objects
(a price id, a product to create) stay with the handler.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

from ... import schema
from . import billing_portal, checkout_session_rules, customers, events, subscriptions
from .errors import ApiError, unknown
from .rules import ParamRule, RuleContext, apply_rules

__all__ = ["ENDPOINTS", "EndpointParams", "validate_params"]


@dataclass(frozen=True)
class EndpointParams:
    """What the emulator checks of one endpoint beyond Stripe's schema."""

    rules: tuple[ParamRule, ...] = ()
    """Per-parameter checks and coercions, in the order Stripe applies them."""
    removed: Mapping[str, str] = field(default_factory=dict)
    """Parameters older API versions took, with the hint their error carries."""
    first: tuple[ParamRule, ...] = ()
    """Rows run before the schema, for a more helpful error than its own."""
    params_class: str | None = None
    """The SDK params class (under ``stripe.params``) of an endpoint the emulator
    serves but :data:`stripe_checkout_mw.schema.ENDPOINTS` does not name."""


ENDPOINTS: dict[str, EndpointParams] = {
    "checkout.sessions.create": EndpointParams(
        checkout_session_rules.CREATE_RULES,
        checkout_session_rules.REMOVED_CREATE_PARAMS,
        checkout_session_rules.HINT_RULES,
    ),
    "checkout.sessions.list": EndpointParams(),
    "checkout.sessions.retrieve": EndpointParams(),
    "checkout.sessions.list_line_items": EndpointParams(),
    "checkout.sessions.expire": EndpointParams(),
    "prices.create": EndpointParams(),
    "prices.list": EndpointParams(),
    "prices.retrieve": EndpointParams(),
    "products.create": EndpointParams(),
    "products.list": EndpointParams(),
    "products.retrieve": EndpointParams(),
    "events.list": EndpointParams(events.LIST_RULES),
    "events.retrieve": EndpointParams(),
    "customers.create": EndpointParams(customers.CREATE_RULES),
    "customers.list": EndpointParams(),
    "customers.retrieve": EndpointParams(),
    "subscriptions.list": EndpointParams(),
    "subscriptions.retrieve": EndpointParams(),
    "subscriptions.update": EndpointParams(subscriptions.UPDATE_RULES),
    "subscriptions.cancel": EndpointParams(subscriptions.CANCEL_RULES),
    "invoices.list": EndpointParams(),
    "invoices.retrieve": EndpointParams(),
    "invoices.create_preview": EndpointParams(params_class="InvoiceCreatePreviewParams"),
    "invoices.line_items.list": EndpointParams(params_class="InvoiceLineItemListParams"),
    "invoices.finalize_invoice": EndpointParams(params_class="InvoiceFinalizeInvoiceParams"),
    "invoices.pay": EndpointParams(params_class="InvoicePayParams"),
    "invoices.void_invoice": EndpointParams(params_class="InvoiceVoidInvoiceParams"),
    "invoices.mark_uncollectible": EndpointParams(
        params_class="InvoiceMarkUncollectibleParams"),
    "subscription_schedules.create": EndpointParams(
        params_class="SubscriptionScheduleCreateParams"),
    "subscription_schedules.list": EndpointParams(
        params_class="SubscriptionScheduleListParams"),
    "subscription_schedules.retrieve": EndpointParams(
        params_class="SubscriptionScheduleRetrieveParams"),
    "subscription_schedules.update": EndpointParams(
        params_class="SubscriptionScheduleUpdateParams"),
    "subscription_schedules.cancel": EndpointParams(
        params_class="SubscriptionScheduleCancelParams"),
    "subscription_schedules.release": EndpointParams(
        params_class="SubscriptionScheduleReleaseParams"),
    "webhook_endpoints.list": EndpointParams(params_class="WebhookEndpointListParams"),
    "webhook_endpoints.create": EndpointParams(params_class="WebhookEndpointCreateParams"),
    "webhook_endpoints.retrieve": EndpointParams(
        params_class="WebhookEndpointRetrieveParams"),
    "webhook_endpoints.update": EndpointParams(params_class="WebhookEndpointUpdateParams"),
    "webhook_endpoints.delete": EndpointParams(params_class="WebhookEndpointDeleteParams"),
    "billing_portal.sessions.create": EndpointParams(billing_portal.CREATE_RULES),
    "payment_intents.list": EndpointParams(),
    "payment_intents.retrieve": EndpointParams(),
    "invoice_payments.list": EndpointParams(params_class="InvoicePaymentListParams"),
    "charges.list": EndpointParams(),
    "charges.retrieve": EndpointParams(),
    "refunds.list": EndpointParams(),
    "refunds.retrieve": EndpointParams(),
    "disputes.list": EndpointParams(),
    "disputes.retrieve": EndpointParams(),
}


def _unknown_price(price_id: str) -> bool | None:
    return None


def validate_params(
    endpoint: str,
    params: dict[str, Any],
    *,
    now: int,
    recurring_price: Callable[[str], bool | None] = _unknown_price,
) -> dict[str, Any]:
    """Check ``params`` (a decoded form body or query) of a request to ``endpoint``.

    Raises the :class:`~.errors.ApiError` Stripe answers with for the first
    problem; returns the params coerced to their declared types, overlaid with
    the values the endpoint's rows coerce. ``recurring_price`` tells the item
    limits which stored prices are recurring.
    """
    spec = ENDPOINTS[endpoint]
    for name, hint in spec.removed.items():
        if name in params:
            raise unknown(name, hint)
    apply_rules(spec.first, params, RuleContext(now=now))
    try:
        coerced = schema.validate(spec.params_class or endpoint, params, now=now,
                                  recurring_price=recurring_price)
    except schema.SchemaError as exc:
        raise ApiError(exc.message, param=exc.param or None, code=exc.code) from None
    # The rules see what the schema coerced (ui_mode, say) as well as each other's values.
    return apply_rules(spec.rules, params, RuleContext(now=now, valid=dict(coerced)))
