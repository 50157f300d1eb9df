"""Subscriptions, customers and the billing portal through the whole middleware.

The middleware runs on a real threaded server on 127.0.0.1 with a store on SQLite and, where
it answers, PostgreSQL; the emulator sells the subscriptions, moves its clock, runs the
renewals and the portal, and delivers its signed events to the shop's webhook over HTTP.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import stripe
from conftest import ServedShop

from stripe_checkout_mw import CheckoutMiddleware, Order, StripeLookupKeys, Subscription
from stripe_checkout_mw.billing.subscriptions import SubscriptionLedger
from stripe_checkout_mw.testing import StripeEmulator

DAY = 86400
USER_HEADER = "HTTP_X_TEST_USER"


def shop(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the shop"]


def signed_in(environ: dict[str, Any]) -> str | None:
    """The stand-in login: the user the test names in a header (the app's own session)."""
    user: str | None = environ.get(USER_HEADER)
    return user


class Shop(ServedShop):
    """The middleware on a real server, counting what its hooks saw."""

    def __init__(self, emu: StripeEmulator, store: str, **options: Any) -> None:
        self.fulfilled: Counter[str] = Counter()
        self.changes: list[Subscription] = []
        self.fail_changes = 0
        self.lock = threading.Lock()
        options.setdefault("customer_ref", signed_in)
        super().__init__(CheckoutMiddleware(
            shop, secret_key=emu.secret_key, stripe_api_base=emu.api_base,
            domain_url="https://shop.example.com", price_lookup=StripeLookupKeys(),
            webhook_secret=emu.webhook_secret, store=store, fulfill=self.fulfill,
            subscription_changed=self.changed, **options,
        ))

    @property
    def subscriptions(self) -> SubscriptionLedger:
        assert self.middleware.subscriptions is not None
        return self.middleware.subscriptions

    def fulfill(self, order: Order) -> None:
        with self.lock:
            self.fulfilled[order.session_id] += 1

    def changed(self, subscription: Subscription) -> None:
        with self.lock:
            if self.fail_changes:
                self.fail_changes -= 1
                raise RuntimeError("the members' database is down")
            self.changes.append(subscription)

    def statuses(self, ref: str) -> list[str]:
        with self.lock:
            return [s.status for s in self.changes if s.customer_ref == ref]

    def checkout(self, user: str | None, price: str = "pro", **headers: str) -> requests.Response:
        if user is not None:
            headers["X-Test-User"] = user
        return self.http.post(f"{self.url}/create-checkout-session", json={
            "line_items": [{"price": price, "quantity": 1}]}, headers=headers, timeout=10)

    def subscribe(self, emu: StripeEmulator, user: str, price: str = "pro") -> dict[str, Any]:
        response = self.checkout(user, price)
        assert response.status_code == 200, response.text
        return emu.pay(response.json()["sessionId"])

    def portal(self, user: str | None, *, form: bool = False,
               **headers: str) -> requests.Response:
        if user is not None:
            headers["X-Test-User"] = user
        if form:
            return self.http.post(f"{self.url}/billing-portal", data={"go": "1"},
                                  headers=headers, allow_redirects=False, timeout=10)
        return self.http.post(f"{self.url}/billing-portal", json={}, headers=headers,
                              timeout=10)


@pytest.fixture
def emu() -> Iterator[StripeEmulator]:
    with StripeEmulator(hosted_page_webhook_wait=5) as emulator:
        emulator.add_price(1500, lookup_key="pro", recurring={"interval": "month"})
        emulator.add_price(900, lookup_key="basic", recurring={"interval": "month"})
        emulator.add_price(2000, lookup_key="tee")
        yield emulator


@pytest.fixture
def served(emu: StripeEmulator, store_url: str) -> Iterator[Shop]:
    server = Shop(emu, store_url)
    emu.webhook_url = f"{server.url}/stripe-webhook"
    yield server
    server.close()


def only(subscriptions: list[Subscription]) -> Subscription:
    assert len(subscriptions) == 1, subscriptions
    return subscriptions[0]


def all_delivered(emu: StripeEmulator) -> None:
    emu.wait_for_deliveries(10)
    assert [d for d in emu.deliveries if d.status != 200] == []


def test_subscribing_records_the_customer_and_an_active_subscription(
    emu: StripeEmulator, served: Shop
) -> None:
    session = served.subscribe(emu, "ann")
    all_delivered(emu)
    assert served.middleware.customers is not None
    assert served.middleware.customers.stripe_id("ann") == session["customer"]
    sub = only(served.subscriptions.for_customer("ann"))
    stripe_sub = emu.subscription(session["subscription"])
    assert (sub.id, sub.status, sub.customer_ref, sub.stripe_customer) == (
        session["subscription"], "active", "ann", session["customer"])
    assert [(i.lookup_key, i.quantity) for i in sub.items] == [("pro", 1)]
    assert sub.items[0].price == stripe_sub["items"]["data"][0]["price"]["id"]
    assert sub.current_period_end == stripe_sub["items"]["data"][0]["current_period_end"]
    assert sub.latest_invoice_status == "paid" and sub.cancel_at_period_end is False
    assert served.subscriptions.is_active("ann")
    assert served.subscriptions.is_active("ann", price="pro")
    assert served.subscriptions.is_active("ann", price=sub.items[0].price)
    assert not served.subscriptions.is_active("ann", price="basic")
    assert served.fulfilled == {session["id"]: 1}  # the first payment is fulfilled once
    assert served.statuses("ann") == ["active"]

    # A returning customer is sent as the same Stripe Customer, not by email (a one-time
    # purchase: a second subscription is refused, see tests/checkout/test_one_subscription).
    again = served.checkout("ann", "tee")
    assert again.status_code == 200, again.text
    create = [r for r in emu.requests if r.path == "/v1/checkout/sessions"][-1]
    assert create.params["customer"] == session["customer"]
    assert create.params["client_reference_id"] == "ann"
    assert "customer_email" not in create.params and "customer_creation" not in create.params


def test_a_new_user_in_payment_mode_always_gets_a_customer(
    emu: StripeEmulator, served: Shop
) -> None:
    response = served.checkout("bea", "tee")
    assert response.status_code == 200, response.text
    create = [r for r in emu.requests if r.path == "/v1/checkout/sessions"][-1]
    assert create.params["customer_creation"] == "always"
    assert create.params["client_reference_id"] == "bea"
    paid = emu.pay(response.json()["sessionId"])
    all_delivered(emu)
    assert served.middleware.customers is not None
    assert served.middleware.customers.stripe_id("bea") == paid["customer"]
    assert served.subscriptions.for_customer("bea") == []
    assert not served.subscriptions.is_active("bea")


def test_renewals_failed_renewals_and_the_end_of_retries(
    emu: StripeEmulator, served: Shop, store_url: str
) -> None:
    session = served.subscribe(emu, "ann")
    first_end = only(served.subscriptions.for_customer("ann")).current_period_end
    assert first_end is not None
    emu.advance_clock(32 * DAY)  # one renewal, paid
    all_delivered(emu)
    renewed = only(served.subscriptions.for_customer("ann"))
    assert renewed.status == "active" and renewed.current_period_end > first_end
    assert served.fulfilled == {session["id"]: 1}  # renewals never call fulfill
    assert served.statuses("ann") == ["active"]  # a renewal changes no status or items

    emu.fail_next_renewal(session["subscription"])
    emu.advance_clock(31 * DAY)
    all_delivered(emu)
    assert only(served.subscriptions.for_customer("ann")).status == "past_due"
    assert served.subscriptions.is_active("ann")  # Stripe is still retrying
    assert served.middleware.store is not None and served.middleware.customers is not None
    strict = SubscriptionLedger(served.middleware.store, served.middleware.customers,
                                past_due_is_active=False)
    assert not strict.is_active("ann")

    emu.advance_clock(8 * DAY)  # past the last retry
    all_delivered(emu)
    ended = only(served.subscriptions.for_customer("ann"))
    assert ended.status == "canceled" and not served.subscriptions.is_active("ann")
    assert served.statuses("ann") == ["active", "past_due", "canceled"]
    assert served.fulfilled == {session["id"]: 1}


def test_cancel_at_period_end_keeps_access_until_stripe_ends_it(
    emu: StripeEmulator, served: Shop
) -> None:
    session = served.subscribe(emu, "ann")
    emu.cancel_subscription(session["subscription"], at_period_end=True)
    all_delivered(emu)
    sub = only(served.subscriptions.for_customer("ann"))
    assert sub.status == "active" and sub.cancel_at_period_end and sub.cancel_at
    assert served.subscriptions.is_active("ann")
    assert sub.current_period_end is not None
    emu.advance_clock(sub.current_period_end - int(sub.updated_at) - DAY)
    all_delivered(emu)
    assert served.subscriptions.is_active("ann")
    emu.advance_clock(2 * DAY)
    all_delivered(emu)
    ended = only(served.subscriptions.for_customer("ann"))
    assert ended.status == "canceled" and ended.canceled_at is not None
    assert not served.subscriptions.is_active("ann")
    assert served.statuses("ann") == ["active", "canceled"]


def test_cancel_now_and_a_trial_that_converts(emu: StripeEmulator, store_url: str) -> None:
    # subscription_data is refused in payment mode, so the shop says it only sells these.
    served = Shop(emu, store_url, mode="subscription", session_options={
        "subscription_data": {"trial_period_days": 7}})
    emu.webhook_url = f"{served.url}/stripe-webhook"
    try:
        session = served.subscribe(emu, "ann")
        all_delivered(emu)
        trial = only(served.subscriptions.for_customer("ann"))
        assert trial.status == "trialing" and trial.trial_end is not None
        assert served.subscriptions.is_active("ann")
        emu.advance_clock(8 * DAY)
        all_delivered(emu)
        assert only(served.subscriptions.for_customer("ann")).status == "active"
        emu.cancel_subscription(session["subscription"])
        all_delivered(emu)
        assert only(served.subscriptions.for_customer("ann")).status == "canceled"
        assert not served.subscriptions.is_active("ann")
        assert served.statuses("ann") == ["trialing", "active", "canceled"]
        assert served.fulfilled == {session["id"]: 1}
    finally:
        served.close()


def test_the_portal_switches_price_and_cancels_at_period_end(
    emu: StripeEmulator, served: Shop
) -> None:
    session = served.subscribe(emu, "ann")
    answer = served.portal("ann")
    assert answer.status_code == 200, answer.text
    url = answer.json()["url"]
    page = requests.get(url, timeout=10)
    assert page.status_code == 200
    created = [r for r in emu.requests if r.path == "/v1/billing_portal/sessions"]
    assert created[-1].params == {"customer": session["customer"],
                                  "return_url": "https://shop.example.com/account"}
    basic = next(p for p in emu_prices(emu) if p.get("lookup_key") == "basic")
    switched = requests.post(url, data={"action": "switch", "price": basic["id"],
                                        "subscription": session["subscription"]}, timeout=10)
    assert switched.status_code == 200
    all_delivered(emu)
    sub = only(served.subscriptions.for_customer("ann"))
    assert [i.lookup_key for i in sub.items] == ["basic"]
    assert served.subscriptions.is_active("ann", price="basic")
    assert not served.subscriptions.is_active("ann", price="pro")
    assert [[i.lookup_key for i in s.items] for s in served.changes] == [["pro"], ["basic"]]

    canceled = requests.post(url, data={"action": "cancel",
                                        "subscription": session["subscription"]}, timeout=10)
    assert canceled.status_code == 200
    all_delivered(emu)
    sub = only(served.subscriptions.for_customer("ann"))
    assert sub.cancel_at_period_end and sub.status == "active"
    assert len(served.changes) == 2  # no status or items changed: no hook call

    form = served.portal("ann", form=True)
    assert form.status_code == 303 and form.headers["Location"].startswith(emu.api_base)


def emu_prices(emu: StripeEmulator) -> list[dict[str, Any]]:
    listed = emu.client().v1.prices.list(params={"limit": 100})
    return [p.to_dict() for p in listed.data]


def test_portal_refuses_without_a_user_a_customer_or_the_right_origin(
    emu: StripeEmulator, served: Shop
) -> None:
    before = len(emu.requests)
    anonymous = served.portal(None)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"
    unknown = served.portal("nobody-yet")
    assert unknown.status_code == 404 and "error" in unknown.json()
    foreign = served.portal("ann", Origin="https://evil.example")
    assert foreign.status_code == 403
    assert foreign.json()["error"]["message"] == "This origin may not open the billing portal."
    # The customer never comes from the request, whatever it sends.
    served.subscribe(emu, "ann")
    sneaky = served.http.post(f"{served.url}/billing-portal?customer=cus_other",
                              json={"customer": "cus_other"},
                              headers={"X-Test-User": "nobody-yet"}, timeout=10)
    assert sneaky.status_code == 404
    assert not [r for r in emu.requests[before:] if r.path == "/v1/billing_portal/sessions"]
    assert served.http.get(f"{served.url}/billing-portal", timeout=10).status_code == 405


def test_two_users_never_see_each_others_subscriptions(
    emu: StripeEmulator, served: Shop
) -> None:
    ann = served.subscribe(emu, "ann", "pro")
    bob = served.subscribe(emu, "bob", "basic")
    all_delivered(emu)
    assert ann["customer"] != bob["customer"]
    assert [s.id for s in served.subscriptions.for_customer("ann")] == [ann["subscription"]]
    assert [s.id for s in served.subscriptions.for_customer("bob")] == [bob["subscription"]]
    assert not served.subscriptions.is_active("ann", price="basic")
    assert not served.subscriptions.is_active("bob", price="pro")
    emu.cancel_subscription(bob["subscription"])
    all_delivered(emu)
    assert served.subscriptions.is_active("ann") and not served.subscriptions.is_active("bob")
    answer = served.portal("bob")
    assert answer.status_code == 200
    created = [r for r in emu.requests if r.path == "/v1/billing_portal/sessions"]
    assert created[-1].params["customer"] == bob["customer"]
    assert served.subscriptions.for_customer("carl") == []


def final_state(ledger: SubscriptionLedger, ref: str) -> list[tuple[Any, ...]]:
    return [(s.id, s.status, s.items, s.current_period_end, s.cancel_at_period_end,
             s.canceled_at, s.latest_invoice_status, s.customer_ref)
            for s in ledger.for_customer(ref)]


def test_events_out_of_order_and_duplicated_give_the_same_final_state(
    emu: StripeEmulator, served: Shop, tmp_path: Any
) -> None:
    served.subscribe(emu, "ann")
    session = served.subscribe(emu, "bob", "basic")
    emu.advance_clock(32 * DAY)
    emu.cancel_subscription(session["subscription"], at_period_end=True)
    emu.fail_next_renewal(session["subscription"])
    emu.advance_clock(20 * DAY)
    all_delivered(emu)
    expected = {ref: final_state(served.subscriptions, ref) for ref in ("ann", "bob")}
    assert expected["ann"] and expected["bob"]

    # Another shop on a fresh ledger receives every event, newest first, each twice.
    other = Shop(emu, f"sqlite:///{tmp_path}/other.db")
    emu.webhook_url = f"{other.url}/stripe-webhook"
    try:
        for event in reversed(emu.events):
            emu.redeliver(event["id"])
            emu.redeliver(event["id"])
        all_delivered(emu)
        got = {ref: final_state(other.subscriptions, ref) for ref in ("ann", "bob")}
        assert got == expected
        assert len(other.fulfilled) == 2 and set(other.fulfilled.values()) == {1}
    finally:
        other.close()


def test_a_failing_hook_is_retried_with_the_next_delivery_and_runs_once(
    emu: StripeEmulator, served: Shop
) -> None:
    served.fail_changes = 1
    session = served.subscribe(emu, "ann")
    all_delivered_or_retried = emu.deliveries
    assert any(d.status == 500 for d in all_delivered_or_retried)
    emu.wait_for_deliveries(10)
    assert served.statuses("ann") == ["active"]
    assert served.fulfilled == {session["id"]: 1}


def test_a_subscription_of_a_customer_the_shop_never_saw_is_kept_apart(
    emu: StripeEmulator, served: Shop
) -> None:
    client = emu.client()
    pro = next(p for p in emu_prices(emu) if p.get("lookup_key") == "pro")
    elsewhere = client.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": pro["id"], "quantity": 1}],
        "success_url": "https://elsewhere.example/ok", "client_reference_id": "ann"})
    emu.pay(elsewhere.id)
    all_delivered(emu)  # every event answered 200
    stray = only(served.subscriptions.unowned())
    assert stray.customer_ref is None and stray.status == "active"
    assert served.subscriptions.for_customer("ann") == []
    assert not served.subscriptions.is_active("ann")
    assert served.middleware.customers is not None
    assert served.middleware.customers.stripe_id("ann") is None
    assert served.changes == [] and served.fulfilled == {}


