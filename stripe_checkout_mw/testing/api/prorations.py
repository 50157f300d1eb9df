"""Item changes and what they cost: the shared arithmetic of a subscription update
(:mod:`.subscription_updates`) and its preview (:mod:`.invoice_preview`).

:func:`planned_items` turns the ``items`` parameter (swap a price, set a quantity,
add an item without ``id``, remove one with ``deleted``) into the subscription's
items after the change, without touching the subscription. :func:`proration_lines`
prices the change for the rest of the current period, to the second: a credit
for the unused time of each item that goes or changes, a charge for the remaining
time of each item that comes or changes; each line is marked ``proration``.
"""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .errors import ApiError, invalid
from .invoices import LineSpec
from .params import sub
from .subscription_objects import current_period, new_item

if TYPE_CHECKING:
    from .state import StripeState

__all__ = ["planned_items", "proration_lines"]


def _price(state: StripeState, subscription: dict[str, Any], price_id: str,
           param: str) -> dict[str, Any]:
    price = state.prices.get(price_id)
    if price is None:
        raise ApiError(f"No such price: '{price_id}'", param=param,
                       code="resource_missing")
    if price["type"] != "recurring" or not price["active"]:
        raise invalid(f"The price {price_id} is not an active recurring price.", param)
    if price["currency"] != subscription["currency"]:
        raise invalid(f"The price {price_id} is in {price['currency']}, but this "
                      f"subscription is in {subscription['currency']}.", param)
    return price


def planned_items(state: StripeState, subscription: dict[str, Any],
                  entries: list[dict[str, Any]], prefix: str = "items",
                  ) -> list[dict[str, Any]]:
    """The items ``subscription`` would have after ``entries`` (coerced ``items``).

    Changing an item's price resets its quantity to 1 unless one is sent, as at
    Stripe; new items start now and end with the current period.
    """
    items: list[dict[str, Any]] = copy.deepcopy(subscription["items"]["data"])
    by_id = {item["id"]: item for item in items}
    start, end = current_period(subscription)
    for index, entry in enumerate(entries):
        param = sub(prefix, index)
        if "id" not in entry:
            if "price" not in entry:
                raise invalid("Each new item needs a price.", sub(param, "price"))
            price = _price(state, subscription, entry["price"], sub(param, "price"))
            items.append(new_item(subscription["id"], price, int(entry.get("quantity", 1)),
                                  start, end, state.now()))
            continue
        item = by_id.get(entry["id"])
        if item is None:
            raise ApiError(f"No such subscription item: '{entry['id']}'",
                           param=sub(param, "id"), code="resource_missing")
        if entry.get("deleted"):
            items.remove(item)
            continue
        if "price" in entry and entry["price"] != item["price"]["id"]:
            item["price"] = copy.deepcopy(_price(state, subscription, entry["price"],
                                                 sub(param, "price")))
            item["quantity"] = 1
        if "quantity" in entry:
            item["quantity"] = int(entry["quantity"])
    if not items:
        raise invalid("A subscription needs at least one item.", prefix)
    return items


def _key(item: dict[str, Any]) -> tuple[str, int]:
    return item["price"]["id"], int(item["quantity"])


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%d %b %Y")


def proration_lines(subscription: dict[str, Any], after: list[dict[str, Any]],
                    at: int) -> list[LineSpec]:
    """Credits and charges for moving ``subscription`` to ``after`` at ``at``."""
    start, end = current_period(subscription)
    if subscription["status"] == "trialing" or not start <= at < end:
        return []
    before = {item["id"]: item for item in subscription["items"]["data"]}
    new = {item["id"]: item for item in after}
    lines: list[LineSpec] = []
    for item_id, item in before.items():
        if item_id not in new or _key(new[item_id]) != _key(item):
            lines.append(_prorated(item, at, start, end, credit=True))
    for item_id, item in new.items():
        if item_id not in before or _key(before[item_id]) != _key(item):
            lines.append(_prorated(item, at, start, end, credit=False))
    return lines


def _prorated(item: dict[str, Any], at: int, start: int, end: int, *,
              credit: bool) -> LineSpec:
    price, quantity = item["price"], int(item["quantity"])
    full = int(price["unit_amount"] or 0) * quantity
    amount = round(full * (end - at) / (end - start))
    name = price.get("nickname") or price["product"]
    what = "Unused" if credit else "Remaining"
    return LineSpec(price, quantity, -amount if credit else amount, at, end,
                    item_id=item["id"], proration=True,
                    description=f"{what} time on {quantity} x {name} after {_when(at)}")
