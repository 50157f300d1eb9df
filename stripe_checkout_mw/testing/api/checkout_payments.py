"""What paying a Checkout Session creates: the Customer, the PaymentIntent and
Charge (payment mode), the Subscription and its first Invoice (subscription mode).

Checkout creates a Customer in ``subscription`` mode (and ``setup`` mode) unless
one was passed, and in ``payment`` mode only with ``customer_creation=always``;
otherwise ``customer`` stays ``null`` and ``customer_details`` holds the email.
A passed customer's email wins over the one typed on the page, as at Stripe.
:func:`on_complete` runs before ``checkout.session.completed`` is emitted, so that
event (and a re-fetch it prompts) sees every id set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import payment_intents, subscriptions
from .customers import new_customer
from .events import emit
from .ids import new_id

if TYPE_CHECKING:
    from .state import StripeState

__all__ = ["on_complete", "on_settle"]


def on_complete(state: StripeState, session: dict[str, Any], *, delayed: bool,
                card: str = "4242424242424242") -> None:
    """Create the objects a completing ``session`` makes and set their ids on it."""
    mode = session["mode"]
    details = session["customer_details"] or {}
    if session["customer"] is None and (
            mode != "payment" or session["customer_creation"] == "always"):
        session["customer"] = new_customer(state, email=details.get("email"))["id"]
    elif session["customer"] is not None:
        # A passed customer's email is the one Checkout uses (the customer cannot edit
        # it); one without an email gets the email the customer entered.
        customer = state.billing.customers[session["customer"]]
        if customer["email"]:
            details["email"] = customer["email"]
        elif details.get("email"):
            customer["email"] = details["email"]
            emit(state, "customer.updated", customer, None, previous={"email": None})
    if mode == "payment":
        if session["amount_total"]:
            session["payment_intent"] = payment_intents.take_payment(
                state, session, delayed=delayed)
    elif mode == "subscription":
        subscription = subscriptions.create_from_session(
            state, session, state.line_items[session["id"]], delayed=delayed, card=card)
        session["subscription"] = subscription["id"]
        session["invoice"] = subscription["latest_invoice"]
    else:
        session["setup_intent"] = new_id("seti_")


def on_settle(state: StripeState, session: dict[str, Any], *, succeeded: bool) -> None:
    """A delayed payment of ``session`` arrived or failed: settle what it paid for."""
    if session["payment_intent"]:
        payment_intents.settle_payment(state, session["payment_intent"],
                                       succeeded=succeeded)
    if session["subscription"]:
        subscriptions.settle_first_invoice(state, session["subscription"],
                                           succeeded=succeeded)
