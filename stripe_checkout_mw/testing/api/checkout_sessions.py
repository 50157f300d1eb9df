"""Checkout Sessions and their line items: ``/v1/checkout/sessions`` and the
transitions the hosted page and the test helpers drive (complete, settle, expire).

The top-level parameters of a create request are checked by :data:`CREATE_RULES`
(one row per parameter, run by :func:`~.validation.validate_params` before
:func:`create_session` is called with their coerced values); line items, which
look prices up and may create products, are checked by the handler itself.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any

from . import checkout_payments
from .errors import ApiError, invalid, missing, no_such
from .events import emit
from .ids import new_id
from .lists import filter_created, list_object
from .params import (
    LIST_PARAMS,
    as_bool,
    as_currency,
    as_dict,
    as_int,
    as_list,
    as_metadata,
    as_str,
    as_url,
    check_keys,
    expand_list,
    sub,
)
from .prices import new_price, parse_amount, parse_recurring, product_for
from .rules import ParamRule, RuleContext, plain
from .version import API_VERSION

if TYPE_CHECKING:
    from .state import ApiCall, StripeState

__all__ = [
    "CREATE_PARAMS",
    "CREATE_RULES",
    "LINE_ITEM_PARAMS",
    "LIST_FILTERS",
    "MODES",
    "OLD_UI_MODES",
    "PRICE_DATA_PARAMS",
    "REMOVED_CREATE_PARAMS",
    "UI_MODES",
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

# Create parameters of POST /v1/checkout/sessions that the emulator accepts. Anything
# else is rejected by name, as Stripe does, so a typo fails in tests, not in production.
CREATE_PARAMS = frozenset(
    {
        "adaptive_pricing",
        "after_expiration",
        "allow_promotion_codes",
        "automatic_tax",
        "billing_address_collection",
        "cancel_url",
        "client_reference_id",
        "consent_collection",
        "currency",
        "custom_fields",
        "custom_text",
        "customer",
        "customer_creation",
        "customer_email",
        "customer_update",
        "discounts",
        "excluded_payment_method_types",
        "expand",
        "expires_at",
        "invoice_creation",
        "line_items",
        "locale",
        "metadata",
        "mode",
        "payment_intent_data",
        "payment_method_collection",
        "payment_method_configuration",
        "payment_method_options",
        "phone_number_collection",
        "redirect_on_completion",
        "return_url",
        "saved_payment_method_options",
        "setup_intent_data",
        "shipping_address_collection",
        "shipping_options",
        "submit_type",
        "subscription_data",
        "success_url",
        "tax_id_collection",
        "ui_mode",
        "wallet_options",
    }
)
REMOVED_CREATE_PARAMS = {
    "payment_method_types": (
        f". It can no longer be sent on create at API version {API_VERSION}: "
        "Stripe chooses payment methods dynamically; use "
        "excluded_payment_method_types to narrow them."
    ),
}
"""Parameters older API versions took, with the hint appended to "unknown"."""
LINE_ITEM_PARAMS = frozenset(
    {"adjustable_quantity", "dynamic_tax_rates", "metadata", "price", "price_data",
     "quantity", "tax_rates"}
)
PRICE_DATA_PARAMS = frozenset(
    {"currency", "product", "product_data", "recurring", "tax_behavior", "unit_amount",
     "unit_amount_decimal"}
)
LIST_FILTERS = LIST_PARAMS | {"client_reference_id", "customer", "customer_details",
                              "payment_intent", "payment_link", "status", "subscription"}
UI_MODES = frozenset({"hosted_page", "embedded_page", "elements", "form"})
OLD_UI_MODES = {"hosted": "hosted_page", "embedded": "embedded_page", "custom": "elements"}
MODES = frozenset({"payment", "subscription", "setup"})


# -- create parameters, one coercer per row of CREATE_RULES -----------------------

def _mode(value: Any, param: str, ctx: RuleContext) -> str:
    mode = as_str(value, param)
    if mode not in MODES:
        raise invalid(f"Invalid mode: must be one of {', '.join(sorted(MODES))}", param)
    return mode


def _ui_mode(value: Any, param: str, ctx: RuleContext) -> str:
    ui_mode = as_str(value, param)
    if ui_mode in OLD_UI_MODES:
        raise invalid(
            f"Invalid ui_mode: '{ui_mode}' is no longer supported at API version "
            f"{API_VERSION}; use '{OLD_UI_MODES[ui_mode]}'.",
            param,
        )
    if ui_mode not in UI_MODES:
        raise invalid(f"Invalid ui_mode: must be one of {', '.join(sorted(UI_MODES))}",
                      param)
    return ui_mode


def _customer(value: Any, param: str, ctx: RuleContext) -> str:
    customer = as_str(value, param)
    if not customer.startswith("cus_"):
        raise ApiError(f"No such customer: '{customer}'", param=param,
                       code="resource_missing")
    return customer


def _customer_email(value: Any, param: str, ctx: RuleContext) -> str:
    email = as_str(value, param)
    if "@" not in email:
        raise invalid("Invalid email address: " + email, param, "email_invalid")
    return email


def _client_reference_id(value: Any, param: str, ctx: RuleContext) -> str:
    text = as_str(value, param)
    if len(text) > 200:
        raise invalid("client_reference_id can be at most 200 characters.", param)
    return text


def _expires_at(value: Any, param: str, ctx: RuleContext) -> int:
    expires_at = as_int(value, param)
    if not ctx.now + 30 * 60 <= expires_at <= ctx.now + 24 * 3600:
        raise invalid("The `expires_at` timestamp must be between 30 minutes and "
                      "24 hours from Checkout Session creation.", param)
    return expires_at


def _subscription_data(value: Any, param: str, ctx: RuleContext) -> dict[str, Any]:
    if ctx.valid["mode"] != "subscription":
        raise invalid("subscription_data can only be used in `subscription` mode.", param)
    data = as_dict(value, param)
    if "trial_period_days" in data:
        as_int(data["trial_period_days"], sub(param, "trial_period_days"), 1)
    if "metadata" in data:
        data = {**data, "metadata": as_metadata(data["metadata"], sub(param, "metadata"))}
    return data


def _customer_creation(value: Any, param: str, ctx: RuleContext) -> str:
    if ctx.valid["mode"] == "subscription":
        raise invalid("customer_creation can only be used in `payment` and `setup` mode.",
                      param)
    creation = as_str(value, param)
    if creation not in ("always", "if_required"):
        raise invalid("Invalid customer_creation: must be one of always, if_required",
                      param)
    return creation


def _shipping_address_collection(value: Any, param: str,
                                 ctx: RuleContext) -> dict[str, Any]:
    data = as_dict(value, param)
    check_keys(data, frozenset({"allowed_countries"}), param)
    cparam = sub(param, "allowed_countries")
    if "allowed_countries" not in data:
        raise missing(cparam)
    countries = []
    for i, country in enumerate(as_list(data["allowed_countries"], cparam)):
        code = as_str(country, sub(cparam, i))
        if not re.fullmatch(r"[A-Z]{2}", code):
            raise invalid(f"Invalid country: {code}", sub(cparam, i))
        countries.append(code)
    return {"allowed_countries": countries}


def _automatic_tax(value: Any, param: str, ctx: RuleContext) -> dict[str, Any]:
    data = as_dict(value, param)
    check_keys(data, frozenset({"enabled", "liability"}), param)
    if "enabled" not in data:
        raise missing(sub(param, "enabled"))
    return {"enabled": as_bool(data["enabled"], sub(param, "enabled")), "liability": None,
            "provider": None, "status": None}


def _phone_number_collection(value: Any, param: str, ctx: RuleContext) -> dict[str, Any]:
    data = as_dict(value, param)
    return {"enabled": as_bool(data.get("enabled", "false"), sub(param, "enabled"))}


def _excluded_payment_method_types(value: Any, param: str, ctx: RuleContext) -> list[str]:
    return [as_str(v, sub(param, i)) for i, v in enumerate(as_list(value, param))]


CREATE_RULES: tuple[ParamRule, ...] = (
    ParamRule("mode", _mode, required=True),
    ParamRule("ui_mode", _ui_mode),
    ParamRule("success_url", plain(as_url)),
    ParamRule("cancel_url", plain(as_url)),
    ParamRule("customer", _customer, exclusive_with=("customer_email",)),
    ParamRule("customer_email", _customer_email),
    ParamRule("customer_creation", _customer_creation),
    ParamRule("client_reference_id", _client_reference_id),
    ParamRule("metadata", plain(as_metadata)),
    ParamRule("expires_at", _expires_at),
    ParamRule("subscription_data", _subscription_data),
    ParamRule("shipping_address_collection", _shipping_address_collection),
    ParamRule("automatic_tax", _automatic_tax),
    ParamRule("phone_number_collection", _phone_number_collection),
    ParamRule("allow_promotion_codes", plain(as_bool)),
    ParamRule("excluded_payment_method_types", _excluded_payment_method_types),
)
"""The top-level create parameters checked before line items, in Stripe's order."""


