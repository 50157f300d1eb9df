"""The emulator's plan changes: ``invoices.create_preview`` with prorations,
``subscriptions.update`` with each ``proration_behavior`` and ``payment_behavior``,
pending updates, and subscription schedules whose next phase starts when the
emulator's clock passes it.

Driven by the real ``stripe`` SDK over HTTP on 127.0.0.1; events are received by a
real webhook endpoint that verifies each signature with the SDK.
"""

from __future__ import annotations

from typing import Any

import pytest
import stripe
from test_emulator_billing import (  # noqa: F401  # the shared fixtures
    DAY,
    SignedReceiver,
    client,
    emu,
    monthly,
    period_end,
    receiver,
)
from test_emulator_invoices import SCA_CARD, subscribe_with

from stripe_checkout_mw.testing import StripeEmulator


@pytest.fixture
def pro(emu: StripeEmulator) -> dict[str, Any]:  # noqa: F811
    return emu.add_price(2000, "usd", lookup_key="pro", nickname="Pro",
                         recurring={"interval": "month"})


def halfway(sub: Any) -> tuple[int, int, int]:
    """(a time mid-period, the seconds left after it, the period's length)."""
    (item,) = sub["items"].data
    start, end = item.current_period_start, item.current_period_end
    at = start + (end - start) // 2
    return at, end - at, end - start


def test_preview_prices_a_swap_to_the_second_and_is_not_an_invoice(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,  # noqa: F811
        monthly: dict[str, Any], pro: dict[str, Any]) -> None:  # noqa: F811
    sub = subscribe_with(emu, client, monthly)
    at, left, length = halfway(sub)
    item = sub["items"].data[0]
    preview = client.v1.invoices.create_preview(params={
        "customer": sub.customer, "subscription": sub.id,
        "subscription_details": {"items": [{"id": item.id, "price": pro["id"]}],
                                 "proration_date": at}})
    assert preview.id.startswith("upcoming_in") and preview.billing_reason == "upcoming"
    assert preview.parent.subscription_details.subscription_proration_date == at
    prorations = [line for line in preview.lines.data
                  if line.parent.subscription_item_details.proration]
    assert sorted(line.amount for line in prorations) == sorted(
        [-round(900 * left / length), round(2000 * left / length)])
    (next_period,) = [line for line in preview.lines.data
                      if not line.parent.subscription_item_details.proration]
    assert next_period.amount == 2000 and next_period.period.start == item.current_period_end
    assert preview.total == sum(line.amount for line in preview.lines.data)

    now_only = client.v1.invoices.create_preview(params={
        "subscription": sub.id,
        "subscription_details": {"items": [{"id": item.id, "price": pro["id"]}],
                                 "proration_date": at,
                                 "proration_behavior": "always_invoice"}})
    assert now_only.amount_due == round(2000 * left / length) - round(900 * left / length)
    assert all(line.parent.subscription_item_details.proration
               for line in now_only.lines.data)
    # A preview changes nothing and is never listed.
    assert client.v1.subscriptions.retrieve(sub.id)["items"].data[0].price.id == monthly["id"]
    assert [i.billing_reason for i in client.v1.invoices.list().data] == [
        "subscription_create"]
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.invoices.create_preview(params={
            "subscription": sub.id,
            "subscription_details": {"items": [{"id": item.id, "price": "price_nope"}]}})
    assert refused.value.param == "subscription_details[items][0][price]"


