"""Payment intents: ``/v1/payment_intents`` (retrieve, list) and :func:`take_payment`,
which a payment-mode Checkout Session calls when the customer pays.

A paid session gets a ``succeeded`` intent whose ``latest_charge`` is a charge of
the session's ``amount_total``; a delayed payment starts ``processing`` (a
``pending`` charge) and :func:`settle_payment` finishes it. These transitions
emit no ``payment_intent.*``/``charge.succeeded`` events: a Checkout integration
listens to the session's events, and the refunds and disputes that follow emit
theirs.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .charges import new_charge
from .errors import no_such
from .ids import new_id
from .lists import filter_created, list_object
from .params import as_str

if TYPE_CHECKING:
    from .routes import ApiCall
    from .state import StripeState

__all__ = ["list_payment_intents", "retrieve_payment_intent",
           "settle_payment", "take_payment"]


def take_payment(state: StripeState, session: dict[str, Any], *, delayed: bool) -> str:
    """Create the intent and charge paying ``session``; return the intent's id."""
    intent_id = new_id("pi_")
    amount = int(session["amount_total"] or 0)
    status = "processing" if delayed else "succeeded"
    email = (session.get("customer_details") or {}).get("email")
    charge = new_charge(state, amount=amount, currency=session["currency"],
                        customer=session["customer"], payment_intent=intent_id,
                        email=email, status="pending" if delayed else "succeeded")
    state.billing.payment_intents[intent_id] = {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0 if delayed else amount,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic",
        "client_secret": f"{intent_id}_secret_{new_id('', 24)}",
        "confirmation_method": "automatic",
        "created": state.now(),
        "currency": session["currency"],
        "customer": session["customer"],
        "customer_account": None,
        "description": None,
        "excluded_payment_method_types": None,
        "last_payment_error": None,
        "latest_charge": charge["id"],
        "livemode": False,
        "metadata": {},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": charge["payment_method"],
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }
    return intent_id


def settle_payment(state: StripeState, intent_id: str, *, succeeded: bool) -> None:
    """Finish a ``processing`` intent: the money arrived, or it did not."""
    intent = state.billing.payment_intents[intent_id]
    charge = state.billing.charges[intent["latest_charge"]]
    if succeeded:
        intent.update(status="succeeded", amount_received=intent["amount"])
        charge.update(status="succeeded", paid=True, captured=True,
                      amount_captured=charge["amount"], balance_transaction=new_id("txn_"))
    else:
        intent.update(status="requires_payment_method", last_payment_error={
            "code": "payment_intent_payment_attempt_failed", "type": "card_error",
            "message": "The payment failed."})
        charge.update(status="failed", failure_code="payment_intent_payment_attempt_failed",
                      failure_message="The payment failed.")


def retrieve_payment_intent(state: StripeState, call: ApiCall) -> dict[str, Any]:
    intent = state.billing.payment_intents.get(call.ids[0])
    if intent is None:
        raise no_such("payment_intent", call.ids[0])
    return copy.deepcopy(intent)


def list_payment_intents(state: StripeState, call: ApiCall) -> dict[str, Any]:
    params = call.params
    intents = list(reversed(state.billing.payment_intents.values()))
    if "customer" in params:
        wanted = as_str(params["customer"], "customer")
        intents = [i for i in intents if i["customer"] == wanted]
    return list_object(filter_created(intents, params), "/v1/payment_intents", params)
