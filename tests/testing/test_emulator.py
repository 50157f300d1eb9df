"""The offline Stripe, driven by the real ``stripe`` SDK over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import requests
import stripe

from stripe_checkout_mw.testing import StripeEmulator, decode_form, sign_payload

SUCCESS = "http://shop.test/thanks?session_id={CHECKOUT_SESSION_ID}"
CANCEL = "http://shop.test/cart"


# -- helpers ---------------------------------------------------------------------------


class Receiver:
    """A webhook endpoint on 127.0.0.1 answering the queued statuses, then 200."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    outer.received.append((dict(self.headers.items()), body))
                    status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/webhook"

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(body) for _, body in self.received]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(threading.enumerate()) - before == set()


@pytest.fixture
def emu(stripe_emulator: StripeEmulator) -> StripeEmulator:
    return stripe_emulator


@pytest.fixture
def client(emu: StripeEmulator) -> stripe.StripeClient:
    return emu.client()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def create(client: Any, **params: Any) -> Any:
    params.setdefault("mode", "payment")
    params.setdefault("success_url", SUCCESS)
    params.setdefault("cancel_url", CANCEL)
    return client.v1.checkout.sessions.create(params=params)


def inline_item(amount: int = 500, currency: str = "usd", name: str = "Mug",
                quantity: int = 1) -> dict[str, Any]:
    return {"price_data": {"currency": currency, "unit_amount": amount,
                           "product_data": {"name": name}}, "quantity": quantity}


def error_of(exc: stripe.StripeError) -> Any:
    assert exc.error is not None
    return exc.error


def auth(emu: StripeEmulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {emu.secret_key}"}


# -- form decoding ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        pytest.param("a=1&b=true", {"a": "1", "b": "true"}, id="flat"),
        pytest.param("line_items[0][price_data][currency]=usd&line_items[0][quantity]=2"
                     "&line_items[1][price]=price_x",
                     {"line_items": [{"price_data": {"currency": "usd"}, "quantity": "2"},
                                     {"price": "price_x"}]}, id="nested-list"),
        pytest.param("lookup_keys[0]=a&lookup_keys[1]=b", {"lookup_keys": ["a", "b"]},
                     id="list"),
        pytest.param("lookup_keys[]=a&lookup_keys[]=b", {"lookup_keys": ["a", "b"]},
                     id="empty-brackets"),
        pytest.param("metadata[0]=x&metadata[k]=v", {"metadata": {"0": "x", "k": "v"}},
                     id="metadata-stays-a-dict"),
        pytest.param("metadata[order]=a%26b", {"metadata": {"order": "a&b"}}, id="escaped"),
    ],
)
def test_decode_form(form: str, expected: dict[str, Any]) -> None:
    assert decode_form(form) == expected


@pytest.mark.parametrize("form", ["a[b=1", "a=1&a[b]=2", "[x]=1"])
def test_decode_form_rejects_malformed_keys(form: str) -> None:
    with pytest.raises(ValueError, match="Invalid parameter"):
        decode_form(form)


# -- checkout sessions -----------------------------------------------------------------


def test_create_session_has_stripe_shape(emu: StripeEmulator,
                                         client: Any) -> None:
    price = emu.add_price(1500, "usd", lookup_key="basic", product_name="Basic plan")
    session = create(
        client,
        line_items=[{"price": price["id"], "quantity": 2}, inline_item(500)],
        customer_email="ada@example.com",
        client_reference_id="order-7",
        metadata={"order": "7"},
        shipping_address_collection={"allowed_countries": ["US", "CA"]},
        allow_promotion_codes=True,
        automatic_tax={"enabled": False},
        excluded_payment_method_types=["klarna"],
    )
    assert re.fullmatch(r"cs_test_[A-Za-z0-9]+", session.id)
    assert session.object == "checkout.session"
    assert session.url == f"{emu.api_base}/pay/{session.id}"
    assert session.status == "open"
    assert session.payment_status == "unpaid"
    assert session.amount_subtotal == session.amount_total == 3500
    assert session.currency == "usd"
    assert session.ui_mode == "hosted_page"
    assert session.livemode is False
    assert session.customer_email == "ada@example.com"
    assert session.client_reference_id == "order-7"
    assert session.metadata.to_dict() == {"order": "7"}
    assert session.shipping_address_collection.allowed_countries == ["US", "CA"]
    assert session.allow_promotion_codes is True
    assert session.payment_intent is None
    assert session.success_url == SUCCESS
    assert 24 * 3600 - 5 <= session.expires_at - session.created <= 24 * 3600
    # What went over the wire is recorded, decoded but not coerced.
    sent = emu.requests[-1]
    assert (sent.method, sent.path, sent.status) == ("POST", "/v1/checkout/sessions", 200)
    assert sent.params["line_items"][0] == {"price": price["id"], "quantity": "2"}
    assert sent.params["allow_promotion_codes"] == "true"
    assert sent.idempotency_key


