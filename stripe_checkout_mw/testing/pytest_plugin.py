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

The test is isolated from the machine it runs on: for its duration every ``STRIPE_*``
variable and ``WEB_APP_URL`` are removed from ``os.environ`` (so an exported
``STRIPE_CHECKOUT_STORE``, ``STRIPE_WEBHOOK_SECRET``, ``STRIPE_SECRET_KEY`` or
``STRIPE_API_BASE`` cannot reach a middleware built in the test: pass what it needs), and
the ``stripe`` SDK's telemetry, which would write an id under ``~/.config/stripe``, is
off. Both come back after the test. The variables the project's own suite reads to set
itself up (``STRIPE_CHECKOUT_TEST_*``, ``STRIPE_CHECKOUT_NO_SKIPS``,
``STRIPE_CHECKOUT_REQUIRE_*``) are left alone.

A live key is refused: when ``STRIPE_SECRET_KEY`` (or the ``stripe`` module's global
``stripe.api_key``, which an app may set at import) holds an ``sk_live_`` or ``rk_live_``
key, the test fails at once, naming where the key is, before anything runs. Tests run on
the emulator's test keys only; a live key in a test's reach is one mistaken URL away from
real charges.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .emulator import StripeEmulator

__all__ = ["isolated_environment", "refuse_live_keys", "stripe_emulator"]

#: Variables that configure a test run rather than a shop; kept.
_TEST_RUN_PREFIXES = ("STRIPE_CHECKOUT_TEST_", "STRIPE_CHECKOUT_NO_SKIPS",
                      "STRIPE_CHECKOUT_REQUIRE_")


def isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove the shop's configuration from the environment and turn SDK telemetry off.

    Everything goes through ``monkeypatch``, so it is undone with the test's other
    patches, in order.
    """
    for name in list(os.environ):
        if (name.startswith("STRIPE_") and not name.startswith(_TEST_RUN_PREFIXES)) or (
                name == "WEB_APP_URL"):
            monkeypatch.delenv(name)
    try:
        import stripe
    except ImportError:  # the emulator itself needs no SDK
        return
    monkeypatch.setattr(stripe, "enable_telemetry", False)


_LIVE_PREFIXES = ("sk_live_", "rk_live_")


def refuse_live_keys() -> None:
    """Fail the test when a live Stripe key is within its reach (see the module docstring)."""
    places = []
    if os.environ.get("STRIPE_SECRET_KEY", "").strip().startswith(_LIVE_PREFIXES):
        places.append("the STRIPE_SECRET_KEY environment variable")
    try:
        import stripe
    except ImportError:
        stripe = None  # type: ignore[assignment]
    if stripe is not None and str(getattr(stripe, "api_key", "") or "").startswith(
            _LIVE_PREFIXES):
        places.append("stripe.api_key")
    if places:
        pytest.fail(f"stripe_emulator: a live Stripe key is set in {' and '.join(places)}; "
                    "tests run on the emulator's test keys only: unset it for the test run",
                    pytrace=False)


@pytest.fixture
def stripe_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[StripeEmulator]:
    """A started :class:`~stripe_checkout_mw.testing.StripeEmulator`, stopped afterwards.

    The environment is isolated first (:func:`isolated_environment`).
    """
    refuse_live_keys()
    isolated_environment(monkeypatch)
    with StripeEmulator() as emulator:
        yield emulator
