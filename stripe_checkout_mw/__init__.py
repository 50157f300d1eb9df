"""Stripe hosted Checkout for any WSGI application, as one middleware.

::

    from stripe_checkout_mw import CheckoutMiddleware, Catalog

    app = CheckoutMiddleware(app, domain_url="https://shop.example.com",
                             price_lookup=Catalog.from_file("catalog.json"))

See the README for every option; ``stripe_checkout_mw.testing`` has an offline Stripe.
"""

from __future__ import annotations

from .billing.changes import PaymentNotCompleted
from .billing.subscriptions import Subscription, SubscriptionItem
from .checkout.prices import Catalog, ClientPrices, PricedItem, PriceLookup, StripeLookupKeys
from .checkout.validation import DefaultValidator, ValidationError
from .errors import OptionError
from .ledger.orders import Order
from .wsgi.middleware import CheckoutMiddleware

__all__ = [
    "Catalog",
    "CheckoutMiddleware",
    "ClientPrices",
    "DefaultValidator",
    "OptionError",
    "Order",
    "PaymentNotCompleted",
    "PriceLookup",
    "PricedItem",
    "StripeLookupKeys",
    "Subscription",
    "SubscriptionItem",
    "ValidationError",
]
__version__ = "0.1.0"
