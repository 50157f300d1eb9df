"""Property-based fuzzing of the three owned paths and of pass-through (issue 7, suite 1).

The middleware is called directly as a WSGI app (no network server, for speed) with
environs built here, in front of the real ``stripe`` SDK and the offline emulator. For
every generated request:

- an owned path answers a documented status; every error has the one JSON shape
  ``{"error": {"type", "message", "param"}}``; no ``Traceback``, no secret key and no
  webhook secret in the status line, the headers or the body; headers are clean
  (no control characters, latin-1 encodable);
- invalid input never reaches Stripe (the emulator records no new request);
- invalid webhooks change nothing in the ledger;
- any other path reaches the wrapped app with the same environ, its body unread, and the
  app's own response object comes back.

CI runs a few thousand examples, reproducibly (``derandomize=True``, no example database).
``STRIPE_CHECKOUT_FUZZ_SCALE=10`` multiplies every budget for a longer local run.
"""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stripe_checkout_mw import Catalog, CheckoutMiddleware
from stripe_checkout_mw.ledger.orders import Order
from stripe_checkout_mw.testing import StripeEmulator, sign_payload

CATALOG = {
    "tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"},
    "mug": {"name": "Mug", "unit_amount": 800, "currency": "usd"},
    "club": {"name": "Club", "unit_amount": 500, "currency": "usd",
             "recurring": {"interval": "month"}},
}
CHECKOUT, WEBHOOK, STATUS = "/create-checkout-session", "/stripe-webhook", "/checkout-session"
OWNED = (CHECKOUT, WEBHOOK, STATUS)
ALLOWED = {CHECKOUT: "POST, OPTIONS", WEBHOOK: "POST", STATUS: "GET, HEAD, OPTIONS"}
PROVIDER_REJECTED = "The payment provider rejected this checkout."
#: Every status the README documents for the owned paths, bar 500 (an unexpected error,
#: which no request, however malformed, may cause) and 502/503 (Stripe failing: the
#: emulator is healthy here).
FUZZ_STATUSES = {200, 204, 303, 400, 403, 404, 405, 413, 415}
_SCALE = float(os.environ.get("STRIPE_CHECKOUT_FUZZ_SCALE", "1"))
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def budget(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * _SCALE)),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much],
    )


# --- the world under test -----------------------------------------------------------------


class RecordingApp:
    """The wrapped app: remembers each environ and answers with an object of its own."""

    def __init__(self) -> None:
        self.environs: list[dict[str, Any]] = []
        self.last_body: AppBody | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> AppBody:
        self.environs.append(environ)
        start_response("299 App Answer", [("X-App", "yes"), ("Content-Type", "text/plain")])
        self.last_body = AppBody()
        return self.last_body


class AppBody:
    def __init__(self) -> None:
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield b"from the app"

    def close(self) -> None:
        self.closed = True


@dataclass
class World:
    emu: StripeEmulator
    app: RecordingApp
    mw: CheckoutMiddleware
    big: CheckoutMiddleware  # max_body 16 MiB, so validation itself meets huge orders
    db: Path
    fulfilled: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def secrets(self) -> tuple[str, str]:
        return self.emu.secret_key, self.emu.webhook_secret

    def stripe_calls(self) -> int:
        return len(self.emu.requests)

    def ledger(self) -> tuple[list[Any], list[Any]]:
        with sqlite3.connect(self.db) as conn:
            orders = conn.execute("SELECT session_id, status, fulfilled, amount_total "
                                  "FROM stripe_checkout_orders ORDER BY session_id").fetchall()
            events = conn.execute("SELECT * FROM stripe_checkout_events").fetchall()
        conn.close()
        return orders, events


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("fuzz")
    with StripeEmulator() as emu:
        app = RecordingApp()
        fulfilled: list[str] = []
        common: dict[str, Any] = {
            "secret_key": emu.secret_key,
            "stripe_api_base": emu.api_base,
            "domain_url": "https://shop.example.com",
            "price_lookup": Catalog(CATALOG),
            "webhook_secret": emu.webhook_secret,
            "max_network_retries": 0,
            "fulfill": lambda order: fulfilled.append(order.session_id),
        }
        mw = CheckoutMiddleware(app, store=f"sqlite:///{tmp}/orders.db", **common)
        big = CheckoutMiddleware(app, store=f"sqlite:///{tmp}/big.db", max_body=16 * 1024 * 1024,
                                 **common)
        # One order the ledger knows, so that forged webhooks have something to change.
        assert mw.store is not None
        mw.store.record_open(Order(session_id="cs_test_fuzzknown", currency="usd",
                                   amount_total=2000))
        try:
            yield World(emu, app, mw, big, tmp / "orders.db", fulfilled)
        finally:
            mw.close()
            big.close()


