"""Subscriptions: ``/v1/subscriptions`` (retrieve, list, update, cancel) and the
life cycle the hosted page, the billing portal and the emulator's clock drive.

A paid subscription-mode Checkout Session calls :func:`create_from_session`: the
subscription is created ``incomplete`` (``customer.subscription.created``), its
first invoice (``billing_reason: subscription_create``) is created, finalized and
paid, and the subscription turns ``active`` (``customer.subscription.updated``).
With ``subscription_data[trial_period_days]`` it starts ``trialing`` and its first
invoice bills only the one-time items. The current period lives on each item
(``items.data[].current_period_start/_end``), as at Stripe since 2025-03-31.

What time does (:func:`run_due`, called when the emulator's clock moves):

- ``trial_will_end`` three days before a trial ends (at once for shorter trials);
- at a period end: a ``subscription_cycle`` invoice; paid -> the next period
  (``trialing`` becomes ``active``); declined -> ``past_due``;
- retries of a declined renewal :data:`RETRY_DAYS` days after the first failure;
  one that succeeds makes it ``active`` again; when the last fails it becomes
  ``canceled`` (``customer.subscription.deleted``) or ``unpaid``, as the
  ``fail_next_renewal`` call said. ``unpaid`` and ``past_due`` subscriptions do
  not renew further;
- ``cancel_at`` (set by ``cancel_at_period_end``) ends it: ``canceled``,
  ``ended_at``, ``customer.subscription.deleted``.

Every change emits ``customer.subscription.updated`` with ``previous_attributes``.
"""

from __future__ import annotations

import calendar
import copy
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from . import invoices
from .charges import card_details
from .errors import ApiError, invalid, no_such
from .events import emit
from .ids import new_id
from .lists import filter_created, list_object
from .objects import RenewalFailure
from .params import (
    as_bool,
    as_dict,
    as_int,
    as_list,
    as_metadata,
    as_str,
    check_keys,
    expand_list,
    sub,
)
from .rules import ParamRule, RuleContext, plain

if TYPE_CHECKING:
    from .routes import ApiCall
    from .state import StripeState

__all__ = [
    "CANCEL_RULES",
    "LIVE_STATUSES",
    "RETRY_DAYS",
    "STATUSES",
    "TRIAL_NOTICE",
    "UPDATE_RULES",
    "add_interval",
    "cancel_now",
    "cancel_subscription",
    "create_from_session",
    "fail_next_renewal",
    "list_subscriptions",
    "retrieve_subscription",
    "run_due",
    "set_cancel_at_period_end",
    "settle_first_invoice",
    "stored_subscription",
    "switch_price",
    "update_card",
    "update_subscription",
]

STATUSES = frozenset({"incomplete", "incomplete_expired", "trialing", "active",
                      "past_due", "canceled", "unpaid", "paused"})
LIVE_STATUSES = STATUSES - {"canceled", "incomplete_expired"}
RETRY_DAYS = (3, 5, 7)
"""Days after a renewal's first failed attempt at which it is retried."""
TRIAL_NOTICE = 3 * 86400
"""``trial_will_end`` is sent this many seconds before the trial ends."""
DAY = 86400

_UPDATE_SUPPORTED = frozenset({"cancel_at_period_end", "cancellation_details",
                               "description", "expand", "items", "metadata",
                               "proration_behavior"})
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


def add_interval(ts: int, interval: str, count: int = 1) -> int:
    """``ts`` plus ``count`` intervals; months and years are calendar ones (UTC),
    clamped to the month's last day as Stripe does (31 Jan + 1 month = 28/29 Feb)."""
    when = datetime.fromtimestamp(ts, timezone.utc)
    if interval == "day":
        return ts + count * DAY
    if interval == "week":
        return ts + count * 7 * DAY
    months = count * (12 if interval == "year" else 1)
    month0 = when.month - 1 + months
    year, month = when.year + month0 // 12, month0 % 12 + 1
    day = min(when.day, calendar.monthrange(year, month)[1])
    return int(when.replace(year=year, month=month, day=day).timestamp())


