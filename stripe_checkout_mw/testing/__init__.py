"""An offline Stripe for tests, the demo and development: :class:`StripeEmulator`.

The real ``stripe`` SDK talks to it over real HTTP on ``127.0.0.1``; it serves
Checkout Sessions, Prices, Products and Events (and the customers, subscriptions,
invoices, payments, refunds and disputes that follow), a stand-in hosted payment page
and customer portal, and delivers webhooks signed exactly as Stripe signs them. The pytest fixture
``stripe_emulator`` (from :mod:`stripe_checkout_mw.testing.pytest_plugin`, loaded
automatically once the package is installed) yields a started one.

This package imports nothing from the middleware's own modules, so it works (and
can test them) whatever state they are in.
"""

from __future__ import annotations

from .api import API_VERSION
from .emulator import RecordedRequest, StripeEmulator
from .forms import decode_form
from .webhooks import Delivery, sign_payload

__all__ = [
    "API_VERSION",
    "Delivery",
    "RecordedRequest",
    "StripeEmulator",
    "decode_form",
    "sign_payload",
]
