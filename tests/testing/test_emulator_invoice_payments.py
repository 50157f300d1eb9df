"""The emulator's invoice payments: each paid invoice's card payment, found through
``GET /v1/invoice_payments`` by invoice or by payment intent, and its refund.

Driven over HTTP through the real SDK, as a shop would call Stripe.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
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
from test_emulator_invoices import subscribe_with

from stripe_checkout_mw.testing import StripeEmulator
from stripe_checkout_mw.testing.api.shapes import problems


def by_intent(client: stripe.StripeClient, intent: str) -> list[Any]:  # noqa: F811
    return list(client.v1.invoice_payments.list(params={
        "payment": {"type": "payment_intent", "payment_intent": intent}}).data)


def test_each_paid_invoice_has_its_card_payment_found_by_invoice_or_intent(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,  # noqa: F811
        monthly: dict[str, Any]) -> None:  # noqa: F811
    sub = subscribe_with(emu, client, monthly)
    emu.advance_clock(period_end(sub) - emu.subscription(sub.id)["start_date"] + 60)
    first, renewal = reversed(client.v1.invoices.list(params={"subscription": sub.id}).data)
    payments = {}
    for invoice in (first, renewal):
        (payment,) = client.v1.invoice_payments.list(params={"invoice": invoice.id}).data
        assert (payment.invoice, payment.status, payment.amount_paid, payment.currency) == (
            invoice.id, "paid", invoice.amount_paid, "usd")
        assert payment.payment.type == "payment_intent" and payment.is_default is True
        payments[invoice.id] = payment
    raw = requests.get(f"{emu.api_base}/v1/invoice_payments", auth=(emu.secret_key, ""),
                       params={"invoice": renewal.id}, timeout=5).json()["data"][0]
    assert problems(stripe.InvoicePayment, raw, "invoice_payment") == []

    intent_id = str(payments[renewal.id].payment.payment_intent)
    assert [p.invoice for p in by_intent(client, intent_id)] == [renewal.id]
    intent = client.v1.payment_intents.retrieve(intent_id)
    charge = client.v1.charges.retrieve(str(intent.latest_charge))
    assert (intent.status, intent.amount, charge.amount, charge.customer) == (
        "succeeded", renewal.amount_paid, renewal.amount_paid, sub.customer)
    assert by_intent(client, "pi_nobody") == []
    assert len(client.v1.invoice_payments.list(params={"status": "paid"}).data) == 2
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoice_payments.list(params={"payment": {"type": "cheque"}})


def test_refunding_an_invoice_refunds_its_charge_and_names_the_intent(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,  # noqa: F811
        monthly: dict[str, Any]) -> None:  # noqa: F811
    sub = subscribe_with(emu, client, monthly)
    (invoice,) = client.v1.invoices.list(params={"subscription": sub.id}).data
    (payment,) = client.v1.invoice_payments.list(params={"invoice": invoice.id}).data
    emu.refund_invoice(invoice.id, 300)
    emu.refund_invoice(invoice.id)
    refunded = [e["data"]["object"] for e in emu.events if e["type"] == "charge.refunded"]
    assert [(c["amount_refunded"], c["refunded"]) for c in refunded] == [
        (300, False), (invoice.amount_paid, True)]
    assert {c["payment_intent"] for c in refunded} == {payment.payment.payment_intent}
    with pytest.raises(ValueError):
        emu.refund_invoice(invoice.id)  # nothing left
    with pytest.raises(KeyError):
        emu.refund_invoice("in_nobody")
