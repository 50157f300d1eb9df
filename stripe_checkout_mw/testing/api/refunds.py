"""Refunds: ``/v1/refunds`` (retrieve, list) and :func:`refund_charge`, which the
emulator's ``refund()`` helper drives.

A refund is created ``pending`` (``refund.created``), counted at once in the
charge's cumulative ``amount_refunded`` (``charge.refunded``, carrying the Charge;
``refunded`` only once nothing is left), then ``succeeded`` (``refund.updated``
with ``previous_attributes.status``), the order a card refund takes at Stripe.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .errors import invalid, no_such
from .events import emit
from .ids import new_id
from .lists import filter_created, list_object
from .params import as_str

if TYPE_CHECKING:
    from .routes import ApiCall
    from .state import StripeState

__all__ = ["REASONS", "list_refunds", "refund_charge", "retrieve_refund"]

REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})


def refund_charge(
    state: StripeState, charge: dict[str, Any], *, amount: int | None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Refund ``amount`` (default: what is left) of ``charge``; return the refund.

    Raises :class:`~.errors.ApiError` for a charge already fully refunded, an
    amount above what is left, or a charge that did not succeed.
    """
    amount = _refundable(charge, amount, reason)
    refund_id = new_id("re_")
    refund: dict[str, Any] = {
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "balance_transaction": None,
        "charge": charge["id"],
        "created": state.now(),
        "currency": charge["currency"],
        "customer": charge["customer"],
        "customer_account": None,
        "description": None,
        "destination_details": {"card": {"reference_status": "pending",
                                         "reference_type": "acquirer_reference_number",
                                         "type": "refund"}, "type": "card"},
        "failure_balance_transaction": None,
        "failure_reason": None,
        "metadata": {},
        "payment_intent": charge["payment_intent"],
        "pending_reason": "processing",
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "pending",
        "transfer_reversal": None,
    }
    state.billing.refunds[refund_id] = refund
    emit(state, "refund.created", refund, None)
    charge["amount_refunded"] = int(charge["amount_refunded"]) + amount
    charge["refunded"] = charge["amount_refunded"] == charge["amount"]
    emit(state, "charge.refunded", charge, None)
    refund.update(status="succeeded", pending_reason=None,
                  balance_transaction=new_id("txn_"))
    emit(state, "refund.updated", refund, None, previous={"status": "pending"})
    return refund


def _refundable(charge: dict[str, Any], amount: int | None, reason: str | None) -> int:
    """The amount to refund (default: what is left), or Stripe's refusal."""
    left = int(charge["amount"]) - int(charge["amount_refunded"])
    if charge["status"] != "succeeded":
        raise invalid(f"Charge {charge['id']} has not succeeded and cannot be refunded.",
                      "charge")
    if left <= 0:
        raise invalid(f"Charge {charge['id']} has already been refunded.", "charge",
                      "charge_already_refunded")
    if amount is None:
        amount = left
    if amount < 1:
        raise invalid("The refund amount must be a positive integer.", "amount")
    if amount > left:
        raise invalid(f"Refund amount ({amount}) is greater than unrefunded amount on "
                      f"charge ({left})", "amount")
    if reason is not None and reason not in REASONS:
        raise invalid(f"Invalid reason: must be one of {', '.join(sorted(REASONS))}",
                      "reason")
    return amount


def retrieve_refund(state: StripeState, call: ApiCall) -> dict[str, Any]:
    refund = state.billing.refunds.get(call.ids[0])
    if refund is None:
        raise no_such("refund", call.ids[0])
    return copy.deepcopy(refund)


def list_refunds(state: StripeState, call: ApiCall) -> dict[str, Any]:
    params = call.params
    refunds = list(reversed(state.billing.refunds.values()))
    for key in ("charge", "payment_intent"):
        if key in params:
            wanted = as_str(params[key], key)
            refunds = [r for r in refunds if r[key] == wanted]
    return list_object(filter_created(refunds, params), "/v1/refunds", params)
