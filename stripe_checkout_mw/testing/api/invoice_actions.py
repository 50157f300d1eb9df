"""The operator's invoice actions (the Dashboard's buttons, or the API):
``POST /v1/invoices/{id}/finalize``, ``/pay``, ``/void`` and ``/mark_uncollectible``.

Each moves the invoice along Stripe's status transitions and emits their event:

============================  ======================  =================================
from                          action                  event, then status
============================  ======================  =================================
``draft``                     ``finalize``            ``invoice.finalized``, ``open``
                                                      (``paid`` at once when nothing
                                                      is due)
``open``, ``uncollectible``   ``pay``                 ``invoice.paid`` (and
                                                      ``payment_succeeded``), ``paid``;
                                                      declined: ``payment_failed``, a
                                                      402 and the status unchanged
``open``, ``uncollectible``   ``void``                ``invoice.voided``, ``void``
``open``                      ``mark_uncollectible``  ``invoice.marked_uncollectible``,
                                                      ``uncollectible``
============================  ======================  =================================

Any other move is Stripe's 400 ``invalid_request_error`` (a paid or draft invoice
cannot be voided, a finalized one not finalized again); an unknown id is a 404.
``pay`` charges the saved card off-session as a renewal does (:mod:`.card_outcomes`;
``off_session``, ``forgive`` and ``mandate`` change nothing for a card here) and
settles the subscription it bills (:func:`.subscription_updates.pay_invoice`); it
does not take ``payment_method``, ``source`` or ``paid_out_of_band``. Finalizing
schedules no automatic payment attempt: ``pay`` collects it.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from . import invoices, subscription_updates
from .card_outcomes import charge_outcome
from .errors import ApiError, invalid
from .events import emit
from .invoices import stored_invoice, subscription_of

if TYPE_CHECKING:
    from .routes import ApiCall
    from .state import StripeState

__all__ = ["finalize_invoice", "mark_uncollectible", "mark_uncollectible_invoice",
           "pay_invoice", "void_invoice"]

#: The pay parameters that name another way to pay than the saved card.
_NOT_EMULATED = ("payment_method", "source", "paid_out_of_band")


def _refused(message: str) -> ApiError:
    """Stripe's answer to a move the invoice's status does not allow: a 400 with no
    ``param`` and no ``code``."""
    return ApiError(message)


def mark_uncollectible(state: StripeState, invoice: dict[str, Any],
                       request: dict[str, Any] | None = None) -> None:
    """An open invoice written off as a bad debt: ``uncollectible``, no more automatic
    attempts, ``invoice.marked_uncollectible``. It can still be paid or voided."""
    invoice.update(status="uncollectible", next_payment_attempt=None)
    invoice["status_transitions"]["marked_uncollectible_at"] = state.now()
    emit(state, "invoice.marked_uncollectible", invoice, request)


def finalize_invoice(state: StripeState, call: ApiCall) -> dict[str, Any]:
    invoice = stored_invoice(state, call.ids[0])
    if invoice["status"] != "draft":
        raise _refused("This invoice is already finalized, you can't re-finalize a "
                       "non-draft invoice.")
    if "auto_advance" in call.valid:
        invoice["auto_advance"] = bool(call.valid["auto_advance"])
    invoices.finalize(state, invoice, call.request)
    if invoice["amount_due"] == 0:  # nothing to collect: paid on finalization
        invoices.attempt(state, invoice, succeeds=True, next_attempt=None)
    return copy.deepcopy(invoice)


def void_invoice(state: StripeState, call: ApiCall) -> dict[str, Any]:
    invoice = stored_invoice(state, call.ids[0])
    if invoice["status"] not in ("open", "uncollectible"):
        raise _refused("You can only pass in open invoices. This invoice isn't open.")
    invoices.void(state, invoice, call.request)
    return copy.deepcopy(invoice)


def mark_uncollectible_invoice(state: StripeState, call: ApiCall) -> dict[str, Any]:
    invoice = stored_invoice(state, call.ids[0])
    if invoice["status"] != "open":
        raise _refused("You can only mark open invoices as uncollectible. This invoice "
                       f"is {invoice['status']}.")
    mark_uncollectible(state, invoice, call.request)
    return copy.deepcopy(invoice)


def pay_invoice(state: StripeState, call: ApiCall) -> dict[str, Any]:
    invoice = stored_invoice(state, call.ids[0])
    for name in _NOT_EMULATED:
        if name in call.valid:
            raise invalid(f"The emulator pays an invoice with the customer's saved card "
                          f"only; {name} is not supported.", name)
    if invoice["status"] == "paid":
        raise _refused("Invoice is already paid.")
    if invoice["status"] not in ("open", "uncollectible"):
        raise _refused(f"You can only pay open or uncollectible invoices. This invoice "
                       f"is {invoice['status']}.")
    subscription = state.billing.subscriptions.get(subscription_of(invoice) or "")
    outcome = charge_outcome(state, subscription, invoice["customer"])
    subscription_updates.pay_invoice(state, invoice, outcome=outcome)
    if invoice["status"] != "paid":  # the events are sent, and the 402 answered
        raise subscription_updates.payment_error(outcome)
    return copy.deepcopy(invoice)
