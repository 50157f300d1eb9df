"""The security promises, each proven by a test that fails if the promise breaks (issue 7,
suite 4). SECURITY.md lists which test proves which promise.

Where ``tests/checkout/test_checkout.py``, ``tests/news/test_webhooks.py`` or
``tests/news/test_status.py`` already prove a promise, this file adds only what they leave out.
"""

from __future__ import annotations

import gc
import io
import json
import logging
import socket
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from wsgiref.validate import validator

import pytest
import webtest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.serving import make_server

from stripe_checkout_mw import Catalog, CheckoutMiddleware, ClientPrices, StripeLookupKeys
from stripe_checkout_mw.ledger.orders import Order
from stripe_checkout_mw.testing import StripeEmulator, sign_payload

CATALOG = {
    "tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"},
    "mug": {"name": "Mug", "unit_amount": 800, "currency": "usd", "description": "Blue"},
}
DOMAIN = "https://shop.example.com"
SUCCESS_URL = f"{DOMAIN}/success?session_id={{CHECKOUT_SESSION_ID}}"
CANCEL_URL = f"{DOMAIN}/cancel"
ONE_TEE = {"line_items": [{"price": "tee", "quantity": 1}]}
CHECKOUT, WEBHOOK, STATUS = "/create-checkout-session", "/stripe-webhook", "/checkout-session"
PUBLIC_VIEW = {"session_id", "status", "payment_status", "amount_total", "currency",
               "customer_email", "items", "fulfilled"}


def shop(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the shop"]


@dataclass
class Shop:
    """A middleware over the shop, through WebTest with wsgiref.validate on both sides."""

    mw: CheckoutMiddleware
    web: webtest.TestApp
    fulfilled: list[str] = field(default_factory=list)

    def order(self, session_id: str) -> Order:
        assert self.mw.store is not None
        order = self.mw.store.get(session_id)
        assert order is not None
        return order


@pytest.fixture
def build(stripe_emulator: StripeEmulator, tmp_path: Path) -> Iterator[Any]:
    made: list[CheckoutMiddleware] = []

    def make(**options: Any) -> Shop:
        fulfilled: list[str] = []
        settings: dict[str, Any] = {
            "secret_key": stripe_emulator.secret_key,
            "stripe_api_base": stripe_emulator.api_base,
            "domain_url": DOMAIN,
            "price_lookup": Catalog(CATALOG),
            "webhook_secret": stripe_emulator.webhook_secret,
            "store": f"sqlite:///{tmp_path}/orders-{len(made)}.db",
            "fulfill": lambda order: fulfilled.append(order.session_id),
        }
        settings.update(options)
        mw = CheckoutMiddleware(validator(shop), **settings)
        made.append(mw)
        return Shop(mw, webtest.TestApp(validator(mw)), fulfilled)

    yield make
    for mw in made:
        mw.close()


def creates(emu: StripeEmulator) -> list[Any]:
    return [r for r in emu.requests if r.method == "POST" and r.path == "/v1/checkout/sessions"]


# --- 1. amounts and currencies come from the server -----------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({**ONE_TEE, "amount_total": 1}, id="top-amount_total"),
        pytest.param({**ONE_TEE, "unit_amount": 1}, id="top-unit_amount"),
        pytest.param({**ONE_TEE, "currency": "jpy"}, id="top-currency"),
        pytest.param({**ONE_TEE, "mode": "setup"}, id="top-mode"),
        pytest.param({**ONE_TEE, "discounts": [{"coupon": "FREE"}]}, id="top-discounts"),
        pytest.param({**ONE_TEE, "payment_method_types": ["card"]}, id="top-pmt"),
        pytest.param({**ONE_TEE, "customer": "cus_123"}, id="top-customer"),
        pytest.param({**ONE_TEE, "metadata": {"paid": "yes"}}, id="top-metadata"),
        pytest.param({"line_items": [{"price": "tee", "quantity": 1, "unit_amount": 1}]},
                     id="catalog-key-with-forged-unit_amount"),
        pytest.param({"line_items": [{"price": "tee", "quantity": 1, "currency": "jpy"}]},
                     id="catalog-key-with-forged-currency"),
        pytest.param({"line_items": [{"price": "tee", "quantity": 1, "price_data": {
            "currency": "usd", "unit_amount": 1, "product_data": {"name": "T-shirt"}}}]},
                     id="catalog-key-and-price_data"),
        pytest.param({"line_items": [{"price": "tee", "quantity": 1,
                                      "adjustable_quantity": {"enabled": True}}]},
                     id="adjustable_quantity"),
        pytest.param({"line_items": [{"price": "tee", "quantity": 1, "discounts": [{}]}]},
                     id="item-discounts"),
        pytest.param({"line_items": [{"quantity": 1, "price_data": {
            "currency": "usd", "unit_amount": 2000, "product_data": {"name": "T-shirt"},
            "recurring": {"interval": "month"}}}]}, id="price_data-made-recurring"),
        pytest.param({"line_items": [{"quantity": 1, "price_data": {
            "currency": "usd", "unit_amount_decimal": "0.1",
            "product_data": {"name": "T-shirt"}}}]}, id="unit_amount_decimal"),
        pytest.param({"line_items": [{"quantity": 1, "price_data": {
            "currency": "usd", "unit_amount": 2000.0, "product_data": {"name": "T-shirt"}}}]},
                     id="float-amount"),
        pytest.param({"line_items": [{"quantity": 1, "price_data": {
            "currency": "usd", "unit_amount": 2000,
            "product_data": {"name": "T-shirt", "metadata": {"x": "y"}}}}]},
                     id="product-extra-field"),
    ],
)
def test_a_browser_cannot_set_amount_currency_or_terms(
    build: Any, stripe_emulator: StripeEmulator, body: dict[str, Any]
) -> None:
    error = build().web.post_json(CHECKOUT, body, status=400).json["error"]
    assert error["type"] == "invalid_request_error"
    assert stripe_emulator.requests == []