def test_retrieve_list_and_line_items(emu: StripeEmulator,
                                      client: Any) -> None:
    first = create(client, line_items=[inline_item(500, name="Mug", quantity=3)])
    second = create(client, line_items=[inline_item(700, name="Tee")])

    got = client.v1.checkout.sessions.retrieve(first.id)
    assert got.id == first.id and got.amount_total == 1500
    expanded = client.v1.checkout.sessions.retrieve(first.id,
                                                    params={"expand": ["line_items"]})
    assert expanded.line_items.data[0].quantity == 3

    listed = client.v1.checkout.sessions.list(params={"limit": 1})
    assert listed.object == "list" and listed.has_more is True
    assert [s.id for s in listed.data] == [second.id]  # newest first
    assert len(client.v1.checkout.sessions.list().data) == 2

    items = client.v1.checkout.sessions.line_items.list(first.id)
    assert items.object == "list"
    assert items.url == f"/v1/checkout/sessions/{first.id}/line_items"
    assert items.has_more is False
    (item,) = items.data
    assert re.fullmatch(r"li_\w+", item.id)
    assert item.object == "item"
    assert (item.quantity, item.amount_subtotal, item.amount_total) == (3, 1500, 1500)
    assert item.description == "Mug" and item.currency == "usd"
    assert item.price.unit_amount == 500 and item.price.type == "one_time"

    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.checkout.sessions.retrieve("cs_test_nope")
    assert info.value.http_status == 404
    assert error_of(info.value).code == "resource_missing"


def test_expire_endpoint(emu: StripeEmulator, client: Any) -> None:
    session = create(client, line_items=[inline_item()])
    expired = client.v1.checkout.sessions.expire(session.id)
    assert expired.status == "expired" and expired.url is None
    event = client.v1.events.list().data[0]
    assert event.type == "checkout.session.expired"
    assert event.data.object.id == session.id
    (expire_call,) = [r for r in emu.requests if r.path.endswith("/expire")]
    assert event.request.id == expire_call.request_id
    assert event.request.idempotency_key == expire_call.idempotency_key
    with pytest.raises(stripe.InvalidRequestError, match="status of `open`"):
        client.v1.checkout.sessions.expire(session.id)


def test_sessions_expire_when_the_clock_passes_expires_at(
    emu: StripeEmulator, client: Any, receiver: Receiver
) -> None:
    emu.webhook_url = receiver.url
    session = create(client, line_items=[inline_item()],
                     expires_at=int(time.time()) + 3600)
    # The emulator's clock runs on with real time; a margin of minutes keeps a slow machine
    # from passing expires_at between the create and the first look.
    emu.advance_clock(3300)
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
    emu.advance_clock(301)
    assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"
    emu.wait_for_deliveries()
    assert [e["type"] for e in receiver.events()] == ["checkout.session.expired"]
    with pytest.raises(ValueError):
        emu.advance_clock(-1)


def test_get_endpoints_reject_unknown_params(emu: StripeEmulator) -> None:
    with requests.Session() as http:
        for path in ("/v1/prices?colour=red", "/v1/events?colour=red",
                     "/v1/checkout/sessions?colour=red"):
            answer = http.get(emu.api_base + path, headers=auth(emu))
            assert answer.status_code == 400, path
            assert answer.json()["error"]["param"] == "colour"


def test_subscription_session(emu: StripeEmulator, client: Any) -> None:
    monthly = emu.add_price(900, "eur", recurring={"interval": "month"})
    setup_fee = emu.add_price(2000, "eur")
    session = create(client, mode="subscription",
                     line_items=[{"price": monthly["id"], "quantity": 1},
                                 {"price": setup_fee["id"], "quantity": 1}],
                     subscription_data={"trial_period_days": 7})
    assert session.amount_total == 2900 and session.currency == "eur"
    paid = emu.pay(session.id)
    assert paid["status"] == "complete" and paid["payment_status"] == "paid"
    assert paid["subscription"].startswith("sub_")
    assert paid["customer"].startswith("cus_")
    assert paid["payment_intent"] is None


# -- prices and products ---------------------------------------------------------------


def test_prices_create_get_and_lookup(emu: StripeEmulator,
                                      client: Any) -> None:
    basic = client.v1.prices.create(params={
        "currency": "usd", "unit_amount": 1500, "lookup_key": "basic",
        "product_data": {"name": "Basic"}, "nickname": "Basic", "metadata": {"tier": "1"},
    })
    assert re.fullmatch(r"price_\w+", basic.id)
    assert (basic.object, basic.type, basic.active, basic.livemode) == (
        "price", "one_time", True, False)
    assert basic.recurring is None and basic.product.startswith("prod_")
    assert basic.unit_amount == 1500 and basic.nickname == "Basic"
    pro = emu.add_price(4900, "usd", lookup_key="pro", recurring={"interval": "month"})
    assert pro["type"] == "recurring" and pro["recurring"]["interval"] == "month"
    emu.add_price(100, "usd", lookup_key="old", active=False)

    assert client.v1.prices.retrieve(basic.id).lookup_key == "basic"
    found = client.v1.prices.list(params={"lookup_keys": ["basic", "pro", "old"],
                                          "active": True})
    assert sorted(p.lookup_key for p in found.data) == ["basic", "pro"]
    assert emu.requests[-1].params["lookup_keys"] == ["basic", "pro", "old"]

    with pytest.raises(stripe.InvalidRequestError, match="up to 10"):
        client.v1.prices.list(params={"lookup_keys": [f"k{i}" for i in range(11)]})
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.prices.create(params={"currency": "usd", "unit_amount": 1,
                                        "lookup_key": "basic",
                                        "product_data": {"name": "X"}})
    assert error_of(info.value).param == "lookup_key"
    moved = client.v1.prices.create(params={"currency": "usd", "unit_amount": 1600,
                                            "lookup_key": "basic",
                                            "transfer_lookup_key": True,
                                            "product": basic.product})
    assert client.v1.prices.list(params={"lookup_keys": ["basic"]}).data[0].id == moved.id
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.prices.retrieve("price_missing")
    assert info.value.http_status == 404