@dataclass
class Answer:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    result: Any
    head: bool = False  # a HEAD answer: the headers of the GET answer, no body

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)

    @property
    def text(self) -> str:
        return f"{self.status} {self.reason}\n{self.headers!r}\n" + self.body.decode(
            "utf-8", "replace")


def environ_for(
    method: str,
    path: str,
    body: bytes = b"",
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
    query: str = "",
) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "localhost",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
    if content_type is not None:
        environ["CONTENT_TYPE"] = content_type
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def call(mw: CheckoutMiddleware, environ: dict[str, Any]) -> Answer:
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append((status, headers))
        return lambda data: None

    result = mw(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    assert len(started) == 1, "start_response must be called exactly once"
    status, headers = started[0]
    assert re.fullmatch(r"[1-5]\d\d [^\x00-\x1f\x7f]+", status), status
    for name, value in headers:
        assert isinstance(name, str) and isinstance(value, str)
        assert re.fullmatch(r"[A-Za-z0-9-]+", name), name
        assert not _CONTROL.search(value), f"control character in header {name}: {value!r}"
        value.encode("latin-1")
    code, _, reason = status.partition(" ")
    head = environ.get("REQUEST_METHOD") == "HEAD"
    return Answer(int(code), reason, headers, body, result, head)


def check_owned(world: World, answer: Answer, before_calls: int,
                allowed: set[int] = FUZZ_STATUSES) -> None:
    """The invariants of every answer on an owned path."""
    assert answer.status in allowed, answer.text
    for secret in world.secrets:
        assert secret not in answer.text
    assert "Traceback" not in answer.text
    assert not (answer.head and answer.body), "a HEAD answer must have no body"
    if answer.status >= 400:
        assert answer.header("Content-Type") == "application/json", answer.text
    if answer.status >= 400 and not answer.head:
        payload = json.loads(answer.body)
        assert set(payload) == {"error"}, answer.text
        error = payload["error"]
        assert set(error) == {"type", "message", "param"}, answer.text
        assert isinstance(error["type"], str) and error["type"]
        assert isinstance(error["message"], str) and error["message"]
        assert error["param"] is None or isinstance(error["param"], str)
        # Only Stripe's own refusals (a rejected create, an Idempotency-Key reused for
        # another cart) come after a call; everything else is refused before one.
        if error["message"] != PROVIDER_REJECTED and error["type"] != "idempotency_error":
            assert world.stripe_calls() == before_calls, "invalid input reached Stripe"
    if answer.status == 405:
        assert answer.header("Allow")
    if answer.status in (200, 303) and world.stripe_calls() > before_calls:
        assert answer.status == 303 or answer.header("Content-Type") == "application/json"


# --- strategies -----------------------------------------------------------------------------

ANY_TEXT = st.text(max_size=40)
NASTY_TEXT = st.one_of(
    ANY_TEXT,
    st.sampled_from(["\r\n", "a\r\nX-Injected: 1", "\u00e9\u00e8", "\u2028", "\x00", " ",
                     "\udcff".encode("utf-8", "surrogatepass").decode("latin-1"),
                     "caf\u00e9".encode().decode("latin-1"), "https://evil.example",
                     "null", "http://localhost", "https://localhost@evil.example"]),
)
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), ANY_TEXT,
    st.sampled_from([10**30, -(10**30), 1e308, -0.0, 0.5, "1", "", "\u00e9"]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(ANY_TEXT, inner, max_size=4)),
    max_leaves=12,
)
QUANTITIES = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from([0, -1, 1, 999, 1000, 10**9, 2**63, 1.0, 1.5, -0.5, "1", "one", True,
                     False, None, [], {}]),
    st.floats(allow_nan=False),
    JSON_VALUES,
)
PRICES = st.one_of(st.sampled_from([*CATALOG, "TEE", "price_123", "", " tee", "x" * 201]),
                   JSON_VALUES)
