"""The emulator's customers, subscriptions, invoices, trials, clock and billing portal.

Driven by the real ``stripe`` SDK over HTTP on 127.0.0.1; every event is received by
a real webhook endpoint (werkzeug) that verifies its signature with the SDK.
"""

from __future__ import annotations

import calendar
import re
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, Callable

import pytest
import requests
import stripe
from werkzeug.serving import make_server

from stripe_checkout_mw.testing import StripeEmulator

SUCCESS = "http://shop.test/thanks?session_id={CHECKOUT_SESSION_ID}"
DAY = 86400

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], list[bytes]]


class SignedReceiver:
    """A webhook endpoint on werkzeug that keeps the events whose signature verifies."""

    def __init__(self, client: stripe.StripeClient, secret: str) -> None:
        self.client = client
        self.secret = secret
        self.events: list[stripe.Event] = []
        self.rejected = 0
        self.lock = threading.Lock()
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05})

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        try:
            event = self.client.construct_event(
                body, environ.get("HTTP_STRIPE_SIGNATURE", ""), self.secret)
        except (stripe.SignatureVerificationError, ValueError):
            with self.lock:
                self.rejected += 1
            start_response("400 Bad Request", [("Content-Length", "0")])
            return [b""]
        with self.lock:
            self.events.append(event)
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/webhook"

    def types(self) -> Counter[str]:
        with self.lock:
            return Counter(e.type for e in self.events)

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The ``data`` of each received ``kind`` event, as plain dicts."""
        with self.lock:
            return [e.data.to_dict() for e in self.events if e.type == kind]

    def clear(self) -> None:
        with self.lock:
            self.events.clear()


@pytest.fixture
def emu(stripe_emulator: StripeEmulator) -> StripeEmulator:
    return stripe_emulator


@pytest.fixture
def client(emu: StripeEmulator) -> stripe.StripeClient:
    return emu.client()


@pytest.fixture
def receiver(emu: StripeEmulator, client: stripe.StripeClient) -> Iterator[SignedReceiver]:
    hook = SignedReceiver(client, emu.webhook_secret)
    hook.thread.start()
    emu.set_webhook_url(hook.url)
    yield hook
    emu.set_webhook_url(None)
    hook.server.shutdown()
    hook.server.server_close()
    hook.thread.join()
    assert hook.rejected == 0


def subscribe(emu: StripeEmulator, client: stripe.StripeClient, price: dict[str, Any],
              **params: Any) -> tuple[Any, dict[str, Any]]:
    """Create and pay a subscription-mode session; (SDK session, paid session dict)."""
    session = client.v1.checkout.sessions.create(params={
        "mode": "subscription", "success_url": SUCCESS,
        "line_items": [{"price": price["id"], "quantity": 1}], **params})
    return session, emu.pay(session.id, email=params.get("customer_email", "ann@example.com"))


def next_month(ts: int) -> int:
    """The same time one calendar month later, the day clamped to the month's end."""
    when = datetime.fromtimestamp(ts, timezone.utc)
    year, month = divmod(when.year * 12 + when.month, 12)
    day = min(when.day, calendar.monthrange(year, month + 1)[1])
    return int(when.replace(year=year, month=month + 1, day=day).timestamp())


def period_end(sub: Any) -> int:
    return int(min(item.current_period_end for item in sub["items"].data))


@pytest.fixture
def monthly(emu: StripeEmulator) -> dict[str, Any]:
    return emu.add_price(900, "usd", lookup_key="monthly", nickname="Monthly",
                         recurring={"interval": "month"})


# -- customers ---------------------------------------------------------------------------


def test_customers_create_retrieve_and_list_by_exact_email(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver) -> None:
    ann = client.v1.customers.create(params={"email": "ann@example.com", "name": "Ann",
                                             "metadata": {"uid": "7"}})
    bob = client.v1.customers.create(params={"email": "bob@example.com"})
    assert ann.id.startswith("cus_") and ann.object == "customer"
    again = client.v1.customers.retrieve(ann.id)
    assert (again.email, again.name, again.metadata.to_dict()) == (
        "ann@example.com", "Ann", {"uid": "7"})
    assert again.delinquent is False and again.test_clock is None
    found = client.v1.customers.list(params={"email": "ann@example.com"})
    assert [c.id for c in found.data] == [ann.id]
    assert client.v1.customers.list(params={"email": "ANN@example.com"}).data == []
    assert [c.id for c in client.v1.customers.list().data] == [bob.id, ann.id]
    emu.wait_for_deliveries()
    assert sorted(d["object"]["id"] for d in receiver.of("customer.created")) == sorted(
        [ann.id, bob.id])
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.customers.retrieve("cus_nobody")
    assert missing.value.http_status == 404
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.customers.create(params={"emial": "x@y.z"})  # type: ignore[typeddict-unknown-key]
    assert unknown.value.error is not None and unknown.value.error.param == "emial"