@pytest.mark.parametrize(
    "fields",
    [[("price", "tee"), ("unit_amount", "1")], [("price", "tee"), ("currency", "jpy")],
     [("price", "tee"), ("amount_total", "1")], [("price", "tee"), ("price_data", "x")]],
    ids=["unit_amount", "currency", "amount_total", "price_data"],
)
def test_form_fields_cannot_set_a_price(
    build: Any, stripe_emulator: StripeEmulator, fields: list[tuple[str, str]]
) -> None:
    build().web.post(CHECKOUT, urlencode(fields),
                     content_type="application/x-www-form-urlencoded", status=400)
    assert stripe_emulator.requests == []


def test_amounts_stripe_receives_are_the_catalogs_for_any_quantities(
    build: Any, stripe_emulator: StripeEmulator
) -> None:
    web = build().web

    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.tuples(st.sampled_from(sorted(CATALOG)),
                              st.integers(min_value=1, max_value=999)), min_size=1, max_size=5))
    def check(picks: list[tuple[str, int]]) -> None:
        body = {"line_items": [{"price": key, "quantity": qty} for key, qty in picks]}
        session_id = web.post_json(CHECKOUT, body).json["sessionId"]
        session = stripe_emulator.session(session_id)
        assert session["amount_total"] == sum(CATALOG[k]["unit_amount"] * q for k, q in picks)
        assert session["currency"] == "usd"
        sent = creates(stripe_emulator)[-1].params["line_items"]
        for (key, qty), line in zip(picks, sent):
            assert line["price_data"]["unit_amount"] == str(CATALOG[key]["unit_amount"])
            assert line["price_data"]["product_data"]["name"] == CATALOG[key]["name"]
            assert line["quantity"] == str(qty)

    check()


def test_lookup_keys_buy_only_active_prices_with_that_key(
    build: Any, stripe_emulator: StripeEmulator
) -> None:
    public = stripe_emulator.add_price(unit_amount=5000, currency="usd", lookup_key="pro")
    internal = stripe_emulator.add_price(unit_amount=1, currency="usd")  # no lookup key
    stripe_emulator.add_price(unit_amount=2, currency="usd", lookup_key="old", active=False)
    web = build(price_lookup=StripeLookupKeys(ttl=300)).web
    for name in (internal["id"], "old"):
        body = {"line_items": [{"price": name, "quantity": 1}]}
        error = web.post_json(CHECKOUT, body, status=400).json["error"]
        assert error["param"] == "line_items[0][price]"
    assert creates(stripe_emulator) == []
    session_id = web.post_json(CHECKOUT, {"line_items": [{"price": "pro", "quantity": 2}]}
                               ).json["sessionId"]
    assert creates(stripe_emulator)[0].params["line_items"] == [
        {"price": public["id"], "quantity": "2"}]
    assert stripe_emulator.session(session_id)["amount_total"] == 10000