@pytest.mark.parametrize("hook", [
    pytest.param(lambda environ: 1 / 0, id="raises"),
    pytest.param(lambda environ: 42, id="not-a-string"),
])
def test_a_broken_customer_ref_is_a_500_without_any_stripe_call(
    emu: StripeEmulator, store_url: str, hook: Any, caplog: pytest.LogCaptureFixture
) -> None:
    served = Shop(emu, store_url, customer_ref=hook)
    try:
        before = len(emu.requests)
        with caplog.at_level(logging.ERROR, logger="stripe_checkout_mw"):
            for answer in (served.checkout("ann"), served.portal("ann")):
                assert answer.status_code == 500
                assert "misconfigured" in answer.json()["error"]["message"]
        assert len(emu.requests) == before
        logged = [r.getMessage() for r in caplog.records if "customer_ref" in r.getMessage()]
        assert len(logged) == 2
        assert all("ZeroDivisionError" in line or "returned int" in line for line in logged)
        assert not any("42" in line for line in logged)  # the value itself is never logged
    finally:
        served.close()


def stripe_subscription(status: str, price: str = "price_pro", **fields: Any) -> dict[str, Any]:
    return {"id": "sub_race", "object": "subscription", "customer": "cus_race",
            "status": status, "created": 1_700_000_000, "cancel_at_period_end": False,
            "items": {"data": [{"price": {"id": price, "lookup_key": None}, "quantity": 1,
                                "current_period_end": 1_800_000_000}]},
            "latest_invoice": {"id": "in_1", "status": "paid"},
            "metadata": {"stripe_checkout_mw": "this-shop"}, **fields}