def test_payment_mode_makes_a_customer_only_when_asked(
        emu: StripeEmulator, client: stripe.StripeClient) -> None:
    item = {"price_data": {"currency": "usd", "unit_amount": 500,
                           "product_data": {"name": "Mug"}}, "quantity": 1}
    base = {"mode": "payment", "success_url": SUCCESS, "line_items": [item]}
    guest = client.v1.checkout.sessions.create(params=base)  # type: ignore[arg-type]
    assert emu.pay(guest.id, email="g@example.com")["customer"] is None
    assert client.v1.checkout.sessions.retrieve(guest.id).customer_details.email == (
        "g@example.com")
    always = client.v1.checkout.sessions.create(
        params={**base, "customer_creation": "always"})  # type: ignore[typeddict-item]
    created = emu.pay(always.id, email="c@example.com")["customer"]
    assert client.v1.customers.retrieve(created).email == "c@example.com"
    known = client.v1.checkout.sessions.create(
        params={**base, "customer": created})  # type: ignore[typeddict-item]
    repaid = emu.pay(known.id, email="typed@example.com")
    assert repaid["customer"] == created
    assert repaid["customer_details"]["email"] == "c@example.com"
    blank = client.v1.customers.create()
    unnamed = client.v1.checkout.sessions.create(
        params={**base, "customer": blank.id})  # type: ignore[typeddict-item]
    emu.pay(unnamed.id, email="new@example.com")
    assert client.v1.customers.retrieve(blank.id).email == "new@example.com"
    assert len(client.v1.customers.list().data) == 2
    with pytest.raises(stripe.InvalidRequestError, match="No such customer"):
        client.v1.checkout.sessions.create(params={**base, "customer": "cus_ghost"})  # type: ignore[typeddict-item]
    with pytest.raises(stripe.InvalidRequestError, match="customer_creation"):
        client.v1.checkout.sessions.create(params={
            "mode": "subscription", "success_url": SUCCESS, "customer_creation": "always",
            "line_items": [{"price": emu.add_price(100, recurring={"interval": "month"})["id"],
                            "quantity": 1}]})


# -- a subscription's first payment ------------------------------------------------------


