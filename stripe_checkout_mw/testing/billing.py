"""The emulator's billing controls: what a test does to subscriptions, payments and
webhooks that a customer, a bank or time would do at Stripe, plus the portal page.

:class:`BillingControls` is mixed into
:class:`~stripe_checkout_mw.testing.StripeEmulator`; use its methods on the
emulator (``emu.refund(session_id)``). Every method that causes events waits, by
default, until their webhook deliveries are done (or given up), like ``pay()``.

Renewals and retries follow :data:`~.api.subscriptions.RETRY_DAYS`: a renewal set
to fail with :meth:`BillingControls.fail_next_renewal` leaves the subscription
``past_due``; it is retried 3, 5 and 7 days after that first failure, and when the
last retry fails it becomes ``canceled`` (or ``unpaid``, if asked).
"""

from __future__ import annotations

import copy
import threading
from typing import Any, Callable, TypeVar

from .api import StripeState, charges, disputes, refunds, subscriptions
from .api.errors import ApiError
from .api.objects import RenewalFailure
from .forms import FormError, decode_form
from .page import render_notice
from .portal import NOTICES, render_portal
from .server import HttpRequest, HttpResponse

__all__ = ["BillingControls"]

T = TypeVar("T")

_CARD_OK = "4242424242424242"
_CARD_SAVED_BUT_DECLINES = "4000000000000341"
_CARD_DECLINES = {
    "4000000000000002": "Your card was declined.",
    "4000000000009995": "Your card has insufficient funds.",
    "4000000000000069": "Your card has expired.",
}