def test_products(client: Any) -> None:
    product = client.v1.products.create(params={"name": "T-shirt",
                                                "description": "Grey"})
    assert re.fullmatch(r"prod_\w+", product.id) and product.object == "product"
    assert client.v1.products.retrieve(product.id).name == "T-shirt"
    price = client.v1.prices.create(params={"currency": "usd", "unit_amount": 2000,
                                            "product": product.id})
    assert price.product == product.id
    with pytest.raises(stripe.InvalidRequestError, match="name"):
        client.v1.products.create(params={})
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.products.retrieve("prod_missing")
    assert info.value.http_status == 404


def test_events_list_and_retrieve(emu: StripeEmulator, client: Any) -> None:
    paid = create(client, line_items=[inline_item()])
    gone = create(client, line_items=[inline_item()])
    emu.pay(paid.id)
    emu.expire(gone.id)
    events = client.v1.events.list()
    assert [e.type for e in events.data] == ["checkout.session.expired",
                                            "checkout.session.completed"]
    only = client.v1.events.list(params={"type": "checkout.session.completed"})
    (event,) = only.data
    assert re.fullmatch(r"evt_\w+", event.id)
    assert event.object == "event" and event.livemode is False
    assert event.api_version == "2026-10-28.endive"
    assert event.pending_webhooks == 0
    assert event.data.object.id == paid.id
    assert event.data.object.payment_status == "paid"
    assert client.v1.events.retrieve(event.id).type == "checkout.session.completed"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.events.retrieve("evt_missing")


# -- rejections ------------------------------------------------------------------------


def _many(n: int) -> list[dict[str, Any]]:
    return [inline_item(100, name=f"item {i}") for i in range(n)]


@pytest.mark.parametrize(
    ("params", "param", "message"),
    [
        pytest.param({"foo": "bar", "line_items": _many(1)}, "foo", "unknown parameter",
                     id="unknown-top-level"),
        pytest.param({"payment_method_types": ["card"], "line_items": _many(1)},
                     "payment_method_types", "can no longer be sent", id="payment-method-types"),
        pytest.param({"line_items": [{**inline_item(), "colour": "red"}]},
                     "line_items[0][colour]", "unknown parameter", id="unknown-in-line-item"),
        pytest.param({"line_items": [{"price_data": {"currency": "usd", "unit_amount": 1,
                                                     "product_data": {"name": "x"},
                                                     "amount": 1}, "quantity": 1}]},
                     "line_items[0][price_data][amount]", "unknown parameter",
                     id="unknown-in-price-data"),
        pytest.param({"mode": "donation", "line_items": _many(1)}, "mode", "Invalid mode",
                     id="bad-mode"),
        pytest.param({}, "line_items", "required in payment mode", id="no-items-payment"),
        pytest.param({"mode": "subscription"}, "line_items", "required in subscription",
                     id="no-items-subscription"),
        pytest.param({"line_items": [{**inline_item(), "price": "price_x"}]},
                     "line_items[0][price_data]", "only specify one",
                     id="price-and-price-data"),
        pytest.param({"line_items": [{"quantity": 1}]}, "line_items[0][price]",
                     "One of price or price_data", id="neither-price"),
        pytest.param({"line_items": [inline_item(quantity=0)]}, "line_items[0][quantity]",
                     "greater than or equal to 1", id="quantity-zero"),
        pytest.param({"line_items": [{**inline_item(), "quantity": None}]},
                     "line_items[0][quantity]", "Missing required", id="quantity-missing"),
        pytest.param({"line_items": _many(101)}, "line_items[100]", "at most 100",
                     id="too-many-items"),
        pytest.param({"line_items": [{"price": "price_nope", "quantity": 1}]},
                     "line_items[0][price]", "No such price", id="unknown-price"),
        pytest.param({"line_items": [inline_item(currency="usd"),
                                     inline_item(currency="eur")]},
                     "line_items", "same currency", id="mixed-currencies"),
        pytest.param({"line_items": [{"price_data": {"currency": "usd", "unit_amount": 5,
                                                     "product_data": {"name": "x"},
                                                     "recurring": {"interval": "month"}},
                                      "quantity": 1}]},
                     "line_items[0][price_data][recurring]", "recurring price",
                     id="recurring-in-payment"),
        pytest.param({"mode": "subscription", "line_items": _many(1)}, "line_items",
                     "at least one recurring price", id="one-time-only-subscription"),
        pytest.param({"success_url": "/thanks", "line_items": _many(1)}, "success_url",
                     "Not a valid URL", id="relative-success-url"),
        pytest.param({"cancel_url": "shop.test/cart", "line_items": _many(1)}, "cancel_url",
                     "Not a valid URL", id="relative-cancel-url"),
        pytest.param({"ui_mode": "hosted", "line_items": _many(1)}, "ui_mode",
                     "hosted_page", id="old-ui-mode"),
        pytest.param({"customer": "cus_1", "customer_email": "a@b.c",
                      "line_items": _many(1)}, "customer_email", "only specify one",
                     id="customer-and-email"),
        pytest.param({"expires_at": int(time.time()) + 60, "line_items": _many(1)},
                     "expires_at", "30 minutes", id="expires-too-soon"),
        pytest.param({"metadata": {f"k{i}": "v" for i in range(51)},
                      "line_items": _many(1)}, "metadata", "50 keys",
                     id="metadata-too-many-keys"),
        pytest.param({"line_items": [{"price_data": {"currency": "usd",
                                                     "product_data": {"name": "x"}},
                                      "quantity": 1}]},
                     "line_items[0][price_data][unit_amount]", "Missing required",
                     id="price-data-without-amount"),
    ],
)
def test_create_session_rejections(client: Any, params: dict[str, Any],
                                   param: str, message: str) -> None:
    params = {"mode": "payment", "success_url": SUCCESS, **params}
    params = {k: v for k, v in params.items() if v is not None}
    if "line_items" in params:
        params["line_items"] = [{k: v for k, v in item.items() if v is not None}
                                for item in params["line_items"]]
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.checkout.sessions.create(params=params)
    assert info.value.http_status == 400
    assert error_of(info.value).type == "invalid_request_error"
    assert error_of(info.value).param == param
    assert message in str(info.value.user_message)