def _period_end(start: int, price: dict[str, Any], anchor: int) -> int:
    """The end of the period starting at ``start``: the first whole number of
    intervals after ``anchor`` past ``start``, counted from the anchor so that a
    cycle anchored on the 31st comes back to the 31st after a short month."""
    recurring = price["recurring"]
    count = int(recurring["interval_count"])
    n = 1
    while (end := add_interval(anchor, recurring["interval"], n * count)) <= start:
        n += 1
    return end


def _item(subscription_id: str, price: dict[str, Any], quantity: int, start: int,
          end: int, now: int) -> dict[str, Any]:
    return {
        "id": new_id("si_", 14),
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": now,
        "current_period_end": end,
        "current_period_start": start,
        "discounts": [],
        "metadata": {},
        "price": copy.deepcopy(price),
        "quantity": quantity,
        "subscription": subscription_id,
        "tax_rates": [],
    }


def _period(subscription: dict[str, Any]) -> tuple[int, int]:
    """The current period: items share one here (one billing cycle per subscription)."""
    items = subscription["items"]["data"]
    return (min(int(i["current_period_start"]) for i in items),
            min(int(i["current_period_end"]) for i in items))


def _updated(state: StripeState, subscription: dict[str, Any],
             previous: dict[str, Any], request: dict[str, Any] | None = None) -> None:
    emit(state, "customer.subscription.updated", subscription, request, previous=previous)


