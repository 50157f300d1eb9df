"""The stand-in hosted payment page a Checkout Session's ``url`` points at.

``GET /pay/<session_id>`` shows the session's items and a card form
(:func:`~.page.render_checkout`); ``POST`` pays with the test cards of
:mod:`.cards` and redirects to ``success_url``, or cancels to ``cancel_url``.
Pages for a session that is paid, expired or not ``hosted_page`` say so.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable

from .api import ApiError, checkout_sessions
from .api.card_outcomes import card_number
from .cards import CARD_OK, payment_error
from .forms import FormError, decode_form
from .page import render_checkout, render_notice
from .server import HttpRequest, HttpResponse, html_response, redirect_response

if TYPE_CHECKING:
    from .api import StripeState

__all__ = ["HostedCheckoutPage", "charges_now", "form_field", "method_not_allowed"]


def form_field(form: dict[str, Any], name: str) -> str:
    """A submitted text field, stripped; ``""`` when missing or not text."""
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def charges_now(state: StripeState, session: dict[str, Any]) -> bool:
    """Whether paying ``session`` charges the card at once (not a free trial)."""
    data = state.billing.session_subscription_data.get(session["id"], {})
    return bool(session["amount_total"]) and not (
        session["mode"] == "subscription" and data.get("trial_period_days"))


def method_not_allowed() -> HttpResponse:
    """What every page of the emulator answers to a method other than GET or POST."""
    return html_response(405, render_notice("Method not allowed", "Use GET or POST."),
                         [("Allow", "GET, HEAD, POST")])


class HostedCheckoutPage:
    """Serves ``/pay/<session_id>``.

    :param lock: the emulator's lock.
    :param state: the objects the page shows and changes.
    :param after_payment: called outside the lock with the id of the
        ``checkout.session.completed`` event before the page redirects (the
        emulator waits there for the webhook's first attempt).
    """

    def __init__(self, *, lock: threading.RLock, state: StripeState,
                 after_payment: Callable[[str], None]) -> None:
        self._lock = lock
        self._state = state
        self._after_payment = after_payment

    def handle(self, request: HttpRequest, session_id: str) -> HttpResponse:
        if request.method not in ("GET", "HEAD", "POST"):
            return method_not_allowed()
        with self._lock:
            try:
                session = checkout_sessions.stored_session(self._state, session_id)
            except ApiError:
                return html_response(404, render_notice(
                    "Not found", "There is no such Checkout Session."))
            if session["status"] != "open" or session["ui_mode"] != "hosted_page":
                return html_response(200, _closed_notice(session))
            if request.method != "POST":
                items = self._state.line_items[session_id]
                return html_response(200, render_checkout(session, items,
                                                          action=f"/pay/{session_id}"))
            try:
                form = decode_form(request.body)
            except FormError:
                form = {}
            paid = self._submit(session, form)
            if isinstance(paid, HttpResponse):
                return paid
            success_url = session["success_url"]
        # Outside the lock: the receiver may call back into the emulator's API.
        self._after_payment(paid)
        if success_url:
            return redirect_response(success_url.replace("{CHECKOUT_SESSION_ID}",
                                                         session_id))
        return html_response(200, render_notice("Payment complete",
                                                "Thank you: this payment is complete."))

    def _submit(self, session: dict[str, Any], form: dict[str, Any]) -> HttpResponse | str:
        """Cancel or pay (under the lock): the page to show, or once paid the id of
        the ``checkout.session.completed`` event."""
        session_id = session["id"]
        if form_field(form, "action") == "cancel":
            if session["cancel_url"]:
                return redirect_response(session["cancel_url"])
            return html_response(200, render_notice("Payment cancelled",
                                                    "You cancelled this payment."))
        email = form_field(form, "email")
        delayed = bool(form_field(form, "delayed"))
        card = form_field(form, "cardnumber")
        error = payment_error(email, card, delayed,
                              charges_now=charges_now(self._state, session))
        if error is not None:
            items = self._state.line_items[session_id]
            return html_response(200, render_checkout(
                session, items, action=f"/pay/{session_id}", error=error, email=email,
                cardnumber=card))
        event = checkout_sessions.complete(self._state, session_id, email=email,
                                           delayed=delayed, card=card_number(card)
                                           if not delayed else CARD_OK)
        return str(event["id"])


def _closed_notice(session: dict[str, Any]) -> str:
    if session["status"] == "complete":
        return render_notice("Already paid", "This Checkout Session is already complete.")
    if session["status"] == "expired":
        return render_notice("Session expired", "This Checkout Session has expired.")
    return render_notice("Not available",
                         f"This session uses ui_mode {session['ui_mode']}, which has "
                         "no hosted page.")
