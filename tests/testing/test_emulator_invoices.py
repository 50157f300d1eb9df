"""The emulator's invoices: a billing history's fields, listing and paging, the hosted
invoice page and its PDF, the test cards that misbehave after checkout, manual
invoices.

Driven by the real ``stripe`` SDK over HTTP on 127.0.0.1; events are received by a
real webhook endpoint that verifies each signature with the SDK.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
import stripe
from test_emulator_billing import (  # noqa: F401  # the shared fixtures
    DAY,
    SUCCESS,
    SignedReceiver,
    client,
    emu,
    monthly,
    period_end,
    receiver,
)

from stripe_checkout_mw.testing import StripeEmulator
from stripe_checkout_mw.testing.api.shapes import problems

SCA_CARD = "4000 0027 6000 3184"
FAILS_LATER = "4000 0000 0000 0341"


def subscribe_with(emu: StripeEmulator, client: stripe.StripeClient,  # noqa: F811
                   price: dict[str, Any], card: str = "4242 4242 4242 4242",
                   **params: Any) -> Any:
    """Pay a subscription-mode session with ``card``; the SDK's subscription."""
    session = client.v1.checkout.sessions.create(params={
        "mode": "subscription", "success_url": SUCCESS,
        "line_items": [{"price": price["id"], "quantity": 1}], **params})
    paid = emu.pay(session.id, email="ann@example.com", card=card)
    return client.v1.subscriptions.retrieve(paid["subscription"])


def test_invoices_carry_a_billing_historys_fields_and_list_newest_first_with_paging(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,  # noqa: F811
        monthly: dict[str, Any]) -> None:  # noqa: F811
    sub = subscribe_with(emu, client, monthly)
    emu.advance_clock(period_end(sub) - emu.subscription(sub.id)["start_date"] + 60)
    emu.advance_clock(32 * DAY)
    listed = client.v1.invoices.list(params={"customer": sub.customer})
    assert [i.billing_reason for i in listed.data] == [
        "subscription_cycle", "subscription_cycle", "subscription_create"]
    newest = listed.data[0]
    raw = requests.get(f"{emu.api_base}/v1/invoices/{newest.id}",
                       auth=(emu.secret_key, ""), timeout=5).json()
    assert problems(stripe.Invoice, raw, "invoice") == []
    assert newest.status == "paid" and newest.number.endswith("-0003")
    assert (newest.amount_due, newest.amount_paid, newest.amount_remaining,
            newest.total) == (900, 900, 0, 900)
    assert newest.total_taxes == [] and newest.total_discount_amounts == []
    assert newest.currency == "usd" and newest.customer == sub.customer
    assert newest.parent.subscription_details.subscription == sub.id
    assert newest.status_transitions.paid_at >= newest.created
    (line,) = newest.lines.data
    assert line.period.start < line.period.end
    assert line.parent.subscription_item_details.proration is False
    assert newest.hosted_invoice_url == f"{emu.api_base}/invoice/{newest.id}"
    assert newest.invoice_pdf == f"{emu.api_base}/invoice/{newest.id}/pdf"
    assert client.v1.invoices.retrieve(newest.id).number == newest.number

    first_page = client.v1.invoices.list(params={"subscription": sub.id, "limit": 2})
    assert first_page.has_more is True and len(first_page.data) == 2
    walked = [i.id for i in first_page.auto_paging_iter()]
    assert walked == [i.id for i in listed.data]
    assert client.v1.invoices.list(params={"status": "open"}).data == []
    assert len(client.v1.invoices.list(params={"status": "paid"}).data) == 3
    assert client.v1.invoices.list(params={"customer": "cus_nobody"}).data == []
    lines = client.v1.invoices.line_items.list(newest.id)
    assert [x.id for x in lines.data] == [line.id]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.list(params={"status": "unpaidish"})

    page = requests.get(newest.hosted_invoice_url, timeout=5)
    assert page.status_code == 200 and 'id="status">paid<' in page.text
    assert 'id="pay"' not in page.text
    pdf = requests.get(newest.invoice_pdf, timeout=5)
    assert pdf.headers["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-") and pdf.content.rstrip().endswith(b"%%EOF")
    assert requests.get(f"{emu.api_base}/invoice/in_nope", timeout=5).status_code == 404


