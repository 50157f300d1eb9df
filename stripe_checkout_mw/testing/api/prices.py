"""Prices: ``/v1/prices`` (create, retrieve, list), the price factory and the
``price_data``-style parts shared with Checkout's inline prices.

:func:`parse_amount`, :func:`parse_recurring` and :func:`product_for` read the
fields a price create request and a line item's ``price_data`` have in common;
``param`` is the prefix they sit under (``""`` at the top level).
"""

from __future__ import annotations

import copy
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from stripe import Price

from .errors import ApiError, invalid, missing, no_such
from .ids import new_id
from .lists import list_object
from .params import (
    as_bool,
    as_currency,
    as_dict,
    as_int,
    as_list,
    as_metadata,
    as_str,
    sub,
)
from .product_objects import new_product
from .shapes import blank, declared, shaped

if TYPE_CHECKING:
    from .routes import ApiCall
    from .state import StripeState

__all__ = [
    "create_price",
    "list_prices",
    "new_price",
    "parse_amount",
    "parse_recurring",
    "product_for",
    "retrieve_price",
]

def new_price(
    state: StripeState,
    *,
    unit_amount: int,
    currency: str,
    product: str,
    lookup_key: str | None = None,
    recurring: dict[str, Any] | None = None,
    nickname: str | None = None,
    active: bool = True,
    metadata: dict[str, str] | None = None,
    unit_amount_decimal: str | None = None,
) -> dict[str, Any]:
    """Store a new price (not a copy) from already validated values."""
    if lookup_key is not None:
        # A lookup key belongs to one price at a time (transfer_lookup_key semantics).
        for other in state.prices.values():
            if other["lookup_key"] == lookup_key:
                other["lookup_key"] = None
    rec = None
    if recurring is not None:
        rec = {
            "interval": recurring["interval"],
            "interval_count": int(recurring.get("interval_count", 1)),
            "meter": None,
            "trial_period_days": None,
            "usage_type": "licensed",
        }
    price_id = new_id("price_")
    price = blank(Price)
    price.update({
        "id": price_id,
        "object": "price",
        "active": active,
        "billing_scheme": "per_unit",
        "created": state.now(),
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": lookup_key,
        "metadata": metadata or {},
        "nickname": nickname,
        "product": product,
        "recurring": rec,
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring" if rec else "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": unit_amount_decimal or str(unit_amount),
    })
    state.prices[price_id] = price
    return price


def parse_recurring(value: Any, param: str) -> dict[str, Any]:
    """``recurring`` as ``{"interval": ..., "interval_count"?: int}``."""
    data = as_dict(value, param)
    if "interval" not in data:
        raise missing(sub(param, "interval"))
    interval = as_str(data["interval"], sub(param, "interval"))
    result: dict[str, Any] = {"interval": interval}
    if "interval_count" in data:
        result["interval_count"] = as_int(data["interval_count"],
                                          sub(param, "interval_count"), 1)
    return result


def parse_amount(data: dict[str, Any], param: str) -> tuple[int, str | None]:
    """``unit_amount`` or ``unit_amount_decimal`` (exactly one): amount, decimal text."""
    if "unit_amount" in data and "unit_amount_decimal" in data:
        raise invalid("You may only specify one of these parameters: unit_amount, "
                      "unit_amount_decimal.", param)
    if "unit_amount" in data:
        return as_int(data["unit_amount"], sub(param, "unit_amount") if param else
                      "unit_amount", 0), None
    if "unit_amount_decimal" in data:
        name = sub(param, "unit_amount_decimal") if param else "unit_amount_decimal"
        text = as_str(data["unit_amount_decimal"], name)
        try:
            dec = Decimal(text)
        except InvalidOperation:
            raise invalid(f"Invalid decimal: {text}", name) from None
        if dec < 0 or not dec.is_finite():
            raise invalid("This value must be greater than or equal to 0.", name)
        return int(dec.to_integral_value()), text
    raise missing(sub(param, "unit_amount") if param else "unit_amount")