def test_paid_subscription_session_creates_customer_subscription_and_first_invoice(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,
        monthly: dict[str, Any]) -> None:
    setup_fee = emu.add_price(2500, "usd")
    session = client.v1.checkout.sessions.create(params={
        "mode": "subscription", "success_url": SUCCESS,
        "subscription_data": {"metadata": {"plan": "monthly"}},
        "line_items": [{"price": monthly["id"], "quantity": 2},
                       {"price": setup_fee["id"], "quantity": 1}]})
    paid = emu.pay(session.id, email="ann@example.com")
    fetched = client.v1.checkout.sessions.retrieve(session.id)
    assert fetched.customer == paid["customer"] and fetched.customer.startswith("cus_")
    assert fetched.subscription.startswith("sub_") and fetched.payment_intent is None

    sub = client.v1.subscriptions.retrieve(fetched.subscription)
    assert sub.status == "active" and sub.customer == fetched.customer
    assert sub.metadata.to_dict() == {"plan": "monthly"}
    assert "current_period_end" not in sub.to_dict()
    (item,) = sub["items"].data
    assert (item.price.id, item.quantity) == (monthly["id"], 2)
    assert item.current_period_start == sub.start_date
    assert item.current_period_end == next_month(sub.start_date)
    assert sub.cancel_at_period_end is False and sub.cancel_at is None

    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert fetched.invoice == invoice.id
    raw = invoice.to_dict()
    for gone in ("subscription", "paid", "payment_intent", "charge"):
        assert gone not in raw
    assert invoice.parent.subscription_details.subscription == sub.id
    assert invoice.parent.subscription_details.metadata.to_dict() == {"plan": "monthly"}
    assert (invoice.billing_reason, invoice.status) == ("subscription_create", "paid")
    assert (invoice.amount_due, invoice.amount_paid, invoice.amount_remaining) == (
        4300, 4300, 0)
    assert invoice.number and invoice.status_transitions.paid_at is not None
    prices = sorted(line.pricing.price_details.price for line in invoice.lines.data)
    assert prices == sorted([monthly["id"], setup_fee["id"]])
    recurring_line = next(line for line in invoice.lines.data
                          if line.pricing.price_details.price == monthly["id"])
    assert recurring_line.parent.subscription_item_details.subscription_item == item.id
    assert recurring_line.period.end == item.current_period_end
    customer = client.v1.customers.retrieve(sub.customer)
    assert customer.email == "ann@example.com"

    listed = client.v1.subscriptions.list(params={"customer": sub.customer})
    assert [s.id for s in listed.data] == [sub.id]
    assert client.v1.subscriptions.list(params={"customer": "cus_other"}).data == []
    assert [i.id for i in client.v1.invoices.list(
        params={"subscription": sub.id}).data] == [invoice.id]
    by_sub = client.v1.checkout.sessions.list(params={"subscription": sub.id})
    assert [s.id for s in by_sub.data] == [session.id]

    assert receiver.types() == Counter({
        "customer.created": 1, "customer.subscription.created": 1, "invoice.created": 1,
        "invoice.finalized": 1, "invoice.paid": 1, "invoice.payment_succeeded": 1,
        "customer.subscription.updated": 1, "checkout.session.completed": 1})
    (created,) = receiver.of("customer.subscription.created")
    assert created["object"]["status"] == "incomplete"
    (updated,) = receiver.of("customer.subscription.updated")
    assert updated["object"]["status"] == "active"
    assert updated["previous_attributes"] == {"status": "incomplete"}
    (completed,) = receiver.of("checkout.session.completed")
    assert completed["object"]["subscription"] == sub.id
    (draft,) = receiver.of("invoice.created")
    assert draft["object"]["status"] == "draft" and draft["object"]["number"] is None


def test_delayed_first_payment_keeps_the_subscription_incomplete_until_it_settles(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,
        monthly: dict[str, Any]) -> None:
    ok = client.v1.checkout.sessions.create(params={
        "mode": "subscription", "success_url": SUCCESS,
        "line_items": [{"price": monthly["id"], "quantity": 1}]})
    pending = emu.pay(ok.id, delayed=True)
    sub = client.v1.subscriptions.retrieve(pending["subscription"])
    assert sub.status == "incomplete"
    assert client.v1.invoices.retrieve(sub.latest_invoice).status == "open"
    emu.pay(ok.id, async_payment="succeeded")
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    assert client.v1.invoices.retrieve(sub.latest_invoice).status == "paid"

    bad = client.v1.checkout.sessions.create(params={
        "mode": "subscription", "success_url": SUCCESS,
        "line_items": [{"price": monthly["id"], "quantity": 1}]})
    failed = emu.pay(bad.id, async_payment="failed")
    assert client.v1.subscriptions.retrieve(failed["subscription"]).status == "incomplete"
    failures = receiver.of("invoice.payment_failed")
    assert [f["object"]["parent"]["subscription_details"]["subscription"]
            for f in failures] == [failed["subscription"]]


# -- time: renewals, failures, trials -------------------------------------------------------


