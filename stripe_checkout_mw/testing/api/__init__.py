"""The in-memory part of the emulator: Stripe's objects, its validation and its errors.

Only the slice of the API this project uses is emulated: Checkout Sessions, their
line items, Prices, Products and Events; the Customers, Subscriptions, Invoices,
PaymentIntents, Charges, Refunds, Disputes and billing portal sessions that paying,
time and the emulator's billing controls create, with invoice previews, plan changes
and subscription schedules. The point is to reject what Stripe
rejects (unknown parameters at any depth, the removed ``payment_method_types``, bad
enum values, the documented rules between parameters, mixed currencies...) so that a
test against the emulator fails where production would.

Laid out like the services it imitates (moto's state / request decoding / routes /
errors, stripe-python's module per resource):

- :mod:`.state`: :class:`StripeState`, the stored objects (moto's backend);
  :mod:`.idempotency`: the answers to idempotent POSTs.
- :mod:`.routes`: the route table (method, path pattern -> endpoint, handler);
  :mod:`.service`: serving one decoded request (route, idempotency, validation,
  handler). The HTTP side (form decoding, auth, faults, rendering) is
  :mod:`stripe_checkout_mw.testing.api_door`, outside this package.
- :mod:`.validation`: :func:`~.validation.validate_params`, the one place a
  request's params are checked: Stripe's schema from the installed SDK
  (:mod:`stripe_checkout_mw.schema`), then a table of what it cannot say.
- :mod:`.shapes`: the shapes of Stripe's objects, from the SDK's resource classes.
- :mod:`.rules`: per-parameter rules as table rows; :mod:`.params`: decoding
  form values into typed ones; :mod:`.errors`: Stripe's error shape.
- :mod:`.checkout_sessions`, :mod:`.prices`, :mod:`.products`, :mod:`.events`: one
  module per resource, its parameters, handlers and transitions; a session's
  create rules and line items are :mod:`.checkout_session_rules` and
  :mod:`.checkout_line_items`.
- :mod:`.customers`, :mod:`.subscriptions` (with :mod:`.subscription_objects`,
  :mod:`.subscription_changes`, :mod:`.subscription_updates` (plan changes and
  ``payment_behavior``), :mod:`.prorations`, :mod:`.subscription_schedules` and
  :mod:`.subscription_clock`: what time does), :mod:`.invoices` (with
  :mod:`.invoice_preview`), :mod:`.card_outcomes` (what charging a saved test card
  gives), :mod:`.webhook_endpoints`, :mod:`.payment_intents`, :mod:`.charges`, :mod:`.refunds`,
  :mod:`.disputes`, :mod:`.billing_portal`: the billing resources, stored in
  :class:`~.objects.BillingObjects`; :mod:`.checkout_payments`: what paying a
  session creates.
- :mod:`.lists`, :mod:`.ids`, :mod:`.version`: list objects, ids, the API version.
"""

from __future__ import annotations

from .errors import ApiError
from .ids import new_id
from .service import ApiResponse
from .state import StripeState
from .version import API_VERSION

__all__ = [
    "API_VERSION",
    "ApiError",
    "ApiResponse",
    "StripeState",
    "new_id",
]