def test_subscription_mode_accepts_twenty_plus_twenty(emu: StripeEmulator,
                                                      client: Any) -> None:
    monthly = emu.add_price(100, recurring={"interval": "month"})
    items = [{"price": monthly["id"], "quantity": 1}] * 21
    with pytest.raises(stripe.InvalidRequestError, match="at most 20 line items with recurring"):
        create(client, mode="subscription", line_items=items)
    once = emu.add_price(50)
    one_time = [{"price": once["id"], "quantity": 1}] * 20
    session = create(client, mode="subscription", line_items=items[:20] + one_time)
    assert session.amount_total == 3000
    with pytest.raises(stripe.InvalidRequestError, match="with one-time prices") as info:
        create(client, mode="subscription", line_items=items[:1] + one_time * 2)
    assert error_of(info.value).param == "line_items[21]"


def test_authentication(emu: StripeEmulator) -> None:
    with requests.Session() as http:
        answer = http.get(f"{emu.api_base}/v1/prices")
        assert answer.status_code == 401
        assert answer.json()["error"]["type"] == "invalid_request_error"
        assert "did not provide an API key" in answer.json()["error"]["message"]
        basic = http.get(f"{emu.api_base}/v1/prices", auth=(emu.secret_key, ""))
        assert basic.status_code == 200
    for key in ("sk_live_abcdefghijklmnop", "pk_test_abcdefghijklmnop"):
        http_client: Any = stripe.RequestsClient()
        bad = stripe.StripeClient(key, base_addresses={"api": emu.api_base},
                                  http_client=http_client)
        try:
            with pytest.raises(stripe.AuthenticationError) as info:
                bad.v1.prices.list()
            assert info.value.http_status == 401
            assert error_of(info.value).type == "invalid_request_error"
            assert key not in str(info.value)  # the key is masked
        finally:
            http_client.close()
    other_test_key = emu.client(api_key="sk_test_some_other_key")
    assert other_test_key.v1.prices.list().data == []


def test_strict_key() -> None:
    with StripeEmulator(secret_key="sk_test_fixed", accept_any_test_key=False) as emu:
        assert emu.secret_key == "sk_test_fixed"
        assert emu.client().v1.prices.list().data == []
        with pytest.raises(stripe.AuthenticationError):
            emu.client(api_key="sk_test_other").v1.prices.list()


def test_unknown_path_is_stripe_404(emu: StripeEmulator) -> None:
    with requests.Session() as http:
        for method, path in [("GET", "/v1/coupons"), ("DELETE", "/v1/prices/price_1"),
                             ("GET", "/nowhere")]:
            answer = http.request(method, emu.api_base + path, headers=auth(emu))
            assert answer.status_code == 404, path
            error = answer.json()["error"]
            assert error["type"] == "invalid_request_error"
            assert "Unrecognized request URL" in error["message"]


def test_non_form_body_is_rejected(emu: StripeEmulator) -> None:
    with requests.Session() as http:
        answer = http.post(f"{emu.api_base}/v1/products", headers=auth(emu),
                           json={"name": "x"})
        assert answer.status_code == 400
        assert "x-www-form-urlencoded" in answer.json()["error"]["message"]


# -- idempotency -----------------------------------------------------------------------


