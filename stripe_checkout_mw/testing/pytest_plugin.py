"""The ``stripe_emulator`` pytest fixture.

Registered through the ``pytest11`` entry point, so it is available in any test
suite once ``stripe-checkout-mw`` is installed::

    def test_checkout(stripe_emulator):
        price = stripe_emulator.add_price(unit_amount=1500, lookup_key="basic")
        client = stripe_emulator.client()
        ...

Each test gets its own started emulator (function scope): fresh state, a free port,
random keys, nothing shared. It is stopped after the test, which closes its sockets
and threads and the HTTP sessions of clients made with ``stripe_emulator.client()``.
Webhook retries are quick (3 attempts, 0.05 s doubling); set
``stripe_emulator.webhook_url`` to your receiver's URL.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .emulator import StripeEmulator

__all__ = ["stripe_emulator"]


@pytest.fixture
def stripe_emulator() -> Iterator[StripeEmulator]:
    """A started :class:`~stripe_checkout_mw.testing.StripeEmulator`, stopped afterwards."""
    with StripeEmulator() as emulator:
        yield emulator