# --- 2. no open redirect --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({**ONE_TEE, "success_url": "https://evil.example/"}, "success_url",
                     id="success_url"),
        pytest.param({**ONE_TEE, "cancel_url": "https://evil.example/"}, "cancel_url",
                     id="cancel_url"),
        pytest.param({**ONE_TEE, "return_url": "https://evil.example/"}, "return_url",
                     id="return_url"),
        pytest.param({"line_items": [{"price": "tee", "quantity": 1,
                                      "success_url": "https://evil.example/"}]},
                     "line_items[0][success_url]", id="in-an-item"),
    ],
)
def test_a_json_body_cannot_choose_where_the_customer_goes(
    build: Any, stripe_emulator: StripeEmulator, body: dict[str, Any], param: str
) -> None:
    assert build().web.post_json(CHECKOUT, body, status=400).json["error"]["param"] == param
    assert stripe_emulator.requests == []


@pytest.mark.parametrize("name", ["success_url", "cancel_url"])
def test_a_form_field_cannot_choose_where_the_customer_goes(
    build: Any, stripe_emulator: StripeEmulator, name: str
) -> None:
    build().web.post(CHECKOUT, {"price": "tee", name: "https://evil.example/"}, status=400)
    assert stripe_emulator.requests == []


def test_query_string_and_host_header_do_not_change_the_urls(
    build: Any, stripe_emulator: StripeEmulator
) -> None:
    web = build().web
    query = "?" + urlencode({"success_url": "https://evil.example/", "cancel_url": "x"})
    form = web.post(CHECKOUT + query, {"price": "tee"},
                    headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
                    status=303)
    answer = web.post_json(CHECKOUT + query, ONE_TEE,
                           headers={"Host": "evil.example", "Origin": DOMAIN})
    sessions = stripe_emulator.sessions
    assert len(sessions) == 2
    for session in sessions:
        assert (session["success_url"], session["cancel_url"]) == (SUCCESS_URL, CANCEL_URL)
        assert session["url"].startswith(stripe_emulator.api_base + "/")
    # The customer is sent to the session Stripe made, and nowhere else.
    assert form.headers["Location"] == sessions[0]["url"]
    assert answer.json["url"] == sessions[1]["url"]
    assert answer.json["sessionId"] == sessions[1]["id"]


# --- 3. CSRF and CORS -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://localhost"},  # another scheme
        {"Origin": "http://localhost:8080"},  # another port
        {"Origin": "http://localhost.evil.example"},
        {"Origin": "http://evil.example", "Referer": "http://localhost/cart"},
        {"Origin": "https://localhost@evil.example"},
        {"Referer": "http://evil.example/http://localhost/"},
        {"Origin": "http://LOCALHOST.evil.example:80"},
    ],
    ids=["scheme", "port", "suffix", "origin-beats-referer", "userinfo", "referer-path",
         "case-and-port"],
)
@pytest.mark.parametrize("kind", ["form", "json", "text-plain"])
def test_cross_site_posts_in_every_guise_are_refused(
    build: Any, stripe_emulator: StripeEmulator, headers: dict[str, str], kind: str
) -> None:
    web = build(allowed_origins=["https://front.example"]).web
    if kind == "form":
        response = web.post(CHECKOUT, {"price": "tee"}, headers=headers, status=403)
    elif kind == "json":
        response = web.post_json(CHECKOUT, ONE_TEE, headers=headers, status=403)
    else:
        # A "simple" cross-site request a page can send without a preflight: refused as
        # cross-site (403) before its content type is even looked at.
        response = web.post(CHECKOUT, json.dumps(ONE_TEE), headers=headers,
                            content_type="text/plain", status=403)
    assert response.json["error"]["type"] == "permission_error"
    assert "Access-Control-Allow-Origin" not in response.headers
    assert stripe_emulator.requests == []