def test_renewal_moves_the_items_period_and_bills_a_subscription_cycle_invoice(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,
        monthly: dict[str, Any]) -> None:
    _, paid = subscribe(emu, client, monthly)
    sub = client.v1.subscriptions.retrieve(paid["subscription"])
    end = period_end(sub)
    receiver.clear()
    emu.advance_clock(end - sub.start_date - 60)
    assert receiver.types() == Counter() and client.v1.subscriptions.retrieve(
        sub.id).latest_invoice == sub.latest_invoice
    emu.advance_clock(61)
    renewed = client.v1.subscriptions.retrieve(sub.id)
    assert renewed.status == "active" and renewed.latest_invoice != sub.latest_invoice
    (item,) = renewed["items"].data
    assert (item.current_period_start, item.current_period_end) == (end, next_month(end))
    invoice = client.v1.invoices.retrieve(renewed.latest_invoice)
    assert (invoice.billing_reason, invoice.status, invoice.amount_paid) == (
        "subscription_cycle", "paid", 900)
    assert invoice.lines.data[0].period.start == end
    assert receiver.types() == Counter({
        "invoice.created": 1, "invoice.finalized": 1, "invoice.paid": 1,
        "invoice.payment_succeeded": 1, "customer.subscription.updated": 1})
    (updated,) = receiver.of("customer.subscription.updated")
    assert updated["previous_attributes"]["latest_invoice"] == sub.latest_invoice
    assert updated["previous_attributes"]["items"]["data"][0]["current_period_end"] == end
    emu.advance_clock(70 * DAY)  # two more months at once, in order
    invoices = client.v1.invoices.list(params={"subscription": sub.id})
    assert [i.billing_reason for i in invoices.data] == (
        ["subscription_cycle"] * 3 + ["subscription_create"])


def test_failed_renewal_goes_past_due_then_is_canceled_after_the_last_retry(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,
        monthly: dict[str, Any]) -> None:
    _, paid = subscribe(emu, client, monthly)
    sub = client.v1.subscriptions.retrieve(paid["subscription"])
    emu.fail_next_renewal(sub.id)
    receiver.clear()
    emu.advance_clock(period_end(sub) - sub.start_date)
    late = client.v1.subscriptions.retrieve(sub.id)
    assert late.status == "past_due"
    invoice = client.v1.invoices.retrieve(late.latest_invoice)
    assert (invoice.status, invoice.attempt_count) == ("open", 1)
    first_failure = invoice.status_transitions.finalized_at
    assert invoice.next_payment_attempt == first_failure + 3 * DAY
    assert [s.id for s in client.v1.subscriptions.list(
        params={"status": "past_due"}).data] == [sub.id]
    emu.advance_clock(3 * DAY)
    assert client.v1.invoices.retrieve(invoice.id).next_payment_attempt == (
        first_failure + 5 * DAY)
    emu.advance_clock(4 * DAY)
    ended = client.v1.subscriptions.retrieve(sub.id)
    assert ended.status == "canceled" and ended.ended_at is not None
    assert ended.cancellation_details.reason == "payment_failed"
    final = client.v1.invoices.retrieve(invoice.id)
    assert (final.attempt_count, final.next_payment_attempt) == (4, None)
    assert receiver.types()["invoice.payment_failed"] == 4
    assert receiver.types()["customer.subscription.deleted"] == 1
    statuses = [u["object"]["status"] for u in receiver.of("customer.subscription.updated")]
    assert statuses == ["past_due"]
    assert client.v1.subscriptions.list(params={"customer": sub.customer}).data == []
    assert [s.id for s in client.v1.subscriptions.list(
        params={"customer": sub.customer, "status": "ended"}).data] == [sub.id]
    emu.advance_clock(40 * DAY)
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == 2


def test_failed_renewal_recovers_on_retry_or_ends_unpaid(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,
        monthly: dict[str, Any]) -> None:
    _, first = subscribe(emu, client, monthly)
    _, second = subscribe(emu, client, monthly, customer_email="bob@example.com")
    emu.fail_next_renewal(first["subscription"], retries_fail=False)
    emu.fail_next_renewal(second["subscription"], ending="unpaid")
    with pytest.raises(ValueError, match="ending"):
        emu.fail_next_renewal(first["subscription"], ending="paused")
    with pytest.raises(KeyError):
        emu.fail_next_renewal("sub_nothing")
    start = client.v1.subscriptions.retrieve(first["subscription"])
    emu.advance_clock(period_end(start) - start.start_date + 1)
    assert client.v1.subscriptions.retrieve(first["subscription"]).status == "past_due"
    emu.advance_clock(3 * DAY)
    recovered = client.v1.subscriptions.retrieve(first["subscription"])
    assert recovered.status == "active"
    assert client.v1.invoices.retrieve(recovered.latest_invoice).status == "paid"
    emu.advance_clock(5 * DAY)
    unpaid = client.v1.subscriptions.retrieve(second["subscription"])
    assert unpaid.status == "unpaid" and unpaid.ended_at is None
    updates = {(u["object"]["id"], u["object"]["status"])
               for u in receiver.of("customer.subscription.updated")}
    assert (first["subscription"], "active") in updates
    assert (second["subscription"], "unpaid") in updates
    assert receiver.types()["customer.subscription.deleted"] == 0


