"""The subscription object: its statuses, items, billing periods and lookups.

The base of the subscription modules (:mod:`.subscriptions` for the endpoints and
a subscription's start, :mod:`.subscription_changes` for what a customer or the
shop asks for, :mod:`.subscription_clock` for what time does); it changes nothing
but builds, finds and measures.
"""

from __future__ import annotations

import calendar
import copy
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .charges import card_details
from .errors import no_such
from .events import emit
from .ids import new_id

if TYPE_CHECKING:
    from .state import StripeState

__all__ = [
    "DAY",
    "LIVE_STATUSES",
    "RETRY_DAYS",
    "STATUSES",
    "TRIAL_NOTICE",
    "add_interval",
    "current_period",
    "emit_updated",
    "new_item",
    "new_payment_method",
    "new_subscription",
    "period_end",
    "stored_subscription",
]

STATUSES = frozenset({"incomplete", "incomplete_expired", "trialing", "active",
                      "past_due", "canceled", "unpaid", "paused"})
LIVE_STATUSES = STATUSES - {"canceled", "incomplete_expired"}
RETRY_DAYS = (3, 5, 7)
"""Days after a renewal's first failed attempt at which it is retried."""
TRIAL_NOTICE = 3 * 86400
"""``trial_will_end`` is sent this many seconds before the trial ends."""
DAY = 86400


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


def period_end(start: int, price: dict[str, Any], anchor: int) -> int:
    """The end of the period starting at ``start``: the first whole number of
    intervals after ``anchor`` past ``start``, counted from the anchor so that a
    cycle anchored on the 31st comes back to the 31st after a short month."""
    recurring = price["recurring"]
    count = int(recurring["interval_count"])
    n = 1
    while (end := add_interval(anchor, recurring["interval"], n * count)) <= start:
        n += 1
    return end


def new_item(subscription_id: str, price: dict[str, Any], quantity: int, start: int,
             end: int, now: int) -> dict[str, Any]:
    """A subscription item on ``price`` for the period ``start``..``end``."""
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


def current_period(subscription: dict[str, Any]) -> tuple[int, int]:
    """The current period: items share one here (one billing cycle per subscription)."""
    items = subscription["items"]["data"]
    return (min(int(i["current_period_start"]) for i in items),
            min(int(i["current_period_end"]) for i in items))


def emit_updated(state: StripeState, subscription: dict[str, Any], previous: dict[str, Any],
                 request: dict[str, Any] | None = None) -> None:
    """``customer.subscription.updated`` with ``previous`` as ``previous_attributes``."""
    emit(state, "customer.subscription.updated", subscription, request, previous=previous)


def stored_subscription(state: StripeState, subscription_id: str,
                        param: str = "id") -> dict[str, Any]:
    """The stored subscription (not a copy), or Stripe's 404."""
    subscription = state.billing.subscriptions.get(subscription_id)
    if subscription is None:
        raise no_such("subscription", subscription_id, param)
    return subscription


def new_payment_method(state: StripeState, customer: str, last4: str) -> dict[str, Any]:
    """Store a card payment method (ending ``last4``) of ``customer``."""
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


def new_subscription(subscription_id: str, session: dict[str, Any],
                     items: list[dict[str, Any]], *, now: int, trial_end: int | None,
                     payment_method: str, metadata: dict[str, str]) -> dict[str, Any]:
    """A new subscription object for a completed session (not stored yet)."""
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
        "default_payment_method": payment_method,
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
        "metadata": metadata,
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
    return subscription