# -- line items --------------------------------------------------------------------

def _line_item(state: StripeState, raw: Any, index: int, mode: str) -> dict[str, Any]:
    param = sub("line_items", index)
    item = as_dict(raw, param)
    check_keys(item, LINE_ITEM_PARAMS, param)
    if "price" in item and "price_data" in item:
        raise invalid("You may only specify one of these parameters: price, price_data.",
                      param)
    if "price" in item:
        price_id = as_str(item["price"], sub(param, "price"))
        price = state.prices.get(price_id)
        if price is None:
            raise ApiError(f"No such price: '{price_id}'", param=sub(param, "price"),
                           code="resource_missing")
        if not price["active"]:
            raise invalid(f"The price specified ({price_id}) is inactive. This field "
                          "only accepts active prices.", sub(param, "price"))
    elif "price_data" in item:
        pparam = sub(param, "price_data")
        data = as_dict(item["price_data"], pparam)
        check_keys(data, PRICE_DATA_PARAMS, pparam)
        if "currency" not in data:
            raise missing(sub(pparam, "currency"))
        currency = as_currency(data["currency"], sub(pparam, "currency"))
        amount, decimal_text = parse_amount(data, pparam)
        recurring = (parse_recurring(data["recurring"], sub(pparam, "recurring"))
                     if "recurring" in data else None)
        product = product_for(state, data, pparam)
        # Inline prices exist only for this session, so lookups never return them.
        price = new_price(state, unit_amount=amount, unit_amount_decimal=decimal_text,
                          currency=currency, product=product, recurring=recurring,
                          active=False)
    else:
        raise ApiError("You must specify either `price` or `price_data` in each line "
                       "item.", param=param, code="parameter_missing")
    if "quantity" not in item:
        raise missing(sub(param, "quantity"))
    quantity = as_int(item["quantity"], sub(param, "quantity"), 1)
    if "adjustable_quantity" in item:
        as_dict(item["adjustable_quantity"], sub(param, "adjustable_quantity"))
    if mode == "payment" and price["type"] == "recurring":
        raise invalid(
            "You specified `payment` mode but passed a recurring price. Either switch "
            "to `subscription` mode or use only one-time prices.",
            sub(param, "price") if "price" in item else sub(param, "price_data"),
        )
    product_obj = state.products.get(price["product"])
    amount_each = int(price["unit_amount"] or 0)
    return {
        "id": new_id("li_"),
        "object": "item",
        "amount_discount": 0,
        "amount_subtotal": amount_each * quantity,
        "amount_tax": 0,
        "amount_total": amount_each * quantity,
        "currency": price["currency"],
        "description": product_obj["name"] if product_obj else None,
        "price": copy.deepcopy(price),
        "quantity": quantity,
    }