def test_trial_starts_trialing_warns_three_days_before_and_bills_at_its_end(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,
        monthly: dict[str, Any]) -> None:
    _, paid = subscribe(emu, client, monthly,
                        subscription_data={"trial_period_days": 7})
    sub = client.v1.subscriptions.retrieve(paid["subscription"])
    assert sub.status == "trialing"
    assert sub.trial_end == sub.trial_start + 7 * DAY == period_end(sub)
    first = client.v1.invoices.retrieve(sub.latest_invoice)
    assert (first.billing_reason, first.amount_due, first.status) == (
        "subscription_create", 0, "paid")
    assert receiver.types()["customer.subscription.trial_will_end"] == 0
    emu.advance_clock(4 * DAY - 10)
    assert receiver.types()["customer.subscription.trial_will_end"] == 0
    emu.advance_clock(10)
    assert receiver.types()["customer.subscription.trial_will_end"] == 1
    emu.advance_clock(3 * DAY)
    active = client.v1.subscriptions.retrieve(sub.id)
    assert active.status == "active" and active.trial_end == sub.trial_end
    assert period_end(active) == next_month(sub.trial_end)
    bill = client.v1.invoices.retrieve(active.latest_invoice)
    assert (bill.billing_reason, bill.amount_paid) == ("subscription_cycle", 900)
    ended = [u for u in receiver.of("customer.subscription.updated")
             if u["previous_attributes"].get("status") == "trialing"]
    assert len(ended) == 1 and ended[0]["object"]["status"] == "active"
    assert receiver.types()["customer.subscription.trial_will_end"] == 1

    _, short = subscribe(emu, client, monthly, subscription_data={"trial_period_days": 2})
    notices = receiver.of("customer.subscription.trial_will_end")
    assert notices[-1]["object"]["id"] == short["subscription"]


# -- cancellation ------------------------------------------------------------------------------


def test_cancel_at_period_end_through_the_api_keeps_it_active_until_the_end(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,
        monthly: dict[str, Any]) -> None:
    _, paid = subscribe(emu, client, monthly)
    sub_id = paid["subscription"]
    end = period_end(client.v1.subscriptions.retrieve(sub_id))
    scheduled = client.v1.subscriptions.update(sub_id, params={
        "cancel_at_period_end": True, "cancellation_details": {"comment": "too pricey"}})
    assert scheduled.status == "active" and scheduled.cancel_at_period_end is True
    assert scheduled.cancel_at == end and scheduled.canceled_at is not None
    assert scheduled.cancellation_details.comment == "too pricey"
    resumed = client.v1.subscriptions.update(sub_id, params={"cancel_at_period_end": False})
    assert (resumed.cancel_at_period_end, resumed.cancel_at, resumed.canceled_at) == (
        False, None, None)
    client.v1.subscriptions.update(sub_id, params={"cancel_at_period_end": True})
    with pytest.raises(stripe.InvalidRequestError) as unsupported:
        client.v1.subscriptions.update(sub_id, params={"trial_end": 5})
    assert unsupported.value.error is not None
    assert unsupported.value.error.param == "trial_end"
    # A margin: real time passes between the subscription's start and this line.
    emu.advance_clock(end - emu.subscription(sub_id)["start_date"] - 60)
    assert client.v1.subscriptions.retrieve(sub_id).status == "active"
    emu.advance_clock(60)
    ended = client.v1.subscriptions.retrieve(sub_id)
    assert (ended.status, ended.ended_at) == ("canceled", end)
    assert len(client.v1.invoices.list(params={"subscription": sub_id}).data) == 1
    (deleted,) = receiver.of("customer.subscription.deleted")
    assert deleted["object"]["id"] == sub_id
    flags = [u["previous_attributes"]["cancel_at_period_end"]
             for u in receiver.of("customer.subscription.updated")
             if "cancel_at_period_end" in u["previous_attributes"]]
    assert sorted(flags) == [False, False, True]