def test_idempotency_replay_and_conflict(emu: StripeEmulator,
                                         client: Any) -> None:
    params = {"mode": "payment", "success_url": SUCCESS, "line_items": [inline_item()]}
    options = {"idempotency_key": "order-42"}
    first = client.v1.checkout.sessions.create(params=params,
                                               options=options)
    again = client.v1.checkout.sessions.create(params=params,
                                               options=options)
    assert again.id == first.id
    assert len(emu.sessions) == 1
    assert [r.idempotency_key for r in emu.requests] == ["order-42", "order-42"]
    with pytest.raises(stripe.IdempotencyError) as info:
        client.v1.checkout.sessions.create(
            params={**params, "customer_email": "x@example.com"},
            options=options,
        )
    assert info.value.http_status == 400
    assert error_of(info.value).type == "idempotency_error"


def test_idempotent_replay_header(emu: StripeEmulator) -> None:
    headers = {**auth(emu), "Idempotency-Key": "k1"}
    with requests.Session() as http:
        first = http.post(f"{emu.api_base}/v1/products", headers=headers, data={"name": "A"})
        second = http.post(f"{emu.api_base}/v1/products", headers=headers, data={"name": "A"})
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.headers["Idempotency-Key"] == "k1"
    assert first.headers["Request-Id"].startswith("req_")


def test_a_rejected_request_is_not_saved_for_its_key(emu: StripeEmulator,
                                                     client: Any) -> None:
    options = {"idempotency_key": "retry-after-fix"}
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.products.create(params={"name": "A", "colour": "red"},
                                  options=options)
    product = client.v1.products.create(params={"name": "A"},
                                        options=options)
    assert product.name == "A"


# -- fault injection -------------------------------------------------------------------


def test_500_then_success_is_retried_with_the_same_key(emu: StripeEmulator) -> None:
    client: Any = emu.client(max_network_retries=2)
    emu.fail_next(500)
    session = create(client, line_items=[inline_item()])
    assert len(emu.sessions) == 1 and emu.sessions[0]["id"] == session.id
    first, second = emu.requests
    assert (first.status, first.fault) == (500, True)
    assert (second.status, second.fault) == (200, False)
    assert first.idempotency_key == second.idempotency_key is not None


def test_500_without_retries_is_an_api_error(emu: StripeEmulator,
                                             client: Any) -> None:
    emu.fail_next(503, times=2)
    for _ in range(2):
        with pytest.raises(stripe.APIError) as info:
            client.v1.prices.list()
        assert info.value.http_status == 503
    assert client.v1.prices.list().object == "list"


def test_429_is_not_retried_without_should_retry(emu: StripeEmulator) -> None:
    client: Any = emu.client(max_network_retries=2)
    emu.fail_next(429)
    with pytest.raises(stripe.RateLimitError) as info:
        client.v1.prices.list()
    assert info.value.http_status == 429
    assert len(emu.requests) == 1


def test_429_with_should_retry_is_retried(emu: StripeEmulator) -> None:
    client: Any = emu.client(max_network_retries=2)
    emu.fail_next(429, headers={"Stripe-Should-Retry": "true", "Retry-After": "0"})
    assert client.v1.prices.list().object == "list"
    assert [r.status for r in emu.requests] == [429, 200]


def test_should_retry_false_stops_retries_of_a_500(emu: StripeEmulator) -> None:
    client: Any = emu.client(max_network_retries=2)
    emu.fail_next(500, headers={"Stripe-Should-Retry": "false"})
    with pytest.raises(stripe.APIError):
        client.v1.prices.list()
    assert len(emu.requests) == 1


def test_delay_longer_than_client_timeout(emu: StripeEmulator) -> None:
    client: Any = emu.client(timeout=0.3)
    emu.fail_next(status=None, delay=5.0)
    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError):
        client.v1.prices.list()
    assert time.monotonic() - started < 3.0
    assert emu.requests[0].path == "/v1/prices"


def test_delay_then_normal_answer(emu: StripeEmulator, client: Any) -> None:
    emu.fail_next(status=None, delay=0.2)
    started = time.monotonic()
    assert client.v1.prices.list().object == "list"
    assert time.monotonic() - started >= 0.2
    assert emu.requests[0].status == 200 and not emu.requests[0].fault


@pytest.mark.parametrize(
    ("status", "body", "headers"),
    [
        pytest.param(200, "{not json", None, id="malformed-json"),
        pytest.param(502, "<html><body><h1>502 Bad Gateway</h1></body></html>",
                     {"Content-Type": "text/html"}, id="html-502"),
        pytest.param(500, b"", None, id="empty-500"),
    ],
)
def test_malformed_bodies_are_api_errors(emu: StripeEmulator, client: Any,
                                         status: int, body: str | bytes,
                                         headers: dict[str, str] | None) -> None:
    emu.fail_next(status, body=body, headers=headers)
    with pytest.raises(stripe.APIError) as info:
        client.v1.prices.list()
    assert info.value.http_status == status


def test_fault_filters_by_method_and_path(emu: StripeEmulator,
                                          client: Any) -> None:
    emu.fail_next(500, method="POST", path="/v1/checkout/sessions")
    assert client.v1.prices.list().object == "list"  # not matched, fault stays queued
    with pytest.raises(stripe.APIError):
        create(client, line_items=[inline_item()])
    assert create(client, line_items=[inline_item()]).status == "open"


