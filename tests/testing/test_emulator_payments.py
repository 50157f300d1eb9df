"""The emulator's events API, refunds, disputes and dropped webhooks.

Driven by the real ``stripe`` SDK over HTTP on 127.0.0.1; events are received by a
real webhook endpoint that verifies their signatures with the SDK.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import stripe
from test_emulator_billing import SUCCESS, SignedReceiver

from stripe_checkout_mw.testing import StripeEmulator

DAY = 86400


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


def paid_session(emu: StripeEmulator, client: stripe.StripeClient, amount: int = 3000,
                 **pay: Any) -> dict[str, Any]:
    session = client.v1.checkout.sessions.create(params={
        "mode": "payment", "success_url": SUCCESS,
        "line_items": [{"price_data": {"currency": "usd", "unit_amount": amount,
                                       "product_data": {"name": "Lamp"}},
                        "quantity": 1}]})
    return emu.pay(session.id, email="ann@example.com", **pay)


# -- payments behind a paid session --------------------------------------------------------


def test_paid_session_has_a_payment_intent_and_charge(
        emu: StripeEmulator, client: stripe.StripeClient) -> None:
    paid = paid_session(emu, client)
    intent = client.v1.payment_intents.retrieve(paid["payment_intent"])
    assert (intent.status, intent.amount, intent.amount_received, intent.currency) == (
        "succeeded", 3000, 3000, "usd")
    charge = client.v1.charges.retrieve(intent.latest_charge)
    assert (charge.status, charge.paid, charge.amount, charge.amount_refunded) == (
        "succeeded", True, 3000, 0)
    assert charge.payment_intent == intent.id and charge.refunded is False
    assert "refunds" not in charge.to_dict()
    assert [c.id for c in client.v1.charges.list(
        params={"payment_intent": intent.id}).data] == [charge.id]
    found = client.v1.checkout.sessions.list(params={"payment_intent": intent.id})
    assert [s.id for s in found.data] == [paid["id"]]
    assert client.v1.checkout.sessions.list(params={"payment_intent": "pi_x"}).data == []
    by_email = client.v1.checkout.sessions.list(
        params={"customer_details": {"email": "ann@example.com"}})
    assert [s.id for s in by_email.data] == [paid["id"]]
    assert client.v1.checkout.sessions.list(
        params={"customer_details": {"email": "bob@example.com"}}).data == []
    assert client.v1.checkout.sessions.list(
        params={"created": {"gt": paid["created"]}}).data == []

    pending = paid_session(emu, client, delayed=True)
    slow = client.v1.payment_intents.retrieve(pending["payment_intent"])
    assert slow.status == "processing"
    assert client.v1.charges.retrieve(slow.latest_charge).status == "pending"
    with pytest.raises(ValueError, match="not succeeded"):
        emu.refund(pending["id"])
    emu.pay(pending["id"], async_payment="succeeded")
    assert client.v1.payment_intents.retrieve(slow.id).status == "succeeded"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.payment_intents.retrieve("pi_missing")
    assert missing.value.http_status == 404


# -- refunds ---------------------------------------------------------------------------------


def test_partial_then_full_refund(emu: StripeEmulator, client: stripe.StripeClient,
                                  receiver: SignedReceiver) -> None:
    paid = paid_session(emu, client)
    receiver.clear()
    first = emu.refund(paid["id"], 1000, reason="requested_by_customer")
    assert (first["amount"], first["status"], first["reason"]) == (
        1000, "succeeded", "requested_by_customer")
    intent = client.v1.payment_intents.retrieve(paid["payment_intent"])
    charge = client.v1.charges.retrieve(intent.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (1000, False)
    assert receiver.types() == Counter({"refund.created": 1, "charge.refunded": 1,
                                        "refund.updated": 1})
    (refunded,) = receiver.of("charge.refunded")
    assert refunded["object"]["object"] == "charge"
    assert refunded["object"]["amount_refunded"] == 1000
    (created,) = receiver.of("refund.created")
    assert (created["object"]["object"], created["object"]["status"]) == ("refund", "pending")
    (updated,) = receiver.of("refund.updated")
    assert updated["object"]["status"] == "succeeded"
    assert updated["previous_attributes"] == {"status": "pending"}

    rest = emu.refund(paid["id"])
    assert rest["amount"] == 2000
    charge = client.v1.charges.retrieve(charge.id)
    assert (charge.amount_refunded, charge.refunded) == (3000, True)
    assert sorted(r["object"]["amount_refunded"] for r in receiver.of("charge.refunded")) \
        == [1000, 3000]
    refund = client.v1.refunds.retrieve(first["id"])
    assert (refund.charge, refund.payment_intent, refund.amount) == (
        charge.id, intent.id, 1000)
    listed = client.v1.refunds.list(params={"charge": charge.id})
    assert [r.id for r in listed.data] == [rest["id"], first["id"]]
    assert client.v1.refunds.list(params={"payment_intent": "pi_other"}).data == []
    with pytest.raises(ValueError, match="already been refunded"):
        emu.refund(paid["id"])


def test_refund_refusals(emu: StripeEmulator, client: stripe.StripeClient,
                         receiver: SignedReceiver) -> None:
    paid = paid_session(emu, client, amount=500)
    before = len(emu.events)
    with pytest.raises(ValueError, match="greater than unrefunded"):
        emu.refund(paid["id"], 501)
    with pytest.raises(ValueError, match="positive"):
        emu.refund(paid["id"], 0)
    with pytest.raises(ValueError, match="reason"):
        emu.refund(paid["id"], reason="changed_my_mind")
    with pytest.raises(KeyError):
        emu.refund("cs_test_nothing")
    monthly = emu.add_price(900, recurring={"interval": "month"})
    session = client.v1.checkout.sessions.create(params={
        "mode": "subscription", "success_url": SUCCESS,
        "line_items": [{"price": monthly["id"], "quantity": 1}]})
    emu.pay(session.id)
    with pytest.raises(ValueError, match="no payment"):
        emu.refund(session.id)
    assert not any(e["type"].startswith(("refund.", "charge."))
                   for e in emu.events[before:])
    charge = client.v1.charges.retrieve(
        client.v1.payment_intents.retrieve(paid["payment_intent"]).latest_charge)
    assert charge.amount_refunded == 0


# -- disputes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("won", [True, False], ids=["won", "lost"])
def test_dispute_opened_and_closed(emu: StripeEmulator, client: stripe.StripeClient,
                                   receiver: SignedReceiver, won: bool) -> None:
    paid = paid_session(emu, client)
    receiver.clear()
    dispute = emu.dispute(paid["id"])
    assert (dispute["status"], dispute["amount"], dispute["reason"]) == (
        "needs_response", 3000, "fraudulent")
    charge = client.v1.charges.retrieve(dispute["charge"])
    assert charge.disputed is True and charge.payment_intent == paid["payment_intent"]
    with pytest.raises(ValueError, match="already disputed"):
        emu.dispute(paid["id"])
    fetched = client.v1.disputes.retrieve(dispute["id"])
    assert fetched.payment_intent == paid["payment_intent"]
    assert fetched.evidence_details.due_by > fetched.created
    closed = emu.close_dispute(dispute["id"], won=won)
    assert closed["status"] == ("won" if won else "lost")
    assert client.v1.disputes.retrieve(dispute["id"]).status == closed["status"]
    assert receiver.types() == Counter({"charge.dispute.created": 1,
                                        "charge.dispute.updated": 1,
                                        "charge.dispute.closed": 1})
    (updated,) = receiver.of("charge.dispute.updated")
    assert updated["object"]["status"] == "under_review"
    assert updated["previous_attributes"]["status"] == "needs_response"
    (final,) = receiver.of("charge.dispute.closed")
    assert final["object"]["status"] == closed["status"]
    assert [d.id for d in client.v1.disputes.list(
        params={"charge": charge.id}).data] == [dispute["id"]]
    with pytest.raises(ValueError, match="already closed"):
        emu.close_dispute(dispute["id"])
    with pytest.raises(KeyError):
        emu.close_dispute("dp_nothing")


# -- the events API ------------------------------------------------------------------------------


def test_events_list_filters(emu: StripeEmulator, client: stripe.StripeClient,
                             receiver: SignedReceiver) -> None:
    paid = paid_session(emu, client)
    emu.refund(paid["id"], 100)
    monthly = emu.add_price(900, recurring={"interval": "month"})
    session = client.v1.checkout.sessions.create(params={
        "mode": "subscription", "success_url": SUCCESS,
        "line_items": [{"price": monthly["id"], "quantity": 1}]})
    emu.pay(session.id)
    everything = [e["id"] for e in reversed(emu.events)]
    listed = client.v1.events.list(params={"limit": 100})
    assert [e.id for e in listed.data] == everything  # newest first

    def types_of(**params: Any) -> list[str]:
        return [e.type for e in client.v1.events.list(params={"limit": 100, **params}).data]

    assert types_of(type="charge.refunded") == ["charge.refunded"]
    assert sorted(types_of(type="customer.subscription.*")) == [
        "customer.subscription.created", "customer.subscription.updated"]
    assert sorted(types_of(type="refund.*")) == ["refund.created", "refund.updated"]
    assert sorted(types_of(types=["invoice.paid", "checkout.session.completed"])) == [
        "checkout.session.completed", "checkout.session.completed", "invoice.paid"]
    created = [e["created"] for e in emu.events]
    assert len(types_of(created={"gte": created[0]})) == len(everything)
    assert types_of(created={"gt": max(created)}) == []
    assert len(types_of(created={"lte": max(created), "gte": min(created)})) == len(
        everything)
    assert types_of(delivery_success=False) == []
    assert len(types_of(delivery_success=True)) == len(everything)

    with pytest.raises(stripe.InvalidRequestError, match="only specify one"):
        client.v1.events.list(params={"type": "a", "types": ["b"]})
    with pytest.raises(stripe.InvalidRequestError, match="up to 20"):
        client.v1.events.list(params={"types": [f"t{i}" for i in range(21)]})
    for bad in (0, 101):
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.events.list(params={"limit": bad})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.events.list(params={"created": {"after": 1}})  # type: ignore[typeddict-unknown-key]
    assert len(client.v1.events.list().data) == 10


def test_events_pagination_both_ways_and_thirty_day_window(
        emu: StripeEmulator, client: stripe.StripeClient) -> None:
    for _ in range(5):
        paid_session(emu, client, amount=100)
    oldest_first = [e["id"] for e in emu.events]
    assert len(oldest_first) == 5
    page = client.v1.events.list(params={"limit": 2})
    assert [e.id for e in page.data] == oldest_first[:-3:-1] and page.has_more
    walked = [e.id for e in client.v1.events.list(params={"limit": 2}).auto_paging_iter()]
    assert walked == oldest_first[::-1]
    newer = client.v1.events.list(params={"limit": 2, "ending_before": oldest_first[0]})
    assert [e.id for e in newer.data] == [oldest_first[2], oldest_first[1]]
    assert newer.has_more
    # Auto-paging from ending_before walks towards the newest, oldest first.
    forward = client.v1.events.list(params={"limit": 2, "ending_before": oldest_first[0]})
    assert [e.id for e in forward.auto_paging_iter()] == oldest_first[1:]

    emu.advance_clock(29 * DAY)
    assert len(client.v1.events.list(params={"limit": 100}).data) == 5
    emu.advance_clock(2 * DAY)
    assert client.v1.events.list(params={"limit": 100}).data == []
    assert client.v1.events.retrieve(oldest_first[0]).id == oldest_first[0]


def test_drop_webhooks_leaves_events_undelivered_and_listed(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver) -> None:
    delivered = paid_session(emu, client)
    emu.drop_webhooks(True)
    dropped = paid_session(emu, client)
    emu.refund(dropped["id"])
    emu.wait_for_deliveries()
    received = {e.data.object["id"] for e in receiver.events
                if e.type == "checkout.session.completed"}
    assert received == {delivered["id"]}
    assert receiver.types()["charge.refunded"] == 0
    failed = client.v1.events.list(params={"delivery_success": False, "limit": 100})
    assert sorted(e.type for e in failed.data) == [
        "charge.refunded", "checkout.session.completed", "refund.created", "refund.updated"]
    assert all(e.pending_webhooks == 1 for e in failed.data)
    emu.drop_webhooks(False)
    completed = next(e for e in failed.data if e.type == "checkout.session.completed")
    emu.redeliver(completed.id)
    assert {e.data.object["id"] for e in receiver.events
            if e.type == "checkout.session.completed"} == {delivered["id"], dropped["id"]}
    assert completed.id not in {e.id for e in client.v1.events.list(
        params={"delivery_success": False, "limit": 100}).data}
    again = paid_session(emu, client)
    assert any(e.data.object["id"] == again["id"] for e in receiver.events)


def test_billing_reads_need_a_key(emu: StripeEmulator) -> None:
    for path in ("/v1/charges", "/v1/refunds", "/v1/disputes", "/v1/payment_intents",
                 "/v1/subscriptions", "/v1/customers", "/v1/invoices"):
        assert requests.get(emu.api_base + path, timeout=10).status_code == 401, path
