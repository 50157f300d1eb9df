"""Checkout Sessions and their line items: ``/v1/checkout/sessions`` and the
transitions the hosted page and the test helpers drive (complete, settle, expire).

A create request is judged by Stripe's schema and then by
:data:`~.checkout_session_rules.CREATE_RULES` (what the schema cannot say), both in
:func:`~.validation.validate_params`, before :func:`create_session` is called with
the coerced values; line items, which look prices up and may create products, are
resolved by the handler itself (:mod:`.checkout_line_items`). A session
starts as the SDK class's blank object and echoes each accepted option in the
session's shape.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from stripe.checkout import Session

from ... import schema
from . import checkout_payments
from .checkout_line_items import resolve_line_items
from .errors import ApiError, invalid, no_such
from .events import emit
from .ids import new_id
from .lists import filter_created, list_object
from .params import as_currency, as_dict, as_str, expand_list
from .shapes import blank, declared, shaped

if TYPE_CHECKING:
    from .routes import ApiCall
    from .state import StripeState

__all__ = [
    "NOT_ON_THE_SESSION",
    "complete",
    "create_session",
    "expire",
    "expire_session",
    "list_line_items",
    "list_sessions",
    "retrieve_session",
    "settle",
    "stored_session",
]

# -- handlers --------------------------------------------------------------------

_COMPUTED = frozenset({"line_items", "mode", "currency", "expand", "ui_mode"})
"""Create parameters the session does not simply echo back."""

NOT_ON_THE_SESSION = {
    "customer_update": "applies to the Customer when the session completes",
    "expand": "shapes the response",
    "payment_intent_data": "passed to the PaymentIntent",
    "payment_method_configuration": "chooses the methods; the session carries "
                                    "payment_method_configuration_details",
    "payment_method_data": "passed to the PaymentMethod",
    "setup_intent_data": "passed to the SetupIntent",
    "subscription_data": "passed to the Subscription",
}
"""Create parameters that are not fields of the session, and where they go; every
other one is echoed in the session's shape. A test fails when the SDK adds a create
parameter that is neither."""


def _echo(valid: dict[str, Any]) -> dict[str, Any]:
    """The accepted create parameters that are session fields, in the session's shape
    (``custom_fields`` come back with every key Stripe's carry)."""
    fields = declared(Session)
    return {name: shaped(fields[name], value) for name, value in valid.items()
            if name in fields and name not in _COMPUTED}


def create_session(state: StripeState, call: ApiCall) -> dict[str, Any]:
    params, valid, now = call.params, call.valid, call.now
    mode: str = valid.get("mode") or schema.session_mode(valid, state.recurring_price)
    ui_mode: str = valid.get("ui_mode", "hosted_page")
    customer: str | None = valid.get("customer")
    items = resolve_line_items(state, params.get("line_items", []), mode)
    currency: str | None = items[0]["currency"] if items else None
    if "currency" in params:
        currency = as_currency(params["currency"], "currency")
    amount = sum(int(i["amount_total"]) for i in items) if items else None
    if customer is not None and customer not in state.billing.customers:
        raise ApiError(f"No such customer: '{customer}'", param="customer",
                       code="resource_missing")

    session_id = new_id("cs_test_a1", 56)
    session = blank(Session)
    session.update(
        custom_fields=[],
        customer_creation=None if mode == "subscription" or customer else "if_required",
        discounts=[],
        excluded_payment_method_types=[],
        metadata={},
        payment_method_collection="always" if mode != "payment" else None,
        payment_method_options={},
        phone_number_collection={"enabled": False},
        shipping_options=[],
    )
    session.update(_echo(valid))
    session.update(
        id=session_id,
        object="checkout.session",
        amount_subtotal=amount,
        amount_total=amount,
        created=now,
        currency=currency,
        customer=customer,
        expires_at=valid.get("expires_at", now + 24 * 3600),
        livemode=False,
        mode=mode,
        payment_method_types=["card"],
        payment_status="no_payment_required" if mode == "setup" else "unpaid",
        status="open",
        total_details={"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0,
                       "breakdown": None},
        ui_mode=ui_mode,
        url=f"{state.api_base}/pay/{session_id}" if ui_mode == "hosted_page" else None,
    )
    if ui_mode != "hosted_page":
        session["client_secret"] = f"{session_id}_secret_{new_id('', 24)}"
    if ui_mode == "embedded_page" and session.get("redirect_on_completion") is None:
        session["redirect_on_completion"] = "always"
    state.sessions[session_id] = session
    state.line_items[session_id] = items
    state.billing.session_subscription_data[session_id] = valid.get("subscription_data", {})
    return _session_view(state, session, expand_list(params))


def _session_view(state: StripeState, session: dict[str, Any],
                  expand: list[str]) -> dict[str, Any]:
    view = copy.deepcopy(session)
    if "line_items" in expand:
        view["line_items"] = list_object(
            state.line_items[session["id"]],
            f"/v1/checkout/sessions/{session['id']}/line_items",
            {"limit": "100"},
        )
    return view


def stored_session(state: StripeState, session_id: str,
                   param: str = "session") -> dict[str, Any]:
    """The stored session (not a copy), expired lazily once past ``expires_at``.

    A missing one is a 404 on ``param`` "session" from every endpoint, the name of
    the path parameter (``/v1/checkout/sessions/{session}``) in Stripe's spec."""
    session = state.sessions.get(session_id)
    if session is None:
        raise no_such("checkout.session", session_id, param)
    if session["status"] == "open" and state.now() >= session["expires_at"]:
        expire(state, session_id, request=None)
    return session


def retrieve_session(state: StripeState, call: ApiCall) -> dict[str, Any]:
    return _session_view(state, stored_session(state, call.ids[0]),
                         expand_list(call.params))


def list_sessions(state: StripeState, call: ApiCall) -> dict[str, Any]:
    params = call.params
    for session_id in list(state.sessions):
        stored_session(state, session_id)
    sessions = list(reversed(state.sessions.values()))
    if "status" in params:
        status = as_str(params["status"], "status")
        sessions = [s for s in sessions if s["status"] == status]
    for key in ("customer", "payment_intent", "subscription", "client_reference_id"):
        if key in params:
            wanted = as_str(params[key], key)
            sessions = [s for s in sessions if s.get(key) == wanted]
    if "customer_details" in params:
        details = as_dict(params["customer_details"], "customer_details")
        email = as_str(details.get("email", ""), "customer_details[email]")
        sessions = [s for s in sessions if (s["customer_details"] or {}).get("email") == email]
    return list_object(filter_created(sessions, params), "/v1/checkout/sessions", params)


def list_line_items(state: StripeState, call: ApiCall) -> dict[str, Any]:
    session_id = call.ids[0]
    stored_session(state, session_id, "session")
    return list_object(state.line_items[session_id],
                       f"/v1/checkout/sessions/{session_id}/line_items", call.params)


def expire_session(state: StripeState, call: ApiCall) -> dict[str, Any]:
    session_id = call.ids[0]
    session = stored_session(state, session_id, "session")
    if session["status"] != "open":
        raise invalid("Only Checkout Sessions with a status of `open` can be expired. "
                      f"This session has status `{session['status']}`.", "session",
                      "checkout_session_not_open")
    expire(state, session_id, request=call.request)
    return _session_view(state, session, expand_list(call.params))


# -- transitions (used by the hosted page and the test helpers) ---------------------

def expire(state: StripeState, session_id: str, *,
           request: dict[str, Any] | None) -> dict[str, Any]:
    """Expire an open session and emit ``checkout.session.expired``."""
    session = state.sessions[session_id]
    if session["status"] != "open":
        raise invalid(f"Checkout Session {session_id} is {session['status']}, not open.",
                      "session")
    session["status"] = "expired"
    session["url"] = None
    return emit(state, "checkout.session.expired", session, request)


def complete(
    state: StripeState, session_id: str, *, email: str | None = None, delayed: bool = False,
    card: str = "4242424242424242",
) -> dict[str, Any]:
    """Take payment for an open session; emit ``checkout.session.completed``.

    ``delayed`` completes it with ``payment_status: unpaid``, as a bank debit
    would; :func:`settle` later says whether the money arrived. ``card`` (digits)
    is the card a subscription saves (see :mod:`.card_outcomes`).
    """
    session = stored_session(state, session_id, "session")
    if session["status"] != "open":
        raise invalid(f"Checkout Session {session_id} is {session['status']}, not open.",
                      "session")
    mode = session["mode"]
    session["status"] = "complete"
    session["url"] = None
    email = email or session["customer_email"] or "customer@example.com"
    session["customer_details"] = {
        "address": None,
        "business_name": None,
        "email": email,
        "individual_name": None,
        "name": None,
        "phone": None,
        "tax_exempt": "none",
        "tax_ids": [],
    }
    if mode == "payment":
        if session["amount_total"] == 0:
            session["payment_status"] = "no_payment_required"
        else:
            session["payment_status"] = "unpaid" if delayed else "paid"
    elif mode == "subscription":
        session["payment_status"] = "unpaid" if delayed else "paid"
    checkout_payments.on_complete(state, session, delayed=delayed, card=card)
    return emit(state, "checkout.session.completed", session, None)


def settle(state: StripeState, session_id: str, *, succeeded: bool) -> dict[str, Any]:
    """Finish a delayed payment: emit ``async_payment_succeeded`` or ``_failed``."""
    session = stored_session(state, session_id, "session")
    if session["status"] != "complete" or session["payment_status"] != "unpaid":
        raise invalid(
            f"Checkout Session {session_id} has no pending delayed payment (status "
            f"{session['status']}, payment_status {session['payment_status']}).",
            "session",
        )
    checkout_payments.on_settle(state, session, succeeded=succeeded)
    if succeeded:
        session["payment_status"] = "paid"
        kind = "checkout.session.async_payment_succeeded"
    else:
        kind = "checkout.session.async_payment_failed"
    return emit(state, kind, session, None)
