"""Plan changes through ``POST /v1/subscriptions/{id}`` (``items``), their invoices and
each ``payment_behavior``; pending updates; paying an open subscription invoice.

``proration_behavior``:

- ``create_prorations`` (default): the change applies now; its proration lines
  wait for the next renewal invoice;
- ``always_invoice``: the change is invoiced now (``billing_reason:
  subscription_update``) and the saved card is charged off-session;
- ``none``: the change applies now, with no credit and no charge.

When that immediate charge is not paid (a declined card, or one that needs
authentication, see :mod:`.card_outcomes`), ``payment_behavior`` says what happens:

- ``allow_incomplete`` (default): the change stays, the subscription goes
  ``past_due`` and the invoice waits (``invoice.payment_failed`` or
  ``invoice.payment_action_required``);
- ``default_incomplete``: the change stays, the invoice is left open, not attempted,
  and the subscription goes ``past_due``;
- ``error_if_incomplete``: a 402 ``card_error``; nothing changes and no invoice is
  kept;
- ``pending_if_incomplete``: the change waits in ``pending_update`` (the
  subscription keeps its items and status) until the invoice is paid
  (:func:`pay_invoice`: ``customer.subscription.pending_update_applied``) or it
  expires (:func:`expire_pending_update`, at the period end or 23 hours later:
  the invoice is voided, ``customer.subscription.pending_update_expired``).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from stripe import Subscription

from . import invoices
from .card_outcomes import ACTION_REQUIRED, DECLINED, PAID, charge_outcome
from .errors import ApiError, invalid
from .events import emit
from .prorations import planned_items, proration_lines
from .shapes import blank
from .subscription_objects import LIVE_STATUSES, current_period, emit_updated

if TYPE_CHECKING:
    from .state import StripeState

__all__ = ["PENDING_UPDATE_HOURS", "change_items", "expire_pending_update", "pay_invoice",
           "payment_error"]

PENDING_UPDATE_HOURS = 23
"""A pending update expires this long after the change at the latest."""


def change_items(state: StripeState, subscription: dict[str, Any], valid: dict[str, Any],
                 request: dict[str, Any] | None) -> None:
    """Apply (or park) the ``items`` change of one update request."""
    if subscription["status"] not in LIVE_STATUSES:
        raise invalid("A canceled subscription cannot change its items.", "items")
    after = planned_items(state, subscription, list(valid["items"]))
    behavior = valid.get("proration_behavior", "create_prorations")
    payment = valid.get("payment_behavior", "allow_incomplete")
    at = int(valid.get("proration_date", state.now()))
    lines = proration_lines(subscription, after, at) if behavior != "none" else []
    if behavior == "create_prorations":
        state.billing.pending_prorations.setdefault(subscription["id"], []).extend(lines)
    if behavior != "always_invoice" or not lines:
        _apply(state, subscription, after, request)
        return
    outcome = charge_outcome(state, subscription, subscription["customer"])
    if sum(line.amount for line in lines) <= 0:
        outcome = PAID
    if payment == "error_if_incomplete" and outcome != PAID:
        raise payment_error(outcome)
    invoice = invoices.new_invoice(state, subscription, billing_reason="subscription_update",
                                   extra=lines, bill_items=False)
    previous: dict[str, Any] = {"latest_invoice": subscription["latest_invoice"]}
    subscription["latest_invoice"] = invoice["id"]
    if payment == "pending_if_incomplete" and outcome != PAID:
        _park(state, subscription, after, previous, request)
    else:
        _apply(state, subscription, after, request, previous)
    invoices.announce(state, invoice)
    invoices.finalize(state, invoice)
    if payment == "default_incomplete" and outcome != PAID:
        _past_due(state, subscription)
        return
    invoices.attempt(state, invoice, succeeds=outcome == PAID, next_attempt=None,
                     action_required=outcome == ACTION_REQUIRED)
    if outcome != PAID and subscription["pending_update"] is None:
        _past_due(state, subscription)


def payment_error(outcome: str) -> ApiError:
    """The 402 ``card_error`` of a charge that was declined or needs authentication."""
    if outcome == DECLINED:
        return ApiError("Your card was declined.", status=402, type="card_error",
                        code="card_declined")
    return ApiError("This payment requires additional user action before it can be "
                    "completed successfully.", status=402, type="card_error",
                    code="invoice_payment_intent_requires_action")


def _apply(state: StripeState, subscription: dict[str, Any], after: list[dict[str, Any]],
           request: dict[str, Any] | None, previous: dict[str, Any] | None = None) -> None:
    previous = {**(previous or {}), "items": copy.deepcopy(subscription["items"])}
    subscription["items"]["data"] = after
    emit_updated(state, subscription, previous, request)


def _park(state: StripeState, subscription: dict[str, Any], after: list[dict[str, Any]],
          previous: dict[str, Any], request: dict[str, Any] | None) -> None:
    pending = blank(Subscription.PendingUpdate)
    pending.update(
        expires_at=min(state.now() + PENDING_UPDATE_HOURS * 3600,
                       current_period(subscription)[1]),
        subscription_items=after)
    previous["pending_update"] = None
    subscription["pending_update"] = pending
    emit_updated(state, subscription, previous, request)


def _past_due(state: StripeState, subscription: dict[str, Any]) -> None:
    if subscription["status"] in ("active", "trialing"):
        old = subscription["status"]
        subscription["status"] = "past_due"
        emit_updated(state, subscription, {"status": old})


def expire_pending_update(state: StripeState, subscription: dict[str, Any]) -> None:
    """The pending update's time is up: void its invoice and drop the change."""
    invoice = state.billing.invoices.get(subscription["latest_invoice"] or "")
    if invoice is not None and invoice["status"] == "open":
        invoices.void(state, invoice)
    pending = subscription["pending_update"]
    subscription["pending_update"] = None
    emit(state, "customer.subscription.pending_update_expired", subscription, None)
    emit_updated(state, subscription, {"pending_update": pending})


def pay_invoice(state: StripeState, invoice: dict[str, Any], *, outcome: str) -> None:
    """Collect an open (or ``uncollectible``) invoice, ``outcome`` as its card was
    charged, and settle what it was for: a parked update is applied, a ``past_due``,
    ``incomplete`` or ``unpaid`` subscription becomes ``active``."""
    if invoice["status"] not in ("open", "uncollectible"):
        raise invalid(f"Invoice {invoice['id']} is {invoice['status']}, not open.",
                      "invoice")
    invoices.attempt(state, invoice, succeeds=outcome == PAID, next_attempt=None,
                     action_required=outcome == ACTION_REQUIRED)
    subscription_id = invoices.subscription_of(invoice)
    subscription = state.billing.subscriptions.get(subscription_id or "")
    if invoice["status"] != "paid" or subscription is None:
        return
    if subscription["latest_invoice"] != invoice["id"]:
        return
    pending = subscription["pending_update"]
    if pending is not None:
        previous = {"items": copy.deepcopy(subscription["items"]),
                    "pending_update": pending}
        subscription["items"]["data"] = pending["subscription_items"]
        subscription["pending_update"] = None
        emit(state, "customer.subscription.pending_update_applied", subscription, None,
             previous=previous)
        emit_updated(state, subscription, previous)
    if subscription["status"] in ("past_due", "incomplete", "unpaid"):
        old = subscription["status"]
        subscription["status"] = "active"
        emit_updated(state, subscription, {"status": old})