def create_from_session(
    state: StripeState,
    session: dict[str, Any],
    line_items: Sequence[dict[str, Any]],
    *,
    delayed: bool,
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
            end = trial_end if trial_end is not None else _period_end(now, price, now)
            items.append(_item(subscription_id, price, int(line["quantity"]), now, end, now))
        else:
            one_time.append((price, int(line["quantity"])))
    payment_method = _payment_method(state, session["customer"], "4242")
    subscription: dict[str, Any] = {
        "id": subscription_id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": items[0]["current_period_end"] if trial_end else now,
        "billing_cycle_anchor_config": None,
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically",
        "created": now,
        "currency": session["currency"],
        "customer": session["customer"],
        "customer_account": None,
        "days_until_due": None,
        "default_payment_method": payment_method["id"],
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "ended_at": None,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {"object": "list", "data": items, "has_more": False,
                  "url": f"/v1/subscription_items?subscription={subscription_id}"},
        "latest_invoice": None,
        "livemode": False,
        "metadata": dict(data.get("metadata") or {}),
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {"payment_method_options": None, "payment_method_types": None,
                             "save_default_payment_method": "off"},
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": now,
        "status": "trialing" if trial_end else "incomplete",
        "status_details": None,
        "test_clock": None,
        "transfer_data": None,
        "trial_end": trial_end,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": now if trial_end else None,
    }
    state.billing.subscriptions[subscription_id] = subscription
    first = invoices.new_invoice(state, subscription, billing_reason="subscription_create",
                                 one_time=one_time, free=trial_end is not None)
    subscription["latest_invoice"] = first["id"]
    emit(state, "customer.subscription.created", subscription, None)
    invoices.announce(state, first)
    invoices.finalize(state, first)
    if not delayed or first["amount_due"] == 0:
        _pay_first(state, subscription, first)
    _announce_trial(state, subscription)
    return subscription


def _pay_first(state: StripeState, subscription: dict[str, Any],
               first: dict[str, Any]) -> None:
    invoices.attempt(state, first, succeeds=True, next_attempt=None)
    if subscription["status"] == "incomplete":
        subscription["status"] = "active"
        _updated(state, subscription, {"status": "incomplete"})


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


def _payment_method(state: StripeState, customer: str, last4: str) -> dict[str, Any]:
    method: dict[str, Any] = {
        "id": new_id("pm_"),
        "object": "payment_method",
        "allow_redisplay": "always",
        "billing_details": {"address": None, "email": None, "name": None, "phone": None,
                            "tax_id": None},
        "card": card_details(last4),
        "created": state.now(),
        "customer": customer,
        "livemode": False,
        "metadata": {},
        "type": "card",
    }
    state.billing.payment_methods[method["id"]] = method
    return method


def update_card(state: StripeState, customer_id: str, last4: str) -> None:
    """The customer saved a working card: it becomes the default for the customer and
    their live subscriptions (``payment_method.attached``, ``customer.updated``,
    ``customer.subscription.updated``); pending renewal failures are forgotten, and
    a ``past_due`` subscription's open invoice is paid with it at once."""
    customer = state.billing.customers[customer_id]
    method = _payment_method(state, customer_id, last4)
    emit(state, "payment_method.attached", method, None)
    old = customer["invoice_settings"]["default_payment_method"]
    customer["invoice_settings"]["default_payment_method"] = method["id"]
    emit(state, "customer.updated", customer, None,
         previous={"invoice_settings": {"default_payment_method": old}})
    for subscription in list(state.billing.subscriptions.values()):
        if subscription["customer"] != customer_id or subscription["status"] not in (
                LIVE_STATUSES):
            continue
        state.billing.renewal_failures.pop(subscription["id"], None)
        previous: dict[str, Any] = {"default_payment_method":
                                    subscription["default_payment_method"]}
        subscription["default_payment_method"] = method["id"]
        invoice = state.billing.invoices.get(subscription["latest_invoice"] or "")
        if subscription["status"] == "past_due" and invoice and invoice["status"] == "open":
            invoices.attempt(state, invoice, succeeds=True, next_attempt=None)
            previous["status"] = "past_due"
            subscription["status"] = "active"
        _updated(state, subscription, previous)


def _announce_trial(state: StripeState, subscription: dict[str, Any]) -> None:
    trial_end = subscription["trial_end"]
    if (subscription["status"] == "trialing" and trial_end is not None
            and subscription["id"] not in state.billing.trial_notices
            and state.now() >= trial_end - TRIAL_NOTICE):
        state.billing.trial_notices.add(subscription["id"])
        emit(state, "customer.subscription.trial_will_end", subscription, None)


# -- what the clock does -------------------------------------------------------------

def _next_due(subscription: dict[str, Any], state: StripeState) -> tuple[int, str] | None:
    status = subscription["status"]
    if status not in ("trialing", "active", "past_due"):
        return None
    due: list[tuple[int, str]] = []
    if status == "trialing" and subscription["id"] not in state.billing.trial_notices:
        due.append((int(subscription["trial_end"]) - TRIAL_NOTICE, "trial_notice"))
    if subscription["cancel_at"] is not None:
        due.append((int(subscription["cancel_at"]), "cancel"))
    if status == "past_due":
        invoice = state.billing.invoices[subscription["latest_invoice"]]
        if invoice["status"] == "open" and invoice["next_payment_attempt"] is not None:
            due.append((int(invoice["next_payment_attempt"]), "retry"))
    else:
        due.append((_period(subscription)[1], "renew"))
    return min(due)


def run_due(state: StripeState) -> int:
    """Do, in time order, everything due by now on every subscription; how many steps."""
    steps = 0
    while steps < 10_000:
        now = state.now()
        candidates = []
        for subscription in state.billing.subscriptions.values():
            due = _next_due(subscription, state)
            if due is not None and due[0] <= now:
                candidates.append((due, subscription["id"]))
        if not candidates:
            return steps
        (_, what), subscription_id = min(candidates)
        subscription = state.billing.subscriptions[subscription_id]
        if what == "trial_notice":
            _announce_trial(state, subscription)
        elif what == "cancel":
            cancel_now(state, subscription, reason="cancellation_requested",
                       ended_at=int(subscription["cancel_at"]), request=None)
        elif what == "retry":
            _retry(state, subscription)
        else:
            _renew(state, subscription)
        steps += 1
    return steps


def _renew(state: StripeState, subscription: dict[str, Any]) -> None:
    previous: dict[str, Any] = {"items": copy.deepcopy(subscription["items"]),
                                "latest_invoice": subscription["latest_invoice"]}
    start = _period(subscription)[1]
    for item in subscription["items"]["data"]:
        item["current_period_start"] = start
        item["current_period_end"] = _period_end(start, item["price"],
                                                 int(subscription["billing_cycle_anchor"]))
    invoice = invoices.new_invoice(state, subscription, billing_reason="subscription_cycle")
    subscription["latest_invoice"] = invoice["id"]
    invoices.announce(state, invoice)
    invoices.finalize(state, invoice)
    failure = state.billing.renewal_failures.get(subscription["id"])
    if failure is not None and not failure.retries_fail:
        del state.billing.renewal_failures[subscription["id"]]
    first_retry = int(invoice["status_transitions"]["finalized_at"]) + RETRY_DAYS[0] * DAY
    invoices.attempt(state, invoice, succeeds=failure is None, next_attempt=first_retry)
    old_status = subscription["status"]
    subscription["status"] = "active" if invoice["status"] == "paid" else "past_due"
    if subscription["status"] != old_status:
        previous["status"] = old_status
    _updated(state, subscription, previous)


def _retry(state: StripeState, subscription: dict[str, Any]) -> None:
    invoice = state.billing.invoices[subscription["latest_invoice"]]
    failure = state.billing.renewal_failures.get(subscription["id"])
    attempts = int(invoice["attempt_count"])  # the attempts made so far, >= 1
    first_failure = int(invoice["status_transitions"]["finalized_at"])
    next_attempt = (first_failure + RETRY_DAYS[attempts] * DAY
                    if attempts < len(RETRY_DAYS) else None)
    invoices.attempt(state, invoice, succeeds=failure is None, next_attempt=next_attempt)
    if invoice["status"] == "paid":
        subscription["status"] = "active"
        _updated(state, subscription, {"status": "past_due"})
    elif next_attempt is None:
        ending = failure.ending if failure is not None else "canceled"
        state.billing.renewal_failures.pop(subscription["id"], None)
        if ending == "unpaid":
            subscription["status"] = "unpaid"
            _updated(state, subscription, {"status": "past_due"})
        else:
            cancel_now(state, subscription, reason="payment_failed", request=None)


# -- changes asked for (API, portal, helpers) ----------------------------------------

def fail_next_renewal(state: StripeState, subscription_id: str,
                      failure: RenewalFailure) -> None:
    """Decline the next renewal of ``subscription_id`` (and its retries, if said)."""
    if failure.ending not in ("canceled", "unpaid"):
        raise ValueError("ending must be 'canceled' or 'unpaid'")
    state.billing.renewal_failures[stored_subscription(state, subscription_id)["id"]] = (
        failure)


def cancel_now(state: StripeState, subscription: dict[str, Any], *, reason: str,
               request: dict[str, Any] | None, ended_at: int | None = None,
               details: dict[str, Any] | None = None) -> None:
    """End ``subscription`` now: ``canceled`` and ``customer.subscription.deleted``."""
    if subscription["status"] in ("canceled", "incomplete_expired"):
        raise invalid(f"A canceled subscription can only update its cancellation_details "
                      f"and metadata (subscription {subscription['id']}).", "subscription")
    now = state.now()
    subscription["status"] = "canceled"
    subscription["ended_at"] = ended_at if ended_at is not None else now
    if subscription["canceled_at"] is None:
        subscription["canceled_at"] = now
    subscription["cancellation_details"].update(details or {}, reason=reason)
    emit(state, "customer.subscription.deleted", subscription, request)


def set_cancel_at_period_end(state: StripeState, subscription: dict[str, Any], flag: bool,
                             *, request: dict[str, Any] | None,
                             details: dict[str, Any] | None = None) -> None:
    """Schedule (or call off) the end of ``subscription`` at its current period end.

    Like Stripe, scheduling sets ``cancel_at`` to the period end and ``canceled_at``
    to now; calling it off clears both.
    """
    if subscription["status"] not in LIVE_STATUSES:
        raise invalid("A canceled subscription can only update its cancellation_details "
                      "and metadata.", "cancel_at_period_end")
    previous = {"cancel_at": subscription["cancel_at"],
                "cancel_at_period_end": subscription["cancel_at_period_end"],
                "canceled_at": subscription["canceled_at"],
                "cancellation_details": copy.deepcopy(subscription["cancellation_details"])}
    if flag:
        subscription.update(cancel_at=_period(subscription)[1], cancel_at_period_end=True,
                            canceled_at=state.now())
        subscription["cancellation_details"].update(details or {},
                                                    reason="cancellation_requested")
    else:
        subscription.update(cancel_at=None, cancel_at_period_end=False, canceled_at=None)
        subscription["cancellation_details"] = {"comment": None, "feedback": None,
                                                "reason": None}
    _updated(state, subscription, previous, request)


def switch_price(state: StripeState, subscription: dict[str, Any], item_id: str,
                 price: dict[str, Any], *, request: dict[str, Any] | None) -> None:
    """Move one item to another recurring price of the same currency and interval,
    from now, without proration (``proration_behavior=none``)."""
    item = next((i for i in subscription["items"]["data"] if i["id"] == item_id), None)
    if item is None:
        raise ApiError(f"No such subscription item: '{item_id}'", param="items[0][id]",
                       code="resource_missing")
    if subscription["status"] not in LIVE_STATUSES:
        raise invalid("A canceled subscription cannot change its items.", "items")
    if price["type"] != "recurring" or not price["active"]:
        raise invalid(f"The price {price['id']} is not an active recurring price.",
                      "items[0][price]")
    if price["currency"] != subscription["currency"]:
        raise invalid(f"The price {price['id']} is in {price['currency']}, but this "
                      f"subscription is in {subscription['currency']}.", "items[0][price]")
    if price["id"] == item["price"]["id"]:
        raise invalid(f"The subscription is already on price {price['id']}.",
                      "items[0][price]")
    previous = {"items": copy.deepcopy(subscription["items"])}
    item["price"] = copy.deepcopy(price)
    _updated(state, subscription, previous, request)


# -- endpoints ---------------------------------------------------------------------

def stored_subscription(state: StripeState, subscription_id: str,
                        param: str = "id") -> dict[str, Any]:
    subscription = state.billing.subscriptions.get(subscription_id)
    if subscription is None:
        raise no_such("subscription", subscription_id, param)
    return subscription


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
    if "items" in params:
        raw = as_list(params["items"], "items")
        if len(raw) != 1:
            raise invalid("The emulator updates one item at a time.", "items")
        entry = as_dict(raw[0], "items[0]")
        check_keys(entry, frozenset({"id", "price", "quantity"}), "items[0]")
        item_id = as_str(entry.get("id", ""), "items[0][id]")
        if "quantity" in entry:
            as_int(entry["quantity"], "items[0][quantity]", 1)
            raise invalid("The emulator does not change quantities.", "items[0][quantity]")
        price_id = as_str(entry.get("price", ""), "items[0][price]")
        price = state.prices.get(price_id)
        if price is None:
            raise ApiError(f"No such price: '{price_id}'", param="items[0][price]",
                           code="resource_missing")
        switch_price(state, subscription, item_id, price, request=call.request)
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
        _updated(state, subscription, previous, call.request)
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