def test_no_cors_headers_without_configured_origins(build: Any) -> None:
    web = build().web
    origin = {"Origin": "https://front.example"}
    answers = [
        web.options(CHECKOUT, headers={**origin, "Access-Control-Request-Method": "POST"}),
        web.options(STATUS, headers=origin),
        web.get(STATUS, {"session_id": "cs_test_unknown"}, headers=origin, status=404),
        web.post_json(CHECKOUT, ONE_TEE, headers=origin, status=403),
    ]
    for answer in answers:
        assert not [name for name in answer.headers if name.lower().startswith("access-control")]


def test_cors_answers_name_only_the_allowed_origin(build: Any) -> None:
    web = build(allowed_origins=["https://front.example"]).web
    allowed = {"Origin": "https://front.example"}
    preflight = web.options(STATUS, headers={**allowed, "Access-Control-Request-Method": "GET"})
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://front.example"
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS"
    error = web.get(STATUS, {"session_id": "nope"}, headers=allowed, status=400)
    assert error.headers["Access-Control-Allow-Origin"] == "https://front.example"
    for foreign in ("https://evil.example", "https://front.example.evil.example", "null",
                    "https://front.example:444", "http://front.example"):
        for answer in (
            web.options(CHECKOUT, headers={"Origin": foreign,
                                           "Access-Control-Request-Method": "POST"}),
            web.get(STATUS, {"session_id": "cs_test_unknown"}, headers={"Origin": foreign},
                    status=404),
        ):
            assert "Access-Control-Allow-Origin" not in answer.headers
            assert "Access-Control-Allow-Methods" not in answer.headers
            assert answer.headers.get("Vary") == "Origin"
    for answer in (preflight, error):
        assert "Access-Control-Allow-Credentials" not in answer.headers
        assert "*" not in answer.headers["Access-Control-Allow-Origin"]


# --- 4. bodies over the limit are refused without being read --------------------------------


