"""The emulator's test cards, shared by the hosted page, Embedded Checkout and Elements.

Every payment surface of the emulator takes the same input and gives the same
answer, so a test written against one works against the others:

- ``4242 4242 4242 4242`` pays;
- ``4000 0000 0000 0002`` (and the other numbers in :data:`CARD_DECLINES`) is
  declined with Stripe's message;
- a ticked "delayed" box completes the session ``unpaid`` (like a bank debit) and
  needs no card number;
- ``4000 0027 6000 3184`` pays once the customer authenticates (on the page, so at
  once) and is saved; every later off-session charge needs authentication again;
- ``4000 0000 0000 0341`` is saved, but declined when charged now: use it where
  nothing is charged at checkout (a trial), and every later charge fails.

What a saved card does later is :mod:`.api.card_outcomes`.
"""

from __future__ import annotations

__all__ = ["CARD_AUTHENTICATE", "CARD_DECLINES", "CARD_OK", "CARD_SAVED_BUT_DECLINES",
           "payment_error"]

CARD_OK = "4242424242424242"
CARD_AUTHENTICATE = "4000002760003184"
CARD_SAVED_BUT_DECLINES = "4000000000000341"
CARD_DECLINES = {
    "4000000000000002": "Your card was declined.",
    "4000000000009995": "Your card has insufficient funds.",
    "4000000000000069": "Your card has expired.",
}


def payment_error(email: str, cardnumber: str, delayed: bool, *,
                  charges_now: bool = True) -> str | None:
    """What the customer is told about this attempt, or ``None`` when it pays.

    ``cardnumber`` may carry spaces or dashes, as people type it; ``charges_now``
    is false when nothing is charged at once (a trial), so ``...0341`` is saved.
    """
    card = "".join(cardnumber.replace("-", " ").split())
    if "@" not in email:
        return "Enter a valid email address."
    if delayed:
        return None
    if card in CARD_DECLINES:
        return CARD_DECLINES[card]
    if card == CARD_SAVED_BUT_DECLINES and charges_now:
        return "Your card was declined."
    if card not in (CARD_OK, CARD_AUTHENTICATE, CARD_SAVED_BUT_DECLINES):
        return ("Your card number is incorrect. In the emulator use "
                "4242 4242 4242 4242 (or 4000 0000 0000 0002 to see a decline).")
    return None
