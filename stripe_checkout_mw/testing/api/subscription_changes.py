"""Changes asked of a subscription: by the API, the portal or the emulator's
controls: cancel now or at the period end, switch price, save a card, and
arrange for the next renewal to be declined.

Every change emits ``customer.subscription.updated`` with ``previous_attributes``
(or ``customer.subscription.deleted`` when it ends the subscription).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from . import invoices
from .errors import ApiError, invalid
from .events import emit
from .objects import RenewalFailure
from .subscription_objects import (
    LIVE_STATUSES,
    current_period,
    emit_updated,
    new_payment_method,
    stored_subscription,
)

if TYPE_CHECKING:
    from .state import StripeState

__all__ = [
    "cancel_now",
    "fail_next_renewal",
    "set_cancel_at_period_end",
    "switch_price",
    "update_card",
]


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
        subscription.update(cancel_at=current_period(subscription)[1],
                            cancel_at_period_end=True, canceled_at=state.now())
        subscription["cancellation_details"].update(details or {},
                                                    reason="cancellation_requested")
    else:
        subscription.update(cancel_at=None, cancel_at_period_end=False, canceled_at=None)
        subscription["cancellation_details"] = {"comment": None, "feedback": None,
                                                "reason": None}
    emit_updated(state, subscription, previous, request)


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
    emit_updated(state, subscription, previous, request)


def update_card(state: StripeState, customer_id: str, last4: str, *,
                pay_past_due: bool = True) -> None:
    """The customer saved a working card: it becomes the default for the customer and
    their live subscriptions (``payment_method.attached``, ``customer.updated``,
    ``customer.subscription.updated``); pending renewal failures are forgotten, and
    (with ``pay_past_due``) a ``past_due`` subscription's open invoice is paid with
    it at once."""
    customer = state.billing.customers[customer_id]
    method = new_payment_method(state, customer_id, last4)
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
        if (pay_past_due and subscription["status"] == "past_due" and invoice
                and invoice["status"] == "open"):
            invoices.attempt(state, invoice, succeeds=True, next_attempt=None)
            previous["status"] = "past_due"
            subscription["status"] = "active"
        emit_updated(state, subscription, previous)