def test_a_card_that_needs_authentication_every_time_waits_on_each_renewal(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,  # noqa: F811
        monthly: dict[str, Any]) -> None:  # noqa: F811
    sub = subscribe_with(emu, client, monthly, card=SCA_CARD)
    assert sub.status == "active"  # authenticated on the checkout page
    receiver.clear()
    emu.advance_clock(period_end(sub) - sub.start_date + 60)

    renewed = client.v1.subscriptions.retrieve(sub.id)
    assert renewed.status == "past_due"
    invoice = client.v1.invoices.retrieve(renewed.latest_invoice)
    assert (invoice.status, invoice.attempt_count, invoice.next_payment_attempt) == (
        "open", 1, None)
    assert receiver.types()["invoice.payment_action_required"] == 1
    assert receiver.types()["invoice.payment_failed"] == 0
    (action,) = receiver.of("invoice.payment_action_required")
    assert action["object"]["hosted_invoice_url"] == invoice.hosted_invoice_url

    # No automatic retry: a week later it still waits for the customer.
    emu.advance_clock(7 * DAY)
    assert client.v1.invoices.retrieve(invoice.id).attempt_count == 1

    page = requests.get(invoice.hosted_invoice_url, timeout=5)
    assert 'id="status">open<' in page.text and 'id="pay"' in page.text
    given_up = requests.post(invoice.hosted_invoice_url,
                             data={"action": "fail_authentication"}, timeout=5)
    assert 'id="error"' in given_up.text and 'id="status">open<' in given_up.text
    assert receiver.types()["invoice.payment_action_required"] == 2

    paid = requests.post(invoice.hosted_invoice_url, data={"action": "pay"}, timeout=5)
    assert 'id="status">paid<' in paid.text
    emu.wait_for_deliveries()
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    assert client.v1.invoices.retrieve(invoice.id).status == "paid"
    assert receiver.of("customer.subscription.updated")[-1]["previous_attributes"] == {
        "status": "past_due"}


def test_a_card_saved_fine_fails_every_later_charge(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,  # noqa: F811
        monthly: dict[str, Any]) -> None:  # noqa: F811
    with pytest.raises(ValueError, match="declined"):
        subscribe_with(emu, client, monthly, card=FAILS_LATER)
    sub = subscribe_with(emu, client, monthly, card=FAILS_LATER,
                         subscription_data={"trial_period_days": 7})
    assert sub.status == "trialing"
    receiver.clear()
    emu.advance_clock(7 * DAY + 60)
    after_trial = client.v1.subscriptions.retrieve(sub.id)
    assert after_trial.status == "past_due"
    invoice = client.v1.invoices.retrieve(after_trial.latest_invoice)
    assert invoice.billing_reason == "subscription_cycle" and invoice.status == "open"
    assert invoice.next_payment_attempt is not None
    assert receiver.types()["invoice.payment_failed"] == 1
    emu.advance_clock(8 * DAY)  # the retries fail too: it ends
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"
    assert receiver.types()["invoice.payment_failed"] == 4

    # Attached later (as a SetupIntent would), the same card fails the next renewal.
    other = subscribe_with(emu, client, monthly)
    emu.attach_card(other.customer, "pm_card_chargeCustomerFail")
    receiver.clear()
    emu.advance_clock(period_end(other) - other.start_date + 60)
    assert client.v1.subscriptions.retrieve(other.id).status == "past_due"
    # The customer pays the open invoice on its page with a working card.
    open_invoice = client.v1.subscriptions.retrieve(other.id).latest_invoice
    declined = emu.pay_invoice(open_invoice)
    assert declined["status"] == "open"
    assert emu.pay_invoice(open_invoice, card="4242424242424242")["status"] == "paid"
    assert client.v1.subscriptions.retrieve(other.id).status == "active"


def test_a_manual_invoice_is_billed_once_to_the_saved_card(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,  # noqa: F811
        monthly: dict[str, Any]) -> None:  # noqa: F811
    sub = subscribe_with(emu, client, monthly)
    invoice = emu.invoice_customer(sub.customer, 2500, description="Consulting")
    fetched = client.v1.invoices.retrieve(invoice["id"])
    assert (fetched.billing_reason, fetched.status, fetched.total) == ("manual", "paid", 2500)
    assert fetched.parent is None and fetched.customer == sub.customer
    assert fetched.lines.data[0].description == "Consulting"
    assert client.v1.invoices.list(params={"customer": sub.customer}).data[0].id == (
        fetched.id)
    assert client.v1.invoices.list(params={"subscription": sub.id}).data[0].id != fetched.id
    emu.attach_card(sub.customer, SCA_CARD)
    waiting = emu.invoice_customer(sub.customer, 700)
    assert waiting["status"] == "open"
    assert receiver.of("invoice.payment_action_required")[-1]["object"]["id"] == (
        waiting["id"])
    with pytest.raises(ValueError, match="not a test card"):
        emu.attach_card(sub.customer, "4000000000000002")
