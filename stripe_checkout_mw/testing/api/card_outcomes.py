"""What charging a saved card does: the test cards that behave after checkout.

Stripe's test cards that matter once a card is saved (docs.stripe.com/testing):

- ``4000 0027 6000 3184`` (``pm_card_authenticationRequired``) needs the customer's
  authentication on every charge: on a page the customer is at (Checkout, the hosted
  invoice page) it authenticates and pays; off-session (a renewal, an immediate
  charge for a plan change) the invoice waits with
  ``invoice.payment_action_required``;
- ``4000 0000 0000 0341`` (``pm_card_chargeCustomerFail``) is saved fine, but every
  later charge is declined (``invoice.payment_failed``).

The emulator tells them apart by the saved card's last four digits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .state import StripeState

__all__ = ["ACTION_REQUIRED", "DECLINED", "PAID", "SAVED_CARDS", "card_number",
           "charge_outcome"]

PAID = "paid"
DECLINED = "declined"
ACTION_REQUIRED = "action_required"

SAVED_CARDS = {
    "pm_card_visa": "4242424242424242",
    "pm_card_authenticationRequired": "4000002760003184",
    "pm_card_chargeCustomerFail": "4000000000000341",
}
"""Stripe's test PaymentMethod ids and the card number each stands for."""

_OFF_SESSION = {"3184": ACTION_REQUIRED, "0341": DECLINED}


def card_number(card: str) -> str:
    """A card number as typed (spaces, dashes) or a ``pm_card_...`` id, as digits."""
    return SAVED_CARDS.get(card, "".join(card.replace("-", " ").split()))


def charge_outcome(state: StripeState, subscription: dict[str, Any] | None,
                   customer_id: str, *, on_session: bool = False) -> str:
    """What charging the subscription's (else the customer's default, else last
    saved) card gives.

    ``on_session``: the customer is at a page and can authenticate.
    """
    method_id = subscription["default_payment_method"] if subscription else None
    if method_id is None:
        customer = state.billing.customers[customer_id]
        method_id = customer["invoice_settings"]["default_payment_method"]
    if method_id is None:
        saved = [m["id"] for m in state.billing.payment_methods.values()
                 if m["customer"] == customer_id]
        method_id = saved[-1] if saved else None
    method = state.billing.payment_methods.get(method_id or "")
    if method is None:
        return DECLINED
    outcome = _OFF_SESSION.get(method["card"]["last4"], PAID)
    if on_session and outcome == ACTION_REQUIRED:
        return PAID
    return outcome