PRICE_DATA = st.one_of(
    st.fixed_dictionaries(
        {"currency": st.one_of(st.sampled_from(["usd", "USD", "eur", "us"]), JSON_VALUES),
         "unit_amount": st.one_of(st.sampled_from([2000, 1, 0, -2000, 2000.0, "2000"]),
                                  JSON_VALUES),
         "product_data": st.one_of(
             st.fixed_dictionaries({"name": st.one_of(st.sampled_from(["T-shirt", "Mug"]),
                                                      JSON_VALUES)}),
             JSON_VALUES)},
        optional={"recurring": JSON_VALUES, "tax_behavior": JSON_VALUES},
    ),
    JSON_VALUES,
)
VALID_ITEMS = st.one_of(
    st.fixed_dictionaries({"price": st.sampled_from(["tee", "mug"]),
                           "quantity": st.integers(min_value=1, max_value=999)}),
    st.fixed_dictionaries({"price_data": st.just({"currency": "USD", "unit_amount": 800,
                                                  "product_data": {"name": "Mug"}}),
                           "quantity": st.integers(min_value=1, max_value=999)}),
)
ITEMS = st.one_of(
    VALID_ITEMS,
    st.fixed_dictionaries({"price": PRICES, "quantity": QUANTITIES},
                          optional={"price_data": PRICE_DATA, "unit_amount": JSON_VALUES,
                                    "currency": JSON_VALUES}),
    st.fixed_dictionaries({"price_data": PRICE_DATA, "quantity": QUANTITIES}),
    JSON_VALUES,
)
EMAILS = st.one_of(
    st.none(),
    st.emails(),
    st.builds(lambda local, domain, tld: f"{local}@{domain}.{tld}",
              st.text(st.characters(exclude_categories=["Cc", "Cs", "Zs", "Zl", "Zp"],
                                    exclude_characters="@."), min_size=1, max_size=12),
              st.text(st.characters(exclude_categories=["Cc", "Cs", "Zs", "Zl", "Zp"],
                                    exclude_characters="@."), min_size=1, max_size=12),
              st.sampled_from(["com", "\u0440\u0444", "\u4e2d\u56fd"])),
    JSON_VALUES,
)
ORDERS = st.fixed_dictionaries(
    {"line_items": st.one_of(st.lists(ITEMS, max_size=4), JSON_VALUES)},
    optional={"customer_email": EMAILS, "success_url": st.just("https://evil.example/"),
              "cancel_url": ANY_TEXT, "mode": ANY_TEXT, "amount_total": JSON_VALUES},
)
CONTENT_TYPES = st.one_of(
    st.sampled_from(["application/json", "application/json; charset=utf-8", "APPLICATION/JSON",
                     "application/x-www-form-urlencoded", "text/plain", "",
                     "multipart/form-data; boundary=x", "application/json\r\nX-Evil: 1",
                     "application/\u00e9", "application/jsonp", "*/*"]),
    NASTY_TEXT,
)
METHODS = st.one_of(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE",
                     "CONNECT", "post", "Get", ""]),
    st.text(st.characters(min_codepoint=33, max_codepoint=0x24F), min_size=1, max_size=10),
)
HEADER_NAMES = st.sampled_from(["Origin", "Referer", "Idempotency-Key", "Stripe-Signature", "Host",
                                "Cookie", "X-Forwarded-Host", "Access-Control-Request-Method"])
HEADERS = st.dictionaries(HEADER_NAMES, NASTY_TEXT, max_size=4)


# --- the checkout path ----------------------------------------------------------------------


@budget(700)
@given(order=ORDERS, extra_headers=st.dictionaries(st.just("Referer"), NASTY_TEXT, max_size=1))
def test_json_orders(world: World, order: dict[str, Any], extra_headers: dict[str, str]) -> None:
    before = world.stripe_calls()
    body = json.dumps(order).encode()
    answer = call(world.mw, environ_for("POST", CHECKOUT, body, "application/json",
                                        extra_headers))
    check_owned(world, answer, before, {200, 400, 403})
    if answer.status == 200:
        session = world.emu.session(json.loads(answer.body)["sessionId"])
        # Whatever the order said, Stripe priced it from the catalog, and the redirect
        # URLs are the configured ones.
        assert session["success_url"].startswith("https://shop.example.com/success?")
        assert session["cancel_url"] == "https://shop.example.com/cancel"
        expected = sum(CATALOG[item["price"]]["unit_amount"] * item["quantity"]
                       for item in order["line_items"] if "price" in item)
        expected += sum(item["price_data"]["unit_amount"] * item["quantity"]
                        for item in order["line_items"] if "price_data" in item)
        assert session["amount_total"] == expected
        assert set(order) <= {"line_items", "customer_email"}