def test_an_answer_fetched_earlier_never_replaces_one_fetched_later(store_url: str) -> None:
    from stripe_checkout_mw.billing.customers import CustomerDirectory
    from stripe_checkout_mw.ledger.store import open_store
    from stripe_checkout_mw.news.reads import Fetched
    from stripe_checkout_mw.news.subscriptions import SubscriptionEvents

    with open_store(store_url) as store:
        customers = CustomerDirectory(store)
        ledger = SubscriptionLedger(store, customers)
        applier = SubscriptionEvents(ledger, stripe.StripeClient("sk_test_unused"))
        with store.transaction() as tx:
            customers.record(tx, "ann", "cus_race")
        # Two deliveries fetch at t=10 (still active) and t=20 (canceled); the later
        # fetch commits first, and the slow, older answer must not undo it.
        newer = {"sub_race": Fetched(stripe_subscription("canceled"), 20.0)}
        older = {"sub_race": Fetched(stripe_subscription("active"), 10.0)}
        with store.transaction() as tx:
            first = applier.apply(tx, "sub_race", newer, "evt_2")
        with store.transaction() as tx:
            second = applier.apply(tx, "sub_race", older, "evt_1")
        assert [job.key for job in first] == ["sub_race#1"] and second == []
        assert only(ledger.for_customer("ann")).status == "canceled"
        # A later fetch that finds a new price is one more change.
        with store.transaction() as tx:
            third = applier.apply(tx, "sub_race", {"sub_race": Fetched(
                stripe_subscription("canceled", "price_basic"), 30.0)}, "evt_3")
        assert [job.key for job in third] == ["sub_race#2"]
        assert ledger.is_active("ann") is False
        assert ledger.for_customer("ann")[0].items[0].price == "price_basic"