def _line_items(state: StripeState, raw_items: Any, mode: str) -> list[dict[str, Any]]:
    """The session's line items, with the per-mode count rules."""
    raw = as_list(raw_items, "line_items")
    if mode == "setup" and raw:
        raise invalid("line_items cannot be used in `setup` mode.", "line_items")
    if mode in ("payment", "subscription") and not raw:
        raise ApiError(f"line_items is required in `{mode}` mode.", param="line_items",
                       code="parameter_missing")
    items = [_line_item(state, item, index, mode) for index, item in enumerate(raw)]
    recurring_count = sum(1 for i in items if i["price"]["type"] == "recurring")
    one_time_count = len(items) - recurring_count
    if mode == "payment" and len(items) > 100:
        raise invalid("You may only specify up to 100 line items in `payment` mode.",
                      "line_items")
    if mode == "subscription":
        if recurring_count == 0:
            raise invalid("You must provide at least one recurring price in "
                          "`subscription` mode when using prices.", "line_items")
        if recurring_count > 20 or one_time_count > 20:
            raise invalid("You may only specify up to 20 recurring and 20 one-time "
                          "line items in `subscription` mode.", "line_items")
    currencies = sorted({i["currency"] for i in items})
    if len(currencies) > 1:
        raise invalid("All line items must have the same currency; got "
                      f"{', '.join(currencies)}.", "line_items")
    return items


