"""``POST {path}/subscription``: the shop's page previews and makes plan changes.

The middleware runs on a real server on 127.0.0.1 with a store on SQLite and PostgreSQL;
the emulator sells the subscription over real HTTP, charges or declines the card and
delivers its signed events.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from conftest import ServedShop

from stripe_checkout_mw import CheckoutMiddleware, OptionError, StripeLookupKeys
from stripe_checkout_mw.testing import StripeEmulator

ORIGIN = "https://shop.example.com"
PATH = "/create-checkout-session/subscription"


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the app: " + environ["PATH_INFO"].encode()]


def signed_in(environ: dict[str, Any]) -> str | None:
    user: str | None = environ.get("HTTP_X_TEST_USER")
    return user


def options(emu: StripeEmulator, store: str) -> dict[str, Any]:
    return dict(secret_key=emu.secret_key, stripe_api_base=emu.api_base, domain_url=ORIGIN,
                price_lookup=StripeLookupKeys(), webhook_secret=emu.webhook_secret,
                store=store, customer_ref=signed_in)


class Shop(ServedShop):
    def __init__(self, emu: StripeEmulator, store: str, **more: Any) -> None:
        super().__init__(CheckoutMiddleware(app, **{**options(emu, store), **more}))
        emu.webhook_url = f"{self.url}/stripe-webhook"

    def post(self, user: str | None, body: Any, **headers: str) -> requests.Response:
        if user is not None:
            headers["X-Test-User"] = user
        return self.http.post(f"{self.url}{PATH}", json=body, headers=headers, timeout=10)

    def subscribe(self, emu: StripeEmulator, user: str, price: str) -> dict[str, Any]:
        response = self.http.post(f"{self.url}/create-checkout-session", json={
            "line_items": [{"price": price, "quantity": 1}]},
            headers={"X-Test-User": user}, timeout=10)
        assert response.status_code == 200, response.text
        session = emu.pay(response.json()["sessionId"])
        emu.wait_for_deliveries(10)
        return session


@pytest.fixture
def emu() -> Iterator[StripeEmulator]:
    with StripeEmulator(hosted_page_webhook_wait=5) as emulator:
        emulator.add_price(2000, lookup_key="pro", recurring={"interval": "month"})
        emulator.add_price(900, lookup_key="basic", recurring={"interval": "month"})
        yield emulator


@pytest.fixture
def shop(emu: StripeEmulator, store_url: str) -> Iterator[Shop]:
    served = Shop(emu, store_url, subscription_endpoint=True)
    yield served
    served.close()


def test_preview_then_change_from_the_shops_page(emu: StripeEmulator, shop: Shop) -> None:
    session = shop.subscribe(emu, "ann", "basic")
    preview = shop.post("ann", {"action": "preview", "price": "pro"}, Origin=ORIGIN)
    assert preview.status_code == 200, preview.text
    shown = preview.json()["preview"]
    assert shown["subscription"] == session["subscription"] and shown["quantity"] == 1
    assert shown["amount_due_now"] > 0 and shown["next_invoice_total"] == 2000
    changed = shop.post("ann", {"action": "change", "price": "pro",
                                "proration_date": shown["proration_date"]}, Origin=ORIGIN)
    assert changed.status_code == 200, changed.text
    answer = changed.json()
    assert answer["amount_paid"] == shown["amount_due_now"]
    assert [i["lookup_key"] for i in answer["subscription"]["items"]] == ["pro"]
    assert shop.middleware.subscriptions is not None
    assert shop.middleware.subscriptions.is_active("ann", price="pro")


def test_a_declined_upgrade_is_402_with_the_invoice_page_and_the_old_plan(
        emu: StripeEmulator, shop: Shop) -> None:
    session = shop.subscribe(emu, "bob", "basic")
    emu.attach_card(session["customer"], "pm_card_chargeCustomerFail")
    refused = shop.post("bob", {"action": "change", "price": "pro"})
    assert refused.status_code == 402
    error = refused.json()["error"]
    assert error["type"] == "card_error" and "plan is unchanged" in error["message"]
    assert error["hosted_invoice_url"].startswith(emu.api_base)
    assert shop.middleware.subscriptions is not None
    assert shop.middleware.subscriptions.is_active("bob", price="basic")
    assert not shop.middleware.subscriptions.is_active("bob", price="pro")


def test_refusals_change_nothing(emu: StripeEmulator, shop: Shop) -> None:
    ann = shop.subscribe(emu, "ann", "basic")
    shop.subscribe(emu, "bob", "basic")
    calls = len(emu.requests)
    cases: list[tuple[str | None, Any, dict[str, str], int]] = [
        (None, {"action": "preview", "price": "pro"}, {}, 401),
        ("bob", {"action": "change", "price": "pro"}, {"Origin": "https://evil.example"}, 403),
        ("bob", {"action": "change", "price": "pro", "subscription": ann["subscription"]},
         {}, 404),
        ("bob", {"action": "refund"}, {}, 400),
        ("bob", {"action": "change", "price": "pro", "customer": "cus_x"}, {}, 400),
        ("bob", ["not", "an", "object"], {}, 400),
    ]
    for user, body, headers, status in cases:
        response = shop.post(user, body, **headers)
        assert response.status_code == status, (body, response.text)
        assert set(response.json()["error"]) >= {"type", "message"}
    assert len(emu.requests) == calls  # nothing reached Stripe
    form = shop.http.post(f"{shop.url}{PATH}", data={"action": "change"},
                          headers={"X-Test-User": "bob"}, timeout=10)
    assert form.status_code == 415
    assert shop.http.get(f"{shop.url}{PATH}", timeout=10).status_code == 405
    assert shop.middleware.subscriptions is not None
    assert [s.items[0].lookup_key for s in shop.middleware.subscriptions.for_customer("bob")] \
        == ["basic"]


def test_a_user_beyond_the_budget_gets_429(emu: StripeEmulator, shop: Shop) -> None:
    statuses = [shop.post("ann", {"action": "preview", "price": "pro"}).status_code
                for _ in range(8)]
    assert statuses[:5] == [404] * 5 and statuses[5:] == [429] * 3


def test_off_by_default_and_refused_without_a_user_or_a_store(
        emu: StripeEmulator, store_url: str, tmp_path: Any) -> None:
    plain = Shop(emu, store_url)
    try:
        # Not served: the request goes to the wrapped app.
        assert plain.post("ann", {"action": "preview"}).text == f"the app: {PATH}"
    finally:
        plain.close()
    no_user = {**options(emu, f"sqlite:///{tmp_path}/o.db"), "customer_ref": None}
    with pytest.raises(OptionError, match="subscription_endpoint"):
        CheckoutMiddleware(app, subscription_endpoint=True, **no_user)