def test_the_portal_path_must_differ_from_the_others(emu: StripeEmulator, store_url: str) -> None:
    from stripe_checkout_mw import OptionError

    with pytest.raises(OptionError, match="portal_path"):
        CheckoutMiddleware(shop, secret_key=emu.secret_key, domain_url="https://s.example",
                           price_lookup=StripeLookupKeys(), store=store_url,
                           customer_ref=signed_in, portal_path="/checkout-session")


def test_a_delayed_first_payment_is_incomplete_until_it_arrives(
    emu: StripeEmulator, served: Shop
) -> None:
    response = served.checkout("ann")
    session_id = response.json()["sessionId"]
    emu.pay(session_id, delayed=True)
    all_delivered(emu)
    waiting = only(served.subscriptions.for_customer("ann"))
    assert waiting.status == "incomplete" and waiting.customer_ref == "ann"
    assert not served.subscriptions.is_active("ann") and served.fulfilled == {}
    emu.pay(session_id, async_payment="succeeded")
    all_delivered(emu)
    assert only(served.subscriptions.for_customer("ann")).status == "active"
    assert served.subscriptions.is_active("ann")
    assert served.statuses("ann") == ["incomplete", "active"]
    assert served.fulfilled == {session_id: 1}


def test_failed_retries_can_end_unpaid(emu: StripeEmulator, served: Shop) -> None:
    session = served.subscribe(emu, "ann")
    emu.fail_next_renewal(session["subscription"], ending="unpaid")
    emu.advance_clock(32 * DAY)
    emu.advance_clock(8 * DAY)
    all_delivered(emu)
    assert only(served.subscriptions.for_customer("ann")).status == "unpaid"
    assert not served.subscriptions.is_active("ann")
    assert served.statuses("ann") == ["active", "past_due", "unpaid"]


