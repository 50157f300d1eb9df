"""The in-memory part of the emulator: Stripe's objects, its validation and its errors.

Only the slice of the API this project uses is emulated: Checkout Sessions, their
line items, Prices, Products and Events. The point is to reject what Stripe rejects
(unknown parameters, the removed ``payment_method_types``, bad modes, mixed
currencies...) so that a test against the emulator fails where production would.

Modules: :mod:`.state` (:class:`StripeState`: objects, handlers, routes,
idempotency), :mod:`.params` (decoding form values into typed ones),
:mod:`.errors` (Stripe's error shape), :mod:`.lists` (list objects),
:mod:`.ids` and :mod:`.version`.
"""

from __future__ import annotations

from .errors import ApiError
from .ids import new_id
from .state import ApiResponse, StripeState
from .version import API_VERSION

__all__ = [
    "API_VERSION",
    "ApiError",
    "ApiResponse",
    "StripeState",
    "new_id",
]
