"""Refunds and disputes of paid orders, through a real server, the emulator and the ledger."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import stripe
from conftest import RefundShop

from stripe_checkout_mw.ledger.orders import Order
from stripe_checkout_mw.ledger.payments import PaymentLedger
from stripe_checkout_mw.testing import StripeEmulator


@pytest.fixture
def emu() -> Iterator[StripeEmulator]:
    with StripeEmulator(hosted_page_webhook_wait=0) as emulator:
        yield emulator


@pytest.fixture
def shop(emu: StripeEmulator, store_url: str) -> Iterator[RefundShop]:
    server = RefundShop(emu, store_url)
    yield server
    server.close()


def test_partial_then_full_refund_moves_the_order_and_never_fulfils_again(
    emu: StripeEmulator, shop: RefundShop
) -> None:
    session_id = shop.buy(quantity=2)
    emu.pay(session_id)
    assert len(shop.hooks("fulfill")) == 1
    assert shop.order(session_id).payment_intent == emu.session(session_id)["payment_intent"]

    emu.refund(session_id, amount=1500)
    order = shop.order(session_id)
    assert (order.status, order.amount_refunded) == ("partially_refunded", 1500)
    view = shop.status(session_id)
    assert (view["status"], view["amount_refunded"], view["fulfilled"]) == (
        "partially_refunded", 1500, True)
    assert [o.amount_refunded for o in shop.hooks("refunded")] == [1500]
    assert shop.hooks("refunded")[0].status == "partially_refunded"

    emu.refund(session_id)
    order = shop.order(session_id)
    assert (order.status, order.amount_refunded) == ("refunded", 4000)
    assert shop.status(session_id)["status"] == "refunded"
    assert [o.amount_refunded for o in shop.hooks("refunded")] == [1500, 4000]
    assert len(shop.hooks("fulfill")) == 1
    assert all(d.status == 200 for d in emu.deliveries)


def test_a_full_refund_before_a_successful_fulfilment_stops_its_retries(
    emu: StripeEmulator, store_url: str
) -> None:
    attempts: list[int] = []

    def failing_fulfill(order: Order) -> None:
        attempts.append(order.fulfilment_attempt)
        raise RuntimeError("the warehouse is down")

    shop = RefundShop(emu, store_url, fulfill=failing_fulfill)
    try:
        session_id = shop.buy()
        emu.pay(session_id)
        assert attempts  # the fulfilment ran and failed: it is still due
        completed = next(e["id"] for e in emu.events
                         if e["type"] == "checkout.session.completed")
        emu.refund(session_id)
        assert shop.order(session_id).status == "refunded"
        tried = len(attempts)
        emu.redeliver(completed)  # the retry that would have shipped it
        view = shop.status(session_id)
        assert (view["status"], view["fulfilled"]) == ("refunded", False)
        assert len(attempts) == tried  # nothing left to deliver, so fulfill is not called
    finally:
        shop.close()


def test_repeated_and_late_events_change_nothing(emu: StripeEmulator, shop: RefundShop) -> None:
    session_id = shop.buy()
    emu.pay(session_id)
    emu.refund(session_id, amount=500)
    before = shop.order(session_id)
    for event in list(emu.events):  # every event again, the completed one last of all
        emu.redeliver(event["id"])
    completed = [e for e in emu.events if e["type"] == "checkout.session.completed"]
    emu.redeliver(completed[0]["id"])
    after = shop.order(session_id)
    assert (after.status, after.amount_refunded) == ("partially_refunded", 500)
    assert after.updated_at == before.updated_at
    assert len(shop.hooks("refunded")) == 1
    assert len(shop.hooks("fulfill")) == 1


def test_a_failing_refunded_hook_is_retried_with_its_attempt_number(
    emu: StripeEmulator, shop: RefundShop
) -> None:
    session_id = shop.buy()
    emu.pay(session_id)
    shop.fail_refunded = 1
    emu.refund(session_id)
    assert 500 in [d.status for d in emu.deliveries]
    refunded = shop.hooks("refunded")
    assert [(o.amount_refunded, o.hook_attempt) for o in refunded] == [(2000, 2)]
    assert shop.order(session_id).status == "refunded"
    assert len(shop.hooks("fulfill")) == 1


@pytest.mark.parametrize("won", [True, False], ids=["won", "lost"])
def test_a_dispute_is_recorded_then_won_or_lost(
    emu: StripeEmulator, shop: RefundShop, won: bool
) -> None:
    session_id = shop.buy()
    emu.pay(session_id)
    dispute = emu.dispute(session_id)
    order = shop.order(session_id)
    assert (order.status, order.dispute_status) == ("paid", "disputed")
    assert shop.status(session_id)["dispute"] == "disputed"

    emu.close_dispute(dispute["id"], won=won)
    outcome = "won" if won else "lost"
    assert shop.order(session_id).dispute_status == outcome
    assert shop.status(session_id)["dispute"] == outcome
    assert [o.dispute_status for o in shop.hooks("disputed")] == ["disputed", outcome]
    # The updated (under review) event changes the Stripe status, not the order's.
    store = shop.middleware.store
    assert store is not None
    payment = PaymentLedger(store).get(session_id)
    assert payment is not None and payment.disputes[dispute["id"]]["status"] == outcome
    # A late "updated" delivered again does not reopen a closed dispute.
    updated = [e for e in emu.events if e["type"] == "charge.dispute.updated"]
    emu.redeliver(updated[0]["id"])
    assert shop.order(session_id).dispute_status == outcome
    assert len(shop.hooks("fulfill")) == 1


def test_a_refund_of_a_session_this_shop_did_not_create_changes_nothing(
    emu: StripeEmulator, shop: RefundShop, store_url: str
) -> None:
    client = emu.client()
    foreign = client.v1.checkout.sessions.create(params={
        "mode": "payment", "success_url": "https://other.example.com/ok",
        "line_items": [{"price_data": {"currency": "usd", "unit_amount": 700,
                                       "product_data": {"name": "Mug"}}, "quantity": 1}]})
    emu.pay(foreign.id)
    emu.refund(foreign.id)
    assert all(d.status == 200 for d in emu.deliveries)
    store = shop.middleware.store
    assert store is not None
    assert store.get(foreign.id) is None
    assert PaymentLedger(store).find_session(emu.session(foreign.id)["payment_intent"],
                                             None) is None
    assert shop.calls == []


def test_a_refund_whose_payment_event_was_lost_settles_the_order_from_stripe(
    emu: StripeEmulator, shop: RefundShop
) -> None:
    session_id = shop.buy()
    emu.drop_webhooks(True)
    emu.pay(session_id)
    emu.drop_webhooks(False)
    emu.refund(session_id, amount=300)
    order = shop.order(session_id)
    assert (order.status, order.amount_refunded) == ("partially_refunded", 300)
    assert len(shop.hooks("fulfill")) == 1
    lookups = [r for r in emu.requests if r.path == "/v1/checkout/sessions"
               and r.method == "GET"]
    assert len(lookups) == 1  # asked once; the next events were found in the ledger


@pytest.mark.parametrize("obj", ["not an object", {"id": 7, "payment_intent": ["pi_x"]},
                                 {"id": "ch_x", "payment_intent": "pi_nosuchintent"}],
                         ids=["string", "wrong-types", "unknown-intent"])
def test_a_signed_refund_event_with_a_strange_object_is_acknowledged_and_changes_nothing(
    emu: StripeEmulator, shop: RefundShop, obj: object
) -> None:
    session_id = shop.buy()
    emu.pay(session_id)
    store = shop.middleware.store
    assert store is not None
    before = store.get(session_id)
    body = json.dumps({"id": "evt_strange", "object": "event", "type": "charge.refunded",
                       "created": int(time.time()), "livemode": False, "api_version": None,
                       "data": {"object": obj}}).encode()
    header = stripe.WebhookSignature.generate_signature_header(body.decode(),
                                                               emu.webhook_secret)
    response = shop.http.post(f"{shop.url}/stripe-webhook", data=body, timeout=10,
                              headers={"Stripe-Signature": header,
                                       "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert store.get(session_id) == before
    assert shop.hooks("refunded") == [] and len(shop.hooks("fulfill")) == 1
