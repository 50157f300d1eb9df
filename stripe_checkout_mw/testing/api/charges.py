"""Charges: ``/v1/charges`` (retrieve, list) and :func:`new_charge`, the card
payment behind a paid payment-mode Checkout Session.

``amount_refunded`` is cumulative and ``refunded`` turns true only once the whole
amount is refunded; ``refunds`` is not embedded (it must be expanded at Stripe and
the emulator does not expand it). ``disputed`` is set by a dispute.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .errors import no_such
from .ids import new_id
from .lists import filter_created, list_object
from .params import as_str

if TYPE_CHECKING:
    from .routes import ApiCall
    from .state import StripeState

__all__ = ["card_details", "list_charges", "new_charge", "retrieve_charge",
           "stored_charge"]


def card_details(last4: str = "4242") -> dict[str, Any]:
    """The ``card`` part of a payment method (or of a charge's method details)."""
    return {"brand": "visa", "country": "US", "exp_month": 12, "exp_year": 2034,
            "fingerprint": new_id("", 16), "funding": "credit", "last4": last4}


def new_charge(
    state: StripeState,
    *,
    amount: int,
    currency: str,
    customer: str | None,
    payment_intent: str,
    email: str | None,
    status: str,
) -> dict[str, Any]:
    """Store a card charge (not a copy); ``status`` is ``succeeded`` or ``pending``."""
    charge_id = new_id("ch_")
    charge: dict[str, Any] = {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount if status == "succeeded" else 0,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": new_id("txn_") if status == "succeeded" else None,
        "billing_details": {"address": None, "email": email, "name": None, "phone": None,
                            "tax_id": None},
        "calculated_statement_descriptor": "STRIPE EMULATOR",
        "captured": status == "succeeded",
        "created": state.now(),
        "currency": currency,
        "customer": customer,
        "description": None,
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "livemode": False,
        "metadata": {},
        "on_behalf_of": None,
        "outcome": {"network_status": "approved_by_network", "reason": None,
                    "risk_level": "normal", "seller_message": "Payment complete.",
                    "type": "authorized"},
        "paid": status == "succeeded",
        "payment_intent": payment_intent,
        "payment_method": new_id("pm_"),
        "payment_method_details": {"card": card_details(), "type": "card"},
        "receipt_email": email,
        "receipt_number": None,
        "receipt_url": None,
        "refunded": False,
        "review": None,
        "shipping": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }
    state.billing.charges[charge_id] = charge
    return charge


def stored_charge(state: StripeState, charge_id: str, param: str = "id") -> dict[str, Any]:
    charge = state.billing.charges.get(charge_id)
    if charge is None:
        raise no_such("charge", charge_id, param)
    return charge


def retrieve_charge(state: StripeState, call: ApiCall) -> dict[str, Any]:
    return copy.deepcopy(stored_charge(state, call.ids[0]))


def list_charges(state: StripeState, call: ApiCall) -> dict[str, Any]:
    params = call.params
    charges = list(reversed(state.billing.charges.values()))
    for key in ("customer", "payment_intent", "transfer_group"):
        if key in params:
            wanted = as_str(params[key], key)
            charges = [c for c in charges if c[key] == wanted]
    return list_object(filter_created(charges, params), "/v1/charges", params)