def test_create_prorations_bills_the_change_on_the_next_renewal(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,  # noqa: F811
        monthly: dict[str, Any], pro: dict[str, Any]) -> None:  # noqa: F811
    sub = subscribe_with(emu, client, monthly)
    at, left, length = halfway(sub)
    item = sub["items"].data[0]
    addon = emu.add_price(300, "usd", recurring={"interval": "month"})
    updated = client.v1.subscriptions.update(sub.id, params={
        "items": [{"id": item.id, "price": pro["id"], "quantity": 2},
                  {"price": addon["id"]}],
        "proration_date": at})
    assert sorted((i.price.id, i.quantity) for i in updated["items"].data) == sorted(
        [(pro["id"], 2), (addon["id"], 1)])
    assert updated.latest_invoice == sub.latest_invoice  # nothing billed now
    emu.wait_for_deliveries()
    assert receiver.of("customer.subscription.updated")[-1]["previous_attributes"][
        "items"]["data"][0]["price"]["id"] == monthly["id"]

    emu.advance_clock(period_end(sub) - sub.start_date + 60)
    renewal = client.v1.invoices.retrieve(
        client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    prorated = sorted(line.amount for line in renewal.lines.data
                      if line.parent.subscription_item_details.proration)
    assert prorated == sorted([-round(900 * left / length), round(4000 * left / length),
                               round(300 * left / length)])
    assert renewal.total == sum(prorated) + 4000 + 300

    dropped = client.v1.subscriptions.update(sub.id, params={
        "items": [{"id": updated["items"].data[1].id, "deleted": True}],
        "proration_behavior": "none"})
    assert [i.price.id for i in dropped["items"].data] == [pro["id"]]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.update(sub.id, params={
            "items": [{"id": dropped["items"].data[0].id, "deleted": True}]})


def test_always_invoice_charges_now_and_allow_incomplete_goes_past_due_on_failure(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,  # noqa: F811
        monthly: dict[str, Any], pro: dict[str, Any]) -> None:  # noqa: F811
    sub = subscribe_with(emu, client, monthly)
    item = sub["items"].data[0]
    upgraded = client.v1.subscriptions.update(sub.id, params={
        "items": [{"id": item.id, "price": pro["id"]}],
        "proration_behavior": "always_invoice"})
    invoice = client.v1.invoices.retrieve(upgraded.latest_invoice)
    assert (invoice.billing_reason, invoice.status) == ("subscription_update", "paid")
    assert invoice.amount_paid > 0 and upgraded.status == "active"

    emu.attach_card(sub.customer, "pm_card_chargeCustomerFail")
    receiver.clear()
    back = client.v1.subscriptions.update(sub.id, params={
        "items": [{"id": item.id, "price": monthly["id"], "quantity": 3}],
        "proration_behavior": "always_invoice"})
    assert back["items"].data[0].quantity == 3  # applied, whatever the payment
    assert client.v1.subscriptions.retrieve(sub.id).status == "past_due"
    emu.wait_for_deliveries()
    assert receiver.types()["invoice.payment_failed"] == 1


def test_error_if_incomplete_refuses_with_a_card_error_and_changes_nothing(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,  # noqa: F811
        monthly: dict[str, Any], pro: dict[str, Any]) -> None:  # noqa: F811
    sub = subscribe_with(emu, client, monthly)
    emu.attach_card(sub.customer, "4000000000000341")
    invoices_before = len(client.v1.invoices.list().data)
    receiver.clear()
    with pytest.raises(stripe.CardError) as declined:
        client.v1.subscriptions.update(sub.id, params={
            "items": [{"id": sub["items"].data[0].id, "price": pro["id"]}],
            "proration_behavior": "always_invoice",
            "payment_behavior": "error_if_incomplete"})
    assert declined.value.http_status == 402 and declined.value.code == "card_declined"
    after = client.v1.subscriptions.retrieve(sub.id)
    assert (after["items"].data[0].price.id, after.status) == (monthly["id"], "active")
    assert len(client.v1.invoices.list().data) == invoices_before
    emu.wait_for_deliveries()
    assert receiver.types()["customer.subscription.updated"] == 0


def test_pending_if_incomplete_keeps_the_old_plan_until_the_invoice_is_paid(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,  # noqa: F811
        monthly: dict[str, Any], pro: dict[str, Any]) -> None:  # noqa: F811
    sub = subscribe_with(emu, client, monthly, card=SCA_CARD)
    item = sub["items"].data[0]
    receiver.clear()
    parked = client.v1.subscriptions.update(sub.id, params={
        "items": [{"id": item.id, "price": pro["id"]}],
        "proration_behavior": "always_invoice", "payment_behavior": "pending_if_incomplete"})
    assert parked.status == "active" and parked["items"].data[0].price.id == monthly["id"]
    assert parked.pending_update.subscription_items[0].price.id == pro["id"]
    assert parked.pending_update.expires_at <= sub.start_date + 23 * 3600 + 60
    emu.wait_for_deliveries()
    assert receiver.types()["invoice.payment_action_required"] == 1

    paid = emu.pay_invoice(parked.latest_invoice)
    assert paid["status"] == "paid"
    applied = client.v1.subscriptions.retrieve(sub.id)
    assert applied.pending_update is None and applied["items"].data[0].price.id == pro["id"]
    (event,) = receiver.of("customer.subscription.pending_update_applied")
    assert event["object"]["items"]["data"][0]["price"]["id"] == pro["id"]

    # Unpaid for 23 hours, the next one expires: invoice voided, plan unchanged.
    again = client.v1.subscriptions.update(sub.id, params={
        "items": [{"id": item.id, "quantity": 2}],
        "proration_behavior": "always_invoice", "payment_behavior": "pending_if_incomplete"})
    emu.advance_clock(DAY)
    expired = client.v1.subscriptions.retrieve(sub.id)
    assert expired.pending_update is None and expired["items"].data[0].quantity == 1
    assert client.v1.invoices.retrieve(again.latest_invoice).status == "void"
    assert len(receiver.of("customer.subscription.pending_update_expired")) == 1
    assert receiver.types()["invoice.voided"] == 1


def test_a_schedule_downgrades_at_the_period_end_then_releases(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,  # noqa: F811
        monthly: dict[str, Any], pro: dict[str, Any]) -> None:  # noqa: F811
    sub = subscribe_with(emu, client, pro)
    schedule = client.v1.subscription_schedules.create(params={"from_subscription": sub.id})
    assert schedule.status == "active" and schedule.end_behavior == "release"
    (phase,) = schedule.phases
    assert (phase.start_date, phase.end_date) == (sub.start_date, period_end(sub))
    assert client.v1.subscriptions.retrieve(sub.id).schedule == schedule.id
    with pytest.raises(stripe.InvalidRequestError, match="managed by the subscription"):
        client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})

    updated = client.v1.subscription_schedules.update(schedule.id, params={
        "end_behavior": "release",
        "phases": [{"items": [{"price": pro["id"], "quantity": 1}],
                    "start_date": phase.start_date, "end_date": phase.end_date},
                   {"items": [{"price": monthly["id"], "quantity": 1}]}]})
    assert [p["items"][0].price for p in updated.phases] == [pro["id"], monthly["id"]]
    assert client.v1.subscriptions.retrieve(sub.id)["items"].data[0].price.id == pro["id"]

    emu.advance_clock(period_end(sub) - sub.start_date + 60)
    switched = client.v1.subscriptions.retrieve(sub.id)
    assert switched["items"].data[0].price.id == monthly["id"]
    renewal = client.v1.invoices.retrieve(switched.latest_invoice)
    assert (renewal.billing_reason, renewal.total) == ("subscription_cycle", 900)
    assert client.v1.subscription_schedules.retrieve(schedule.id).current_phase.start_date \
        == period_end(sub)

    emu.advance_clock(32 * DAY)
    released = client.v1.subscription_schedules.retrieve(schedule.id)
    assert (released.status, released.released_subscription) == ("released", sub.id)
    after = client.v1.subscriptions.retrieve(sub.id)
    assert after.schedule is None and after.status == "active"
    types = receiver.types()
    assert types["subscription_schedule.created"] == 1
    assert types["subscription_schedule.updated"] == 2
    assert types["subscription_schedule.released"] == 1


def test_schedule_release_and_cancel_through_the_api(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,  # noqa: F811
        monthly: dict[str, Any]) -> None:  # noqa: F811
    kept = subscribe_with(emu, client, monthly)
    schedule = client.v1.subscription_schedules.create(params={"from_subscription": kept.id})
    released = client.v1.subscription_schedules.release(schedule.id)
    assert released.status == "released" and released.subscription is None
    assert client.v1.subscriptions.retrieve(kept.id).schedule is None
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscription_schedules.release(schedule.id)

    ended = subscribe_with(emu, client, monthly)
    second = client.v1.subscription_schedules.create(params={"from_subscription": ended.id})
    with pytest.raises(stripe.InvalidRequestError, match="already attached"):
        client.v1.subscription_schedules.create(params={"from_subscription": ended.id})
    assert client.v1.subscription_schedules.cancel(second.id).status == "canceled"
    assert client.v1.subscriptions.retrieve(ended.id).status == "canceled"
    emu.wait_for_deliveries()
    assert receiver.types()["subscription_schedule.canceled"] == 1
    listed = client.v1.subscription_schedules.list(params={"customer": ended.customer})
    assert [s.id for s in listed.data] == [second.id]
