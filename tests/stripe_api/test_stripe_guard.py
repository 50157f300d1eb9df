"""The per-process Stripe budget, the bulkhead and the circuit breaker.

The pieces are tested directly with a fake clock, then through a real server on 127.0.0.1
with the emulator hanging: checkouts beyond the bulkhead get 503 at once, a run of
timeouts opens the circuit, one probe closes it, and webhooks and the wrapped app are
never held behind it. The status path's retrieves stay within the budget.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import stripe
from conftest import waitress_serving

from stripe_checkout_mw import Catalog, CheckoutMiddleware, OptionError
from stripe_checkout_mw.errors import HTTPError
from stripe_checkout_mw.stripe_api.guard import FAILURES_TO_OPEN, StripeGuard, TokenBucket
from stripe_checkout_mw.testing import StripeEmulator, sign_payload

CATALOG = Catalog({"tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"}})
ONE_TEE = {"line_items": [{"price": "tee", "quantity": 1}]}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _connection_error() -> stripe.APIConnectionError:
    return stripe.APIConnectionError("connection refused")


def _fail(guard: StripeGuard) -> None:
    with pytest.raises(stripe.APIConnectionError), guard.call():
        raise _connection_error()


# --- the pieces ------------------------------------------------------------------------------


def test_token_bucket_spends_its_burst_then_refills_at_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2, clock=clock)
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    clock.now += 0.5  # one token at 2 a second
    assert [bucket.take(), bucket.take()] == [True, False]
    clock.now += 100  # never more than the burst
    assert sum(bucket.take() for _ in range(10)) == 2


def test_bulkhead_refuses_at_once_beyond_its_slots_a_call_that_may_not_wait() -> None:
    guard = StripeGuard(max_concurrent=2, cooldown=10)
    with guard.call(), guard.call():
        with pytest.raises(HTTPError) as refused, guard.call(wait=False):
            pass
        assert refused.value.status == 503
        assert ("Retry-After", "1") in refused.value.headers
    with guard.call():  # the slots are free again
        pass


def test_circuit_opens_after_a_run_of_failures_and_one_probe_decides(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    guard = StripeGuard(max_concurrent=4, cooldown=10, clock=clock)
    with caplog.at_level(logging.INFO, logger="stripe_checkout_mw"):
        for _ in range(FAILURES_TO_OPEN - 1):
            _fail(guard)
        with guard.call():  # an answer resets the run
            pass
        for _ in range(FAILURES_TO_OPEN):
            assert guard.state == "closed"
            _fail(guard)
        assert guard.state == "open"
        for _ in range(3):
            with pytest.raises(HTTPError) as fast, guard.call():
                pytest.fail("an open circuit must not let a call through")
            assert fast.value.status == 503
            assert ("Retry-After", "10") in fast.value.headers
        clock.now += 10
        assert guard.state == "half-open"
        # The probe fails: open again for a whole cool-down.
        _fail(guard)
        assert guard.state == "open"
        clock.now += 10
        # The probe: while it runs, nobody else gets through.
        with guard.call(), pytest.raises(HTTPError), guard.call():
            pass
        assert guard.state == "closed"
        with guard.call():
            pass
    changes = [r.getMessage() for r in caplog.records if "Stripe circuit" in r.getMessage()]
    assert [c.split(":")[0] for c in changes] == [
        "Stripe circuit closed -> open",
        "Stripe circuit open -> half-open",
        "Stripe circuit half-open -> open",
        "Stripe circuit open -> half-open",
        "Stripe circuit half-open -> closed",
    ]


def test_stripe_errors_that_are_answers_do_not_open_the_circuit() -> None:
    guard = StripeGuard(max_concurrent=1, cooldown=10)
    for _ in range(FAILURES_TO_OPEN * 2):
        with pytest.raises(stripe.InvalidRequestError), guard.call():
            raise stripe.InvalidRequestError("no", param=None)
    assert guard.state == "closed"


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_concurrent_stripe_calls", 0), ("max_concurrent_stripe_calls", "many"),
     ("max_concurrent_stripe_calls", 2.5),
     ("circuit_cooldown", 0), ("circuit_cooldown", float("inf")),
     ("status_stripe_budget", -1), ("status_stripe_budget", True),
     ("allow_free_orders", "yes please"), ("status_shows_email", 1)],
)
def test_each_new_option_is_checked_at_construction(
    stripe_emulator: StripeEmulator, option: str, value: Any
) -> None:
    with pytest.raises(OptionError, match=f"^{option}: ") as caught:
        CheckoutMiddleware(shop_app, secret_key=stripe_emulator.secret_key,
                           domain_url="https://shop.example.com", price_lookup=CATALOG,
                           **{option: value})
    assert caught.value.option == option


# --- through a real server -------------------------------------------------------------------


def shop_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the shop"]


def call(base: str, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes, float]:
    host, port = base.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    started = time.monotonic()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        payload = response.read()
        return response.status, dict(response.getheaders()), payload, time.monotonic() - started
    finally:
        conn.close()


def checkout(base: str) -> tuple[int, dict[str, str], bytes, float]:
    return call(base, "POST", "/create-checkout-session", json.dumps(ONE_TEE).encode(),
                {"Content-Type": "application/json"})


@pytest.fixture
def build(stripe_emulator: StripeEmulator, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    made: list[CheckoutMiddleware] = []

    def make(**options: Any) -> CheckoutMiddleware:
        settings: dict[str, Any] = {
            "secret_key": stripe_emulator.secret_key,
            "stripe_api_base": stripe_emulator.api_base,
            "domain_url": "https://shop.example.com",
            "price_lookup": CATALOG,
            "webhook_secret": stripe_emulator.webhook_secret,
            "store": f"sqlite:///{tmp_path}/orders-{len(made)}.db",
            "max_network_retries": 0,
            "timeout": 0.5,
        }
        settings.update(options)
        middleware = CheckoutMiddleware(shop_app, **settings)
        made.append(middleware)
        return middleware

    yield make
    for middleware in made:
        middleware.close()


def test_beyond_the_bulkhead_a_checkout_gets_503_at_once(
    build: Callable[..., CheckoutMiddleware], stripe_emulator: StripeEmulator
) -> None:
    mw = build(max_concurrent_stripe_calls=2, timeout=3)
    stripe_emulator.fail_next(status=None, delay=2.0, times=2, path="/v1/checkout/sessions")
    with waitress_serving(mw, threads=4) as base:
        held = [threading.Thread(target=checkout, args=(base,)) for _ in range(2)]
        for thread in held:
            thread.start()
        deadline = time.monotonic() + 5
        while len(stripe_emulator.requests) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        status, headers, body, _ = checkout(base)
        for thread in held:
            thread.join()
    assert status == 503 and headers["Retry-After"] == "1"
    assert json.loads(body)["error"]["type"] == "api_error"
    assert len(stripe_emulator.requests) == 2  # the refused checkout never reached Stripe


def test_a_hanging_stripe_opens_the_circuit_and_webhooks_and_the_app_go_on(
    build: Callable[..., CheckoutMiddleware], stripe_emulator: StripeEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mw = build(circuit_cooldown=1.0, timeout=0.3)
    stripe_emulator.fail_next(status=None, delay=1.0, times=FAILURES_TO_OPEN,
                              path="/v1/checkout/sessions")
    with caplog.at_level(logging.INFO, logger="stripe_checkout_mw"), \
            waitress_serving(mw, threads=4) as base:
        for _ in range(FAILURES_TO_OPEN):
            assert checkout(base)[0] == 502  # timed out
        status, headers, _, _ = checkout(base)
        assert (status, headers["Retry-After"]) == (503, "1")
        assert len(stripe_emulator.requests) == FAILURES_TO_OPEN  # failed fast, no call
        assert call(base, "GET", "/")[0] == 200
        event = json.dumps({"id": "evt_ping", "object": "event", "type": "ping",
                            "data": {"object": {}}, "api_version": "2026-10-28.endive",
                            "created": int(time.time()), "livemode": False}).encode()
        hook = call(base, "POST", "/stripe-webhook", event,
                    {"Stripe-Signature": sign_payload(event, stripe_emulator.webhook_secret),
                     "Content-Type": "application/json"})
        assert hook[0] == 200  # the open circuit holds no webhook
        time.sleep(1.0)  # the cool-down
        assert checkout(base)[0] == 200  # the probe: Stripe answers, the circuit closes
        assert checkout(base)[0] == 200
    changes = [r.getMessage().split(":")[0] for r in caplog.records
               if r.getMessage().startswith("Stripe circuit")]
    assert changes == ["Stripe circuit closed -> open", "Stripe circuit open -> half-open",
                       "Stripe circuit half-open -> closed"]


def test_status_path_retrieves_stay_within_the_process_budget(
    build: Callable[..., CheckoutMiddleware], stripe_emulator: StripeEmulator
) -> None:
    mw = build(status_stripe_budget=2.0)
    with waitress_serving(mw, threads=4) as base:
        ids = [json.loads(checkout(base)[2])["sessionId"] for _ in range(30)]
        started = time.monotonic()
        answers = [call(base, "GET", f"/checkout-session?session_id={i}") for i in ids * 2]
        elapsed = time.monotonic() - started
    retrieves = [r for r in stripe_emulator.requests
                 if r.method == "GET" and r.path.startswith("/v1/checkout/sessions/")]
    assert all(answer[0] == 200 for answer in answers)  # over budget: the ledger answers
    assert len(retrieves) <= 2 + 2.0 * elapsed + 1
    assert len(retrieves) < 30