@budget(400)
@given(quantity=QUANTITIES, via=st.sampled_from(["price", "price_data"]))
def test_bad_quantities_are_400_naming_the_field(world: World, quantity: Any, via: str) -> None:
    assume(not (type(quantity) is int and 1 <= quantity <= 999))
    item: dict[str, Any] = {"quantity": quantity}
    if via == "price":
        item["price"] = "tee"
    else:
        item["price_data"] = {"currency": "usd", "unit_amount": 2000,
                              "product_data": {"name": "T-shirt"}}
    before = world.stripe_calls()
    answer = call(world.mw, environ_for("POST", CHECKOUT,
                                        json.dumps({"line_items": [item]}).encode(),
                                        "application/json"))
    check_owned(world, answer, before, {400})
    assert json.loads(answer.body)["error"]["param"] == "line_items[0][quantity]"


@budget(300)
@given(pairs=st.lists(st.tuples(
    st.one_of(st.sampled_from(["price", "quantity", "customer_email", "success_url",
                               "cancel_url", "unit_amount", "line_items"]), ANY_TEXT),
    st.one_of(st.sampled_from([*CATALOG, "1", "2", "0", "-1", "1.5", "\u00b2", "ann@example.com"]),
              NASTY_TEXT)),
    max_size=6))
def test_form_orders(world: World, pairs: list[tuple[str, str]]) -> None:
    before = world.stripe_calls()
    body = urlencode(pairs).encode()
    answer = call(world.mw, environ_for("POST", CHECKOUT, body,
                                        "application/x-www-form-urlencoded"))
    check_owned(world, answer, before, {303, 400})
    if answer.status == 303:
        session = world.emu.sessions[-1]
        assert answer.header("Location") == session["url"]
        assert session["url"].startswith(world.emu.api_base + "/")
        assert session["success_url"].startswith("https://shop.example.com/success?")


@budget(500)
@given(method=METHODS, path=st.sampled_from(OWNED), content_type=st.none() | CONTENT_TYPES,
       headers=HEADERS, query=st.one_of(st.just(""), NASTY_TEXT),
       body=st.one_of(st.binary(max_size=300), JSON_VALUES.map(lambda v: json.dumps(v).encode()),
                      ORDERS.map(lambda v: json.dumps(v).encode())))
def test_anything_on_an_owned_path(
    world: World, method: str, path: str, content_type: str | None, headers: dict[str, str],
    query: str, body: bytes,
) -> None:
    before_ledger = world.ledger()
    before = world.stripe_calls()
    fulfilled = len(world.fulfilled)
    answer = call(world.mw, environ_for(method, path, body, content_type, headers, query))
    check_owned(world, answer, before)
    if path == WEBHOOK:
        # Nothing fuzzed here is signed with the webhook secret: nothing may change.
        assert answer.status in (400, 405, 413), answer.text
        assert world.ledger() == before_ledger
        assert len(world.fulfilled) == fulfilled
    if path == STATUS:
        assert answer.status in (204, 400, 404, 405), answer.text
        assert world.stripe_calls() == before
    if answer.status == 204:
        assert method == "OPTIONS" and answer.body == b""
    if method not in ALLOWED[path].split(", "):
        assert answer.status == 405, answer.text
        assert answer.header("Allow") == ALLOWED[path]


# --- large and deep bodies ------------------------------------------------------------------

