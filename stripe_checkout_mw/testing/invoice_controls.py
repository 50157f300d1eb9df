"""The emulator's invoice controls: what a customer does on a hosted invoice page, a
card saved outside Checkout, and a one-off (``manual``) invoice.

:class:`InvoiceControls` is mixed into
:class:`~stripe_checkout_mw.testing.StripeEmulator`::

    emu.attach_card(customer_id, "pm_card_authenticationRequired")  # SCA every charge
    emu.advance_clock(32 * 86400)            # renewal -> invoice.payment_action_required
    emu.pay_invoice(invoice_id)              # the customer authenticates and pays
    emu.pay_invoice(invoice_id, authenticate=False)  # ... or gives up
    emu.invoice_customer(customer_id, 2500)  # billing_reason "manual", charged at once
    emu.invoice_customer(customer_id, 2500, draft=True)  # a draft: finalize it by API
    emu.refund_invoice(invoice_id, 500)      # charge.refunded on the invoice's payment

Like the other controls, each waits for its events' webhook deliveries by default
and raises ``ValueError`` for what Stripe would refuse.
"""

from __future__ import annotations

from typing import Any

from .api import StripeState, invoices, refunds
from .api.card_outcomes import ACTION_REQUIRED, PAID, card_number, charge_outcome
from .api.invoice_payments import paid_charge
from .api.subscription_changes import update_card
from .cards import CARD_AUTHENTICATE, CARD_OK, CARD_SAVED_BUT_DECLINES
from .controls import ControlHooks
from .hosted_invoice import pay_on_page

__all__ = ["InvoiceControls"]


class InvoiceControls(ControlHooks):
    """Hosted invoice payments, saved cards and manual invoices for the emulator."""

    def pay_invoice(self, invoice_id: str, *, card: str = "", authenticate: bool = True,
                    wait: bool = True, timeout: float = 10.0) -> dict[str, Any]:
        """Pay an open invoice as the customer on its hosted page; returns a copy.

        ``card`` empty uses the saved card; ``authenticate=False`` abandons the
        authentication such a card asks for. A decline or an abandoned
        authentication leaves the invoice open (no ``ValueError``).
        """
        def action(state: StripeState) -> dict[str, Any]:
            invoice = state.billing.invoices.get(invoice_id)
            if invoice is None:
                raise KeyError(f"no such invoice {invoice_id!r}")
            pay_on_page(state, invoice, card=card, authenticate=authenticate)
            return invoice

        return self._emitting(action, wait=wait, timeout=timeout)

    def refund_invoice(self, invoice_id: str, amount: int | None = None, *,
                       reason: str | None = None, wait: bool = True,
                       timeout: float = 10.0) -> dict[str, Any]:
        """Refund ``amount`` (default: all that is left) of the card payment that paid
        an invoice: ``refund.created``, ``charge.refunded`` (cumulative
        ``amount_refunded``, the intent and no session) and ``refund.updated``; returns
        a copy of the refund. ``ValueError`` for an invoice paid without a charge."""
        def action(state: StripeState) -> dict[str, Any]:
            if invoice_id not in state.billing.invoices:
                raise KeyError(f"no such invoice {invoice_id!r}")
            return refunds.refund_charge(state, paid_charge(state, invoice_id),
                                         amount=amount, reason=reason)

        return self._emitting(action, wait=wait, timeout=timeout)

    def attach_card(self, customer_id: str, card: str, *, wait: bool = True,
                    timeout: float = 10.0) -> None:
        """Save ``card`` (a test number or ``pm_card_...`` id) as the default of the
        customer and their live subscriptions, as a SetupIntent would: the cards
        of :mod:`.cards` that behave later (``...3184``, ``...0341``) are saved fine.
        Unlike the portal, it pays no open invoice."""
        number = card_number(card)
        if number not in (CARD_OK, CARD_AUTHENTICATE, CARD_SAVED_BUT_DECLINES):
            raise ValueError(f"{card!r} is not a test card the emulator saves")

        def action(state: StripeState) -> None:
            if customer_id not in state.billing.customers:
                raise KeyError(f"no such customer {customer_id!r}")
            update_card(state, customer_id, number[-4:], pay_past_due=False)

        self._emitting(action, wait=wait, timeout=timeout)

    def invoice_customer(self, customer_id: str, amount: int, *, currency: str = "usd",
                         description: str = "One-off charge", draft: bool = False,
                         wait: bool = True, timeout: float = 10.0) -> dict[str, Any]:
        """Bill the customer once (``billing_reason: manual``, no subscription):
        created, finalized and charged to the saved card at once; returns a copy.
        ``draft``: only created (``invoice.created``), for the API's ``finalize``."""
        def action(state: StripeState) -> dict[str, Any]:
            if customer_id not in state.billing.customers:
                raise KeyError(f"no such customer {customer_id!r}")
            price = {"id": "", "product": description, "nickname": description,
                     "currency": currency, "unit_amount": amount}
            now = state.now()
            line = invoices.LineSpec(price, 1, amount, now, now, description=description)
            invoice = invoices.new_invoice(state, None, billing_reason="manual",
                                           extra=[line], customer_id=customer_id)
            invoices.announce(state, invoice)
            if draft:
                return invoice
            invoices.finalize(state, invoice)
            outcome = charge_outcome(state, None, customer_id)
            invoices.attempt(state, invoice, succeeds=outcome == PAID, next_attempt=None,
                             action_required=outcome == ACTION_REQUIRED)
            return invoice

        return self._emitting(action, wait=wait, timeout=timeout)
