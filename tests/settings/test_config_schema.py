"""The middleware's configuration judged by Stripe's schema: at construction, and per
request for what only a request decides (a ``session_options`` callable, the cart)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import webtest

from stripe_checkout_mw import Catalog, CheckoutMiddleware, OptionError, schema
from stripe_checkout_mw.testing import RecordedRequest, StripeEmulator

DOMAIN = "https://shop.example.com"
CATALOG: dict[str, dict[str, Any]] = {
    "tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"},
    "club": {"name": "Club", "unit_amount": 500, "currency": "usd",
             "recurring": {"interval": "month"}},
}


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"shop"]


def _construct(**options: Any) -> CheckoutMiddleware:
    settings: dict[str, Any] = {"secret_key": "sk_test_config", "domain_url": DOMAIN,
                                "price_lookup": Catalog(CATALOG)}
    settings.update(options)
    return CheckoutMiddleware(_app, **settings)


def _refused(**options: Any) -> str:
    with pytest.raises(OptionError) as info:
        _construct(**options).close()
    return str(info.value)


# --- session_options, for every mode the middleware can produce --------------------------


@pytest.mark.parametrize(
    ("options", "mode", "param", "refused_in"),
    [
        pytest.param({"invoice_creation": {"enabled": True}}, None, "invoice_creation",
                     "subscription", id="invoice_creation, automatic mode"),
        pytest.param({"payment_intent_data": {"description": "x"}}, None,
                     "payment_intent_data", "subscription", id="payment_intent_data"),
        pytest.param({"customer_creation": "always"}, None, "customer_creation",
                     "subscription", id="customer_creation"),
        pytest.param({"payment_method_collection": "if_required"}, None,
                     "payment_method_collection", "payment", id="payment_method_collection"),
        pytest.param({"customer_creation": "always"}, "subscription", "customer_creation",
                     "subscription", id="customer_creation, subscription mode"),
        pytest.param({"locale": "english"}, "payment", "locale", "payment", id="locale"),
        pytest.param({"submit_type": "buy"}, "payment", "submit_type", "payment",
                     id="submit_type"),
        pytest.param({"billing_address_collection": "always"}, None,
                     "billing_address_collection", "payment", id="billing_address"),
        pytest.param({"subscription_data": {"trial_days": 3}}, "subscription",
                     "subscription_data[trial_days]", "subscription", id="unknown nested key"),
        pytest.param({"custom_fields": [{"key": f"k{i}", "type": "text", "label": {
            "type": "custom", "custom": "Label"}} for i in range(4)]}, "payment",
            "custom_fields", "payment", id="4 custom_fields"),
        pytest.param({"customer_update": {"name": "auto"}}, "payment", "customer_update",
                     "payment", id="customer_update without customer"),
    ],
)
def test_a_session_option_stripe_refuses_is_refused_at_construction(
    options: dict[str, Any], mode: str | None, param: str, refused_in: str
) -> None:
    message = _refused(session_options=options, mode=mode)
    assert message.startswith("session_options: ")
    assert f"{param} is refused by Stripe in {refused_in} mode" in message


@pytest.mark.parametrize(
    ("options", "mode"),
    [
        pytest.param({"invoice_creation": {"enabled": True},
                      "payment_intent_data": {"description": "x"},
                      "customer_creation": "always"}, "payment", id="payment-only in payment"),
        pytest.param({"payment_method_collection": "if_required",
                      "subscription_data": {"trial_period_days": 7}}, "subscription",
                     id="subscription-only in subscription"),
        pytest.param({"locale": "fr", "submit_type": "pay", "allow_promotion_codes": True,
                      "billing_address_collection": "required"}, None, id="both modes"),
        pytest.param({"ui_mode": "hosted_page"}, None, id="ui_mode hosted_page"),
        pytest.param({"custom_fields": [{"key": "gift", "type": "text", "label": {
            "type": "custom", "custom": "Gift note"}}] * 3}, None, id="3 custom_fields"),
        pytest.param({"customer": "cus_123", "customer_update": {"name": "auto"}}, None,
                     id="customer_update with customer"),
    ],
)
def test_the_valid_variants_are_accepted(options: dict[str, Any], mode: str | None) -> None:
    _construct(session_options=options, mode=mode).close()


def test_ui_mode_other_than_the_hosted_page_stays_reserved() -> None:
    assert "ui_mode" in _refused(session_options={"ui_mode": "embedded_page"})


# --- allowed_countries ------------------------------------------------------------------


def test_the_238_countries_stripe_ships_to_are_accepted() -> None:
    countries = schema.node_at(
        "checkout.sessions.create", ("shipping_address_collection", "allowed_countries", "[]"))
    assert isinstance(countries, schema.EnumNode)
    assert len(countries.values) == 238
    _construct(allowed_countries=list(countries.values)).close()
    _construct(allowed_countries=" ".join(countries.values)).close()


@pytest.mark.parametrize("country", ["CU", "IR", "KP", "SY", "VI", "AS", "XX", "gb"])
def test_a_country_stripe_does_not_ship_to_is_refused(country: str) -> None:
    message = _refused(allowed_countries=["GB", country])
    assert message.startswith("allowed_countries: ")
    assert repr(country) in message


# --- catalog entries ---------------------------------------------------------------------


def test_a_catalog_interval_beyond_three_years_is_refused() -> None:
    entry = {"name": "Club", "unit_amount": 500, "currency": "usd"}
    Catalog({"club": {**entry, "recurring": {"interval": "month", "interval_count": 36}}})
    with pytest.raises(ValueError, match=r"'club': recurring\.interval_count"):
        Catalog({"club": {**entry, "recurring": {"interval": "month", "interval_count": 37}}})


# --- per request, through the emulator ---------------------------------------------------

Build = Callable[..., webtest.TestApp]


@pytest.fixture
def build(stripe_emulator: StripeEmulator) -> Iterator[Build]:
    made: list[CheckoutMiddleware] = []

    def make(**options: Any) -> webtest.TestApp:
        settings: dict[str, Any] = {"secret_key": stripe_emulator.secret_key,
                                    "stripe_api_base": stripe_emulator.api_base,
                                    "domain_url": DOMAIN, "price_lookup": Catalog(CATALOG)}
        settings.update(options)
        middleware = CheckoutMiddleware(_app, **settings)
        made.append(middleware)
        return webtest.TestApp(middleware)

    yield make
    for middleware in made:
        middleware.close()


def _creates(emu: StripeEmulator) -> list[RecordedRequest]:
    return [r for r in emu.requests if r.method == "POST" and r.path == "/v1/checkout/sessions"]


def _order(*keys: str, email: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"line_items": [{"price": key, "quantity": 1} for key in keys]}
    if email:
        body["customer_email"] = email
    return body


def test_a_callable_s_invalid_result_is_a_500_naming_the_parameter_in_the_log(
    build: Build, stripe_emulator: StripeEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    app = build(session_options=lambda order: {"locale": "english"})
    with caplog.at_level(logging.ERROR, logger="stripe_checkout_mw"):
        answer = app.post_json("/create-checkout-session", _order("tee"), status=500)
    assert answer.json["error"]["message"] == "The shop's checkout is misconfigured."
    assert "english" not in answer.text and "locale" not in answer.text
    assert any("locale" in record.getMessage() for record in caplog.records)
    assert _creates(stripe_emulator) == []
    # The same callable with a mode-dependent option: fine for a one-time cart only.
    app = build(session_options=lambda order: {"invoice_creation": {"enabled": True}})
    app.post_json("/create-checkout-session", _order("tee"), status=200)
    app.post_json("/create-checkout-session", _order("club"), status=500)
    assert len(_creates(stripe_emulator)) == 1


def test_subscription_carts_take_20_recurring_plus_20_one_time(
    build: Build, stripe_emulator: StripeEmulator
) -> None:
    catalog = {**{f"plan{i}": {"name": f"Plan {i}", "unit_amount": 100, "currency": "usd",
                               "recurring": {"interval": "month"}} for i in range(21)},
               **{f"item{i}": {"name": f"Item {i}", "unit_amount": 100, "currency": "usd"}
                  for i in range(21)}}
    plans = [f"plan{i}" for i in range(20)]
    items = [f"item{i}" for i in range(20)]
    for mode in ("subscription", None):
        app = build(price_lookup=Catalog(catalog), mode=mode)
        app.post_json("/create-checkout-session", _order(*plans, *items), status=200)
        before = len(_creates(stripe_emulator))
        answer = app.post_json("/create-checkout-session",
                               _order(*plans, "plan20", *items[:19]), status=400)
        assert answer.json["error"]["param"] == "line_items[20]"
        answer = app.post_json("/create-checkout-session",
                               _order("plan0", *items, "item20"), status=400)
        assert answer.json["error"]["param"] == "line_items[21]"
        assert "one-time" in answer.json["error"]["message"]
        assert len(_creates(stripe_emulator)) == before  # refused before Stripe


def test_a_catalog_price_id_is_resolved_once_and_decides_mode_and_currency(
    build: Build, stripe_emulator: StripeEmulator
) -> None:
    monthly = stripe_emulator.add_price(900, currency="usd", recurring={"interval": "month"})
    euro = stripe_emulator.add_price(700, currency="eur")
    catalog = {**CATALOG, "plan": {"price": monthly["id"]}, "book": {"price": euro["id"]}}
    app = build(price_lookup=Catalog(catalog))
    for _ in range(2):
        app.post_json("/create-checkout-session", _order("plan"), status=200)
        assert _creates(stripe_emulator)[-1].params["mode"] == "subscription"
    lookups = [r for r in stripe_emulator.requests if r.path == f"/v1/prices/{monthly['id']}"]
    assert len(lookups) == 1
    answer = app.post_json("/create-checkout-session", _order("book", "tee"), status=400)
    assert answer.json["error"]["param"] == "line_items"
    app = build(price_lookup=Catalog(catalog), mode="payment")
    app.post_json("/create-checkout-session", _order("plan"), status=400)


def test_the_shop_s_customer_wins_over_the_browser_s_email(
    build: Build, stripe_emulator: StripeEmulator
) -> None:
    customer = stripe_emulator.client().v1.customers.create(
        params={"email": "known@example.com"})
    app = build(session_options={"customer": customer.id})
    app.post_json("/create-checkout-session", _order("tee", email="buyer@example.com"),
                  status=200)
    sent = _creates(stripe_emulator)[-1].params
    assert sent["customer"] == customer.id
    assert "customer_email" not in sent
