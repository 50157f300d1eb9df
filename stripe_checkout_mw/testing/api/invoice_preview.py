"""``POST /v1/invoices/create_preview``: what a subscription change would bill.

Takes ``subscription`` (and optionally ``customer``) with ``subscription_details``
(``items``, ``proration_behavior``, ``proration_date``, ``cancel_at_period_end``).
The answer is an Invoice that is never stored: its id starts with ``upcoming_in``,
``billing_reason`` is ``upcoming`` and
``parent.subscription_details.subscription_proration_date`` is the time the
prorations were priced at (pass the same ``proration_date`` to the update). Its
lines, by ``proration_behavior``:

- ``create_prorations`` (default): the next renewal invoice: the prorations (marked
  ``parent.subscription_item_details.proration``), any left by earlier changes, and
  the next period at the new items;
- ``always_invoice``: only the prorations, the invoice the update would charge now
  (the emulator's reading; Stripe does not document it);
- ``none``: the next period at the new items.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from . import invoices
from .errors import invalid
from .ids import new_id
from .prorations import planned_items, proration_lines
from .subscription_objects import current_period, period_end, stored_subscription

if TYPE_CHECKING:
    from .routes import ApiCall
    from .state import StripeState

__all__ = ["create_preview"]


def _next_period(subscription: dict[str, Any], after: list[dict[str, Any]],
                 cancel: bool) -> list[invoices.LineSpec]:
    if cancel:
        return []
    start = current_period(subscription)[1]
    anchor = int(subscription["billing_cycle_anchor"])
    return [invoices.item_line(item["price"], int(item["quantity"]), item["id"], start,
                               period_end(start, item["price"], anchor))
            for item in after]


def create_preview(state: StripeState, call: ApiCall) -> dict[str, Any]:
    valid = call.valid
    if "subscription" not in valid:
        raise invalid("The emulator previews subscription changes only: pass "
                      "subscription.", "subscription")
    subscription = stored_subscription(state, valid["subscription"], "subscription")
    if valid.get("customer", subscription["customer"]) != subscription["customer"]:
        raise invalid("The subscription does not belong to this customer.", "customer")
    details = dict(valid.get("subscription_details") or {})
    behavior = details.get("proration_behavior", "create_prorations")
    at = int(details.get("proration_date", state.now()))
    after = (planned_items(state, subscription, list(details["items"]),
                           "subscription_details[items]")
             if "items" in details else copy.deepcopy(subscription["items"]["data"]))
    lines = proration_lines(subscription, after, at) if behavior != "none" else []
    if behavior == "create_prorations":
        lines = [*state.billing.pending_prorations.get(subscription["id"], []), *lines]
    if behavior != "always_invoice":
        lines += _next_period(subscription, after,
                              bool(details.get("cancel_at_period_end")
                                   or subscription["cancel_at_period_end"]))
    preview = invoices.new_invoice(state, subscription, billing_reason="upcoming",
                                   extra=lines, bill_items=False,
                                   invoice_id=new_id("upcoming_in_"))
    preview["parent"]["subscription_details"]["subscription_proration_date"] = at
    if lines:
        preview["period_start"] = min(line.start for line in lines)
        preview["period_end"] = max(line.end for line in lines)
    return preview
