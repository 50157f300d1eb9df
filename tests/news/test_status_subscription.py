"""The success page knows the subscription: the status look-up that finds a
subscription-mode session paid records its customer and subscription, before any webhook.

The middleware runs on a real server on 127.0.0.1 over SQLite and PostgreSQL; the emulator
drops every webhook until the test lets them through, so only the look-up brings the news.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ServedShop

from stripe_checkout_mw import CheckoutMiddleware, Order, StripeLookupKeys, Subscription
from stripe_checkout_mw.testing import StripeEmulator


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"members"]


def signed_in(environ: dict[str, Any]) -> str | None:
    user: str | None = environ.get("HTTP_X_TEST_USER")
    return user


class Shop(ServedShop):
    def __init__(self, emu: StripeEmulator, store: str) -> None:
        self.fulfilled: list[str] = []
        self.changes: list[Subscription] = []
        super().__init__(CheckoutMiddleware(
            app, secret_key=emu.secret_key, stripe_api_base=emu.api_base,
            domain_url="https://shop.example.com", price_lookup=StripeLookupKeys(),
            webhook_secret=emu.webhook_secret, store=store, customer_ref=signed_in,
            fulfill=self.fulfill, subscription_changed=self.changes.append))

    def fulfill(self, order: Order) -> None:
        self.fulfilled.append(order.session_id)

    def paid_session(self, emu: StripeEmulator, user: str, price: str) -> str:
        response = self.http.post(f"{self.url}/create-checkout-session", json={
            "line_items": [{"price": price, "quantity": 1}]},
            headers={"X-Test-User": user}, timeout=10)
        assert response.status_code == 200, response.text
        session_id = str(response.json()["sessionId"])
        emu.pay(session_id)
        return session_id


@pytest.fixture
def emu() -> Iterator[StripeEmulator]:
    with StripeEmulator() as emulator:
        emulator.add_price(1500, lookup_key="pro", recurring={"interval": "month"})
        emulator.add_price(2000, lookup_key="tee")
        yield emulator


@pytest.fixture
def served(emu: StripeEmulator, store_url: str) -> Iterator[Shop]:
    server = Shop(emu, store_url)
    emu.webhook_url = f"{server.url}/stripe-webhook"
    emu.drop_webhooks()
    yield server
    server.close()


def stripe_calls(emu: StripeEmulator, since: int) -> list[str]:
    return [f"{r.method} {r.path}" for r in emu.requests[since:]]


def test_the_first_look_up_after_paying_makes_the_user_active_without_a_webhook(
        emu: StripeEmulator, served: Shop) -> None:
    subscriptions = served.middleware.subscriptions
    customers = served.middleware.customers
    assert subscriptions is not None and customers is not None
    session_id = served.paid_session(emu, "ann", "pro")
    assert not subscriptions.is_active("ann")

    before = len(emu.requests)
    assert served.status(session_id)["status"] == "paid"
    subscription_id = emu.session(session_id)["subscription"]
    assert stripe_calls(emu, before) == [f"GET /v1/checkout/sessions/{session_id}",
                                         f"GET /v1/subscriptions/{subscription_id}"]
    assert subscriptions.is_active("ann") and subscriptions.is_active("ann", price="pro")
    assert customers.stripe_id("ann") == emu.session(session_id)["customer"]
    assert [(s.id, s.status, s.customer_ref) for s in served.changes] == [
        (subscription_id, "active", "ann")]
    assert served.fulfilled == [session_id]
    assert emu.deliveries == []  # nothing came by webhook

    # The webhooks arrive later, twice: nothing changes, nothing runs again.
    emu.drop_webhooks(False)
    for event in emu.events:
        emu.redeliver(event["id"])
        emu.redeliver(event["id"])
    emu.wait_for_deliveries(10)
    assert [d for d in emu.deliveries if d.status != 200] == []
    assert subscriptions.is_active("ann")
    assert len(served.changes) == 1 and served.fulfilled == [session_id]


def test_a_payment_mode_look_up_asks_nothing_more(emu: StripeEmulator, served: Shop) -> None:
    session_id = served.paid_session(emu, "bob", "tee")
    before = len(emu.requests)
    assert served.status(session_id)["status"] == "paid"
    assert stripe_calls(emu, before) == [f"GET /v1/checkout/sessions/{session_id}"]
    assert served.middleware.subscriptions is not None
    assert not served.middleware.subscriptions.is_active("bob")


def test_a_subscription_stripe_cannot_give_now_leaves_the_order_paid(
        emu: StripeEmulator, served: Shop) -> None:
    session_id = served.paid_session(emu, "cid", "pro")
    emu.fail_next(500, path="/v1/subscriptions", times=3)
    assert served.status(session_id)["status"] == "paid"
    assert served.fulfilled == [session_id]
    assert served.middleware.subscriptions is not None
    assert not served.middleware.subscriptions.is_active("cid")
    # The webhook brings it.
    emu.drop_webhooks(False)
    for event in emu.events:
        emu.redeliver(event["id"])
    emu.wait_for_deliveries(10)
    assert served.middleware.subscriptions.is_active("cid")
