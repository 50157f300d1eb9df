"""Subscriptions: ``/v1/subscriptions`` (retrieve, list, update, cancel) and the
life cycle the hosted page, the billing portal and the emulator's clock drive.

A paid subscription-mode Checkout Session calls :func:`create_from_session`: the
subscription is created ``incomplete`` (``customer.subscription.created``), its
first invoice (``billing_reason: subscription_create``) is created, finalized and
paid, and the subscription turns ``active`` (``customer.subscription.updated``).
With ``subscription_data[trial_period_days]`` it starts ``trialing`` and its first
invoice bills only the one-time items. The current period lives on each item
(``items.data[].current_period_start/_end``), as at Stripe since 2025-03-31.

What time does is :mod:`.subscription_clock`; the changes a customer or the
shop asks for are :mod:`.subscription_changes`; the object, its items and periods
are :mod:`.subscription_objects`.

Every change emits ``customer.subscription.updated`` with ``previous_attributes``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import invoices
from .errors import invalid
from .events import emit
from .ids import new_id
from .lists import filter_created, list_object
from .params import (
    as_bool,
    as_dict,
    as_metadata,
    as_str,
    check_keys,
    expand_list,
    sub,
)
from .rules import ParamRule, RuleContext, plain
from .subscription_changes import cancel_now, set_cancel_at_period_end
from .subscription_clock import announce_trial
from .subscription_objects import (
    DAY,
    STATUSES,
    emit_updated,
    new_item,
    new_payment_method,
    new_subscription,
    period_end,
    stored_subscription,
)
from .subscription_updates import change_items

if TYPE_CHECKING:
    from .routes import ApiCall
    from .state import StripeState

__all__ = [
    "CANCEL_RULES",
    "UPDATE_RULES",
    "cancel_subscription",
    "create_from_session",
    "list_subscriptions",
    "retrieve_subscription",
    "settle_first_invoice",
    "update_subscription",
]

_UPDATE_SUPPORTED = frozenset({"cancel_at_period_end", "cancellation_details",
                               "description", "expand", "items", "metadata",
                               "payment_behavior", "proration_behavior",
                               "proration_date"})
_PRORATION = frozenset({"always_invoice", "create_prorations", "none"})


def _proration(value: Any, param: str, ctx: RuleContext) -> str:
    text = as_str(value, param)
    if text not in _PRORATION:
        raise invalid(f"Invalid proration_behavior: must be one of "
                      f"{', '.join(sorted(_PRORATION))}", param)
    return text


def _cancellation_details(value: Any, param: str, ctx: RuleContext) -> dict[str, Any]:
    data = as_dict(value, param)
    check_keys(data, frozenset({"comment", "feedback"}), param)
    return {key: as_str(v, sub(param, key)) for key, v in data.items()}


UPDATE_RULES: tuple[ParamRule, ...] = (
    ParamRule("cancel_at_period_end", plain(as_bool)),
    ParamRule("metadata", plain(as_metadata)),
    ParamRule("description", plain(as_str)),
    ParamRule("proration_behavior", _proration),
    ParamRule("cancellation_details", _cancellation_details),
)
CANCEL_RULES: tuple[ParamRule, ...] = (
    ParamRule("invoice_now", plain(as_bool)),
    ParamRule("prorate", plain(as_bool)),
    ParamRule("cancellation_details", _cancellation_details),
)


def create_from_session(
    state: StripeState,
    session: dict[str, Any],
    line_items: Sequence[dict[str, Any]],
    *,
    delayed: bool,
    card: str = "4242424242424242",
) -> dict[str, Any]:
    """The subscription and first invoice a completed subscription-mode session makes.

    ``session["customer"]`` must already be set. Returns the stored subscription;
    ``latest_invoice`` is its first invoice. With ``delayed`` the invoice stays
    open and the subscription ``incomplete`` until :func:`settle_first_invoice`.
    """
    now = state.now()
    data = state.billing.session_subscription_data.get(session["id"], {})
    trial_days = int(data["trial_period_days"]) if "trial_period_days" in data else None
    trial_end = now + trial_days * DAY if trial_days else None
    subscription_id = new_id("sub_")
    items, one_time = [], []
    for line in line_items:
        price = line["price"]
        if price["type"] == "recurring":
            end = trial_end if trial_end is not None else period_end(now, price, now)
            items.append(new_item(subscription_id, price, int(line["quantity"]), now, end, now))
        else:
            one_time.append((price, int(line["quantity"])))
    payment_method = new_payment_method(state, session["customer"], card[-4:])
    subscription = new_subscription(
        subscription_id, session, items, now=now, trial_end=trial_end,
        payment_method=payment_method["id"], metadata=dict(data.get("metadata") or {}))
    state.billing.subscriptions[subscription_id] = subscription
    first = invoices.new_invoice(state, subscription, billing_reason="subscription_create",
                                 one_time=one_time, free=trial_end is not None)
    subscription["latest_invoice"] = first["id"]
    emit(state, "customer.subscription.created", subscription, None)
    invoices.announce(state, first)
    invoices.finalize(state, first)
    if not delayed or first["amount_due"] == 0:
        _pay_first(state, subscription, first)
    announce_trial(state, subscription)
    return subscription


def _pay_first(state: StripeState, subscription: dict[str, Any],
               first: dict[str, Any]) -> None:
    invoices.attempt(state, first, succeeds=True, next_attempt=None)
    if subscription["status"] == "incomplete":
        subscription["status"] = "active"
        emit_updated(state, subscription, {"status": "incomplete"})


def settle_first_invoice(state: StripeState, subscription_id: str, *,
                         succeeded: bool) -> None:
    """A delayed first payment arrived (``active``) or failed (stays ``incomplete``)."""
    subscription = state.billing.subscriptions[subscription_id]
    first = state.billing.invoices[subscription["latest_invoice"]]
    if first["status"] != "open":
        return
    if succeeded:
        _pay_first(state, subscription, first)
    else:
        invoices.attempt(state, first, succeeds=False, next_attempt=None)


# -- endpoints ---------------------------------------------------------------------

def _view(state: StripeState, subscription: dict[str, Any],
          expand: list[str]) -> dict[str, Any]:
    view = copy.deepcopy(subscription)
    if "latest_invoice" in expand and subscription["latest_invoice"]:
        view["latest_invoice"] = copy.deepcopy(
            state.billing.invoices[subscription["latest_invoice"]])
    if "customer" in expand:
        view["customer"] = copy.deepcopy(state.billing.customers[subscription["customer"]])
    return view


def retrieve_subscription(state: StripeState, call: ApiCall) -> dict[str, Any]:
    return _view(state, stored_subscription(state, call.ids[0]), expand_list(call.params))


def list_subscriptions(state: StripeState, call: ApiCall) -> dict[str, Any]:
    params = call.params
    subscriptions = list(reversed(state.billing.subscriptions.values()))
    status = as_str(params["status"], "status") if "status" in params else None
    if status is None:
        subscriptions = [s for s in subscriptions if s["status"] != "canceled"]
    elif status == "ended":
        subscriptions = [s for s in subscriptions
                         if s["status"] in ("canceled", "incomplete_expired")]
    elif status != "all":
        if status not in STATUSES:
            raise invalid(f"Invalid status: must be one of all, ended, "
                          f"{', '.join(sorted(STATUSES))}", "status")
        subscriptions = [s for s in subscriptions if s["status"] == status]
    if "customer" in params:
        wanted = as_str(params["customer"], "customer")
        subscriptions = [s for s in subscriptions if s["customer"] == wanted]
    if "price" in params:
        wanted = as_str(params["price"], "price")
        subscriptions = [s for s in subscriptions
                         if any(i["price"]["id"] == wanted for i in s["items"]["data"])]
    if "test_clock" in params:
        subscriptions = []  # no subscription of the emulator is on a test clock
    expand = [e[len("data."):] for e in expand_list(params) if e.startswith("data.")]
    page = list_object(filter_created(subscriptions, params), "/v1/subscriptions", params)
    page["data"] = [_view(state, state.billing.subscriptions[s["id"]], expand)
                    for s in page["data"]]
    return page


def update_subscription(state: StripeState, call: ApiCall) -> dict[str, Any]:
    subscription = stored_subscription(state, call.ids[0])
    params, valid = call.params, call.valid
    for name in params:
        if name not in _UPDATE_SUPPORTED:
            raise invalid(f"The emulator does not support updating {name} of a "
                          "subscription.", name)
    if "cancel_at_period_end" in valid and subscription["schedule"] is not None:
        raise invalid(f"The subscription is managed by the subscription schedule "
                      f"`{subscription['schedule']}`, and updating any cancelation "
                      "behavior directly is not allowed. Please update the schedule "
                      "instead.", "cancel_at_period_end")
    if "items" in valid:
        change_items(state, subscription, valid, call.request)
    if "metadata" in valid or "description" in valid:
        previous: dict[str, Any] = {k: subscription[k] for k in ("metadata", "description")
                                    if k in valid}
        if "metadata" in valid:
            # Keys sent empty are removed; the others are merged, as at Stripe.
            merged = {**subscription["metadata"], **valid["metadata"]}
            subscription["metadata"] = {k: v for k, v in merged.items() if v != ""}
            if params["metadata"] == "":
                subscription["metadata"] = {}
        if "description" in valid:
            subscription["description"] = valid["description"]
        emit_updated(state, subscription, previous, call.request)
    if "cancel_at_period_end" in valid:
        set_cancel_at_period_end(state, subscription, valid["cancel_at_period_end"],
                                 request=call.request,
                                 details=valid.get("cancellation_details"))
    return _view(state, subscription, expand_list(params))


def cancel_subscription(state: StripeState, call: ApiCall) -> dict[str, Any]:
    subscription = stored_subscription(state, call.ids[0])
    if subscription["status"] in ("canceled", "incomplete_expired"):
        raise invalid(f"This subscription has already been canceled "
                      f"({subscription['id']}).", "subscription")
    cancel_now(state, subscription, reason="cancellation_requested", request=call.request,
               details=call.valid.get("cancellation_details"))
    return _view(state, subscription, expand_list(call.params))

