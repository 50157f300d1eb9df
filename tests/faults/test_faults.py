"""Stripe failing, on the real server path (issue 7, suite 2).

``tests/checkout/test_checkout.py`` proves the error mapping through WebTest (500 for ever, an HTML
502, malformed JSON, 429, 401, a rejected create, a retried 429, a hang, connection
refused). This file fills the gaps on a real werkzeug server over HTTP on 127.0.0.1:

- a fault then success makes one session under one idempotency key, recorded in the ledger;
- every fault answers its documented status within the configured worst case
  (``(max_network_retries + 1) * timeout`` plus the SDK's backoff) and a small margin, with
  the number of attempts the SDK promises (429 without ``Stripe-Should-Retry`` and 401 are
  never retried; 5xx, 409 and timeouts are, always with the same key);
- after a hang the worker is free: on a single-threaded server the next request is served;
- a timed-out attempt that Stripe carried out anyway does not make a second session;
- the same for the price look-up (``StripeLookupKeys``) and the status path's retrieval.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from werkzeug.serving import make_server

from stripe_checkout_mw import Catalog, CheckoutMiddleware, StripeLookupKeys
from stripe_checkout_mw.testing import RecordedRequest, StripeEmulator

CATALOG = Catalog({"tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"}})
ONE_TEE = {"line_items": [{"price": "tee", "quantity": 1}]}
#: What the SDK may add on top of the timeouts: its backoff (0.5 s, then 1 s at most).
BACKOFF = (0.0, 0.5, 1.5, 3.5)
#: Scheduling, connection set-up and a slow CI machine.
MARGIN = 1.5


def shop_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the shop"]


@contextmanager
def serving(app: Any, *, threaded: bool = True) -> Iterator[str]:
    """``app`` on a werkzeug server on 127.0.0.1; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=threaded)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="faults-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def request(base: str, method: str, path: str, body: Any = None, timeout: float = 30) -> Reply:
    host, port = base.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    headers = {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    started = time.monotonic()
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        return Reply(response.status, dict(response.getheaders()), payload,
                     time.monotonic() - started)
    finally:
        conn.close()


def creates(emu: StripeEmulator) -> list[RecordedRequest]:
    return [r for r in emu.requests if r.method == "POST" and r.path == "/v1/checkout/sessions"]


@pytest.fixture
def build(stripe_emulator: StripeEmulator, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    made: list[CheckoutMiddleware] = []

    def make(**options: Any) -> CheckoutMiddleware:
        settings: dict[str, Any] = {
            "secret_key": stripe_emulator.secret_key,
            "stripe_api_base": stripe_emulator.api_base,
            "domain_url": "https://shop.example.com",
            "price_lookup": CATALOG,
            "store": f"sqlite:///{tmp_path}/orders-{len(made)}.db",
        }
        settings.update(options)
        middleware = CheckoutMiddleware(shop_app, **settings)
        made.append(middleware)
        return middleware

    yield make
    for middleware in made:
        middleware.close()


def budget(timeout: float, retries: int) -> float:
    return (retries + 1) * timeout + BACKOFF[retries] + MARGIN


def test_500_then_success_makes_one_session_over_a_real_server(
    build: Callable[..., CheckoutMiddleware], stripe_emulator: StripeEmulator
) -> None:
    mw = build(max_network_retries=2, timeout=2.0)
    stripe_emulator.fail_next(500, path="/v1/checkout/sessions")
    with serving(mw) as base:
        reply = request(base, "POST", "/create-checkout-session", ONE_TEE)
        assert reply.status == 200, reply.body
        session_id = reply.json["sessionId"]
        status = request(base, "GET", f"/checkout-session?session_id={session_id}")
    attempts = creates(stripe_emulator)
    assert [a.status for a in attempts] == [500, 200]
    assert attempts[0].idempotency_key == attempts[1].idempotency_key is not None
    assert [s["id"] for s in stripe_emulator.sessions] == [session_id]
    assert reply.json["url"] == stripe_emulator.session(session_id)["url"]
    # Recorded in the ledger before the answer left.
    assert status.status == 200 and status.json["status"] == "open"
    assert reply.elapsed < budget(2.0, 1)


@pytest.mark.parametrize(
    ("fault", "retries", "status", "attempts"),
    [
        pytest.param({"status": 500, "times": 10}, 2, 502, 3, id="500-for-ever"),
        pytest.param({"status": 500, "headers": {"Stripe-Should-Retry": "false"}}, 2, 502, 1,
                     id="500-should-not-retry"),
        pytest.param({"status": 409}, 2, 200, 2, id="409-then-success"),
        pytest.param({"status": 429}, 2, 503, 1, id="429-not-retried"),
        pytest.param({"status": 429, "headers": {"Stripe-Should-Retry": "false"}}, 2, 503, 1,
                     id="429-should-not-retry"),
        pytest.param({"status": 429, "times": 10, "headers": {"Stripe-Should-Retry": "true"}},
                     2, 503, 3, id="429-should-retry-for-ever"),
        pytest.param({"status": 401}, 2, 500, 1, id="401-not-retried"),
        pytest.param({"status": 403}, 2, 500, 1, id="403-permission"),
        pytest.param({"status": 200, "body": "{not json"}, 2, 502, 1, id="malformed-json"),
        pytest.param({"status": 200, "body": {"id": "cs_test_nourl", "object": "checkout.session",
                                              "url": None}}, 2, 502, 1, id="session-url-null"),
        pytest.param(
            {"status": 200, "body": {"id": "cs_test_nourl", "object": "checkout.session"}},
            2, 502, 1, id="session-without-url"),
        pytest.param({"status": 502, "times": 10, "body": "<html>Bad Gateway</html>",
                      "headers": {"Content-Type": "text/html"}}, 1, 502, 2, id="html-502"),
        pytest.param({"status": 500, "delay": 5.0, "times": 10}, 1, 502, 2, id="hang"),
    ],
)
def test_each_fault_gets_its_status_in_time_and_the_promised_attempts(
    build: Callable[..., CheckoutMiddleware], stripe_emulator: StripeEmulator,
    caplog: pytest.LogCaptureFixture, fault: dict[str, Any], retries: int, status: int,
    attempts: int,
) -> None:
    timeout = 0.5
    mw = build(max_network_retries=retries, timeout=timeout)
    stripe_emulator.fail_next(path="/v1/checkout/sessions", **fault)
    with caplog.at_level(logging.INFO, logger="stripe_checkout_mw"), serving(mw) as base:
        reply = request(base, "POST", "/create-checkout-session", ONE_TEE)
        # The worker is free again: the next request (pass-through) is answered at once.
        after = request(base, "GET", "/")
    assert reply.status == status, reply.body
    assert reply.elapsed < budget(timeout, retries), reply.elapsed
    assert (after.status, after.body) == (200, b"the shop")
    sent = creates(stripe_emulator)
    assert len(sent) == attempts
    assert len({a.idempotency_key for a in sent}) == 1
    if status != 200:
        error = reply.json["error"]
        assert set(error) == {"type", "message", "param"} and error["type"] == "api_error"
        assert "emulator" not in error["message"]  # Stripe's own wording never leaks
        assert len(stripe_emulator.sessions) <= 1
    if status == 503:
        assert reply.headers["Retry-After"].isdigit()
    if status == 500:
        assert "misconfigured" in caplog.text
    assert stripe_emulator.secret_key not in caplog.text


def test_a_hang_frees_the_only_worker(
    build: Callable[..., CheckoutMiddleware], stripe_emulator: StripeEmulator
) -> None:
    """One worker (a single-threaded server): the next request is served after a hang."""
    timeout = 0.5
    mw = build(max_network_retries=0, timeout=timeout)
    stripe_emulator.fail_next(500, delay=10.0, path="/v1/checkout/sessions")
    with serving(mw, threaded=False) as base:
        hung = request(base, "POST", "/create-checkout-session", ONE_TEE)
        passed = request(base, "GET", "/")
        served = request(base, "POST", "/create-checkout-session", ONE_TEE)
    assert hung.status == 502
    assert hung.elapsed < timeout + MARGIN
    assert (passed.status, passed.body) == (200, b"the shop")
    assert served.status == 200 and passed.elapsed + served.elapsed < MARGIN * 2


def test_pass_through_is_served_while_stripe_hangs(
    build: Callable[..., CheckoutMiddleware], stripe_emulator: StripeEmulator
) -> None:
    mw = build(max_network_retries=0, timeout=1.0)
    stripe_emulator.fail_next(500, delay=10.0, path="/v1/checkout/sessions")
    with serving(mw) as base:
        replies: list[Reply] = []
        hanging = threading.Thread(target=lambda: replies.append(
            request(base, "POST", "/create-checkout-session", ONE_TEE)))
        hanging.start()
        deadline = time.monotonic() + 5
        while not stripe_emulator.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        quick = [request(base, "GET", "/") for _ in range(5)]
        hanging.join(timeout=10)
    assert all(r.status == 200 and r.elapsed < 1.0 for r in quick)
    assert replies and replies[0].status == 502


def test_a_timed_out_attempt_that_stripe_carried_out_makes_no_second_session(
    build: Callable[..., CheckoutMiddleware], stripe_emulator: StripeEmulator
) -> None:
    # The first attempt is handled by the emulator after the client gave up on it; the
    # retry carries the same key, so whichever is handled second replays the first.
    mw = build(max_network_retries=2, timeout=0.4)
    stripe_emulator.fail_next(None, delay=0.7, path="/v1/checkout/sessions")
    with serving(mw) as base:
        reply = request(base, "POST", "/create-checkout-session", ONE_TEE)
        deadline = time.monotonic() + 5
        while (len([a for a in creates(stripe_emulator) if a.status is not None]) < 2
               and time.monotonic() < deadline):
            time.sleep(0.02)
    assert reply.status == 200
    sent = creates(stripe_emulator)
    assert len(sent) >= 2 and len({a.idempotency_key for a in sent}) == 1
    assert [s["id"] for s in stripe_emulator.sessions] == [reply.json["sessionId"]]


def test_connection_refused_is_a_502_within_the_backoff(
    build: Callable[..., CheckoutMiddleware],
) -> None:
    mw = build(stripe_api_base="http://127.0.0.1:9", max_network_retries=2, timeout=0.5)
    with serving(mw) as base:
        reply = request(base, "POST", "/create-checkout-session", ONE_TEE)
        after = request(base, "GET", "/")
    assert reply.status == 502 and reply.json["error"]["type"] == "api_error"
    assert reply.elapsed < budget(0.5, 2)
    assert after.status == 200


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        pytest.param({"status": 500, "times": 2}, 502, id="500-for-ever"),
        pytest.param({"status": 429}, 503, id="429"),
        pytest.param({"status": 401}, 500, id="401"),
        pytest.param({"status": 200, "body": "<html>"}, 502, id="garbage"),
        pytest.param({"status": 500, "delay": 5.0, "times": 2}, 502, id="hang"),
    ],
)
def test_price_lookup_faults(
    build: Callable[..., CheckoutMiddleware], stripe_emulator: StripeEmulator,
    fault: dict[str, Any], status: int,
) -> None:
    stripe_emulator.add_price(unit_amount=1500, currency="usd", lookup_key="basic")
    lookup = StripeLookupKeys(ttl=300, retry_after=0)
    mw = build(price_lookup=lookup, max_network_retries=1, timeout=0.5)
    stripe_emulator.fail_next(path="/v1/prices", **fault)
    body = {"line_items": [{"price": "basic", "quantity": 1}]}
    with serving(mw) as base:
        reply = request(base, "POST", "/create-checkout-session", body)
        assert reply.status == status, reply.body
        assert reply.elapsed < budget(0.5, 1)
        assert creates(stripe_emulator) == []  # nothing was created at a failed look-up
        # A failure is not cached as "unknown item": once Stripe is back, the key works.
        assert request(base, "POST", "/create-checkout-session", body).status == 200
    assert set(reply.json["error"]) == {"type", "message", "param"}


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"status": 500, "times": 2}, id="500-for-ever"),
        pytest.param({"status": 429}, id="429"),
        pytest.param({"status": 401}, id="401"),
        pytest.param({"status": 200, "body": "{"}, id="malformed-json"),
        pytest.param({"status": 500, "delay": 5.0, "times": 2}, id="hang"),
    ],
)
def test_status_lookup_faults(
    build: Callable[..., CheckoutMiddleware], stripe_emulator: StripeEmulator,
    caplog: pytest.LogCaptureFixture, fault: dict[str, Any],
) -> None:
    mw = build(max_network_retries=1, timeout=0.5)
    with serving(mw) as base:
        session_id = request(base, "POST", "/create-checkout-session", ONE_TEE).json["sessionId"]
        stripe_emulator.fail_next(method="GET", path="/v1/checkout/sessions/", **fault)
        with caplog.at_level(logging.INFO, logger="stripe_checkout_mw"):
            reply = request(base, "GET", f"/checkout-session?session_id={session_id}")
        again = request(base, "GET", f"/checkout-session?session_id={session_id}")
    assert reply.status == 502, reply.body
    assert reply.json["error"]["type"] == "api_error"
    assert reply.elapsed < budget(0.5, 1)
    assert session_id in caplog.text and stripe_emulator.secret_key not in caplog.text
    # The worker is free and the ledger still answers (the retry is throttled).
    assert again.status == 200 and again.json["status"] == "open"
