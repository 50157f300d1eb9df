"""The stand-in customer portal a billing portal session's ``url`` points at.

``GET /portal/<id>`` shows the customer's live subscriptions
(:func:`~.portal.render_portal`); each ``POST`` does one action (cancel at the
period end, resume, switch price, save a card) and redirects back with
``?notice=<key>``, or shows the page again with the reason it was refused.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable

from .api.errors import ApiError
from .api.objects import RenewalFailure
from .api.subscription_changes import set_cancel_at_period_end, switch_price, update_card
from .api.subscription_objects import LIVE_STATUSES
from .forms import FormError, decode_form
from .hosted_checkout import form_field, method_not_allowed
from .page import render_notice
from .portal import NOTICES, render_portal
from .server import HttpRequest, HttpResponse, html_response, redirect_response

if TYPE_CHECKING:
    from .api import StripeState

__all__ = ["HostedPortalPage"]

_CARD_OK = "4242424242424242"
_CARD_SAVED_BUT_DECLINES = "4000000000000341"
_CARD_DECLINES = {
    "4000000000000002": "Your card was declined.",
    "4000000000009995": "Your card has insufficient funds.",
    "4000000000000069": "Your card has expired.",
}


class HostedPortalPage:
    """Serves ``/portal/<portal_session_id>``.

    :param lock: the emulator's lock.
    :param state: the objects the page shows and changes.
    :param after_action: called outside the lock with the ids of the events an
        action emitted, before the redirect (the emulator waits there for their
        webhooks' first attempts).
    """

    def __init__(self, *, lock: threading.RLock, state: StripeState,
                 after_action: Callable[[list[str]], None]) -> None:
        self._lock = lock
        self._state = state
        self._after_action = after_action

    def handle(self, request: HttpRequest, portal_id: str, query: str) -> HttpResponse:
        if request.method not in ("GET", "HEAD", "POST"):
            return method_not_allowed()
        state = self._state
        with self._lock:
            portal = state.billing.portal_sessions.get(portal_id)
            if portal is None:
                return html_response(404, render_notice(
                    "Not found", "There is no such billing portal session."))
            if request.method != "POST":
                return html_response(200, _page(state, portal, notice=_notice(query)))
            try:
                form = decode_form(request.body)
            except FormError:
                form = {}
            first = len(state.events)
            done, error = _do_action(state, portal, form)
            if error is not None:
                return html_response(200, _page(state, portal, error=error))
            emitted = [e["id"] for e in state.events[first:]]
        # Outside the lock: the shop's webhook may call back into the API.
        self._after_action(emitted)
        return redirect_response(f"/portal/{portal_id}?notice={done}")


def _notice(query: str) -> str | None:
    """The message for ``?notice=<key>`` (``None`` for no key or an unknown one)."""
    try:
        key = decode_form(query).get("notice") if query else None
    except FormError:
        key = None
    return NOTICES.get(key) if isinstance(key, str) else None


def _page(state: StripeState, portal: dict[str, Any], *,
          notice: str | None = None, error: str | None = None) -> str:
    customer = state.billing.customers[portal["customer"]]
    live = [s for s in reversed(state.billing.subscriptions.values())
            if s["customer"] == customer["id"]
            and s["status"] in LIVE_STATUSES]
    prices = [p for p in state.prices.values()
              if p["active"] and p["type"] == "recurring"]
    return render_portal(portal, customer, live, prices, notice=notice, error=error)


def _do_action(state: StripeState, portal: dict[str, Any],
               form: dict[str, Any]) -> tuple[str, str | None]:
    """Do one portal form's action: (notice key, None) or ("", error message)."""
    action = form_field(form, "action")
    if action == "card":
        return _save_card(state, portal["customer"], form_field(form, "cardnumber"))
    sub = state.billing.subscriptions.get(form_field(form, "subscription"))
    if sub is None or sub["customer"] != portal["customer"]:
        return "", "There is no such subscription for this customer."
    try:
        if action == "cancel":
            set_cancel_at_period_end(state, sub, True, request=None)
            return "canceled", None
        if action == "resume":
            set_cancel_at_period_end(state, sub, False, request=None)
            return "resumed", None
        if action == "switch":
            price = state.prices.get(form_field(form, "price"))
            if price is None:
                return "", "There is no such price."
            switch_price(state, sub, sub["items"]["data"][0]["id"],
                                       price, request=None)
            return "switched", None
    except ApiError as exc:
        return "", exc.message
    return "", "Unknown action."


def _save_card(state: StripeState, customer_id: str, number: str) -> tuple[str, str | None]:
    card = "".join(number.replace("-", " ").split())
    if card in _CARD_DECLINES:
        return "", _CARD_DECLINES[card]
    if card not in (_CARD_OK, _CARD_SAVED_BUT_DECLINES):
        return "", ("Your card number is incorrect. In the emulator use "
                    "4242 4242 4242 4242.")
    update_card(state, customer_id, card[-4:])
    if card == _CARD_SAVED_BUT_DECLINES:
        for sub in state.billing.subscriptions.values():
            if (sub["customer"] == customer_id
                    and sub["status"] in LIVE_STATUSES):
                state.billing.renewal_failures[sub["id"]] = RenewalFailure()
    return "card", None
