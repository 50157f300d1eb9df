"""Invoices: ``/v1/invoices`` (retrieve, list, list lines) and the invoice life cycle
a subscription drives: :func:`new_invoice` (draft) and :func:`announce`
(``invoice.created``), :func:`finalize` (open, ``invoice.finalized``, a number, the
hosted page at ``hosted_invoice_url`` and its PDF at ``invoice_pdf``),
:func:`attempt` (paid, ``invoice.paid`` + ``invoice.payment_succeeded``; or still
open, ``invoice.payment_failed``, or ``invoice.payment_action_required`` when the
card needs the customer's authentication) and :func:`void` (``invoice.voided``).
Previews (``create_preview``) are :mod:`.invoice_preview`; the operator's actions
(``/finalize``, ``/pay``, ``/void``, ``/mark_uncollectible``) :mod:`.invoice_actions`.

Stripe's current shape: no top-level ``subscription``, ``paid``, ``charge`` or
``payment_intent``; the subscription is ``parent.subscription_details.subscription``
and each line names its price at ``pricing.price_details.price`` and its item at
``parent.subscription_item_details``. The service period is the line's
``period``, not the invoice's ``period_start``/``period_end``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stripe import Invoice

from .errors import no_such
from .events import emit
from .ids import new_id
from .invoice_payments import pay_by_card
from .lists import filter_created, list_object
from .params import as_str
from .shapes import blank

if TYPE_CHECKING:
    from .routes import ApiCall
    from .state import StripeState

__all__ = [
    "STATUSES",
    "LineSpec",
    "announce",
    "attempt",
    "finalize",
    "item_line",
    "list_invoices",
    "list_lines",
    "new_invoice",
    "retrieve_invoice",
    "stored_invoice",
    "subscription_of",
    "void",
]

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


@dataclass(frozen=True)
class LineSpec:
    """One line to bill: ``amount`` for ``quantity`` of ``price`` over ``start``..``end``.

    ``item_id`` names the subscription item it is for (``None``: a one-time invoice
    item); ``proration`` marks a credit or charge for part of a period, shown at
    ``parent.subscription_item_details.proration``.
    """

    price: dict[str, Any]
    quantity: int
    amount: int
    start: int
    end: int
    item_id: str | None = None
    proration: bool = False
    description: str | None = None


def item_line(price: dict[str, Any], quantity: int, item_id: str | None, start: int,
              end: int) -> LineSpec:
    """A whole period of ``quantity`` x ``price``."""
    return LineSpec(price, quantity, int(price["unit_amount"] or 0) * quantity, start, end,
                    item_id)


def _parent(spec: LineSpec, subscription_id: str | None) -> dict[str, Any]:
    details = {"invoice_item": None, "proration": spec.proration,
               "proration_details": {"credited_items": None},
               "subscription": subscription_id}
    if spec.item_id is not None:
        return {"type": "subscription_item_details", "invoice_item_details": None,
                "subscription_item_details": {**details,
                                              "subscription_item": spec.item_id}}
    # a one-time price bought with the subscription, or a manual invoice's item
    return {"type": "invoice_item_details", "subscription_item_details": None,
            "invoice_item_details": {**details, "invoice_item": new_id("ii_")}}


def _line(invoice_id: str, subscription_id: str | None, spec: LineSpec) -> dict[str, Any]:
    price = spec.price
    return {
        "id": new_id("il_"),
        "object": "line_item",
        "amount": spec.amount,
        "currency": price["currency"],
        "description": spec.description or (
            f"{spec.quantity} x {price.get('nickname') or price['product']}"),
        "discount_amounts": [],
        "discountable": not spec.proration,
        "discounts": [],
        "invoice": invoice_id,
        "livemode": False,
        "metadata": {},
        "parent": _parent(spec, subscription_id),
        "period": {"end": spec.end, "start": spec.start},
        "pretax_credit_amounts": [],
        "pricing": {"price_details": {"price": price["id"], "product": price["product"]},
                    "type": "price_details",
                    "unit_amount_decimal": str(price["unit_amount"] or 0)},
        "quantity": spec.quantity,
        "subtotal": spec.amount,
        "taxes": [],
    }


def new_invoice(
    state: StripeState,
    subscription: dict[str, Any] | None,
    *,
    billing_reason: str,
    one_time: Sequence[tuple[dict[str, Any], int]] = (),
    free: bool = False,
    extra: Sequence[LineSpec] = (),
    bill_items: bool = True,
    customer_id: str | None = None,
    invoice_id: str | None = None,
) -> dict[str, Any]:
    """Store a draft invoice for ``subscription``'s current period (see :func:`announce`).

    ``one_time`` adds (price, quantity) lines billed once; ``free`` bills the
    recurring items at zero (a trial's first invoice); ``extra`` adds lines as given
    (prorations); without ``bill_items`` the items' period is not billed (an
    invoice for a change alone). With no ``subscription`` it is a ``manual``
    invoice of ``customer_id``. :mod:`.invoice_preview` passes an ``upcoming_in``
    ``invoice_id`` and does not keep the result.
    """
    invoice_id = invoice_id or new_id("in_")
    now = state.now()
    sub_id = subscription["id"] if subscription is not None else None
    customer = state.billing.customers[
        subscription["customer"] if subscription is not None else str(customer_id)]
    specs = list(extra)
    if subscription is not None and bill_items:
        specs = _item_specs(subscription, free=free) + specs
    specs += [item_line(price, quantity, None, now, now) for price, quantity in one_time]
    lines = [_line(invoice_id, sub_id, spec) for spec in specs]
    total = sum(int(line["amount"]) for line in lines)
    # Every field the SDK declares, then the template's values in Stripe's order;
    # update() keeps each key where the template put it: Stripe's field order.
    invoice = blank(Invoice)
    invoice.update(copy.deepcopy(_INVOICE_TEMPLATE))
    invoice.update({
        "id": invoice_id,
        "amount_due": max(total, 0),
        "amount_remaining": max(total, 0),
        "billing_reason": billing_reason,
        "created": now,
        "currency": subscription["currency"] if subscription is not None else (
            specs[0].price["currency"] if specs else "usd"),
        "customer": customer["id"],
        "customer_email": customer["email"],
        "customer_name": customer["name"],
        "lines": {"object": "list", "data": lines, "has_more": False,
                  "url": f"/v1/invoices/{invoice_id}/lines"},
        "parent": None if subscription is None else _subscription_parent(subscription),
        "period_end": now,
        "period_start": now,
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "total": total,
        "total_excluding_tax": total,
    })
    if not invoice_id.startswith("upcoming_"):
        state.billing.invoices[invoice_id] = invoice
    return invoice


def _subscription_parent(subscription: dict[str, Any]) -> dict[str, Any]:
    return {"type": "subscription_details", "quote_details": None,
            "subscription_details": {
                "metadata": copy.deepcopy(subscription["metadata"]),
                "subscription": subscription["id"], "subscription_proration_date": None}}


def _item_specs(subscription: dict[str, Any], *, free: bool) -> list[LineSpec]:
    """A line per subscription item for its current period."""
    specs = []
    for item in subscription["items"]["data"]:
        price = {**item["price"], "unit_amount": 0} if free else item["price"]
        specs.append(item_line(price, item["quantity"], item["id"],
                               item["current_period_start"], item["current_period_end"]))
    return specs


def subscription_of(invoice: dict[str, Any]) -> str | None:
    """The id of the subscription ``invoice`` bills, if any."""
    parent = invoice["parent"]
    if parent is None or parent["subscription_details"] is None:
        return None
    return str(parent["subscription_details"]["subscription"])


def announce(state: StripeState, invoice: dict[str, Any]) -> None:
    """``invoice.created``, once the objects it refers to are announced too."""
    emit(state, "invoice.created", invoice, None)


def finalize(state: StripeState, invoice: dict[str, Any],
             request: dict[str, Any] | None = None) -> None:
    """Draft -> open, with a number: ``invoice.finalized``."""
    now = state.now()
    customer = state.billing.customers[invoice["customer"]]
    number = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
    customer["next_invoice_sequence"] += 1
    invoice.update(status="open", number=number, effective_at=now, ending_balance=0,
                   hosted_invoice_url=f"{state.api_base}/invoice/{invoice['id']}",
                   invoice_pdf=f"{state.api_base}/invoice/{invoice['id']}/pdf")
    invoice["status_transitions"]["finalized_at"] = now
    emit(state, "invoice.finalized", invoice, request)


def attempt(state: StripeState, invoice: dict[str, Any], *, succeeds: bool,
            next_attempt: int | None, action_required: bool = False) -> None:
    """Try to collect an open invoice.

    Paid: ``invoice.paid`` then ``invoice.payment_succeeded`` (a zero total is
    paid without a charge). Declined: ``attempt_count`` grows,
    ``next_payment_attempt`` is ``next_attempt`` and ``invoice.payment_failed``;
    with ``action_required`` (a card that needs the customer's authentication)
    ``invoice.payment_action_required`` instead, and no automatic retry.
    """
    now = state.now()
    if invoice["amount_due"] == 0 or succeeds:
        invoice.update(status="paid", amount_paid=invoice["amount_due"],
                       amount_remaining=0, next_payment_attempt=None,
                       attempted=invoice["amount_due"] > 0 or invoice["attempted"])
        if invoice["amount_due"] > 0:
            invoice["attempt_count"] += 1
            pay_by_card(state, invoice)
        invoice["status_transitions"]["paid_at"] = now
        emit(state, "invoice.paid", invoice, None)
        emit(state, "invoice.payment_succeeded", invoice, None)
        return
    invoice["attempt_count"] += 1
    if action_required:
        invoice.update(attempted=True, next_payment_attempt=None)
        emit(state, "invoice.payment_action_required", invoice, None)
        return
    invoice.update(attempted=True, next_payment_attempt=next_attempt)
    emit(state, "invoice.payment_failed", invoice, None)


def void(state: StripeState, invoice: dict[str, Any],
         request: dict[str, Any] | None = None) -> None:
    """An open invoice will not be collected: ``void``, ``invoice.voided``."""
    invoice.update(status="void", amount_remaining=0, next_payment_attempt=None)
    invoice["status_transitions"]["voided_at"] = state.now()
    emit(state, "invoice.voided", invoice, request)


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
        invoices = [i for i in invoices if subscription_of(i) == wanted]
    for key in ("customer", "status", "collection_method"):
        if key in params:
            wanted = as_str(params[key], key)
            invoices = [i for i in invoices if i[key] == wanted]
    return list_object(filter_created(invoices, params),
                       "/v1/invoices", params)


def list_lines(state: StripeState, call: ApiCall) -> dict[str, Any]:
    """``GET /v1/invoices/{id}/lines``: every line, paged like any list."""
    invoice = stored_invoice(state, call.ids[0], "invoice")
    return list_object(invoice["lines"]["data"], invoice["lines"]["url"], call.params)
