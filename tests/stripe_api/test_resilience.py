"""Issue 23: a bulkhead that sheds only when Stripe is the problem, one guard for every path
that calls Stripe, budgets per signed-in user and refusals the developer can see.

Load tests run on 127.0.0.1 against the emulator, bounded in count and time. Nothing here
asserts a duration: failing fast is proved by the calls Stripe received, and "never waits
behind a hung Stripe" by the order in which answers arrive.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import stripe
from conftest import RefundShop, waitress_serving
from test_stripe_guard import CATALOG, ONE_TEE, call, checkout, shop_app

from stripe_checkout_mw import CheckoutMiddleware, StripeLookupKeys
from stripe_checkout_mw.billing.portal import PER_USER_BURST
from stripe_checkout_mw.errors import HTTPError
from stripe_checkout_mw.marker import MARKER_KEY
from stripe_checkout_mw.stripe_api.guard import (
    FAILURES_TO_OPEN,
    MIN_OVERDUE,
    RefusalLog,
    StripeGuard,
    TokenBucket,
    loggable,
)
from stripe_checkout_mw.testing import StripeEmulator, sign_payload

CREATES = "/v1/checkout/sessions"
PORTAL = "/v1/billing_portal/sessions"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def open_circuit(guard: StripeGuard) -> None:
    for _ in range(FAILURES_TO_OPEN):
        with pytest.raises(stripe.APIConnectionError), guard.call():
            raise stripe.APIConnectionError("connection refused")
    assert guard.is_open()


def requests_to(emu: StripeEmulator, path: str, method: str = "POST") -> int:
    return sum(1 for r in emu.requests if r.method == method and r.path.startswith(path))


def together(count: int, work: Callable[[int], Any]) -> list[Any]:
    """``work(i)`` for each i on its own thread, started at once; the results in order."""
    results: list[Any] = [None] * count
    start = threading.Barrier(count)

    def run(index: int) -> None:
        start.wait()
        results[index] = work(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def ping_event(secret: str, n: int = 0) -> tuple[bytes, dict[str, str]]:
    event = json.dumps({"id": f"evt_ping_{n}", "object": "event", "type": "ping",
                        "data": {"object": {}}, "api_version": "2026-10-28.endive",
                        "created": int(time.time()), "livemode": False}).encode()
    return event, {"Stripe-Signature": sign_payload(event, secret),
                   "Content-Type": "application/json"}


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
        }
        settings.update(options)
        middleware = CheckoutMiddleware(shop_app, **settings)
        made.append(middleware)
        return middleware

    yield make
    for middleware in made:
        middleware.close()


# --- 1. the bulkhead sheds only when Stripe is the problem -----------------------------------


def test_a_burst_beyond_the_limit_waits_for_slots_while_stripe_answers() -> None:
    guard = StripeGuard(max_concurrent=2, cooldown=10, timeout=10)
    in_flight: list[int] = []
    most = [0]
    lock = threading.Lock()

    def work(index: int) -> str:
        try:
            with guard.call():
                with lock:
                    in_flight.append(index)
                    most[0] = max(most[0], len(in_flight))
                time.sleep(0.02)  # Stripe answering
                with lock:
                    in_flight.remove(index)
        except HTTPError as exc:
            return f"refused {exc.status}"
        return "done"

    assert together(12, work) == ["done"] * 12
    assert most[0] == 2  # never more than the ceiling at once


def test_once_the_oldest_call_is_overdue_waiting_calls_are_refused() -> None:
    guard = StripeGuard(max_concurrent=1, cooldown=10, timeout=30)
    hung, release = threading.Event(), threading.Event()

    def hang() -> None:
        with guard.call():
            hung.set()
            release.wait(30)

    holder = threading.Thread(target=hang)
    holder.start()
    try:
        assert hung.wait(10)
        # Stripe has not answered the first call within the overdue bound (1 s before any
        # answer): the second is refused instead of waiting the whole 30 s timeout.
        with pytest.raises(HTTPError) as refused, guard.call():
            pytest.fail("no slot was free")
        assert refused.value.status == 503
        assert ("Retry-After", "1") in refused.value.headers
        assert not release.is_set()  # refused while the hung call still held its slot
    finally:
        release.set()
        holder.join()
    assert guard.limit == 1


def test_the_limit_halves_when_stripe_is_slow_and_grows_back_when_it_answers() -> None:
    clock = FakeClock()
    guard = StripeGuard(max_concurrent=8, cooldown=10, timeout=10, clock=clock)
    assert guard.limit == 8
    with pytest.raises(stripe.APIConnectionError), guard.call():
        raise stripe.APIConnectionError("timed out")
    assert guard.limit == 4
    with guard.call():
        clock.now += 5  # past the overdue bound (1 s before any answer)
    assert guard.limit == 2
    with pytest.raises(stripe.APIConnectionError), guard.call():
        clock.now += 20  # another slow spell: the limit stays at its floor of two
        raise stripe.APIConnectionError("timed out")
    assert guard.limit == 2
    answered = 0
    while guard.limit < 8:
        with guard.call():
            clock.now += 0.1
        answered += 1
        assert answered < 100
    assert guard.overdue_after >= MIN_OVERDUE  # never below it


def test_a_healthy_stripe_slow_for_a_moment_is_waited_for_not_shed() -> None:
    """A Stripe answering in 300 ms, one call of which takes 0.8 s (a loaded host, a slow
    moment): the next checkout waits for its slot instead of being refused, because the
    overdue bound never drops below MIN_OVERDUE (at 0.5 s it was refused)."""
    clock = FakeClock()
    guard = StripeGuard(max_concurrent=1, cooldown=10, timeout=10, clock=clock)
    for _ in range(20):
        with guard.call():
            clock.now += 0.3
    assert guard.overdue_after == MIN_OVERDUE
    in_flight, release = threading.Event(), threading.Event()

    def slow_call() -> None:
        with guard.call():
            in_flight.set()
            release.wait(10)

    first = threading.Thread(target=slow_call)
    first.start()
    assert in_flight.wait(10)
    clock.now += 0.8
    threading.Timer(0.2, release.set).start()
    with guard.call():  # waits for the slot (real time), the fake clock standing at 0.8 s
        pass
    first.join(10)
    assert guard.limit == 1


def test_one_hung_call_leaves_a_slot_for_the_next_checkout() -> None:
    """A call that hangs (a price refresh) and a slow spell before it halve the limit no
    further than two: the next checkout still finds a slot while Stripe answers it."""
    clock = FakeClock()
    guard = StripeGuard(max_concurrent=3, cooldown=10, timeout=10, clock=clock)
    with guard.call():
        clock.now += 5  # a slow answer: the limit halves
    with guard.call():  # the hung call, still in flight
        clock.now += 5  # now overdue
        with guard.call():  # the next checkout is served beside it
            clock.now += 0.1
    assert guard.limit >= 2


def test_with_a_healthy_slow_stripe_bursts_up_to_the_threads_are_never_refused(
    build: Callable[..., CheckoutMiddleware], stripe_emulator: StripeEmulator
) -> None:
    mw = build(max_concurrent_stripe_calls=6, timeout=10)
    stripe_emulator.fail_next(status=None, delay=0.3, times=100, path=CREATES)
    with waitress_serving(mw, threads=8) as base:
        answers = together(16, lambda _: checkout(base)[0])
    assert answers == [200] * 16
    assert requests_to(stripe_emulator, CREATES) == 16


def test_a_hanging_stripe_holds_at_most_the_ceiling_and_webhooks_the_status_path_and_the_app_go_on(
    build: Callable[..., CheckoutMiddleware], stripe_emulator: StripeEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mw = build(timeout=8)  # the default ceiling: 3 of waitress's 4 threads
    with waitress_serving(mw, threads=4) as base:
        paid = json.loads(checkout(base)[2])["sessionId"]  # Stripe answered once
        stripe_emulator.fail_next(status=None, delay=6, times=1000)  # now every call hangs
        before = len(stripe_emulator.requests)
        hung: list[Any] = []
        holders = [threading.Thread(target=lambda: hung.append(checkout(base)))
                   for _ in range(3)]
        for thread in holders:
            thread.start()
        deadline = time.monotonic() + 10
        while len(stripe_emulator.requests) - before < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with caplog.at_level(logging.WARNING, logger="stripe_checkout_mw"):
            shed = together(9, lambda _: checkout(base))
            status = call(base, "GET", f"/checkout-session?session_id={paid}")
            event, headers = ping_event(stripe_emulator.webhook_secret)
            hook = call(base, "POST", "/stripe-webhook", event, headers)
            page = call(base, "GET", "/")
        # All answered while the three hung calls still held their threads.
        assert not hung
        for thread in holders:
            thread.join()
    assert [answer[0] for answer in shed] == [503] * 9
    assert all(answer[1]["Retry-After"] == "1" for answer in shed)
    assert (status[0], hook[0], page[0]) == (200, 200, 200)
    assert json.loads(status[2])["status"] == "open"  # the ledger answered
    assert len(stripe_emulator.requests) - before == 3  # nothing but the three hung calls
    warnings = [r.getMessage() for r in caplog.records if "bulkhead is full" in r.getMessage()]
    assert len(warnings) == 1 and "Stripe is slow" in warnings[0]


# --- 2. every path that calls Stripe goes through the same guard ------------------------------


@pytest.fixture
def members(emu_billing: StripeEmulator, tmp_path: Path) -> Iterator[CheckoutMiddleware]:
    mw = CheckoutMiddleware(
        shop_app, secret_key=emu_billing.secret_key, stripe_api_base=emu_billing.api_base,
        domain_url="https://shop.example.com", price_lookup=StripeLookupKeys(),
        webhook_secret=emu_billing.webhook_secret, store=f"sqlite:///{tmp_path}/m.db",
        customer_ref=lambda environ: environ.get("HTTP_X_TEST_USER"),
        max_network_retries=0, timeout=0.5)
    yield mw
    mw.close()


@pytest.fixture
def emu_billing() -> Iterator[StripeEmulator]:
    with StripeEmulator(hosted_page_webhook_wait=5) as emulator:
        emulator.add_price(1500, lookup_key="pro", recurring={"interval": "month"})
        yield emulator


def subscribe(base: str, emu: StripeEmulator, user: str) -> None:
    status, _, body, _ = call(base, "POST", "/create-checkout-session", json.dumps(
        {"line_items": [{"price": "pro", "quantity": 1}]}).encode(),
        {"Content-Type": "application/json", "X-Test-User": user})
    assert status == 200, body
    emu.pay(json.loads(body)["sessionId"])


def portal(base: str, user: str) -> tuple[int, dict[str, str], bytes, float]:
    return call(base, "POST", "/billing-portal", b"{}",
                {"Content-Type": "application/json", "X-Test-User": user})


def test_portal_timeouts_open_the_circuit_and_the_open_circuit_answers_the_portal_at_once(
    members: CheckoutMiddleware, emu_billing: StripeEmulator
) -> None:
    with waitress_serving(members, threads=4) as base:
        emu_billing.webhook_url = f"{base}/stripe-webhook"
        subscribe(base, emu_billing, "ann")
        subscribe(base, emu_billing, "bob")
        emu_billing.fail_next(status=None, delay=1.0, times=FAILURES_TO_OPEN, path=PORTAL)
        # Five in a row, within each user's budget of three.
        timed_out = [portal(base, "ann")[0] for _ in range(FAILURES_TO_OPEN - 2)]
        timed_out += [portal(base, "bob")[0] for _ in range(2)]
        assert timed_out == [502] * FAILURES_TO_OPEN
        assert members.guard.is_open()
        made = requests_to(emu_billing, PORTAL)
        status, headers, _, _ = portal(base, "bob")
        shop_checkout = call(base, "POST", "/create-checkout-session", json.dumps(
            {"line_items": [{"price": "pro", "quantity": 1}]}).encode(),
            {"Content-Type": "application/json", "X-Test-User": "cat"})
    assert (status, int(headers["Retry-After"]) > 0) == (503, True)
    assert shop_checkout[0] == 503  # the portal's timeouts opened the checkout's circuit too
    assert requests_to(emu_billing, PORTAL) == made  # refused without asking Stripe
    assert requests_to(emu_billing, CREATES) == 2  # the two subscriptions only


def test_while_the_circuit_is_open_the_status_path_answers_from_the_ledger(
    build: Callable[..., CheckoutMiddleware], stripe_emulator: StripeEmulator
) -> None:
    mw = build()
    with waitress_serving(mw, threads=2) as base:
        session_id = json.loads(checkout(base)[2])["sessionId"]
        open_circuit(mw.guard)
        answer = call(base, "GET", f"/checkout-session?session_id={session_id}")
    assert answer[0] == 200 and json.loads(answer[2])["status"] == "open"
    assert requests_to(stripe_emulator, CREATES + "/", method="GET") == 0


def test_the_price_refresh_skips_stripe_while_the_circuit_is_open(
    members: CheckoutMiddleware, emu_billing: StripeEmulator
) -> None:
    lookup = members.settings.price_lookup
    assert isinstance(lookup, StripeLookupKeys) and lookup.guard is members.guard
    with waitress_serving(members, threads=2) as base:
        emu_billing.webhook_url = f"{base}/stripe-webhook"
        subscribe(base, emu_billing, "ann")  # the first load
        lists = requests_to(emu_billing, "/v1/prices", method="GET")
        open_circuit(members.guard)
        lookup.ttl = 0.0  # a refresh is due on every checkout
        lookup._due = 0.0
        answers = [call(base, "POST", "/create-checkout-session", json.dumps(
            {"line_items": [{"price": "pro", "quantity": 1}]}).encode(),
            {"Content-Type": "application/json", "X-Test-User": "bob"})[0] for _ in range(3)]
        deadline = time.monotonic() + 5
        while not lookup._load_lock.acquire(blocking=False):  # the refresh thread's end
            assert time.monotonic() < deadline
            time.sleep(0.01)
        lookup._load_lock.release()
    assert answers == [503] * 3
    assert requests_to(emu_billing, "/v1/prices", method="GET") == lists


@pytest.fixture
def refund_shop(store_url: str) -> Iterator[tuple[StripeEmulator, RefundShop]]:
    with StripeEmulator(hosted_page_webhook_wait=0) as emu:
        served = RefundShop(emu, store_url)
        yield emu, served
        served.close()


def test_sync_paces_counts_and_guards_every_call_it_makes_line_items_included(
    refund_shop: tuple[StripeEmulator, RefundShop],
) -> None:
    emu, shop = refund_shop
    # A paid session of this shop that the ledger never saw: replaying its event needs
    # its line_items from Stripe.
    client = stripe.StripeClient(emu.secret_key, base_addresses={"api": emu.api_base})
    session = client.v1.checkout.sessions.create(params={
        "mode": "payment", "success_url": "https://shop.example.com/ok",
        "line_items": [{"price_data": {"currency": "usd", "unit_amount": 700,
                                       "product_data": {"name": "Mug"}}, "quantity": 2}],
        "metadata": {MARKER_KEY: shop.middleware.checkout.marker}})
    emu.drop_webhooks(True)
    emu.pay(session.id)
    before = len(emu.requests)
    report = shop.middleware.sync()
    made = emu.requests[before:]
    assert report.ok, report.failures
    assert any(r.path.endswith("/line_items") for r in made)
    assert report.stripe_calls == len(made)

    open_circuit(shop.middleware.guard)
    before = len(emu.requests)
    refused = shop.middleware.sync()
    assert len(emu.requests) == before  # the open circuit: sync fails fast
    assert refused.stripe_calls == 1 and refused.failures == [
        "listing events: refused by the Stripe guard (The payment provider is unavailable; "
        "try again shortly.)"]


# --- 3. budgets per principal -----------------------------------------------------------------


def test_one_user_hammering_the_portal_is_bounded_by_their_budget_and_others_go_on(
    members: CheckoutMiddleware, emu_billing: StripeEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    with waitress_serving(members, threads=4) as base:
        emu_billing.webhook_url = f"{base}/stripe-webhook"
        subscribe(base, emu_billing, "ann")
        subscribe(base, emu_billing, "bob")
        with caplog.at_level(logging.WARNING, logger="stripe_checkout_mw"):
            answers = [portal(base, "ann") for _ in range(30)]
            other = portal(base, "bob")
    statuses = [answer[0] for answer in answers]
    assert statuses == [200] * int(PER_USER_BURST) + [429] * (30 - int(PER_USER_BURST))
    assert all(int(answer[1]["Retry-After"]) >= 1 for answer in answers[int(PER_USER_BURST):])
    assert other[0] == 200
    assert requests_to(emu_billing, PORTAL) == int(PER_USER_BURST) + 1
    lines = [r.getMessage() for r in caplog.records if "billing portal refused" in r.getMessage()]
    assert len(lines) == 1 and "(1 refused since the last such line)" in lines[0]


def test_the_process_budget_of_the_portal_answers_503_and_is_spent_only_on_stripe_calls(
    members: CheckoutMiddleware, emu_billing: StripeEmulator
) -> None:
    assert members.portal is not None
    members.portal.per_process = TokenBucket(0.001, 2)  # two creates, then none for long
    with waitress_serving(members, threads=4) as base:
        emu_billing.webhook_url = f"{base}/stripe-webhook"
        subscribe(base, emu_billing, "ann")
        strangers = [portal(base, f"new{i}")[0] for i in range(5)]  # no Customer yet
        answers = [portal(base, "ann") for _ in range(3)]
    assert strangers == [404] * 5  # refused before Stripe: the budget is left whole
    assert [answer[0] for answer in answers] == [200, 200, 503]
    assert int(answers[2][1]["Retry-After"]) >= 1
    assert requests_to(emu_billing, PORTAL) == 2


# --- 6. developers can see every refusal ------------------------------------------------------


def test_refusals_are_logged_once_a_period_with_their_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    refusals = RefusalLog(60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="stripe_checkout_mw"):
        for _ in range(5):
            refusals.note("origin", "refused %s", "x")
        clock.now += 60
        refusals.note("origin", "refused %s", "y")
    assert [r.getMessage() for r in caplog.records] == [
        "refused x (1 refused since the last such line)",
        "refused y (5 refused since the last such line)"]


def test_a_foreign_origin_and_an_unknown_price_key_are_logged_with_the_fix(
    build: Callable[..., CheckoutMiddleware], stripe_emulator: StripeEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mw = build()
    weird = "x" * 80 + "\nFORGED LOG LINE"
    with caplog.at_level(logging.WARNING, logger="stripe_checkout_mw"), \
            waitress_serving(mw, threads=2) as base:
        foreign = [call(base, "POST", "/create-checkout-session", json.dumps(ONE_TEE).encode(),
                        {"Content-Type": "application/json", "Origin": "http://localhost:8080"})
                   for _ in range(3)]
        unknown = call(base, "POST", "/create-checkout-session", json.dumps(
            {"line_items": [{"price": "hoodie", "quantity": 1}]}).encode(),
            {"Content-Type": "application/json"})
        mw.guard.refusals.period = 0  # every refusal logged from here
        odd = call(base, "POST", "/create-checkout-session", json.dumps(
            {"line_items": [{"price": weird, "quantity": 1}]}).encode(),
            {"Content-Type": "application/json"})
    assert [answer[0] for answer in foreign] == [403] * 3
    assert (unknown[0], odd[0]) == (400, 400)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    origin = [line for line in lines if "origin" in line]
    assert len(origin) == 1  # three refusals, one line
    assert "http://localhost:8080" in origin[0] and "allowed_origins" in origin[0]
    keys = [line for line in lines if "unknown price key" in line]
    assert len(keys) == 2 and "hoodie" in keys[0] and "line_items[0][price]" in keys[0]
    assert loggable(weird) in keys[1] and "FORGED" not in keys[1]
    assert requests_to(stripe_emulator, CREATES) == 0


def test_an_open_circuit_refusal_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    guard = StripeGuard(max_concurrent=2, cooldown=10)
    open_circuit(guard)
    with caplog.at_level(logging.WARNING, logger="stripe_checkout_mw"):
        for _ in range(3):
            with pytest.raises(HTTPError), guard.call("billing portal"):
                pass
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert lines == ["A billing portal call to Stripe refused: the circuit is open (Stripe "
                     "timed out or was unreachable) (1 refused since the last such line)"]
