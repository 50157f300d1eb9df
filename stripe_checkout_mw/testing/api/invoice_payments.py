"""Invoice payments: ``GET /v1/invoice_payments`` and :func:`pay_by_card`, the card
payment (an intent and its charge) behind each paid invoice.

Stripe's current invoice names no ``payment_intent`` or ``charge``: the payment that
settled it is an InvoicePayment, found by invoice or by payment
(``payment[type]=payment_intent&payment[payment_intent]=pi_...``). A refund of the
charge (``emu.refund_invoice``) emits the same ``charge.refunded`` as a Checkout
payment's, naming the intent and no session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import invalid
from .ids import new_id
from .lists import filter_created, list_object
from .params import as_dict, as_str
from .payment_intents import take_payment

if TYPE_CHECKING:
    from .routes import ApiCall
    from .state import StripeState

__all__ = ["list_invoice_payments", "paid_charge", "pay_by_card"]


def pay_by_card(state: StripeState, invoice: dict[str, Any]) -> dict[str, Any]:
    """Store the succeeded intent and charge paying ``invoice``'s ``amount_due`` and
    its ``paid`` invoice payment (not a copy)."""
    now, amount = state.now(), int(invoice["amount_due"])
    intent_id = take_payment(state, {
        "amount_total": amount, "currency": invoice["currency"],
        "customer": invoice["customer"],
        "customer_details": {"email": invoice.get("customer_email")}}, delayed=False)
    payment_id = new_id("inpay_")
    payment: dict[str, Any] = {
        "id": payment_id,
        "object": "invoice_payment",
        "amount_paid": amount,
        "amount_requested": amount,
        "created": now,
        "currency": invoice["currency"],
        "invoice": invoice["id"],
        "is_default": True,
        "livemode": False,
        "payment": {"type": "payment_intent", "payment_intent": intent_id},
        "status": "paid",
        "status_transitions": {"canceled_at": None, "paid_at": now},
    }
    state.billing.invoice_payments[payment_id] = payment
    return payment


def paid_charge(state: StripeState, invoice_id: str) -> dict[str, Any]:
    """The charge that paid the invoice ``invoice_id`` (for a refund or a dispute).

    :raises ValueError: an invoice paid without a charge (nothing was due) or unpaid.
    """
    for payment in state.billing.invoice_payments.values():
        if payment["invoice"] == invoice_id and payment["status"] == "paid":
            intent = state.billing.payment_intents[payment["payment"]["payment_intent"]]
            return state.billing.charges[intent["latest_charge"]]
    raise ValueError(f"invoice {invoice_id} has no card payment to refund")


def list_invoice_payments(state: StripeState, call: ApiCall) -> dict[str, Any]:
    params = call.params
    payments = list(reversed(state.billing.invoice_payments.values()))
    for key in ("invoice", "status"):
        if key in params:
            wanted = as_str(params[key], key)
            payments = [p for p in payments if p[key] == wanted]
    if "payment" in params:
        payment = as_dict(params["payment"], "payment")
        kind = as_str(payment.get("type"), "payment[type]")
        if kind not in ("payment_intent", "payment_record"):
            raise invalid("Invalid payment[type]: must be one of payment_intent or "
                          "payment_record", "payment[type]")
        if kind in payment:
            wanted = as_str(payment[kind], f"payment[{kind}]")
            payments = [p for p in payments if p["payment"].get(kind) == wanted]
        payments = [p for p in payments if p["payment"]["type"] == kind]
    return list_object(filter_created(payments, params), "/v1/invoice_payments", params)