class BillingControls:
    """Subscriptions, refunds, disputes and webhook dropping for the emulator."""

    _lock: threading.RLock
    _dropping_webhooks = False
    hosted_page_webhook_wait: float

    # Provided by StripeEmulator.
    def _require_state(self) -> StripeState:
        raise NotImplementedError

    def _wait(self, event_ids: list[str], timeout: float) -> None:
        raise NotImplementedError

    def _wait_first_attempts(self, event_ids: list[str], timeout: float) -> None:
        raise NotImplementedError

    def _html(self, status: int, html: str,
              headers: list[tuple[str, str]] | None = None) -> HttpResponse:
        raise NotImplementedError

    def _redirect(self, location: str) -> HttpResponse:
        raise NotImplementedError

    def _emitting(self, action: Callable[[StripeState], T], *, wait: bool,
                  timeout: float) -> T:
        """Run ``action`` under the lock; then wait for the events it emitted."""
        with self._lock:
            state = self._require_state()
            first = len(state.events)
            try:
                result = action(state)
            except ApiError as exc:
                raise ValueError(exc.message) from None
            emitted = [e["id"] for e in state.events[first:]]
            result = copy.deepcopy(result)
        if wait:
            self._wait(emitted, timeout)
        return result

    # -- webhooks ------------------------------------------------------------------

    def drop_webhooks(self, drop: bool = True) -> None:
        """Drop (``True``) or deliver again (``False``) the events emitted from now on.

        A dropped event is never POSTed and keeps ``pending_webhooks: 1``, as if the
        endpoint had been down for all of Stripe's retries: ``GET /v1/events
        ?delivery_success=false`` lists it and :meth:`redeliver` still sends it.
        """
        with self._lock:
            self._dropping_webhooks = drop

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
            subscriptions.fail_next_renewal(state, subscription_id,
                                            RenewalFailure(retries_fail, ending))

    def cancel_subscription(self, subscription_id: str, *, at_period_end: bool = False,
                            wait: bool = True, timeout: float = 10.0) -> dict[str, Any]:
        """Cancel now (``customer.subscription.deleted``) or at the period end
        (``customer.subscription.updated``: ``cancel_at_period_end``, ``cancel_at``);
        returns a copy of the subscription."""
        def action(state: StripeState) -> dict[str, Any]:
            sub = self._stored_subscription(state, subscription_id)
            if at_period_end:
                subscriptions.set_cancel_at_period_end(state, sub, True, request=None)
            else:
                subscriptions.cancel_now(state, sub, reason="cancellation_requested",
                                         request=None)
            return sub

        return self._emitting(action, wait=wait, timeout=timeout)

    def _run_clock(self, *, wait: bool, timeout: float) -> None:
        """Do what the clock's new time makes due: renewals, retries, trial ends."""
        self._emitting(subscriptions.run_due, wait=wait, timeout=timeout)

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

    # -- the portal page -----------------------------------------------------------------

    def _portal(self, request: HttpRequest, portal_id: str, query: str) -> HttpResponse:
        if request.method not in ("GET", "HEAD", "POST"):
            return self._html(405, render_notice("Method not allowed", "Use GET or POST."),
                              [("Allow", "GET, HEAD, POST")])
        with self._lock:
            state = self._require_state()
            portal = state.billing.portal_sessions.get(portal_id)
            if portal is None:
                return self._html(404, render_notice(
                    "Not found", "There is no such billing portal session."))
            if request.method != "POST":
                try:
                    notice_key = decode_form(query).get("notice") if query else None
                except FormError:
                    notice_key = None
                notice = NOTICES.get(notice_key) if isinstance(notice_key, str) else None
                return self._html(200, self._portal_page(state, portal, notice=notice))
            try:
                form = decode_form(request.body)
            except FormError:
                form = {}
            first = len(state.events)
            done, error = self._portal_action(state, portal, form)
            if error is not None:
                return self._html(200, self._portal_page(state, portal, error=error))
            emitted = [e["id"] for e in state.events[first:]]
        # Outside the lock: the shop's webhook may call back into the API.
        if emitted and self.hosted_page_webhook_wait > 0:
            self._wait_first_attempts(emitted, self.hosted_page_webhook_wait)
        return self._redirect(f"/portal/{portal_id}?notice={done}")

    @staticmethod
    def _portal_page(state: StripeState, portal: dict[str, Any], *,
                     notice: str | None = None, error: str | None = None) -> str:
        customer = state.billing.customers[portal["customer"]]
        live = [s for s in reversed(state.billing.subscriptions.values())
                if s["customer"] == customer["id"]
                and s["status"] in subscriptions.LIVE_STATUSES]
        prices = [p for p in state.prices.values()
                  if p["active"] and p["type"] == "recurring"]
        return render_portal(portal, customer, live, prices, notice=notice, error=error)

    @staticmethod
    def _portal_action(state: StripeState, portal: dict[str, Any],
                       form: dict[str, Any]) -> tuple[str, str | None]:
        """Do one portal form's action: (notice key, None) or ("", error message)."""
        def field(name: str) -> str:
            value = form.get(name, "")
            return value.strip() if isinstance(value, str) else ""

        action = field("action")
        if action == "card":
            card = "".join(field("cardnumber").replace("-", " ").split())
            if card in _CARD_DECLINES:
                return "", _CARD_DECLINES[card]
            if card not in (_CARD_OK, _CARD_SAVED_BUT_DECLINES):
                return "", ("Your card number is incorrect. In the emulator use "
                            "4242 4242 4242 4242.")
            subscriptions.update_card(state, portal["customer"], card[-4:])
            if card == _CARD_SAVED_BUT_DECLINES:
                for sub in state.billing.subscriptions.values():
                    if (sub["customer"] == portal["customer"]
                            and sub["status"] in subscriptions.LIVE_STATUSES):
                        state.billing.renewal_failures[sub["id"]] = RenewalFailure()
            return "card", None
        found = state.billing.subscriptions.get(field("subscription"))
        if found is None or found["customer"] != portal["customer"]:
            return "", "There is no such subscription for this customer."
        sub = found
        try:
            if action == "cancel":
                subscriptions.set_cancel_at_period_end(state, sub, True, request=None)
                return "canceled", None
            if action == "resume":
                subscriptions.set_cancel_at_period_end(state, sub, False, request=None)
                return "resumed", None
            if action == "switch":
                price = state.prices.get(field("price"))
                if price is None:
                    return "", "There is no such price."
                subscriptions.switch_price(state, sub, sub["items"]["data"][0]["id"],
                                           price, request=None)
                return "switched", None
        except ApiError as exc:
            return "", exc.message
        return "", "Unknown action."