def test_cancel_now_through_the_api_and_the_emulator(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,
        monthly: dict[str, Any]) -> None:
    _, first = subscribe(emu, client, monthly)
    _, second = subscribe(emu, client, monthly)
    canceled = client.v1.subscriptions.cancel(first["subscription"], params={
        "cancellation_details": {"feedback": "too_expensive"}})
    assert canceled.status == "canceled" and canceled.ended_at == canceled.canceled_at
    assert canceled.cancellation_details.reason == "cancellation_requested"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.cancel(first["subscription"])
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.update(first["subscription"],
                                       params={"cancel_at_period_end": True})
    later = emu.cancel_subscription(second["subscription"], at_period_end=True)
    assert later["status"] == "active" and later["cancel_at_period_end"] is True
    now = emu.cancel_subscription(second["subscription"])
    assert now["status"] == "canceled"
    assert {d["object"]["id"] for d in receiver.of("customer.subscription.deleted")} == {
        first["subscription"], second["subscription"]}
    assert client.v1.subscriptions.list().data == []
    assert len(client.v1.subscriptions.list(params={"status": "all"}).data) == 2
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.subscriptions.retrieve("sub_missing")
    assert missing.value.http_status == 404


# -- the billing portal --------------------------------------------------------------------------


def portal_post(url: str, **form: str) -> requests.Response:
    return requests.post(url, data=form, allow_redirects=False, timeout=10)


def test_portal_session_api(emu: StripeEmulator, client: stripe.StripeClient,
                            receiver: SignedReceiver, monthly: dict[str, Any]) -> None:
    _, paid = subscribe(emu, client, monthly)
    portal = client.v1.billing_portal.sessions.create(params={
        "customer": paid["customer"], "return_url": "http://shop.test/account"})
    assert portal.id.startswith("bps_") and portal.object == "billing_portal.session"
    assert (portal.customer, portal.return_url) == (paid["customer"],
                                                    "http://shop.test/account")
    assert portal.url.startswith(emu.api_base + "/portal/")
    emu.wait_for_deliveries()
    (created,) = receiver.of("billing_portal.session.created")
    assert created["object"]["id"] == portal.id
    with pytest.raises(stripe.InvalidRequestError) as nobody:
        client.v1.billing_portal.sessions.create(params={"customer": "cus_nobody"})
    assert nobody.value.error is not None and nobody.value.error.param == "customer"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.billing_portal.sessions.create(params={"return_url": "http://shop.test"})
    assert missing.value.error is not None
    assert missing.value.error.code == "parameter_missing"
    with pytest.raises(stripe.InvalidRequestError, match="url"):
        client.v1.billing_portal.sessions.create(params={
            "customer": paid["customer"], "return_url": "javascript:alert(1)"})
    with pytest.raises(stripe.InvalidRequestError, match="flow_data"):
        client.v1.billing_portal.sessions.create(params={
            "customer": paid["customer"],
            "flow_data": {"type": "payment_method_update"}})
    assert requests.get(emu.api_base + "/portal/bps_nothing", timeout=10).status_code == 404