class CountingInput(io.RawIOBase):
    """A wsgi.input of ``size`` bytes that counts what is read from it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.size - self.read_bytes)
        buffer[:n] = b"{" * n
        self.read_bytes += n
        return n


def call(mw: CheckoutMiddleware, environ: dict[str, Any]) -> tuple[str, bytes]:
    statuses: list[str] = []
    body = b"".join(mw(environ, lambda status, headers, exc_info=None: statuses.append(status)))
    return statuses[0], body


def post_environ(path: str, stream: CountingInput, length: int | None,
                 terminated: bool = False) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "SERVER_NAME": "localhost",
        "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": stream,
        "CONTENT_TYPE": "application/json", "HTTP_STRIPE_SIGNATURE": "t=1,v1=00",
    }
    if length is not None:
        environ["CONTENT_LENGTH"] = str(length)
    if terminated:
        environ["wsgi.input_terminated"] = True
    return environ


@pytest.mark.parametrize(
    ("path", "size", "length", "terminated", "status", "most_read"),
    [
        pytest.param(CHECKOUT, 10**8, 10**8, False, "413", 0, id="checkout-declared"),
        pytest.param(CHECKOUT, 65537, 65537, False, "413", 0, id="checkout-one-over"),
        pytest.param(CHECKOUT, 10**8, None, True, "413", 65537, id="checkout-chunked"),
        pytest.param(CHECKOUT, 10**8, None, False, "400", 0, id="checkout-unframed"),
        pytest.param(WEBHOOK, 10**9, 10**9, False, "413", 0, id="webhook-declared"),
        pytest.param(WEBHOOK, 10**9, None, True, "413", 1024 * 1024 + 1, id="webhook-chunked"),
    ],
)
def test_bodies_over_the_limit_are_refused_unread(
    build: Any, stripe_emulator: StripeEmulator, path: str, size: int, length: int | None,
    terminated: bool, status: str, most_read: int,
) -> None:
    mw = build().mw
    stream = CountingInput(size)
    answer, body = call(mw, post_environ(path, stream, length, terminated))
    assert answer.startswith(status)
    assert stream.read_bytes <= most_read
    assert set(json.loads(body)["error"]) == {"type", "message", "param"}
    assert stripe_emulator.requests == []


def test_a_huge_upload_is_answered_before_it_is_sent(build: Any) -> None:
    """Over real HTTP: 413 comes back although only the headers were sent."""
    mw = build().mw
    server = make_server("127.0.0.1", 0, mw, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"POST /create-checkout-session HTTP/1.1\r\nHost: localhost\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n"
                         b"\r\n{")
            started = time.monotonic()
            head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 413"), head[:100]
        assert time.monotonic() - started < 2
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --- 5. forged, replayed or stale webhooks change nothing -----------------------------------


def test_forged_replayed_and_stale_webhooks_change_nothing(
    build: Any, stripe_emulator: StripeEmulator
) -> None:
    shop_ = build()
    web = shop_.web
    session_id = web.post_json(CHECKOUT, ONE_TEE).json["sessionId"]
    stripe_emulator.pay(session_id)  # no webhook URL: the event waits in the emulator
    event = next(e for e in stripe_emulator.events if e["type"] == "checkout.session.completed")
    body = json.dumps(event).encode()
    secret = stripe_emulator.webhook_secret
    now = int(time.time())
    tampered = json.loads(body)
    tampered["data"]["object"]["amount_total"] = 1
    tampered_body = json.dumps(tampered).encode()
    other = json.dumps({**event, "id": "evt_other"}).encode()

    forgeries = {
        "unsigned": (body, None),
        "empty-signature": (body, ""),
        "wrong-secret": (body, sign_payload(body, "whsec_not_the_endpoints")),
        "signed-with-the-api-key": (body, sign_payload(body, stripe_emulator.secret_key)),
        "stale-replay": (body, sign_payload(body, secret, timestamp=now - 301)),
        "ancient-replay": (body, sign_payload(body, secret, timestamp=0)),
        "tampered-body": (tampered_body, sign_payload(body, secret)),
        "signature-of-another-body": (body, sign_payload(other, secret)),
        "v0-scheme": (body, sign_payload(body, secret).replace("v1=", "v0=")),
    }
    for name, (payload, header) in forgeries.items():
        headers = {"Stripe-Signature": header} if header is not None else {}
        answer = web.post(WEBHOOK, payload, headers=headers, content_type="application/json",
                          status=400)
        assert answer.json["error"]["type"] == "invalid_request_error", name
        order = shop_.order(session_id)
        assert (order.status, order.fulfilled) == ("open", False), name
        assert shop_.fulfilled == [], name
        assert shop_.mw.store is not None and not shop_.mw.store.event_processed(event["id"])

    # The genuine delivery works, once; a replay with a fresh signature is a no-op.
    web.post(WEBHOOK, body, headers={"Stripe-Signature": sign_payload(body, secret)},
             content_type="application/json", status=200)
    again = web.post(WEBHOOK, body, headers={"Stripe-Signature": sign_payload(body, secret)},
                     content_type="application/json", status=200)
    assert again.json == {"received": True, "duplicate": True}
    assert shop_.fulfilled == [session_id]
    order = shop_.order(session_id)
    assert (order.status, order.fulfilled, order.amount_total) == ("paid", True, 2000)


# --- 6. the status endpoint's small view ----------------------------------------------------


def test_status_shows_only_its_small_view_and_nothing_for_unknown_ids(
    build: Any, stripe_emulator: StripeEmulator
) -> None:
    shop_ = build(session_options={"metadata": {"internal": "margin-42"},
                                   "client_reference_id": "crm-7781"})
    web = shop_.web
    session_id = web.post_json(CHECKOUT, {**ONE_TEE, "customer_email": "ann@example.com"}
                               ).json["sessionId"]
    stripe_emulator.pay(session_id)
    view = web.get(STATUS, {"session_id": session_id}).json
    assert set(view) == PUBLIC_VIEW
    assert [set(item) for item in view["items"]] == [{"name", "quantity", "unit_amount"}]
    assert (view["status"], view["fulfilled"], view["amount_total"]) == ("paid", True, 2000)
    session = stripe_emulator.session(session_id)
    text = json.dumps(view)
    for hidden in ("margin-42", "crm-7781", "internal", DOMAIN, session["url"] or "/pay/",
                   str(session.get("payment_intent")), stripe_emulator.secret_key,
                   stripe_emulator.webhook_secret):
        assert hidden not in text

    # Ids the ledger does not hold, even one Stripe knows, get the same 404 and no call.
    elsewhere = stripe_emulator.client().v1.checkout.sessions.create(params={
        "mode": "payment", "success_url": SUCCESS_URL,
        "line_items": [{"price_data": {"currency": "usd", "unit_amount": 1,
                                       "product_data": {"name": "x"}}, "quantity": 1}]}).id
    calls = len(stripe_emulator.requests)
    answers = [web.get(STATUS, {"session_id": unknown}, status=404).json
               for unknown in (elsewhere, "cs_test_" + "a" * 60, "cs_live_unknown")]
    assert all(answer == answers[0] for answer in answers)
    assert set(answers[0]) == {"error"} and answers[0]["error"]["param"] == "session_id"
    assert len(stripe_emulator.requests) == calls


# --- 7. secrets never appear in a response or a log record ----------------------------------


def test_secrets_never_reach_a_response_or_a_log_record(
    build: Any, stripe_emulator: StripeEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A full flow with faults, every logger (root, ``stripe``, ``urllib3``, ours) at DEBUG."""
    caplog.set_level(logging.DEBUG)
    for name in ("stripe", "stripe_checkout_mw", "urllib3", "stripe_checkout_mw.testing"):
        caplog.set_level(logging.DEBUG, logger=name)
    failing = {"fail": True}

    def fulfill(order: Order) -> None:
        if failing.pop("fail", False):
            raise RuntimeError("warehouse down")

    shop_ = build(fulfill=fulfill, max_network_retries=1, timeout=1.0,
                  allowed_origins=["https://front.example"])
    web = shop_.web
    secret, whsec = stripe_emulator.secret_key, stripe_emulator.webhook_secret
    answers: list[Any] = []

    def post_json(body: Any, status: int | str = "*", **kwargs: Any) -> Any:
        answers.append(web.post_json(CHECKOUT, body, status=status, **kwargs))
        return answers[-1]

    def deliver(body: bytes, header: str | None, status: int) -> None:
        headers = {"Stripe-Signature": header} if header else {}
        answers.append(web.post(WEBHOOK, body, headers=headers,
                                content_type="application/json", status=status))

    session_id = post_json(ONE_TEE, 200).json["sessionId"]
    stripe_emulator.fail_next(500, path="/v1/checkout/sessions")
    post_json(ONE_TEE, 200, headers={"Origin": "https://front.example"})
    for fault in (401, 403, 429, 400):
        stripe_emulator.fail_next(fault, path="/v1/checkout/sessions")
        post_json(ONE_TEE)
    post_json({"line_items": "nope"}, 400)
    post_json(ONE_TEE, 403, headers={"Origin": "https://evil.example"})
    answers.append(web.get(CHECKOUT, status=405))

    stripe_emulator.fail_next(401, method="GET")
    answers.append(web.get(STATUS, {"session_id": session_id}, status=502))
    stripe_emulator.pay(session_id)
    event = next(e for e in stripe_emulator.events if e["type"] == "checkout.session.completed")
    body = json.dumps(event).encode()
    deliver(body, None, 400)
    deliver(body, sign_payload(body, "whsec_forged"), 400)
    deliver(body, sign_payload(body, whsec, timestamp=int(time.time()) - 1000), 400)
    deliver(body, sign_payload(body, whsec), 500)  # the fulfil hook fails: rolled back
    time.sleep(0.01)  # its retry is due after the backoff (about a millisecond here)
    deliver(body, sign_payload(body, whsec), 200)
    deliver(body, sign_payload(body, whsec), 200)
    answers.append(web.get(STATUS, {"session_id": session_id}))
    assert answers[-1].json["fulfilled"] is True

    assert len(caplog.records) > 20  # the capture really saw the flow
    assert any(r.name.startswith("stripe") and r.name != "stripe_checkout_mw"
               for r in caplog.records)  # including the SDK's own logger
    logged = caplog.text + "".join(
        f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    for value in (secret, whsec, whsec.removeprefix("whsec_")):
        assert value not in logged
        for answer in answers:
            assert value not in answer.text
            assert value not in str(answer.headers)
    for answer in answers:
        assert "Traceback" not in answer.text
    print(f"{len(caplog.records)} log records checked", file=sys.stderr)


def test_the_middleware_and_its_parts_do_not_show_secrets_in_their_repr(
    build: Any, stripe_emulator: StripeEmulator
) -> None:
    shop_ = build()
    for thing in (shop_.mw, shop_.mw.webhooks, shop_.mw.checkout, shop_.mw.status,
                  shop_.mw.store):
        shown = repr(thing) + str(thing)
        assert stripe_emulator.secret_key not in shown, type(thing).__name__
        assert stripe_emulator.webhook_secret not in shown, type(thing).__name__


def test_the_settings_do_not_show_secrets_in_their_repr(
    build: Any, stripe_emulator: StripeEmulator
) -> None:
    shown = repr(build().mw.settings)
    assert stripe_emulator.secret_key not in shown
    assert stripe_emulator.webhook_secret not in shown


# --- 8. abuse: replays, rebinding, free orders, small leaks ---------------------------------


def test_a_replayed_idempotency_key_returns_a_session_only_for_the_identical_order(
    build: Any, stripe_emulator: StripeEmulator
) -> None:
    web = build().web
    key = {"Idempotency-Key": "order-1"}  # predictable, as browsers' keys often are
    ann = {**ONE_TEE, "customer_email": "ann@example.com"}
    first = web.post_json(CHECKOUT, ann, headers=key).json
    # Someone else replays the key with their own cart: a session of their own, never
    # Ann's, and no 400 that would block Ann's retry either.
    mallory = web.post_json(CHECKOUT, {"line_items": [{"price": "mug", "quantity": 1}]},
                            headers=key).json
    assert mallory["sessionId"] != first["sessionId"]
    assert web.post_json(CHECKOUT, ann, headers=key).json == first  # Ann's retry
    assert web.post_json(CHECKOUT, {**ONE_TEE, "customer_email": "eve@example.com"},
                         headers=key).json["sessionId"] != first["sessionId"]
    sent = {r.idempotency_key for r in creates(stripe_emulator)}
    assert "order-1" not in sent and len(sent) == 3


def test_the_shops_origin_is_domain_urls_and_host_only_without_it(
    build: Any, stripe_emulator: StripeEmulator
) -> None:
    web = build().web
    # A DNS-rebinding page: its Origin and the Host it sends agree, and both are foreign.
    rebound = {"Host": "evil.example", "Origin": "http://evil.example"}
    assert web.post_json(CHECKOUT, ONE_TEE, headers=rebound, status=403).json["error"][
        "type"] == "permission_error"
    web.post_json(CHECKOUT, ONE_TEE, headers={"Host": "evil.example", "Origin": DOMAIN})
    web.post_json(CHECKOUT, ONE_TEE, headers={"Origin": "https://shop.example.com:443"})
    for foreign in ("https://shop.example.com/", "https://shop.example.com@evil.example",
                    "https://evil@shop.example.com", "https://shop.example.com:8443"):
        web.post_json(CHECKOUT, ONE_TEE, headers={"Origin": foreign}, status=403)
    web.post_json(CHECKOUT, ONE_TEE, headers={"Referer": "https://u@shop.example.com/x"},
                  status=403)
    assert len(creates(stripe_emulator)) == 2
    # Without domain_url (both URLs given), Host is all there is to go by.
    hostly = build(domain_url=None, success_url=SUCCESS_URL, cancel_url=CANCEL_URL).web
    hostly.post_json(CHECKOUT, ONE_TEE, headers=rebound)


def test_head_answers_carry_headers_and_no_body(build: Any) -> None:
    mw = build().mw
    for path, query, status in ((STATUS, "session_id=cs_test_unknown", "404"),
                                (STATUS, "", "400"), (CHECKOUT, "", "405")):
        environ = {"REQUEST_METHOD": "HEAD", "PATH_INFO": path, "QUERY_STRING": query,
                   "SERVER_NAME": "localhost", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
                   "wsgi.input": io.BytesIO()}
        answer, body = call(mw, environ)
        assert answer.startswith(status)
        assert body == b""


def test_a_signed_event_nested_too_deep_to_parse_is_a_400(
    build: Any, stripe_emulator: StripeEmulator
) -> None:
    shop_ = build()
    depth = 100_000
    body = (b'{"id":"evt_deep","object":"event","type":"checkout.session.completed",'
            b'"data":{"object":' + b"[" * depth + b"]" * depth + b"}}")
    answer = shop_.web.post(WEBHOOK, body, content_type="application/json", status=400,
                            headers={"Stripe-Signature": sign_payload(
                                body, stripe_emulator.webhook_secret)})
    assert answer.json["error"]["type"] == "invalid_request_error"
    assert shop_.fulfilled == []


def test_the_status_view_masks_the_email_unless_told_to_show_it(
    build: Any, stripe_emulator: StripeEmulator
) -> None:
    for options, shown in (({}, "a***@example.com"),
                           ({"status_shows_email": True}, "ann@example.com")):
        web = build(**options).web
        session_id = web.post_json(CHECKOUT, {**ONE_TEE, "customer_email": "ann@example.com"}
                                   ).json["sessionId"]
        assert web.get(STATUS, {"session_id": session_id}).json["customer_email"] == shown
        stripe_emulator.pay(session_id)
        assert web.get(STATUS, {"session_id": session_id}).json["customer_email"] == shown


def test_the_middleware_is_freed_by_reference_counting(
    stripe_emulator: StripeEmulator, tmp_path: Path
) -> None:
    mw = CheckoutMiddleware(
        shop, secret_key=stripe_emulator.secret_key, stripe_api_base=stripe_emulator.api_base,
        domain_url=DOMAIN, price_lookup=Catalog(CATALOG),
        webhook_secret=stripe_emulator.webhook_secret, store=f"sqlite:///{tmp_path}/o.db",
        fulfill=lambda order: None,
    )
    assert {mw.settings.path, mw.settings.webhook_path, mw.settings.status_path} <= set(
        mw._routes)
    mw.close()
    freed = weakref.ref(mw)
    gc.collect()
    gc.disable()
    try:
        del mw
        assert freed() is None, "a reference cycle keeps the middleware alive"
    finally:
        gc.enable()


@pytest.mark.parametrize(
    "prices",
    [pytest.param({"currencies": ["usd"], "max_unit_amount": 10_000}, id="default-floor"),
     pytest.param({"currencies": ["usd"], "max_unit_amount": 10_000, "min_unit_amount": 100},
                  id="own-floor")],
)
def test_a_browser_cannot_pay_less_than_the_floor(
    build: Any, stripe_emulator: StripeEmulator, prices: dict[str, Any]
) -> None:
    web = build(price_lookup=ClientPrices(**prices)).web
    floor = prices.get("min_unit_amount", 50)
    for amount in (0, 1, floor - 1):
        body = {"line_items": [{"quantity": 1, "price_data": {
            "currency": "usd", "unit_amount": amount, "product_data": {"name": "Gift"}}}]}
        error = web.post_json(CHECKOUT, body, status=400).json["error"]
        assert error["param"] == "line_items[0][price_data][unit_amount]"
    assert stripe_emulator.requests == []
    with pytest.raises(ValueError, match="min_unit_amount"):
        ClientPrices(currencies=["usd"], max_unit_amount=100, min_unit_amount=0)
    with pytest.raises(ValueError, match=r"'free'.*unit_amount"):
        Catalog({"free": {"name": "Gift", "unit_amount": 0, "currency": "usd"}})


def test_a_zero_total_order_is_refused_unless_free_orders_are_allowed(
    build: Any, stripe_emulator: StripeEmulator
) -> None:
    def free(items: list[dict[str, Any]], environ: Any) -> list[dict[str, Any]]:
        return [{"quantity": 1, "price_data": {"currency": "usd", "unit_amount": 0,
                                               "product_data": {"name": "Sample"}}}]

    error = build(price_lookup=free).web.post_json(CHECKOUT, ONE_TEE, status=400).json["error"]
    assert error["param"] == "line_items" and "0" in error["message"]
    assert stripe_emulator.requests == []
    build(price_lookup=free, allow_free_orders=True).web.post_json(CHECKOUT, ONE_TEE)
    assert len(creates(stripe_emulator)) == 1