# -- handlers --------------------------------------------------------------------

def create_session(state: StripeState, call: ApiCall) -> dict[str, Any]:
    params, valid, now = call.params, call.valid, call.now
    mode: str = valid["mode"]
    ui_mode: str = valid.get("ui_mode", "hosted_page")
    customer: str | None = valid.get("customer")
    items = _line_items(state, params.get("line_items", []), mode)
    currency: str | None = items[0]["currency"] if items else None
    if "currency" in params:
        currency = as_currency(params["currency"], "currency")
    amount = sum(int(i["amount_total"]) for i in items) if items else None
    if customer is not None and customer not in state.billing.customers:
        raise ApiError(f"No such customer: '{customer}'", param="customer",
                       code="resource_missing")

    session_id = new_id("cs_test_a1", 56)
    session: dict[str, Any] = {
        "id": session_id,
        "object": "checkout.session",
        "adaptive_pricing": None,
        "after_expiration": None,
        "allow_promotion_codes": valid.get("allow_promotion_codes"),
        "amount_subtotal": amount,
        "amount_total": amount,
        "automatic_tax": valid.get("automatic_tax") or {
            "enabled": False, "liability": None, "provider": None, "status": None},
        "billing_address_collection": params.get("billing_address_collection"),
        "cancel_url": valid.get("cancel_url"),
        "client_reference_id": valid.get("client_reference_id"),
        "client_secret": None,
        "collected_information": None,
        "consent": None,
        "consent_collection": params.get("consent_collection"),
        "created": now,
        "currency": currency,
        "custom_fields": [],
        "custom_text": params.get("custom_text") or {
            "after_submit": None, "shipping_address": None, "submit": None,
            "terms_of_service_acceptance": None},
        "customer": customer,
        "customer_creation": (None if mode == "subscription" or customer
                              else valid.get("customer_creation", "if_required")),
        "customer_details": None,
        "customer_email": valid.get("customer_email"),
        "discounts": [],
        "excluded_payment_method_types": valid.get("excluded_payment_method_types", []),
        "expires_at": valid.get("expires_at", now + 24 * 3600),
        "invoice": None,
        "invoice_creation": None,
        "livemode": False,
        "locale": params.get("locale"),
        "metadata": valid.get("metadata", {}),
        "mode": mode,
        "origin_context": None,
        "payment_intent": None,
        "payment_link": None,
        "payment_method_collection": "always" if mode != "payment" else None,
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "payment_status": "no_payment_required" if mode == "setup" else "unpaid",
        "phone_number_collection": valid.get("phone_number_collection", {"enabled": False}),
        "recovered_from": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": valid.get("shipping_address_collection"),
        "shipping_cost": None,
        "shipping_options": [],
        "status": "open",
        "submit_type": params.get("submit_type"),
        "subscription": None,
        "success_url": valid.get("success_url"),
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": ui_mode,
        "url": f"{state.api_base}/pay/{session_id}" if ui_mode == "hosted_page" else None,
        "wallet_options": None,
    }
    if ui_mode != "hosted_page":
        session["client_secret"] = f"{session_id}_secret_{new_id('', 24)}"
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


def stored_session(state: StripeState, session_id: str, param: str = "id") -> dict[str, Any]:
    """The stored session (not a copy), expired lazily once past ``expires_at``."""
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
        check_keys(details, frozenset({"email"}), "customer_details")
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
    state: StripeState, session_id: str, *, email: str | None = None, delayed: bool = False
) -> dict[str, Any]:
    """Take payment for an open session; emit ``checkout.session.completed``.

    ``delayed`` completes it with ``payment_status: unpaid``, as a bank debit
    would; :func:`settle` later says whether the money arrived.
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
    checkout_payments.on_complete(state, session, delayed=delayed)
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
