"""Invoices and the hooks after the checkout, through the whole middleware.

The middleware runs on a real threaded server on 127.0.0.1 with a store on SQLite and
PostgreSQL; the emulator sells the subscriptions, moves its clock (renewals), bills manual
invoices, plays the cards that need authentication or fail after setup, and delivers its
signed events to the shop's webhook over HTTP, in order or (redelivered) reversed and twice.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from conftest import ServedShop

from stripe_checkout_mw import CheckoutMiddleware, Order, StripeLookupKeys, Subscription
from stripe_checkout_mw.billing.invoices import Invoice, InvoiceLedger
from stripe_checkout_mw.testing import StripeEmulator

DAY = 86400
SCA_CARD = "4000 0027 6000 3184"
FAILS_LATER = "pm_card_chargeCustomerFail"


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the shop"]


def signed_in(environ: dict[str, Any]) -> str | None:
    user: str | None = environ.get("HTTP_X_TEST_USER")
    return user


class Shop(ServedShop):
    """The middleware on a real server, recording what each hook saw (and when)."""

    def __init__(self, emu: StripeEmulator, store: str, **options: Any) -> None:
        self.lock = threading.Lock()
        self.fulfilled: Counter[str] = Counter()
        self.calls: dict[str, list[Any]] = {name: [] for name in (
            "invoice_paid", "payment_failed", "action_required", "trial_will_end")}
        self.raise_next: Counter[str] = Counter()
        self.running: Counter[str] = Counter()
        self.most_at_once = 0
        self.hold = threading.Event()
        self.hold.set()
        super().__init__(CheckoutMiddleware(
            app, secret_key=emu.secret_key, stripe_api_base=emu.api_base,
            domain_url="https://shop.example.com", price_lookup=StripeLookupKeys(),
            webhook_secret=emu.webhook_secret, store=store, fulfill=self.fulfill,
            customer_ref=signed_in,
            invoice_paid=self.hook("invoice_paid"), payment_failed=self.hook("payment_failed"),
            action_required=self.hook("action_required"),
            trial_will_end=self.hook("trial_will_end"), **options))

    @property
    def billing(self) -> InvoiceLedger:
        assert self.middleware.billing is not None
        return self.middleware.billing

    def fulfill(self, order: Order) -> None:
        with self.lock:
            self.fulfilled[order.session_id] += 1

    def hook(self, name: str) -> Any:
        def called(obj: Invoice | Subscription) -> None:
            with self.lock:
                self.running[name] += 1
                self.most_at_once = max(self.most_at_once, self.running[name])
            try:
                self.hold.wait(10)
                with self.lock:
                    if self.raise_next[name]:
                        self.raise_next[name] -= 1
                        raise RuntimeError("the mailer is down")
                    self.calls[name].append(obj)
            finally:
                with self.lock:
                    self.running[name] -= 1
        return called

    def seen(self, name: str) -> list[Any]:
        with self.lock:
            return list(self.calls[name])

    def subscribe(self, emu: StripeEmulator, user: str, price: str = "pro", *,
                  card: str = "4242 4242 4242 4242") -> dict[str, Any]:
        response = self.http.post(f"{self.url}/create-checkout-session", json={
            "line_items": [{"price": price, "quantity": 1}]},
            headers={"X-Test-User": user}, timeout=10)
        assert response.status_code == 200, response.text
        return emu.pay(response.json()["sessionId"], card=card)


@pytest.fixture
def emu() -> Iterator[StripeEmulator]:
    with StripeEmulator(hosted_page_webhook_wait=5) as emulator:
        emulator.add_price(1500, lookup_key="pro", recurring={"interval": "month"})
        emulator.add_price(900, lookup_key="basic", recurring={"interval": "month"})
        yield emulator


@pytest.fixture
def served(emu: StripeEmulator, store_url: str) -> Iterator[Shop]:
    server = Shop(emu, store_url)
    emu.webhook_url = f"{server.url}/stripe-webhook"
    yield server
    server.close()


def all_delivered(emu: StripeEmulator) -> None:
    emu.wait_for_deliveries(10)
    assert [d for d in emu.deliveries if d.status != 200] == []


def renew(emu: StripeEmulator, subscription_id: str, *, wait: bool = True) -> None:
    """Move the clock just past the subscription's current period (the clock is at most a
    minute past its start)."""
    (item, *_) = emu.subscription(subscription_id)["items"]["data"]
    emu.advance_clock(item["current_period_end"] - item["current_period_start"] + 60,
                      wait=wait)


def ledger_view(billing: InvoiceLedger, ref: str) -> list[tuple[Any, ...]]:
    return [(i.id, i.number, i.status, i.billing_reason, i.amount_due, i.amount_paid,
             i.amount_remaining, i.total, i.period_start, i.period_end, i.paid_at,
             i.hosted_invoice_url, i.subscription, i.customer_ref)
            for i in billing.invoices(ref, limit=100)]


def test_every_invoice_is_mirrored_as_stripe_says_and_invoice_paid_fires_once_each(
        emu: StripeEmulator, served: Shop) -> None:
    session = served.subscribe(emu, "ann")
    sub_id = session["subscription"]
    renew(emu, sub_id)
    renew(emu, sub_id)
    customer = emu.subscription(sub_id)["customer"]
    emu.advance_clock(60)  # a minute after the renewal, so the order is certain
    manual = emu.invoice_customer(customer, 2500, description="Consulting")
    all_delivered(emu)

    invoices = served.billing.invoices("ann")
    assert [i.billing_reason for i in invoices] == [
        "manual", "subscription_cycle", "subscription_cycle", "subscription_create"]
    assert invoices[0].id == manual["id"] and invoices[0].subscription is None
    client = served.middleware.client
    for invoice in invoices:
        stripe_says = client.v1.invoices.retrieve(invoice.id)
        lines = stripe_says.lines.data
        assert (invoice.number, invoice.status, invoice.amount_due, invoice.amount_paid,
                invoice.amount_remaining, invoice.total, invoice.currency) == (
            stripe_says.number, "paid", stripe_says.amount_due, stripe_says.amount_paid,
            stripe_says.amount_remaining, stripe_says.total, "usd")
        assert (invoice.tax, invoice.discounts) == (0, 0)
        assert invoice.period_start == min(line.period.start for line in lines)
        assert invoice.period_end == max(line.period.end for line in lines)
        assert invoice.hosted_invoice_url == stripe_says.hosted_invoice_url
        assert invoice.invoice_pdf == stripe_says.invoice_pdf
        assert invoice.paid_at == stripe_says.status_transitions.paid_at
        assert invoice.stripe_customer == customer and invoice.customer_ref == "ann"
    assert {i.subscription for i in invoices[1:]} == {sub_id}
    assert [i.total for i in invoices] == [2500, 1500, 1500, 1500]

    # invoice_paid: once per invoice, renewals and the manual one too; fulfil only once.
    paid = served.seen("invoice_paid")
    assert Counter(i.id for i in paid) == {i.id: 1 for i in invoices}
    assert {i.billing_reason for i in paid} == {"subscription_create", "subscription_cycle",
                                                "manual"}
    assert all(i.hook_attempt == 1 and i.customer_ref == "ann" for i in paid)
    assert served.fulfilled == {session["id"]: 1}
    assert served.seen("payment_failed") == served.seen("action_required") == []


def test_events_out_of_order_and_duplicated_give_the_same_ledger_and_hooks_once(
        emu: StripeEmulator, served: Shop, tmp_path: Any) -> None:
    session = served.subscribe(emu, "ann")
    served.subscribe(emu, "bob", "basic")
    renew(emu, session["subscription"])
    emu.attach_card(emu.subscription(session["subscription"])["customer"], FAILS_LATER)
    renew(emu, session["subscription"])  # declined: open, payment_failed
    all_delivered(emu)
    expected = {ref: ledger_view(served.billing, ref) for ref in ("ann", "bob")}
    assert [row[2] for row in expected["ann"]] == ["open", "paid", "paid"]

    other = Shop(emu, f"sqlite:///{tmp_path}/other.db")
    emu.webhook_url = f"{other.url}/stripe-webhook"
    try:
        for event in reversed(emu.events):
            emu.redeliver(event["id"])
            emu.redeliver(event["id"])
        all_delivered(emu)
        got = {ref: ledger_view(other.billing, ref) for ref in ("ann", "bob")}
        assert got == expected
        paid = Counter(i.id for i in other.seen("invoice_paid"))
        assert paid == {row[0]: 1 for ref in ("ann", "bob") for row in expected[ref]
                        if row[2] == "paid"}
        (failed,) = other.seen("payment_failed")
        assert failed.id == expected["ann"][0][0] and failed.attempt_count == 1
    finally:
        other.close()


def test_a_failed_renewal_asks_for_dunning_once_per_attempt_then_paid_on_its_page(
        emu: StripeEmulator, served: Shop) -> None:
    session = served.subscribe(emu, "ann")
    sub_id = session["subscription"]
    emu.attach_card(emu.subscription(sub_id)["customer"], FAILS_LATER)
    renew(emu, sub_id)
    all_delivered(emu)
    (failed,) = served.seen("payment_failed")
    assert failed.status == "open" and failed.billing_reason == "subscription_cycle"
    assert failed.hosted_invoice_url and failed.attempt_count == 1
    assert failed.next_payment_attempt is not None
    assert served.billing.invoice(failed.id) is not None
    assert served.billing.invoice(failed.id).status == "open"  # type: ignore[union-attr]
    assert served.middleware.subscriptions is not None
    assert served.middleware.subscriptions.for_customer("ann")[0].status == "past_due"

    emu.advance_clock(3 * DAY + 60)  # the first retry fails too
    all_delivered(emu)
    assert [i.attempt_count for i in served.seen("payment_failed")] == [1, 2]

    assert emu.pay_invoice(failed.id, card="4242424242424242")["status"] == "paid"
    all_delivered(emu)
    now = served.billing.invoice(failed.id)
    assert now is not None and now.status == "paid" and now.amount_remaining == 0
    assert [i.id for i in served.seen("invoice_paid")].count(failed.id) == 1
    assert served.middleware.subscriptions.for_customer("ann")[0].status == "active"
    assert served.fulfilled == {session["id"]: 1}


def test_a_card_needing_authentication_fires_action_required_once(
        emu: StripeEmulator, served: Shop) -> None:
    session = served.subscribe(emu, "ann", card=SCA_CARD)
    renew(emu, session["subscription"])
    all_delivered(emu)
    (waiting,) = served.seen("action_required")
    assert waiting.status == "open" and waiting.hosted_invoice_url
    assert waiting.billing_reason == "subscription_cycle"

    # The customer gives up once on the invoice's page: Stripe asks again; the hook not.
    page = requests.post(waiting.hosted_invoice_url, data={"action": "fail_authentication"},
                         timeout=5)
    assert page.status_code == 200
    emu.wait_for_deliveries(10)
    assert sum(e["type"] == "invoice.payment_action_required" for e in emu.events) == 2
    assert len(served.seen("action_required")) == 1

    requests.post(waiting.hosted_invoice_url, data={"action": "pay"}, timeout=5)
    all_delivered(emu)
    assert served.billing.invoice(waiting.id).status == "paid"  # type: ignore[union-attr]
    assert waiting.id in [i.id for i in served.seen("invoice_paid")]
    assert served.seen("payment_failed") == []


def test_a_hook_that_raises_is_retried_with_a_higher_attempt_number(
        emu: StripeEmulator, served: Shop) -> None:
    session = served.subscribe(emu, "ann")
    served.raise_next["invoice_paid"] = 1
    renew(emu, session["subscription"])
    emu.wait_for_deliveries(20)
    assert any(d.status == 500 for d in emu.deliveries)
    renewal = served.billing.invoices("ann")[0]
    assert renewal.billing_reason == "subscription_cycle"
    calls = [i for i in served.seen("invoice_paid") if i.id == renewal.id]
    assert [i.hook_attempt for i in calls] == [2]


def test_a_hook_never_runs_twice_at_once(emu: StripeEmulator, served: Shop) -> None:
    session = served.subscribe(emu, "ann")
    served.hold.clear()  # the renewal's hook waits while Stripe delivers the event again
    renew(emu, session["subscription"], wait=False)
    deadline = time.monotonic() + 10
    while not served.running["invoice_paid"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert served.running["invoice_paid"] == 1
    renewal_paid = [e for e in emu.events if e["type"] == "invoice.paid"][-1]
    emu.redeliver(renewal_paid["id"], wait=False)
    emu.redeliver(renewal_paid["id"], wait=False)
    time.sleep(0.5)
    served.hold.set()
    emu.wait_for_deliveries(20)
    renewal = renewal_paid["data"]["object"]["id"]
    calls = [i for i in served.seen("invoice_paid") if i.id == renewal]
    assert [i.hook_attempt for i in calls] == [1]
    assert served.most_at_once == 1


def test_trial_will_end_fires_once_while_trialing(emu: StripeEmulator, store_url: str) -> None:
    served = Shop(emu, store_url, mode="subscription", session_options={
        "subscription_data": {"trial_period_days": 7}})
    emu.webhook_url = f"{served.url}/stripe-webhook"
    try:
        session = served.subscribe(emu, "ann")
        emu.advance_clock(4 * DAY + 60)
        all_delivered(emu)
        (ending,) = served.seen("trial_will_end")
        assert ending.id == session["subscription"] and ending.status == "trialing"
        assert ending.customer_ref == "ann" and ending.trial_end is not None
        for event in emu.events:
            if event["type"] == "customer.subscription.trial_will_end":
                emu.redeliver(event["id"])
        all_delivered(emu)
        assert len(served.seen("trial_will_end")) == 1
        assert served.fulfilled == {session["id"]: 1}
    finally:
        served.close()


def test_no_hook_for_a_customer_the_shop_never_sold_to(
        emu: StripeEmulator, served: Shop) -> None:
    stranger = emu.client().v1.customers.create(params={"email": "x@example.com"})
    emu.attach_card(stranger.id, "4242424242424242")
    emu.invoice_customer(stranger.id, 700)
    all_delivered(emu)
    assert served.seen("invoice_paid") == []
    assert served.billing.invoices("ann") == []


def test_an_invoice_is_stored_by_id_without_an_event_for_a_backfill(
        emu: StripeEmulator, served: Shop, tmp_path: Any) -> None:
    session = served.subscribe(emu, "ann")
    all_delivered(emu)
    (first,) = served.billing.invoices("ann")
    other = Shop(emu, f"sqlite:///{tmp_path}/fresh.db")  # no webhook reaches it
    try:
        events = other.middleware.shop.invoice_events
        pipeline = other.middleware.pipeline
        assert events is not None and pipeline is not None
        assert other.billing.invoices("ann") == []
        stored = events.refresh(pipeline, first.id)
        assert stored is not None and stored.id == first.id and stored.status == "paid"
        assert stored.billing_reason == "subscription_create"
        assert stored.customer_ref == "ann"  # its customer's user, from the selling session
        assert [i.id for i in other.seen("invoice_paid")] == [first.id]
        assert events.refresh(pipeline, first.id) is not None
        assert len(other.seen("invoice_paid")) == 1
        assert events.refresh(pipeline, "in_missing") is None
        assert other.fulfilled == {} and served.fulfilled == {session["id"]: 1}

        # As a list page gives them: stored as they are, with no fetch each.
        renew(emu, session["subscription"])
        started = time.time()
        listed = emu.client().v1.invoices.list(params={"customer": first.stripe_customer})
        assert [i.billing_reason for i in listed.data] == [
            "subscription_cycle", "subscription_create"]
        before = len(emu.requests)
        for invoice in listed.data:
            events.refresh(pipeline, invoice, fetched_at=started)
        assert len(emu.requests) == before  # the list's objects were used as they are
        assert [i.id for i in other.billing.invoices("ann")] == [i.id for i in listed.data]
        assert len(other.seen("invoice_paid")) == 2
    finally:
        other.close()
