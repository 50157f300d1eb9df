"""One subscription per user: a second subscription checkout is refused with 409 unless
the shop allows several (``multiple_subscriptions``).

The middleware runs on a real server on 127.0.0.1 with a store on SQLite and PostgreSQL;
the emulator sells the subscriptions over real HTTP and delivers its signed events.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from conftest import ServedShop

from stripe_checkout_mw import CheckoutMiddleware, StripeLookupKeys
from stripe_checkout_mw.testing import StripeEmulator


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the shop"]


def signed_in(environ: dict[str, Any]) -> str | None:
    user: str | None = environ.get("HTTP_X_TEST_USER")
    return user


class Shop(ServedShop):
    def __init__(self, emu: StripeEmulator, store: str, **options: Any) -> None:
        super().__init__(CheckoutMiddleware(
            app, secret_key=emu.secret_key, stripe_api_base=emu.api_base,
            domain_url="https://shop.example.com", price_lookup=StripeLookupKeys(),
            webhook_secret=emu.webhook_secret, store=store, customer_ref=signed_in,
            **options))
        emu.webhook_url = f"{self.url}/stripe-webhook"

    def checkout(self, user: str, price: str) -> requests.Response:
        return self.http.post(f"{self.url}/create-checkout-session", json={
            "line_items": [{"price": price, "quantity": 1}]},
            headers={"X-Test-User": user}, timeout=10)

    def subscribe(self, emu: StripeEmulator, user: str, price: str) -> dict[str, Any]:
        response = self.checkout(user, price)
        assert response.status_code == 200, response.text
        session = emu.pay(response.json()["sessionId"])
        emu.wait_for_deliveries(10)
        return session


@pytest.fixture
def emu() -> Iterator[StripeEmulator]:
    with StripeEmulator() as emulator:
        emulator.add_price(1500, lookup_key="pro", recurring={"interval": "month"})
        emulator.add_price(300, lookup_key="extra", recurring={"interval": "month"})
        emulator.add_price(2000, lookup_key="tee")
        yield emulator


def test_a_second_subscription_is_409_pointing_to_a_plan_change(
        emu: StripeEmulator, store_url: str) -> None:
    shop = Shop(emu, store_url, subscription_endpoint=True)
    try:
        session = shop.subscribe(emu, "ann", "pro")
        sessions_before = len(emu.sessions)
        refused = shop.checkout("ann", "extra")
        assert refused.status_code == 409
        error = refused.json()["error"]
        assert "already have an active subscription" in error["message"]
        assert "POST /create-checkout-session/subscription" in error["message"]
        assert len(emu.sessions) == sessions_before  # no session was created
        # One-time purchases and other users are not affected.
        assert shop.checkout("ann", "tee").status_code == 200
        assert shop.checkout("bob", "extra").status_code == 200
        # Once the subscription has ended, the user may subscribe again.
        emu.cancel_subscription(session["subscription"])
        emu.wait_for_deliveries(10)
        assert shop.checkout("ann", "extra").status_code == 200
    finally:
        shop.close()


def test_a_shop_that_sells_add_ons_allows_several(
        emu: StripeEmulator, store_url: str) -> None:
    shop = Shop(emu, store_url, multiple_subscriptions=True)
    try:
        shop.subscribe(emu, "ann", "pro")
        shop.subscribe(emu, "ann", "extra")
        assert shop.middleware.subscriptions is not None
        assert sorted(s.items[0].lookup_key or "" for s in
                      shop.middleware.subscriptions.for_customer("ann")) == ["extra", "pro"]
    finally:
        shop.close()


def test_without_customer_ref_nothing_is_refused(emu: StripeEmulator, tmp_path: Any) -> None:
    with CheckoutMiddleware(app, secret_key=emu.secret_key, stripe_api_base=emu.api_base,
                            domain_url="https://shop.example.com",
                            price_lookup=StripeLookupKeys(),
                            store=f"sqlite:///{tmp_path}/orders.db") as mw:
        assert mw.checkout.subscribed is None
