"""The one place a request's decoded params are checked: :func:`validate_params`.

:data:`ENDPOINTS` says, per endpoint (named like the SDK's methods,
``"checkout.sessions.create"``), which parameters it takes, which it no longer
takes and the per-parameter rules of its table. The state calls
:func:`validate_params` once per served request, before the endpoint's handler,
which receives the coerced values; checks that need the stored objects (a price
id, a product to create) stay with the handler.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
from .errors import unknown
from .params import LIST_PARAMS, RETRIEVE_PARAMS, check_keys
from .rules import ParamRule, RuleContext, apply_rules

__all__ = ["ENDPOINTS", "EndpointParams", "validate_params"]


@dataclass(frozen=True)
class EndpointParams:
    """What one endpoint accepts at the top level of its params."""

    allowed: frozenset[str]
    """Every parameter it takes; any other is ``parameter_unknown``."""
    rules: tuple[ParamRule, ...] = ()
    """Per-parameter checks and coercions, in the order Stripe applies them."""
    removed: Mapping[str, str] = field(default_factory=dict)
    """Parameters older API versions took, with the hint their error carries."""


ENDPOINTS: dict[str, EndpointParams] = {
    "checkout.sessions.create": EndpointParams(
        checkout_sessions.CREATE_PARAMS,
        checkout_sessions.CREATE_RULES,
        checkout_sessions.REMOVED_CREATE_PARAMS,
    ),
    "checkout.sessions.list": EndpointParams(checkout_sessions.LIST_FILTERS),
    "checkout.sessions.retrieve": EndpointParams(RETRIEVE_PARAMS),
    "checkout.sessions.list_line_items": EndpointParams(LIST_PARAMS),
    "checkout.sessions.expire": EndpointParams(RETRIEVE_PARAMS),
    "prices.create": EndpointParams(prices.CREATE_PARAMS),
    "prices.list": EndpointParams(prices.LIST_FILTERS),
    "prices.retrieve": EndpointParams(RETRIEVE_PARAMS),
    "products.create": EndpointParams(products.CREATE_PARAMS),
    "products.list": EndpointParams(products.LIST_FILTERS),
    "products.retrieve": EndpointParams(RETRIEVE_PARAMS),
    "events.list": EndpointParams(events.LIST_FILTERS, events.LIST_RULES),
    "events.retrieve": EndpointParams(RETRIEVE_PARAMS),
    "customers.create": EndpointParams(customers.CREATE_PARAMS, customers.CREATE_RULES),
    "customers.list": EndpointParams(customers.LIST_FILTERS),
    "customers.retrieve": EndpointParams(RETRIEVE_PARAMS),
    "subscriptions.list": EndpointParams(subscriptions.LIST_FILTERS),
    "subscriptions.retrieve": EndpointParams(RETRIEVE_PARAMS),
    "subscriptions.update": EndpointParams(subscriptions.UPDATE_PARAMS,
                                           subscriptions.UPDATE_RULES),
    "subscriptions.cancel": EndpointParams(subscriptions.CANCEL_PARAMS,
                                           subscriptions.CANCEL_RULES),
    "invoices.list": EndpointParams(invoices.LIST_FILTERS),
    "invoices.retrieve": EndpointParams(RETRIEVE_PARAMS),
    "billing_portal.sessions.create": EndpointParams(billing_portal.CREATE_PARAMS,
                                                     billing_portal.CREATE_RULES),
    "payment_intents.list": EndpointParams(payment_intents.LIST_FILTERS),
    "payment_intents.retrieve": EndpointParams(RETRIEVE_PARAMS),
    "charges.list": EndpointParams(charges.LIST_FILTERS),
    "charges.retrieve": EndpointParams(RETRIEVE_PARAMS),
    "refunds.list": EndpointParams(refunds.LIST_FILTERS),
    "refunds.retrieve": EndpointParams(RETRIEVE_PARAMS),
    "disputes.list": EndpointParams(disputes.LIST_FILTERS),
    "disputes.retrieve": EndpointParams(RETRIEVE_PARAMS),
}


def validate_params(endpoint: str, params: dict[str, Any], *, now: int) -> dict[str, Any]:
    """Check ``params`` (a decoded form body or query) of a request to ``endpoint``.

    Raises the :class:`~.errors.ApiError` Stripe answers with for the first
    problem; returns the coerced values of the parameters the endpoint's rules
    cover, by name (empty for endpoints without rules).
    """
    spec = ENDPOINTS[endpoint]
    for name, hint in spec.removed.items():
        if name in params:
            raise unknown(name, hint)
    check_keys(params, spec.allowed, None)
    return apply_rules(spec.rules, params, RuleContext(now=now))
