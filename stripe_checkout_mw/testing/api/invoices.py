"""Invoices: ``/v1/invoices`` (retrieve, list) and the invoice life cycle a
subscription drives: :func:`new_invoice` (draft) and :func:`announce` (``invoice.created``),
:func:`finalize` (open, ``invoice.finalized``) and :func:`attempt` (paid,
``invoice.paid`` + ``invoice.payment_succeeded``; or still open,
``invoice.payment_failed``).

Stripe's current shape: no top-level ``subscription``, ``paid``, ``charge`` or
``payment_intent``; the subscription is ``parent.subscription_details.subscription``
and each line names its price at ``pricing.price_details.price`` and its item at
``parent.subscription_item_details``. The service period is the line's
``period``, not the invoice's ``period_start``/``period_end``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import no_such
from .events import emit
from .ids import new_id
from .lists import filter_created, list_object
from .params import as_str

if TYPE_CHECKING:
    from .routes import ApiCall
    from .state import StripeState

__all__ = ["STATUSES", "announce", "attempt", "finalize", "list_invoices",
           "new_invoice", "retrieve_invoice", "stored_invoice"]

STATUSES = frozenset({"draft", "open", "paid", "uncollectible", "void"})


_INVOICE_TEMPLATE: dict[str, Any] = {
    "id": None,
    "object": "invoice",
    "account_country": "US",
    "account_name": "Stripe emulator",
    "account_tax_ids": None,
    "amount_due": None,
    "amount_overpaid": 0,
    "amount_paid": 0,
    "amount_paid_off_stripe": 0,
    "amount_remaining": None,
    "amount_shipping": 0,
    "application": None,
    "attempt_count": 0,
    "attempted": False,
    "auto_advance": True,
    "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None,
                      "provider": None, "status": None},
    "automatically_finalizes_at": None,
    "billing_reason": None,
    "collection_method": "charge_automatically",
    "created": None,
    "currency": None,
    "custom_fields": None,
    "customer": None,
    "customer_account": None,
    "customer_address": None,
    "customer_email": None,
    "customer_name": None,
    "customer_phone": None,
    "customer_shipping": None,
    "customer_tax_exempt": "none",
    "customer_tax_ids": [],
    "default_payment_method": None,
    "default_source": None,
    "default_tax_rates": [],
    "description": None,
    "discounts": [],
    "due_date": None,
    "effective_at": None,
    "ending_balance": None,
    "footer": None,
    "from_invoice": None,
    "hosted_invoice_url": None,
    "invoice_pdf": None,
    "issuer": {"type": "self"},
    "last_finalization_error": None,
    "latest_revision": None,
    "lines": None,
    "livemode": False,
    "metadata": {},
    "next_payment_attempt": None,
    "number": None,
    "on_behalf_of": None,
    "parent": None,
    "payment_settings": {"default_mandate": None, "payment_method_options": None,
                         "payment_method_types": None},
    "period_end": None,
    "period_start": None,
    "post_payment_credit_notes_amount": 0,
    "pre_payment_credit_notes_amount": 0,
    "receipt_number": None,
    "rendering": None,
    "shipping_cost": None,
    "shipping_details": None,
    "starting_balance": 0,
    "statement_descriptor": None,
    "status": "draft",
    "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None,
                           "paid_at": None, "voided_at": None},
    "subtotal": None,
    "subtotal_excluding_tax": None,
    "test_clock": None,
    "threshold_reason": None,
    "total": None,
    "total_discount_amounts": [],
    "total_excluding_tax": None,
    "total_pretax_credit_amounts": [],
    "total_taxes": [],
    "webhooks_delivered_at": None,
}
"""Every field of a new draft invoice in Stripe's order; :func:`new_invoice` fills
in the ones set to ``None`` here that depend on the subscription."""


def _line(invoice_id: str, subscription: dict[str, Any], *, price: dict[str, Any],
          quantity: int, item_id: str | None, start: int, end: int) -> dict[str, Any]:
    amount = int(price["unit_amount"] or 0) * quantity
    if item_id is not None:
        parent: dict[str, Any] = {
            "type": "subscription_item_details",
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None, "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": subscription["id"], "subscription_item": item_id},
        }
    else:  # a one-time price bought with the subscription: an invoice item
        parent = {
            "type": "invoice_item_details",
            "invoice_item_details": {
                "invoice_item": new_id("ii_"), "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": subscription["id"]},
            "subscription_item_details": None,
        }
    return {
        "id": new_id("il_"),
        "object": "line_item",
        "amount": amount,
        "currency": price["currency"],
        "description": f"{quantity} x {price.get('nickname') or price['product']}",
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": invoice_id,
        "livemode": False,
        "metadata": {},
        "parent": parent,
        "period": {"end": end, "start": start},
        "pretax_credit_amounts": [],
        "pricing": {"price_details": {"price": price["id"], "product": price["product"]},
                    "type": "price_details",
                    "unit_amount_decimal": str(price["unit_amount"] or 0)},
        "quantity": quantity,
        "subtotal": amount,
        "taxes": [],
    }


def new_invoice(
    state: StripeState,
    subscription: dict[str, Any],
    *,
    billing_reason: str,
    one_time: Sequence[tuple[dict[str, Any], int]] = (),
    free: bool = False,
) -> dict[str, Any]:
    """Store a draft invoice for ``subscription``'s current period (see :func:`announce`).

    ``one_time`` adds (price, quantity) lines billed once; ``free`` bills the
    recurring items at zero (a trial's first invoice).
    """
    invoice_id = new_id("in_")
    now = state.now()
    customer = state.billing.customers[subscription["customer"]]
    lines = _invoice_lines(invoice_id, subscription, one_time, free=free, now=now)
    total = sum(int(line["amount"]) for line in lines)
    invoice = copy.deepcopy(_INVOICE_TEMPLATE)
    # update() keeps each key where the template put it: Stripe's field order.
    invoice.update({
        "id": invoice_id,
        "amount_due": total,
        "amount_remaining": total,
        "billing_reason": billing_reason,
        "created": now,
        "currency": subscription["currency"],
        "customer": customer["id"],
        "customer_email": customer["email"],
        "customer_name": customer["name"],
        "lines": {"object": "list", "data": lines, "has_more": False,
                  "url": f"/v1/invoices/{invoice_id}/lines"},
        "parent": {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {
                "metadata": copy.deepcopy(subscription["metadata"]),
                "subscription": subscription["id"],
                "subscription_proration_date": None,
            },
        },
        "period_end": now,
        "period_start": now,
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "total": total,
        "total_excluding_tax": total,
    })
    state.billing.invoices[invoice_id] = invoice
    return invoice


def _invoice_lines(invoice_id: str, subscription: dict[str, Any],
                   one_time: Sequence[tuple[dict[str, Any], int]], *, free: bool,
                   now: int) -> list[dict[str, Any]]:
    """A line per subscription item for its period, then one per one-time price."""
    lines = []
    for item in subscription["items"]["data"]:
        price = item["price"]
        if free:
            price = {**price, "unit_amount": 0}
        lines.append(_line(invoice_id, subscription, price=price,
                           quantity=item["quantity"], item_id=item["id"],
                           start=item["current_period_start"],
                           end=item["current_period_end"]))
    for price, quantity in one_time:
        lines.append(_line(invoice_id, subscription, price=price, quantity=quantity,
                           item_id=None, start=now, end=now))
    return lines


def announce(state: StripeState, invoice: dict[str, Any]) -> None:
    """``invoice.created``, once the objects it refers to are announced too."""
    emit(state, "invoice.created", invoice, None)


def finalize(state: StripeState, invoice: dict[str, Any]) -> None:
    """Draft -> open, with a number: ``invoice.finalized``."""
    now = state.now()
    customer = state.billing.customers[invoice["customer"]]
    number = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
    customer["next_invoice_sequence"] += 1
    invoice.update(status="open", number=number, effective_at=now, ending_balance=0)
    invoice["status_transitions"]["finalized_at"] = now
    emit(state, "invoice.finalized", invoice, None)


def attempt(state: StripeState, invoice: dict[str, Any], *, succeeds: bool,
            next_attempt: int | None) -> None:
    """Try to collect an open invoice.

    Paid: ``invoice.paid`` then ``invoice.payment_succeeded`` (a zero total is
    paid without a charge). Declined: ``attempt_count`` grows,
    ``next_payment_attempt`` is ``next_attempt`` and ``invoice.payment_failed``.
    """
    now = state.now()
    if invoice["amount_due"] == 0 or succeeds:
        invoice.update(status="paid", amount_paid=invoice["amount_due"],
                       amount_remaining=0, next_payment_attempt=None,
                       attempted=invoice["amount_due"] > 0 or invoice["attempted"])
        if invoice["amount_due"] > 0:
            invoice["attempt_count"] += 1
        invoice["status_transitions"]["paid_at"] = now
        emit(state, "invoice.paid", invoice, None)
        emit(state, "invoice.payment_succeeded", invoice, None)
        return
    invoice["attempt_count"] += 1
    invoice.update(attempted=True, next_payment_attempt=next_attempt)
    emit(state, "invoice.payment_failed", invoice, None)


def stored_invoice(state: StripeState, invoice_id: str, param: str = "id") -> dict[str, Any]:
    invoice = state.billing.invoices.get(invoice_id)
    if invoice is None:
        raise no_such("invoice", invoice_id, param)
    return invoice


def retrieve_invoice(state: StripeState, call: ApiCall) -> dict[str, Any]:
    return copy.deepcopy(stored_invoice(state, call.ids[0]))


def list_invoices(state: StripeState, call: ApiCall) -> dict[str, Any]:
    params = call.params
    invoices = list(reversed(state.billing.invoices.values()))
    if "subscription" in params:
        wanted = as_str(params["subscription"], "subscription")
        invoices = [i for i in invoices
                    if i["parent"]["subscription_details"]["subscription"] == wanted]
    for key in ("customer", "status", "collection_method"):
        if key in params:
            wanted = as_str(params[key], key)
            invoices = [i for i in invoices if i[key] == wanted]
    return list_object(filter_created(invoices, params),
                       "/v1/invoices", params)
