"""The checkout path end to end: WebTest -> middleware -> real stripe SDK -> emulator."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any, Callable
from wsgiref.validate import validator

import pytest
import webtest

from stripe_checkout_mw import Catalog, CheckoutMiddleware, ClientPrices, StripeLookupKeys
from stripe_checkout_mw.marker import MARKER_KEY, shop_marker
from stripe_checkout_mw.testing import RecordedRequest, StripeEmulator

SEED_BODY = {
    "line_items": [{
        "quantity": 1,
        "price_data": {
            "currency": "aud",
            "unit_amount": 100,
            "product_data": {
                "name": "canva test 1",
                "description": "court canva designed production, stripe demo",
                "images": ["https://jr-bookinglet-2.s3.ap-southeast-2.amazonaws.com/github/canva.jpg"],
            },
        },
    }],
    "customer_email": "blhxp1@gmail.com",
}
CATALOG = {
    "tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"},
    "mug": {"name": "Mug", "unit_amount": 800, "currency": "usd", "description": "Blue"},
    "club": {"name": "Club", "unit_amount": 500, "currency": "usd",
             "recurring": {"interval": "month"}},
    "tea": {"name": "Tea", "unit_amount": 300, "currency": "gbp"},
}
DOMAIN = "https://shop.example.com"
BASIC = {"line_items": [{"price": "basic", "quantity": 1}]}
ONE_TEE = {"line_items": [{"price": "tee", "quantity": 1}]}


def shop(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the shop"]


Build = Callable[..., webtest.TestApp]


@pytest.fixture
def build(stripe_emulator: StripeEmulator) -> Iterator[Build]:
    """Wrap the shop (under wsgiref.validate on both sides) with options for the emulator."""
    made: list[CheckoutMiddleware] = []

    def make(**options: Any) -> webtest.TestApp:
        settings: dict[str, Any] = {
            "secret_key": stripe_emulator.secret_key,
            "stripe_api_base": stripe_emulator.api_base,
            "domain_url": DOMAIN,
            "price_lookup": Catalog(CATALOG),
        }
        settings.update(options)
        middleware = CheckoutMiddleware(validator(shop), **settings)
        made.append(middleware)
        return webtest.TestApp(validator(middleware))

    yield make
    for middleware in made:
        middleware.close()


def creates(emu: StripeEmulator) -> list[RecordedRequest]:
    return [r for r in emu.requests if r.method == "POST" and r.path == "/v1/checkout/sessions"]


def test_json_order_creates_a_session_priced_by_the_server(
    build: Build, stripe_emulator: StripeEmulator
) -> None:
    app = build()
    response = app.post_json("/create-checkout-session", {
        "line_items": [{"price": "tee", "quantity": 2}, {"price": "mug", "quantity": 1}],
        "customer_email": "ann@example.com",
    })
    assert response.status_int == 200
    assert response.json["sessionId"].startswith("cs_test_")
    assert response.json["url"] == stripe_emulator.session(response.json["sessionId"])["url"]
    sent = creates(stripe_emulator)[0].params
    assert sent["mode"] == "payment"
    assert sent["success_url"] == f"{DOMAIN}/success?session_id={{CHECKOUT_SESSION_ID}}"
    assert sent["cancel_url"] == f"{DOMAIN}/cancel"
    assert sent["customer_email"] == "ann@example.com"
    assert "payment_method_types" not in sent
    assert sent["line_items"][0] == {
        "price_data": {"currency": "usd", "unit_amount": "2000",
                       "product_data": {"name": "T-shirt"}},
        "quantity": "2",
    }
    assert sent["line_items"][1]["price_data"]["product_data"]["description"] == "Blue"
    assert stripe_emulator.session(response.json["sessionId"])["amount_total"] == 4800


def test_form_post_redirects_to_the_hosted_page(
    build: Build, stripe_emulator: StripeEmulator
) -> None:
    app = build()
    response = app.post("/create-checkout-session",
                        {"price": "tee", "quantity": "3", "customer_email": "bo@example.com"},
                        headers={"Origin": "https://shop.example.com:443"})
    assert response.status_int == 303
    session = stripe_emulator.sessions[0]
    assert response.headers["Location"] == session["url"]
    assert session["amount_total"] == 6000


def test_recurring_price_makes_a_subscription(
    build: Build, stripe_emulator: StripeEmulator
) -> None:
    build().post_json("/create-checkout-session",
                      {"line_items": [{"price": "club", "quantity": 1}]})
    assert creates(stripe_emulator)[0].params["mode"] == "subscription"


def test_seed_body_with_client_prices_and_required_email(
    build: Build, stripe_emulator: StripeEmulator
) -> None:
    app = build(price_lookup=ClientPrices(currencies=["aud"], max_unit_amount=10_000),
                require_email=True)
    response = app.post_json("/create-checkout-session", SEED_BODY)
    assert response.json["sessionId"].startswith("cs_test_")
    sent = creates(stripe_emulator)[0].params
    assert sent["line_items"][0]["price_data"]["product_data"]["name"] == "canva test 1"
    assert sent["customer_email"] == "blhxp1@gmail.com"
    missing_email = {"line_items": SEED_BODY["line_items"]}
    error = app.post_json("/create-checkout-session", missing_email, status=400).json["error"]
    assert error["param"] == "customer_email"


def test_seed_body_with_a_catalog_holding_that_product(
    build: Build, stripe_emulator: StripeEmulator
) -> None:
    catalog = Catalog({"canva": {"name": "canva test 1", "unit_amount": 100, "currency": "aud"}})
    app = build(price_lookup=catalog, require_email=True)
    assert app.post_json("/create-checkout-session", SEED_BODY).status_int == 200
    sent = creates(stripe_emulator)[0].params["line_items"][0]["price_data"]
    # The catalog's data is what Stripe gets, not the browser's description or images.
    assert sent == {"currency": "aud", "unit_amount": "100",
                    "product_data": {"name": "canva test 1"}}


@pytest.mark.parametrize(
    ("item", "param"),
    [
        pytest.param({"price": "yacht", "quantity": 1}, "line_items[0][price]", id="unknown-key"),
        pytest.param({"price": "price_123", "quantity": 1}, "line_items[0][price]",
                     id="raw-stripe-price-id"),
        pytest.param({"price_data": {"currency": "usd", "unit_amount": 1,
                                     "product_data": {"name": "T-shirt"}}, "quantity": 1},
                     "line_items[0][price_data]", id="forged-amount"),
        pytest.param({"price_data": {"currency": "eur", "unit_amount": 2000,
                                     "product_data": {"name": "T-shirt"}}, "quantity": 1},
                     "line_items[0][price_data]", id="forged-currency"),
        pytest.param({"price_data": {"currency": "usd", "unit_amount": 2000, "tax_behavior": "x",
                                     "product_data": {"name": "T-shirt"}}, "quantity": 1},
                     "line_items[0][price_data]", id="extra-field"),
    ],
)
def test_items_the_catalog_does_not_hold_are_refused_without_calling_stripe(
    build: Build, stripe_emulator: StripeEmulator, item: dict[str, Any], param: str
) -> None:
    error = build().post_json("/create-checkout-session", {"line_items": [item]},
                              status=400).json["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert stripe_emulator.requests == []


def test_mixed_currencies_and_subscription_in_payment_mode_are_refused(
    build: Build, stripe_emulator: StripeEmulator
) -> None:
    app = build()
    mixed = {"line_items": [{"price": "tee", "quantity": 1}, {"price": "tea", "quantity": 1}]}
    app.post_json("/create-checkout-session", mixed, status=400)
    build(mode="payment").post_json("/create-checkout-session",
                                    {"line_items": [{"price": "club", "quantity": 1}]}, status=400)
    assert stripe_emulator.requests == []


def test_client_prices_bounds(build: Build, stripe_emulator: StripeEmulator) -> None:
    app = build(price_lookup=ClientPrices(currencies=["aud"], max_unit_amount=500))
    too_dear = json.loads(json.dumps(SEED_BODY))
    too_dear["line_items"][0]["price_data"]["unit_amount"] = 501
    assert app.post_json("/create-checkout-session", too_dear, status=400).json["error"][
        "param"] == "line_items[0][price_data][unit_amount]"
    other_currency = json.loads(json.dumps(SEED_BODY))
    other_currency["line_items"][0]["price_data"]["currency"] = "usd"
    app.post_json("/create-checkout-session", other_currency, status=400)
    assert stripe_emulator.requests == []


def test_lookup_keys_are_loaded_once_and_unknown_keys_cost_no_call(
    build: Build, stripe_emulator: StripeEmulator
) -> None:
    basic = stripe_emulator.add_price(unit_amount=1500, currency="usd", lookup_key="basic")
    stripe_emulator.add_price(unit_amount=900, currency="usd", lookup_key="monthly",
                              recurring={"interval": "month"})
    lookup = StripeLookupKeys(ttl=300)
    app = build(price_lookup=lookup)
    for _ in range(5):
        app.post_json("/create-checkout-session", BASIC)
    for i in range(20):
        app.post_json("/create-checkout-session",
                      {"line_items": [{"price": f"nope-{i}", "quantity": 1}]}, status=400)
    price_calls = [r for r in stripe_emulator.requests if r.path == "/v1/prices"]
    assert lookup.lookups == len(price_calls) == 1  # one page holds both prices
    assert creates(stripe_emulator)[0].params["line_items"][0] == {"price": basic["id"],
                                                                  "quantity": "1"}
    app.post_json("/create-checkout-session", {"line_items": [{"price": "monthly", "quantity": 1}]})
    assert creates(stripe_emulator)[-1].params["mode"] == "subscription"


@pytest.mark.parametrize(
    "options",
    [{"ttl": 0}, {"ttl": -1}, {"ttl": float("nan")}, {"ttl": True}, {"ttl": "300"},
     {"retry_after": -1}, {"retry_after": float("inf")}],
)
def test_lookup_keys_refuse_bad_timings(options: dict[str, Any]) -> None:
    name = next(iter(options))
    with pytest.raises(ValueError, match=f"StripeLookupKeys\\({name}="):
        StripeLookupKeys(**options)


def test_lookup_keys_are_listed_page_by_page(
    build: Build, stripe_emulator: StripeEmulator
) -> None:
    for i in range(230):
        stripe_emulator.add_price(unit_amount=100 + i, currency="usd", lookup_key=f"k{i}")
    stripe_emulator.add_price(unit_amount=5, currency="usd")  # no lookup key: not for sale
    lookup = StripeLookupKeys(ttl=300)
    app = build(price_lookup=lookup)
    for key in ("k0", "k229", "k117"):
        app.post_json("/create-checkout-session", {"line_items": [{"price": key, "quantity": 1}]})
    assert lookup.lookups == 3  # 231 active prices, 100 a page
    listed = [r for r in stripe_emulator.requests if r.path == "/v1/prices"]
    assert [r.params.get("starting_after") is None for r in listed] == [True, False, False]
    assert all(r.params["active"] == "true" and r.params["limit"] == "100" for r in listed)


def test_lookup_keys_refresh_in_the_background_from_the_last_good_copy(
    build: Build, stripe_emulator: StripeEmulator
) -> None:
    stripe_emulator.add_price(unit_amount=1500, currency="usd", lookup_key="basic")
    lookup = StripeLookupKeys(ttl=0.2)
    app = build(price_lookup=lookup)
    app.post_json("/create-checkout-session", BASIC)
    stripe_emulator.add_price(unit_amount=700, currency="usd", lookup_key="new")
    time.sleep(0.25)
    # The refresh is due: it starts in the background and hangs; the request that
    # started it, and the ones after it, are served from the last good copy at once.
    stripe_emulator.fail_next(status=None, delay=2.0, path="/v1/prices")
    started = time.monotonic()
    for _ in range(5):
        app.post_json("/create-checkout-session", BASIC)
        app.post_json("/create-checkout-session",
                      {"line_items": [{"price": "new", "quantity": 1}]}, status=400)
    assert time.monotonic() - started < 1.5
    assert lookup.lookups == 2  # the first load and one refresh in flight (single flight)
    deadline = time.monotonic() + 15
    while app.post_json("/create-checkout-session", {"line_items": [{"price": "new",
                        "quantity": 1}]}, expect_errors=True).status_int != 200:
        assert time.monotonic() < deadline, "the refreshed copy never arrived"
        time.sleep(0.1)


def test_retry_after_a_500_reuses_one_idempotency_key(
    build: Build, stripe_emulator: StripeEmulator
) -> None:
    stripe_emulator.fail_next(500, path="/v1/checkout/sessions")
    response = build().post_json("/create-checkout-session",
                                 ONE_TEE)
    attempts = creates(stripe_emulator)
    assert len(attempts) == 2
    assert attempts[0].idempotency_key == attempts[1].idempotency_key is not None
    assert [s["id"] for s in stripe_emulator.sessions] == [response.json["sessionId"]]


def test_the_requests_idempotency_key_makes_a_repeat_return_the_same_session(
    build: Build, stripe_emulator: StripeEmulator
) -> None:
    app = build()
    body = ONE_TEE
    first = app.post_json("/create-checkout-session", body, headers={"Idempotency-Key": "cart-42"})
    again = app.post_json("/create-checkout-session", body, headers={"Idempotency-Key": "cart-42"})
    assert first.json == again.json
    assert len(stripe_emulator.sessions) == 1
    # The same key with another cart is another order: a new session, not a 400.
    other = {"line_items": [{"price": "tee", "quantity": 2}]}
    changed = app.post_json("/create-checkout-session", other,
                            headers={"Idempotency-Key": "cart-42"})
    assert changed.json["sessionId"] != first.json["sessionId"]
    assert stripe_emulator.session(changed.json["sessionId"])["amount_total"] == 4000
    # Stripe never sees the browser's key itself, only one scoped to the order.
    keys = [r.idempotency_key for r in creates(stripe_emulator)]
    assert "cart-42" not in keys and len(set(keys)) == 2
    for bad in ["x" * 256, "caf\u00e9", "tab\there"]:
        app.post_json("/create-checkout-session", body, headers={"Idempotency-Key": bad},
                      status=400)


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [
        pytest.param({"status": 500, "times": 10}, 502, "api_error", id="500-for-ever"),
        pytest.param({"status": 502, "times": 10, "body": "<html><h1>502 Bad Gateway</h1></html>",
                      "headers": {"Content-Type": "text/html"}}, 502, "api_error", id="html-502"),
        pytest.param({"status": 200, "body": "{not json"}, 502, "api_error", id="malformed-json"),
        pytest.param({"status": 429, "times": 10}, 503, "api_error", id="rate-limited"),
        pytest.param({"status": 401}, 500, "api_error", id="bad-key"),
        pytest.param({"status": 400, "body": {"error": {
            "type": "invalid_request_error", "message": "internal detail sk_test_zzz",
            "param": "line_items[0][price]"}}}, 400, "invalid_request_error", id="rejected"),
    ],
)
def test_stripe_failures_become_safe_errors(
    build: Build, stripe_emulator: StripeEmulator, fault: dict[str, Any], status: int,
    error_type: str, caplog: pytest.LogCaptureFixture,
) -> None:
    stripe_emulator.fail_next(**fault)
    app = build(max_network_retries=1)
    with caplog.at_level(logging.DEBUG, logger="stripe_checkout_mw"):
        response = app.post_json("/create-checkout-session",
                                 ONE_TEE, status=status)
    error = response.json["error"]
    assert error["type"] == error_type
    assert set(response.json) == {"error"} and set(error) == {"type", "message", "param"}
    for secret in (stripe_emulator.secret_key, "sk_test_zzz", "internal detail", "Traceback"):
        assert secret not in response.text
        assert secret not in caplog.text
    if status == 503:
        assert response.headers["Retry-After"].isdigit()


def test_429_retried_when_stripe_says_so(build: Build, stripe_emulator: StripeEmulator) -> None:
    stripe_emulator.fail_next(429, headers={"Stripe-Should-Retry": "true"})
    assert build().post_json("/create-checkout-session",
                             ONE_TEE).status_int == 200
    assert len(creates(stripe_emulator)) == 2


def test_a_hanging_stripe_is_cut_off_by_the_timeout(
    build: Build, stripe_emulator: StripeEmulator
) -> None:
    stripe_emulator.fail_next(None, delay=3.0)
    app = build(timeout=0.3, max_network_retries=0)
    started = time.monotonic()
    app.post_json("/create-checkout-session", ONE_TEE,
                  status=502)
    assert time.monotonic() - started < 2.0


def test_connection_refused_is_a_502(build: Build) -> None:
    app = build(stripe_api_base="http://127.0.0.1:9", max_network_retries=0)
    app.post_json("/create-checkout-session", ONE_TEE,
                  status=502)


def test_shipping_countries_and_session_options(
    build: Build, stripe_emulator: StripeEmulator
) -> None:
    app = build(allowed_countries=["GB", "US"],
                session_options=lambda order: {"metadata": {"items": str(len(order["line_items"]))},
                                               "allow_promotion_codes": True})
    app.post_json("/create-checkout-session", ONE_TEE)
    sent = creates(stripe_emulator)[0].params
    assert sent["shipping_address_collection"] == {"allowed_countries": ["GB", "US"]}
    # The shop's own metadata, and the marker that lets the webhook recognise the session.
    marker = shop_marker(f"{DOMAIN}/success?session_id={{CHECKOUT_SESSION_ID}}")
    assert sent["metadata"] == {"items": "1", MARKER_KEY: marker}
    assert sent["allow_promotion_codes"] == "true"


def test_session_options_callable_cannot_override_urls(
    build: Build, stripe_emulator: StripeEmulator
) -> None:
    app = build(session_options=lambda order: {"success_url": "https://evil.example/"})
    app.post_json("/create-checkout-session", ONE_TEE,
                  status=500)
    assert stripe_emulator.requests == []


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        pytest.param({"method": "GET"}, 405, id="get"),
        pytest.param({"method": "PUT"}, 405, id="put"),
        pytest.param({"content_type": "text/plain"}, 415, id="text-plain"),
        pytest.param({"content_type": "multipart/form-data; boundary=x"}, 415, id="multipart"),
        pytest.param({"body": b"{"}, 400, id="malformed-json"),
        pytest.param({"body": b"[]"}, 400, id="json-array"),
        pytest.param({"body": b"x" * 70_000}, 413, id="too-large"),
    ],
)
def test_request_errors(
    build: Build, stripe_emulator: StripeEmulator, kwargs: dict[str, Any], status: int
) -> None:
    method = kwargs.get("method", "POST")
    body = kwargs.get("body", json.dumps(ONE_TEE).encode())
    app = build()
    response = app.request("/create-checkout-session", method=method,
                           body=body if method != "GET" else b"",
                           content_type=kwargs.get("content_type", "application/json"),
                           status=status, expect_errors=True)
    assert set(response.json["error"]) == {"type", "message", "param"}
    if status == 405:
        assert response.headers["Allow"] == "POST, OPTIONS"
    assert stripe_emulator.requests == []


def test_cors_only_for_configured_origins(build: Build) -> None:
    app = build(allowed_origins=["https://front.example"])
    body = ONE_TEE
    allowed = app.post_json("/create-checkout-session", body,
                            headers={"Origin": "https://front.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://front.example"
    preflight = app.options("/create-checkout-session",
                            headers={"Origin": "https://front.example",
                                     "Access-Control-Request-Method": "POST"})
    assert preflight.status_int == 204
    assert "Idempotency-Key" in preflight.headers["Access-Control-Allow-Headers"]
    foreign = app.options("/create-checkout-session", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in foreign.headers


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://evil.example"}, {"Referer": "https://evil.example/page"},
     {"Origin": "null"}],
    ids=["origin", "referer", "null-origin"],
)
def test_cross_site_posts_are_refused(
    build: Build, stripe_emulator: StripeEmulator, headers: dict[str, str]
) -> None:
    app = build()
    app.post("/create-checkout-session", {"price": "tee"}, headers=headers, status=403)
    app.post_json("/create-checkout-session", ONE_TEE,
                  headers=headers, status=403)
    assert stripe_emulator.requests == []


def test_same_origin_and_allowed_origin_posts_pass(build: Build) -> None:
    app = build(allowed_origins=["https://front.example"])
    app.post("/create-checkout-session", {"price": "tee"},
             headers={"Referer": f"{DOMAIN}/shop"}, status=303)
    app.post("/create-checkout-session", {"price": "tee"},
             headers={"Origin": "https://front.example"}, status=303)


def test_the_secret_key_never_reaches_a_response(
    build: Build, stripe_emulator: StripeEmulator
) -> None:
    app = build()
    bodies = [
        app.post_json("/create-checkout-session", ONE_TEE),
        app.post_json("/create-checkout-session", {"line_items": []}, status=400),
        app.post("/create-checkout-session", b"{", content_type="application/json", status=400),
        app.get("/create-checkout-session", status=405),
    ]
    stripe_emulator.fail_next(401)
    bodies.append(app.post_json("/create-checkout-session",
                                ONE_TEE, status=500))
    for response in bodies:
        assert stripe_emulator.secret_key not in response.text
        assert stripe_emulator.secret_key not in str(response.headers)


def test_null_origin_is_refused_even_when_the_host_is_unparsable(
    build: Build, stripe_emulator: StripeEmulator
) -> None:
    app = build()
    app.post_json("/create-checkout-session", ONE_TEE, status=403,
                  headers={"Origin": "null"}, extra_environ={"HTTP_HOST": "["})
    assert stripe_emulator.requests == []