def test_portal_page_cancels_resumes_switches_and_updates_the_card(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,
        monthly: dict[str, Any]) -> None:
    yearly = emu.add_price(9000, "usd", lookup_key="yearly", nickname="Yearly",
                           recurring={"interval": "year"})
    emu.add_price(800, "eur", recurring={"interval": "month"})  # another currency
    _, paid = subscribe(emu, client, monthly)
    _, other = subscribe(emu, client, monthly, customer_email="eve@example.com")
    sub_id = paid["subscription"]
    url = client.v1.billing_portal.sessions.create(params={
        "customer": paid["customer"], "return_url": "http://shop.test/account"}).url
    page = requests.get(url, timeout=10).text
    assert f'id="{sub_id}"' in page and other["subscription"] not in page
    assert 'href="http://shop.test/account"' in page
    options = re.findall(r'<option value="([^"]+)"', page)
    assert options == [yearly["id"]]
    receiver.clear()

    answer = portal_post(url, action="cancel", subscription=sub_id)
    assert answer.status_code == 303
    shown = requests.get(emu.api_base + answer.headers["Location"], timeout=10).text
    assert "canceled at the end of the period" in shown and f'id="resume-{sub_id}"' in shown
    assert client.v1.subscriptions.retrieve(sub_id).cancel_at_period_end is True
    assert portal_post(url, action="resume", subscription=sub_id).status_code == 303
    assert client.v1.subscriptions.retrieve(sub_id).cancel_at_period_end is False
    assert portal_post(url, action="switch", subscription=sub_id,
                       price=yearly["id"]).status_code == 303
    switched = client.v1.subscriptions.retrieve(sub_id)
    assert switched["items"].data[0].price.id == yearly["id"]
    updates = receiver.of("customer.subscription.updated")
    assert len(updates) == 3
    assert updates[2]["previous_attributes"]["items"]["data"][0]["price"]["id"] == (
        monthly["id"])

    before = len(emu.events)
    declined = portal_post(url, action="card", cardnumber="4000 0000 0000 0002")
    assert declined.status_code == 200 and "declined" in declined.text
    same = portal_post(url, action="switch", subscription=sub_id, price=yearly["id"])
    assert same.status_code == 200 and "already on price" in same.text
    junk = portal_post(url, action="launch", subscription=sub_id)
    assert junk.status_code == 200 and "Unknown action" in junk.text
    stolen = portal_post(url, action="cancel", subscription=other["subscription"])
    assert stolen.status_code == 200 and "no such subscription" in stolen.text
    assert client.v1.subscriptions.retrieve(other["subscription"]).cancel_at_period_end \
        is False
    assert len(emu.events) == before
    assert portal_post(url, action="card", cardnumber="4242424242424242").status_code == 303
    emu.wait_for_deliveries()
    (attached,) = receiver.of("payment_method.attached")
    (customer,) = receiver.of("customer.updated")
    assert customer["object"]["invoice_settings"]["default_payment_method"] == (
        attached["object"]["id"])
    assert client.v1.subscriptions.retrieve(sub_id).default_payment_method == (
        attached["object"]["id"])


def test_portal_card_update_pays_a_past_due_subscription(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,
        monthly: dict[str, Any]) -> None:
    _, paid = subscribe(emu, client, monthly)
    sub = client.v1.subscriptions.retrieve(paid["subscription"])
    url = client.v1.billing_portal.sessions.create(
        params={"customer": paid["customer"]}).url
    emu.fail_next_renewal(sub.id)
    emu.advance_clock(period_end(sub) - sub.start_date)
    assert client.v1.subscriptions.retrieve(sub.id).status == "past_due"
    assert portal_post(url, action="card", cardnumber="4242 4242 4242 4242").status_code == 303
    healed = client.v1.subscriptions.retrieve(sub.id)
    assert healed.status == "active"
    assert client.v1.invoices.retrieve(healed.latest_invoice).status == "paid"
    emu.advance_clock(10 * DAY)  # no retry is left to fail
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    # A card that saves but declines: the next renewal fails.
    assert portal_post(url, action="card", cardnumber="4000000000000341").status_code == 303
    emu.advance_clock(period_end(healed) - emu.subscription(sub.id)["start_date"])
    assert client.v1.subscriptions.retrieve(sub.id).status == "past_due"


def test_monthly_cycle_anchored_on_the_31st_comes_back_to_the_31st(
        emu: StripeEmulator, client: stripe.StripeClient, monthly: dict[str, Any]) -> None:
    now = datetime.now(timezone.utc)
    target = datetime(now.year + 1, 1, 31, 12, tzinfo=timezone.utc)
    emu.advance_clock(target.timestamp() - now.timestamp())
    _, paid = subscribe(emu, client, monthly)
    sub = client.v1.subscriptions.retrieve(paid["subscription"])
    ends = []
    for _ in range(2):
        end = period_end(client.v1.subscriptions.retrieve(sub.id))
        ends.append(datetime.fromtimestamp(end, timezone.utc))
        emu.advance_clock(end - emu.subscription(sub.id)["items"]["data"][0][
            "current_period_start"])
    ends.append(datetime.fromtimestamp(
        period_end(client.v1.subscriptions.retrieve(sub.id)), timezone.utc))
    feb_days = calendar.monthrange(target.year, 2)[1]
    assert [(e.month, e.day) for e in ends] == [(2, feb_days), (3, 31), (4, 30)]