@pytest.mark.parametrize(("status", "active"), [
    ("incomplete", False), ("incomplete_expired", False), ("trialing", True),
    ("active", True), ("past_due", True), ("canceled", False), ("unpaid", False),
    ("paused", False),
])
def test_which_statuses_give_access(store_url: str, status: str, active: bool) -> None:
    from stripe_checkout_mw.billing.customers import CustomerDirectory
    from stripe_checkout_mw.ledger.store import open_store
    from stripe_checkout_mw.news.reads import Fetched
    from stripe_checkout_mw.news.subscriptions import SubscriptionEvents

    with open_store(store_url) as store:
        customers = CustomerDirectory(store)
        ledger = SubscriptionLedger(store, customers)
        applier = SubscriptionEvents(ledger, stripe.StripeClient("sk_test_unused"))
        with store.transaction() as tx:
            customers.record(tx, "ann", "cus_race")
            applier.apply(tx, "sub_race",
                          {"sub_race": Fetched(stripe_subscription(status), 1.0)}, "evt_1")
        assert ledger.is_active("ann") is active
        assert ledger.is_active("ann", price="price_pro") is active
        assert ledger.is_active("ann", price="price_other") is False
        strict = SubscriptionLedger(store, customers, past_due_is_active=False)
        assert strict.is_active("ann") is (active and status != "past_due")


def test_the_browser_cannot_name_the_customer_or_the_ref(
    emu: StripeEmulator, served: Shop
) -> None:
    ann = served.subscribe(emu, "ann")
    for field, value in (("customer", ann["customer"]), ("client_reference_id", "ann")):
        answer = served.http.post(f"{served.url}/create-checkout-session", json={
            "line_items": [{"price": "pro", "quantity": 1}], field: value},
            headers={"X-Test-User": "eve"}, timeout=10)
        if answer.status_code == 200:
            create = [r for r in emu.requests if r.path == "/v1/checkout/sessions"][-1]
            assert create.params.get("customer") != ann["customer"]
            assert create.params["client_reference_id"] == "eve"
        else:
            assert answer.status_code == 400
    assert served.middleware.customers is not None
    assert served.middleware.customers.stripe_id("eve") is None