def product_for(state: StripeState, data: dict[str, Any], param: str) -> str:
    """The product id of ``product``, or of a product created from ``product_data``."""
    def name(key: str) -> str:
        return sub(param, key) if param else key

    if "product" in data and "product_data" in data:
        raise invalid("You may only specify one of these parameters: product, "
                      "product_data.", param or "product")
    if "product" in data:
        product_id = as_str(data["product"], name("product"))
        if product_id not in state.products:
            raise ApiError(f"No such product: '{product_id}'", param=name("product"),
                           code="resource_missing")
        return product_id
    if "product_data" in data:
        pdata = as_dict(data["product_data"], name("product_data"))
        if "name" not in pdata:
            raise missing(sub(name("product_data"), "name"))
        product = new_product(
            state,
            as_str(pdata["name"], sub(name("product_data"), "name")),
            description=(as_str(pdata["description"],
                                sub(name("product_data"), "description"))
                         if "description" in pdata else None),
            metadata=as_metadata(pdata.get("metadata", {}),
                                 sub(name("product_data"), "metadata")),
            images=[as_str(v, sub(name("product_data"), "images"))
                    for v in as_list(pdata.get("images", []),
                                     sub(name("product_data"), "images"))],
        )
        return str(product["id"])
    raise missing(name("product"))


def create_price(state: StripeState, call: ApiCall) -> dict[str, Any]:
    params = call.params
    if "currency" not in params:
        raise missing("currency")
    currency = as_currency(params["currency"], "currency")
    amount, decimal_text = parse_amount(params, "")
    product = product_for(state, params, "")
    lookup_key = None
    if "lookup_key" in params:
        lookup_key = as_str(params["lookup_key"], "lookup_key")
        transfer = as_bool(params.get("transfer_lookup_key", "false"), "transfer_lookup_key")
        holder = next((p for p in state.prices.values() if p["lookup_key"] == lookup_key),
                      None)
        if holder is not None and not transfer:
            raise invalid(
                f"A price ({holder['id']}) already uses that lookup key. Pass "
                "transfer_lookup_key=true to move it to the new price.",
                "lookup_key",
                "lookup_key_already_exists",
            )
    recurring = (parse_recurring(params["recurring"], "recurring")
                 if "recurring" in params else None)
    price = new_price(
        state,
        unit_amount=amount,
        unit_amount_decimal=decimal_text,
        currency=currency,
        product=product,
        lookup_key=lookup_key,
        recurring=recurring,
        nickname=as_str(params["nickname"], "nickname") if "nickname" in params else None,
        active=as_bool(params.get("active", "true"), "active"),
        metadata=as_metadata(params.get("metadata", {}), "metadata"),
    )
    fields = declared(Price)
    price.update({name: shaped(fields[name], value) for name, value in call.valid.items()
                  if name in fields and name not in _SET_ABOVE})
    return copy.deepcopy(price)


_SET_ABOVE = frozenset({"active", "currency", "expand", "lookup_key", "metadata", "product",
                        "recurring", "unit_amount", "unit_amount_decimal"})
"""Create parameters :func:`create_price` turns into fields itself; the other ones that
are price fields (``nickname``, ``tax_behavior``, ``transform_quantity``...) are echoed."""


def retrieve_price(state: StripeState, call: ApiCall) -> dict[str, Any]:
    price_id = call.ids[0]
    if price_id not in state.prices:
        raise no_such("price", price_id)
    return copy.deepcopy(state.prices[price_id])


def list_prices(state: StripeState, call: ApiCall) -> dict[str, Any]:
    params = call.params
    prices = list(reversed(state.prices.values()))
    if "lookup_keys" in params:
        keys = [as_str(v, sub("lookup_keys", i)) for i, v in
                enumerate(as_list(params["lookup_keys"], "lookup_keys"))]
        if len(keys) > 10:
            raise invalid("You may only specify up to 10 lookup keys.", "lookup_keys")
        prices = [p for p in prices if p["lookup_key"] in keys]
    if "active" in params:
        active = as_bool(params["active"], "active")
        prices = [p for p in prices if p["active"] == active]
    if "currency" in params:
        currency = as_currency(params["currency"], "currency")
        prices = [p for p in prices if p["currency"] == currency]
    if "product" in params:
        product = as_str(params["product"], "product")
        prices = [p for p in prices if p["product"] == product]
    if "type" in params:
        kind = as_str(params["type"], "type")
        prices = [p for p in prices if p["type"] == kind]
    return list_object(prices, "/v1/prices", params)