TEN_THOUSAND = {"line_items": [{"price": "tee", "quantity": 1}] * 10_000}


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        pytest.param(json.dumps(TEN_THOUSAND).encode(), 400, "line_items", id="10000-items"),
        pytest.param(b"[" * 200_000 + b"]" * 200_000, 400, None, id="deep-array"),
        pytest.param(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, 400, None, id="deep-object"),
        pytest.param(json.dumps({"line_items": [{"price": "tee", "quantity": 1}],
                                 "customer_email": "a" * 1_000_000 + "@x.io"}).encode(),
                     400, "customer_email", id="megabyte-email"),
        pytest.param(b'{"line_items": [{"price": "tee", "quantity": 1' + b"0" * 5000 + b"}]}",
                     400, None, id="5000-digit-quantity"),
        pytest.param(json.dumps({"line_items": [{"price": "tee", "quantity": 1}],
                                 "customer_email": "\u00e9" * 300 + "@example.com"}).encode(),
                     400, "customer_email", id="long-unicode-email"),
        pytest.param(json.dumps({"line_items": [{"price": "t" * 100_000, "quantity": 1}]}
                                ).encode(), 400, "line_items[0][price]", id="100k-price-key"),
        pytest.param(b"\xef\xbb\xbf" + json.dumps(TEN_THOUSAND).encode(), 400, None, id="bom"),
        pytest.param(b'{"line_items": ' + b"[" * 500 + b"]" * 500 + b"}", 400, "line_items[0]",
                     id="nested-items"),
    ],
)
def test_huge_and_deep_orders(
    world: World, body: bytes, status: int, param: str | None
) -> None:
    before = world.stripe_calls()
    answer = call(world.big, environ_for("POST", CHECKOUT, body, "application/json"))
    check_owned(world, answer, before, {status})
    assert json.loads(answer.body)["error"]["param"] == param
    # The same bodies on the default limit: refused as too large before any parsing.
    if len(body) > 65536:
        answer = call(world.mw, environ_for("POST", CHECKOUT, body, "application/json"))
        check_owned(world, answer, before, {413})


@budget(60)
@given(email=st.emails() | st.builds(
    lambda local, domain: f"{local}@{domain}.example",
    st.text(st.characters(min_codepoint=0xA0, max_codepoint=0x2FFF,
                          exclude_categories=["Zs", "Zl", "Zp", "Cs"]), min_size=1,
            max_size=20),
    st.text(st.characters(min_codepoint=0xA0, max_codepoint=0x2FFF,
                          exclude_categories=["Zs", "Zl", "Zp", "Cs"],
                          exclude_characters="."), min_size=1, max_size=20)))
def test_unicode_emails_reach_stripe_intact_or_are_refused(world: World, email: str) -> None:
    before = world.stripe_calls()
    order = {"line_items": [{"price": "mug", "quantity": 1}], "customer_email": email}
    answer = call(world.mw, environ_for("POST", CHECKOUT, json.dumps(order).encode(),
                                        "application/json; charset=utf-8"))
    check_owned(world, answer, before, {200, 400})
    if answer.status == 200:
        session_id = json.loads(answer.body)["sessionId"]
        assert world.emu.session(session_id)["customer_email"] == email


# --- the webhook and status paths -----------------------------------------------------------

SIGNATURES = st.one_of(
    NASTY_TEXT,
    st.builds(lambda t, v: f"t={t},v1={v}",
              st.one_of(st.integers(min_value=0, max_value=2**40).map(str), NASTY_TEXT),
              st.one_of(st.text("0123456789abcdef", min_size=64, max_size=64), NASTY_TEXT)),
)


@budget(400)
@given(body=st.one_of(st.binary(max_size=200),
                      JSON_VALUES.map(lambda v: json.dumps(v).encode()),
                      st.builds(lambda t, obj: json.dumps({
                          "id": "evt_fuzz", "object": "event", "type": t,
                          "data": {"object": obj}}).encode(),
                          st.sampled_from(["checkout.session.completed",
                                           "checkout.session.expired", "x"]),
                          st.fixed_dictionaries({"id": st.just("cs_test_fuzzknown"),
                                                 "payment_status": st.just("paid"),
                                                 "status": st.just("complete")}))),
       signature=st.none() | SIGNATURES,
       wrong_secret=st.sampled_from(["whsec_forged", "", None]))
def test_unsigned_or_forged_webhooks_change_nothing(
    world: World, body: bytes, signature: str | None, wrong_secret: str | None
) -> None:
    if wrong_secret:
        # Correctly formed, signed with a secret that is not the endpoint's.
        signature = sign_payload(body, wrong_secret)
    before_ledger = world.ledger()
    before = world.stripe_calls()
    fulfilled = len(world.fulfilled)
    headers = {"Stripe-Signature": signature} if signature is not None else {}
    answer = call(world.mw, environ_for("POST", WEBHOOK, body, "application/json", headers))
    check_owned(world, answer, before, {400})
    assert world.ledger() == before_ledger
    assert len(world.fulfilled) == fulfilled
    order = world.mw.store.get("cs_test_fuzzknown") if world.mw.store else None
    assert order is not None and (order.status, order.fulfilled) == ("open", False)