def test_fail_next_custom_json_body(emu: StripeEmulator, client: Any) -> None:
    emu.fail_next(402, body={"error": {"type": "card_error", "code": "card_declined",
                                       "message": "Declined for the test"}})
    with pytest.raises(stripe.CardError, match="Declined for the test"):
        client.v1.prices.list()


# -- the hosted page -------------------------------------------------------------------


def test_hosted_page_pays_and_redirects(receiver: Receiver) -> None:
    with StripeEmulator(receiver.url) as emu:
        client: Any = emu.client()
        price = emu.add_price(1500, "usd", product_name="Basic <plan>")
        session = create(client, line_items=[{"price": price["id"], "quantity": 2}],
                         customer_email="ada@example.com")
        with requests.Session() as http:
            page = http.get(session.url)
            assert page.status_code == 200
            assert page.headers["Content-Type"].startswith("text/html")
            html = page.text
            assert "Basic &lt;plan&gt;" in html and "<plan>" not in html
            assert 'id="total">30.00 USD' in html
            assert 'value="ada@example.com"' in html
            for ident in ('id="cardnumber"', 'name="cardnumber"', 'id="pay"', 'id="cancel"',
                          'id="delayed"', 'id="email"'):
                assert ident in html
            assert "http" not in html.split("<main>")[0].replace("http-equiv", "")

            declined = http.post(session.url, data={
                "email": "ada@example.com", "cardnumber": "4000 0000 0000 0002",
                "action": "pay"}, allow_redirects=False)
            assert declined.status_code == 200
            assert "Your card was declined." in declined.text
            assert emu.session(session.id)["status"] == "open"
            assert receiver.received == []

            paid = http.post(session.url, data={
                "email": "ada@example.com", "cardnumber": "4242 4242 4242 4242",
                "action": "pay"}, allow_redirects=False)
            assert paid.status_code == 303
            assert paid.headers["Location"] == SUCCESS.replace("{CHECKOUT_SESSION_ID}",
                                                               session.id)
            emu.wait_for_deliveries()
            done = client.v1.checkout.sessions.retrieve(session.id)
            assert (done.status, done.payment_status) == ("complete", "paid")
            assert done.url is None
            assert done.payment_intent.startswith("pi_")
            assert done.customer_details.email == "ada@example.com"
            (event,) = receiver.events()
            assert event["type"] == "checkout.session.completed"
            assert event["data"]["object"]["id"] == session.id

            again = http.get(session.url)
            assert "already complete" in again.text
            replay = http.post(session.url, data={"cardnumber": "4242424242424242",
                                                  "email": "a@b.c", "action": "pay"},
                               allow_redirects=False)
            assert replay.status_code == 200 and "already complete" in replay.text
            assert len(emu.events) == 1


def test_hosted_page_rejects_bad_card_and_missing_email(emu: StripeEmulator,
                                                        client: Any) -> None:
    session = create(client, line_items=[inline_item()])
    with requests.Session() as http:
        no_email = http.post(session.url, data={"cardnumber": "4242424242424242",
                                                "action": "pay"})
        assert "valid email" in no_email.text
        wrong = http.post(session.url, data={"cardnumber": "1234", "email": "a@b.c",
                                             "action": "pay"})
        assert "card number is incorrect" in wrong.text
        assert 'value="1234"' in wrong.text
    assert emu.session(session.id)["status"] == "open"


