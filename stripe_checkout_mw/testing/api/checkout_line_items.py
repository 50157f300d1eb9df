"""A Checkout Session's line items: from the create request's ``line_items`` to
stored ``item`` objects.

Each item names a stored ``price`` or brings ``price_data`` (an inline price, and
maybe a product, made for this session only); :func:`resolve_line_items` then
applies the per-mode rules Stripe applies (counts, recurring prices only where a
subscription is made, one currency).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from stripe import LineItem

from .errors import ApiError, invalid, missing
from .ids import new_id
from .params import as_currency, as_dict, as_int, as_list, as_str, sub
from .prices import new_price, parse_amount, parse_recurring, product_for
from .shapes import blank

if TYPE_CHECKING:
    from .state import StripeState

__all__ = ["resolve_line_items"]


def _line_item(state: StripeState, raw: Any, index: int, mode: str) -> dict[str, Any]:
    param = sub("line_items", index)
    item = as_dict(raw, param)
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
    line_item = blank(LineItem)
    line_item.update({
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
    })
    return line_item


def resolve_line_items(state: StripeState, raw_items: Any,
                       mode: str) -> list[dict[str, Any]]:
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