@budget(300)
@given(query=st.one_of(
    NASTY_TEXT,
    st.builds(lambda v: urlencode({"session_id": v}), st.one_of(
        NASTY_TEXT, st.from_regex(r"cs_(test|live)_[A-Za-z0-9_]{1,60}", fullmatch=True))),
    st.lists(st.tuples(st.sampled_from(["session_id", "id", "session_id[]"]), NASTY_TEXT),
             max_size=3).map(urlencode),
), method=st.sampled_from(["GET", "HEAD"]))
def test_status_reveals_nothing_for_unknown_ids(world: World, query: str, method: str) -> None:
    assume("cs_test_fuzzknown" not in query)
    before = world.stripe_calls()
    answer = call(world.mw, environ_for(method, STATUS, query=query))
    check_owned(world, answer, before, {400, 404})
    assert world.stripe_calls() == before


# --- everything else passes through ---------------------------------------------------------


@budget(500)
@given(method=METHODS,
       path=st.one_of(st.text(max_size=30).map(lambda p: "/" + p), NASTY_TEXT,
                      st.sampled_from([p + "/" for p in OWNED] + [p.upper() for p in OWNED]
                                      + ["/" + p for p in OWNED] + [p + "x" for p in OWNED]
                                      + ["", "/", "/success", "/cancel"])),
       content_type=st.none() | CONTENT_TYPES, headers=HEADERS,
       body=st.binary(max_size=100))
def test_other_paths_reach_the_app_unchanged(
    world: World, method: str, path: str, content_type: str | None, headers: dict[str, str],
    body: bytes,
) -> None:
    assume(path not in OWNED)
    environ = environ_for(method, path, body, content_type, headers)
    snapshot = dict(environ)
    stream = environ["wsgi.input"]
    before = world.stripe_calls()
    answer = call(world.mw, environ)
    assert world.app.environs[-1] is environ
    assert environ == snapshot  # nothing added, removed or changed
    assert stream.tell() == 0  # the body was left for the app
    assert answer.result is world.app.last_body  # the app's own iterable, not a wrapper
    assert world.app.last_body is not None and world.app.last_body.closed
    assert (answer.status, answer.reason, answer.body) == (299, "App Answer", b"from the app")
    assert answer.headers == [("X-App", "yes"), ("Content-Type", "text/plain")]
    assert world.stripe_calls() == before


# --- what the fuzzing found (each was a 500 or a wrongly served method, now fixed) ---------


def test_non_ascii_signature_is_a_400(world: World) -> None:
    before_ledger = world.ledger()
    body = b'{"id": "evt_x", "object": "event", "type": "x"}'
    for value in ("\u00e9", "caf\u00e9".encode().decode("latin-1")):
        answer = call(world.mw, environ_for("POST", WEBHOOK, body, "application/json",
                                            {"Stripe-Signature": f"t=1700000000,v1={value}"}))
        check_owned(world, answer, world.stripe_calls(), {400})
    assert world.ledger() == before_ledger


def test_unhashable_product_name_is_a_400(world: World) -> None:
    for name in (["T-shirt"], {"n": 1}):
        order = {"line_items": [{"quantity": 1, "price_data": {
            "currency": "usd", "unit_amount": 2000, "product_data": {"name": name}}}]}
        before = world.stripe_calls()
        answer = call(world.mw, environ_for("POST", CHECKOUT, json.dumps(order).encode(),
                                            "application/json"))
        check_owned(world, answer, before, {400})
        assert json.loads(answer.body)["error"]["param"] == "line_items[0][price_data]"


@pytest.mark.parametrize("method", ["POS", "ST", "T, O", ""])
def test_a_method_that_is_part_of_an_allowed_one_is_405(world: World, method: str) -> None:
    before = world.stripe_calls()
    body = json.dumps({"line_items": [{"price": "tee", "quantity": 1}]}).encode()
    answer = call(world.mw, environ_for(method, CHECKOUT, body, "application/json"))
    check_owned(world, answer, before, {405})
    assert world.stripe_calls() == before