def test_hosted_page_cancel(emu: StripeEmulator, client: Any) -> None:
    session = create(client, line_items=[inline_item()])
    with requests.Session() as http:
        answer = http.post(session.url, data={"action": "cancel"}, allow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["Location"] == CANCEL
    assert emu.session(session.id)["status"] == "open"
    assert emu.events == []


def test_hosted_page_delayed_payment(receiver: Receiver) -> None:
    with StripeEmulator(receiver.url) as emu:
        client: Any = emu.client()
        good = create(client, line_items=[inline_item()])
        bad = create(client, line_items=[inline_item()])
        with requests.Session() as http:
            for session in (good, bad):
                answer = http.post(session.url, data={"email": "a@b.c", "delayed": "1",
                                                      "action": "pay"},
                                   allow_redirects=False)
                assert answer.status_code == 303
        emu.wait_for_deliveries()
        for session in (good, bad):
            state = emu.session(session.id)
            assert (state["status"], state["payment_status"]) == ("complete", "unpaid")
        assert emu.pay(good.id, async_payment="succeeded")["payment_status"] == "paid"
        assert emu.pay(bad.id, async_payment="failed")["payment_status"] == "unpaid"
        assert [e["type"] for e in receiver.events()] == [
            "checkout.session.completed",
            "checkout.session.completed",
            "checkout.session.async_payment_succeeded",
            "checkout.session.async_payment_failed",
        ]
        with pytest.raises(ValueError, match="no pending delayed payment"):
            emu.pay(good.id, async_payment="succeeded")


def test_expired_session_page(emu: StripeEmulator, client: Any) -> None:
    session = create(client, line_items=[inline_item()])
    url = session.url
    emu.expire(session.id)
    with requests.Session() as http:
        page = http.get(url)
        assert page.status_code == 200 and "has expired" in page.text
        assert 'id="pay"' not in page.text
        post = http.post(url, data={"cardnumber": "4242424242424242", "email": "a@b.c",
                                    "action": "pay"}, allow_redirects=False)
        assert post.status_code == 200 and "has expired" in post.text
        assert http.get(f"{emu.api_base}/pay/cs_test_unknown").status_code == 404
    assert emu.session(session.id)["status"] == "expired"


def test_page_without_success_url_says_complete(emu: StripeEmulator,
                                                client: Any) -> None:
    session = client.v1.checkout.sessions.create(params={
        "mode": "payment", "line_items": [inline_item()]})
    with requests.Session() as http:
        answer = http.post(session.url, data={"cardnumber": "4242424242424242",
                                              "email": "a@b.c", "action": "pay"},
                           allow_redirects=False)
    assert answer.status_code == 200 and "payment is complete" in answer.text


# -- pay / expire helpers --------------------------------------------------------------


def test_pay_helper_states(emu: StripeEmulator, client: Any) -> None:
    session = create(client, line_items=[inline_item()], customer_email="c@example.com")
    paid = emu.pay(session.id)
    assert (paid["status"], paid["payment_status"]) == ("complete", "paid")
    assert paid["customer_details"]["email"] == "c@example.com"
    with pytest.raises(ValueError, match="not open"):
        emu.pay(session.id)
    with pytest.raises(ValueError, match="not open"):
        emu.expire(session.id)
    with pytest.raises(KeyError):
        emu.pay("cs_test_missing")
    with pytest.raises(ValueError, match="async_payment"):
        emu.pay(session.id, async_payment="maybe")
    delayed = create(client, line_items=[inline_item()])
    settled = emu.pay(delayed.id, async_payment="succeeded")
    assert settled["payment_status"] == "paid"
    assert [e["type"] for e in emu.events][-2:] == [
        "checkout.session.completed", "checkout.session.async_payment_succeeded"]


# -- webhooks --------------------------------------------------------------------------


def test_webhook_signature_verifies_with_construct_event(receiver: Receiver) -> None:
    with StripeEmulator(receiver.url) as emu:
        client: Any = emu.client()
        session = create(client, line_items=[inline_item()])
        emu.pay(session.id)
        ((headers, body),) = receiver.received
        assert headers["Content-Type"].startswith("application/json")
        header = headers["Stripe-Signature"]
        assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
        event = client.construct_event(body, header, emu.webhook_secret)
        assert event.type == "checkout.session.completed"
        assert event.data.object.id == session.id
        with pytest.raises(stripe.SignatureVerificationError):
            client.construct_event(body, header, "whsec_wrong")
        with pytest.raises(stripe.SignatureVerificationError):
            client.construct_event(body.replace(b"complete", b"completX"), header,
                                   emu.webhook_secret)
        # The public helper agrees with the SDK's own signer.
        t = int(header.split(",")[0][2:])
        assert sign_payload(body, emu.webhook_secret, t) == \
            stripe.WebhookSignature.generate_signature_header(
                body.decode(), emu.webhook_secret, t)


def test_delivery_is_retried_after_500() -> None:
    with Receiver([500, 503]) as receiver, StripeEmulator(
        receiver.url, delivery_attempts=3, delivery_backoff=0.02
    ) as emu:
        session = create(emu.client(), line_items=[inline_item()])
        emu.pay(session.id)
        attempts = [(d.attempt, d.status, d.ok) for d in emu.deliveries]
        assert attempts == [(1, 500, False), (2, 503, False), (3, 200, True)]
        ids = {e["id"] for e in receiver.events()}
        assert len(receiver.received) == 3 and len(ids) == 1
        assert emu.events[0]["pending_webhooks"] == 0


def test_delivery_gives_up_after_the_attempts() -> None:
    with Receiver() as receiver:
        dead_url = receiver.url
    with StripeEmulator(dead_url, delivery_attempts=2, delivery_backoff=0.01) as emu:
        session = create(emu.client(), line_items=[inline_item()])
        emu.pay(session.id)
        deliveries = emu.deliveries
        assert [d.attempt for d in deliveries] == [1, 2]
        assert all(d.status is None and d.error for d in deliveries)
        assert emu.events[0]["pending_webhooks"] == 1


def test_redeliver_sends_the_same_event_again(receiver: Receiver) -> None:
    with StripeEmulator(receiver.url) as emu:
        session = create(emu.client(), line_items=[inline_item()])
        emu.pay(session.id)
        event_id = emu.events[0]["id"]
        emu.redeliver(event_id)
        first, second = receiver.received
        assert json.loads(first[1])["id"] == json.loads(second[1])["id"] == event_id
        assert [d.event_id for d in emu.deliveries] == [event_id, event_id]
        with pytest.raises(KeyError):
            emu.redeliver("evt_missing")


def test_webhook_url_set_after_start(emu: StripeEmulator, client: Any,
                                     receiver: Receiver) -> None:
    before = create(client, line_items=[inline_item()])
    emu.pay(before.id)
    assert emu.deliveries == []
    with pytest.raises(RuntimeError, match="webhook_url"):
        emu.redeliver(emu.events[0]["id"])
    emu.webhook_url = receiver.url
    after = create(client, line_items=[inline_item()])
    emu.expire(after.id)
    assert [e["type"] for e in receiver.events()] == ["checkout.session.expired"]
    with pytest.raises(ValueError, match="http"):
        emu.set_webhook_url("ftp://nope")


def test_page_pay_does_not_wait_when_told_not_to() -> None:
    with Receiver() as receiver, StripeEmulator(receiver.url,
                                                hosted_page_webhook_wait=0) as emu:
        session = create(emu.client(), line_items=[inline_item()])
        with requests.Session() as http:
            answer = http.post(session.url, data={"cardnumber": "4242424242424242",
                                                  "email": "a@b.c", "action": "pay"},
                               allow_redirects=False)
        assert answer.status_code == 303
        emu.wait_for_deliveries()
        assert len(receiver.received) == 1


# -- the server ------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection(emu: StripeEmulator,
                                          client: Any) -> None:
    price = emu.add_price(1500)
    for _ in range(10):
        session = create(client, line_items=[{"price": price["id"], "quantity": 1}])
        client.v1.checkout.sessions.retrieve(session.id)
        client.v1.prices.list(params={"active": True})
    assert len(emu.requests) == 30
    assert emu.connections == 1


