"""The emulator's billing controls: what a test does to subscriptions, payments and
webhooks that a customer, a bank or time would do at Stripe.

:class:`BillingControls` is mixed into
:class:`~stripe_checkout_mw.testing.StripeEmulator`; use its methods on the
emulator (``emu.refund(session_id)``). Every method that causes events waits, by
default, until their webhook deliveries are done (or given up), like ``pay()``.

Renewals and retries follow :data:`~.api.subscription_objects.RETRY_DAYS`: a renewal set
to fail with :meth:`BillingControls.fail_next_renewal` leaves the subscription
``past_due``; it is retried 3, 5 and 7 days after that first failure, and when the
last retry fails it becomes ``canceled`` (or ``unpaid``, if asked). The customer's
side of the same (the portal page) is :mod:`.hosted_portal`.
"""

from __future__ import annotations

import copy
from typing import Any

from .api import StripeState, charges, disputes, refunds, subscription_changes
from .api.objects import RenewalFailure
from .api.subscription_clock import run_due
from .controls import ControlHooks

__all__ = ["BillingControls"]


class BillingControls(ControlHooks):
    """Subscriptions, refunds, disputes and webhook dropping for the emulator."""

    # -- webhooks ------------------------------------------------------------------

    def drop_webhooks(self, drop: bool = True) -> None:
        """Drop (``True``) or deliver again (``False``) the events emitted from now on.

        A dropped event is never POSTed and keeps ``pending_webhooks: 1``, as if the
        endpoint had been down for all of Stripe's retries: ``GET /v1/events
        ?delivery_success=false`` lists it and :meth:`redeliver` still sends it.
        """
        self._outbox.set_dropping(drop)

    # -- objects ---------------------------------------------------------------------

    def customer(self, customer_id: str) -> dict[str, Any]:
        """A copy of customer ``customer_id``; ``KeyError`` if there is none."""
        with self._lock:
            return copy.deepcopy(self._require_state().billing.customers[customer_id])

    def subscription(self, subscription_id: str) -> dict[str, Any]:
        """A copy of subscription ``subscription_id``; ``KeyError`` if there is none."""
        with self._lock:
            return copy.deepcopy(
                self._require_state().billing.subscriptions[subscription_id])

    def invoice(self, invoice_id: str) -> dict[str, Any]:
        """A copy of invoice ``invoice_id``; ``KeyError`` if there is none."""
        with self._lock:
            return copy.deepcopy(self._require_state().billing.invoices[invoice_id])

    # -- subscriptions -----------------------------------------------------------------

    def fail_next_renewal(self, subscription_id: str, *, retries_fail: bool = True,
                          ending: str = "canceled") -> None:
        """Decline the next renewal of ``subscription_id``.

        With ``retries_fail`` (the default) the retries are declined too, until the
        customer saves a working card in the portal; the subscription then ends
        ``canceled`` or ``unpaid`` (``ending``). Without it the first retry succeeds.
        """
        if ending not in ("canceled", "unpaid"):
            raise ValueError("ending must be 'canceled' or 'unpaid'")
        with self._lock:
            state = self._require_state()
            if subscription_id not in state.billing.subscriptions:
                raise KeyError(f"no such subscription {subscription_id!r}")
            subscription_changes.fail_next_renewal(
                state, subscription_id, RenewalFailure(retries_fail, ending))

    def cancel_subscription(self, subscription_id: str, *, at_period_end: bool = False,
                            wait: bool = True, timeout: float = 10.0) -> dict[str, Any]:
        """Cancel now (``customer.subscription.deleted``) or at the period end
        (``customer.subscription.updated``: ``cancel_at_period_end``, ``cancel_at``);
        returns a copy of the subscription."""
        def action(state: StripeState) -> dict[str, Any]:
            sub = self._stored_subscription(state, subscription_id)
            if at_period_end:
                subscription_changes.set_cancel_at_period_end(state, sub, True, request=None)
            else:
                subscription_changes.cancel_now(
                    state, sub, reason="cancellation_requested", request=None)
            return sub

        return self._emitting(action, wait=wait, timeout=timeout)

    def _run_clock(self, *, wait: bool, timeout: float) -> None:
        """Do what the clock's new time makes due: renewals, retries, trial ends."""
        self._emitting(run_due, wait=wait, timeout=timeout)

    @staticmethod
    def _stored_subscription(state: StripeState, subscription_id: str) -> dict[str, Any]:
        sub = state.billing.subscriptions.get(subscription_id)
        if sub is None:
            raise KeyError(f"no such subscription {subscription_id!r}")
        return sub

    # -- refunds and disputes ----------------------------------------------------------

    def refund(self, session_id: str, amount: int | None = None, *,
               reason: str | None = None, wait: bool = True,
               timeout: float = 10.0) -> dict[str, Any]:
        """Refund ``amount`` (default: all that is left) of a paid payment-mode session.

        Emits ``refund.created``, ``charge.refunded`` (the Charge, with cumulative
        ``amount_refunded``) and ``refund.updated`` (``pending`` -> ``succeeded``);
        returns a copy of the refund. ``ValueError`` for a session with no payment,
        an amount above what is left, or a charge already fully refunded.
        """
        def action(state: StripeState) -> dict[str, Any]:
            return refunds.refund_charge(state, self._session_charge(state, session_id),
                                         amount=amount, reason=reason)

        return self._emitting(action, wait=wait, timeout=timeout)

    def dispute(self, session_id: str, *, reason: str = "fraudulent", wait: bool = True,
                timeout: float = 10.0) -> dict[str, Any]:
        """The customer disputes the whole payment of a paid payment-mode session:
        ``charge.dispute.created``, status ``needs_response``; returns a copy."""
        def action(state: StripeState) -> dict[str, Any]:
            return disputes.open_dispute(state, self._session_charge(state, session_id),
                                         reason=reason)

        return self._emitting(action, wait=wait, timeout=timeout)

    def close_dispute(self, dispute_id: str, *, won: bool = True, wait: bool = True,
                      timeout: float = 10.0) -> dict[str, Any]:
        """Evidence goes in (``charge.dispute.updated``: ``under_review``), then the
        bank decides (``charge.dispute.closed``: ``won`` or ``lost``)."""
        def action(state: StripeState) -> dict[str, Any]:
            dispute = state.billing.disputes.get(dispute_id)
            if dispute is None:
                raise KeyError(f"no such dispute {dispute_id!r}")
            return disputes.close(state, dispute, won=won)

        return self._emitting(action, wait=wait, timeout=timeout)

    @staticmethod
    def _session_charge(state: StripeState, session_id: str) -> dict[str, Any]:
        session = state.sessions.get(session_id)
        if session is None:
            raise KeyError(f"no such checkout session {session_id!r}")
        intent = state.billing.payment_intents.get(session["payment_intent"] or "")
        if intent is None:
            raise ValueError(f"session {session_id} has no payment to refund or dispute "
                             f"(mode {session['mode']}, payment_status "
                             f"{session['payment_status']})")
        return charges.stored_charge(state, intent["latest_charge"])