def test_concurrent_requests(emu: StripeEmulator) -> None:
    errors: list[BaseException] = []
    ids: list[str] = []
    lock = threading.Lock()
    body = ("mode=payment&line_items[0][price_data][currency]=usd"
            "&line_items[0][price_data][unit_amount]=100"
            "&line_items[0][price_data][product_data][name]=x&line_items[0][quantity]=1")

    def worker() -> None:
        try:
            with requests.Session() as http:
                for _ in range(10):
                    answer = http.post(f"{emu.api_base}/v1/checkout/sessions", data=body,
                                       headers={**auth(emu), "Content-Type":
                                                "application/x-www-form-urlencoded"})
                    assert answer.status_code == 200, answer.text
                    with lock:
                        ids.append(answer.json()["id"])
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(ids)) == 80 == len(emu.sessions)


def test_stop_closes_idle_keep_alive_connections_and_threads() -> None:
    before = set(threading.enumerate())
    http = requests.Session()
    try:
        with StripeEmulator() as emu:
            assert http.get(f"{emu.api_base}/v1/prices", headers=auth(emu)).ok
            started = time.monotonic()
        assert time.monotonic() - started < 2.0
        assert set(threading.enumerate()) <= before
    finally:
        http.close()


def test_emulator_requires_start_and_starts_once() -> None:
    emu = StripeEmulator()
    with pytest.raises(RuntimeError, match="start"):
        _ = emu.api_base
    emu.stop()  # harmless before start
    with emu:
        assert emu.api_base.startswith("http://127.0.0.1:")
    with pytest.raises(RuntimeError):
        emu.start()
    with pytest.raises(ValueError):
        StripeEmulator(secret_key="sk_live_x")
    with pytest.raises(ValueError):
        StripeEmulator(webhook_secret="secret")
    with pytest.raises(ValueError, match="webhook_url"):
        StripeEmulator("/webhook")


def test_fixed_keys_and_port_are_used() -> None:
    with StripeEmulator(secret_key="sk_test_abc", webhook_secret="whsec_abc") as first:
        port = first.port
        assert (first.secret_key, first.webhook_secret) == ("sk_test_abc", "whsec_abc")
    with StripeEmulator(port=port) as second:
        assert second.api_base == f"http://127.0.0.1:{port}"
    assert StripeEmulator().webhook_secret != StripeEmulator().webhook_secret


# -- the command line ------------------------------------------------------------------


def test_cli_emulator_runs_until_interrupted() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "stripe_checkout_mw", "emulator", "--port", "0",
         "--quiet", "--price", "basic=1500:usd", "--webhook-secret", "whsec_cli"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert process.stdout is not None
        lines: dict[str, str] = {}
        deadline = time.monotonic() + 20
        while "api_base" not in lines or "webhook url" not in lines:
            assert time.monotonic() < deadline, "the emulator did not print its settings"
            line = process.stdout.readline()
            assert line, process.stderr.read() if process.stderr else "no output"
            name, _, value = line.partition(":")
            lines[name.strip()] = value.strip()
        assert lines["webhook secret"] == "whsec_cli"
        assert lines["secret key"].startswith("sk_test_")
        assert lines["stripe.js"] == f"{lines['api_base']}/v3/stripe.js"
        script = requests.get(lines["stripe.js"], timeout=10).text
        assert json.dumps(lines["publishable key"]) in script
        http_client: Any = stripe.RequestsClient()
        client = stripe.StripeClient(lines["secret key"],
                                     base_addresses={"api": lines["api_base"]},
                                     http_client=http_client)
        try:
            (price,) = client.v1.prices.list(params={"lookup_keys": ["basic"]}).data
            assert price.unit_amount == 1500
        finally:
            http_client.close()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
        assert process.returncode == 0, err
        assert "stopped" in out
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_cli_without_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    from stripe_checkout_mw.__main__ import main

    assert main([]) == 2
    assert "emulator" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["emulator", "--port", "not-a-number"])
