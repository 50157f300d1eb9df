"""The documented rules the types cannot express, as a table: :data:`RULES`.

Each :class:`Rule` names its endpoint, the parameters it concerns and its source: the
SDK class whose docstring states it, with the sentence verbatim (a test finds it in the
installed SDK), or "API limit" with the page of Stripe's documentation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable

from .nodes import SchemaError, param_name, shown
from .sdk import ENDPOINTS

__all__ = ["RULES", "Context", "Rule", "no_price_knowledge", "session_mode"]



@dataclass(frozen=True)
class Context:
    """What a rule sees: the coerced params, the mode the session will have, and (for the
    emulator, which knows its prices) whether a price id is recurring."""

    params: Mapping[str, Any]
    mode: str | None
    recurring_price: Callable[[str], bool | None]
    now: int | None = None


@dataclass(frozen=True)
class Rule:
    """A documented constraint the types cannot express.

    ``source`` is the SDK class whose docstring says it (or ``"API limit"``), ``quote``
    the sentence, verbatim, so a test can find it in the installed SDK.
    """

    endpoint: str
    params: tuple[str, ...]
    source: str
    quote: str
    check: _Check
    presence: bool = False
    """Whether the rule is about what must be present (skipped for partial params)."""


_Check = Callable[[Context], Iterator[SchemaError]]


def _each(value: Any, path: Sequence[str], param: str = "") -> Iterator[tuple[str, Any]]:
    """(param, value) for every match of ``path``; ``"[]"`` walks a list's items."""
    if not path:
        yield param, value
        return
    head, rest = path[0], path[1:]
    if head == "[]":
        if isinstance(value, list):
            for i, item in enumerate(value):
                yield from _each(item, rest, param_name(param, i))
    elif isinstance(value, dict) and head in value:
        yield from _each(value[head], rest, param_name(param, head))


def _dotted(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def _only_in_modes(param: str, modes: tuple[str, ...]) -> _Check:
    def check(ctx: Context) -> Iterator[SchemaError]:
        if ctx.mode is not None and ctx.mode not in modes:
            for name, _ in _each(ctx.params, _dotted(param)):
                yield SchemaError(
                    f"{name} can only be used in {' or '.join(modes)} mode "
                    f"(this session is in {ctx.mode} mode).",
                    name,
                )
    return check


def _not_with_ui_modes(param: str, ui_modes: tuple[str, ...]) -> _Check:
    def check(ctx: Context) -> Iterator[SchemaError]:
        ui_mode = ctx.params.get("ui_mode", "hosted_page")
        if ui_mode in ui_modes:
            for name, _ in _each(ctx.params, _dotted(param)):
                yield SchemaError(f"{name} is not allowed when ui_mode is {ui_mode}.", name)
    return check


def _only_with_ui_modes(param: str, ui_modes: tuple[str, ...]) -> _Check:
    def check(ctx: Context) -> Iterator[SchemaError]:
        ui_mode = ctx.params.get("ui_mode", "hosted_page")
        if ui_mode not in ui_modes:
            for name, _ in _each(ctx.params, _dotted(param)):
                yield SchemaError(
                    f"{name} can only be set when ui_mode is {' or '.join(ui_modes)}.", name
                )
    return check


def _requires(param: str, other: str) -> _Check:
    def check(ctx: Context) -> Iterator[SchemaError]:
        if param in ctx.params and other not in ctx.params:
            yield SchemaError(f"{param} can only be used with {other}.", param)
    return check


def _exclusive(where: str, names: tuple[str, ...]) -> _Check:
    def check(ctx: Context) -> Iterator[SchemaError]:
        for base, value in _each(ctx.params, _dotted(where) if where else ()):
            if isinstance(value, dict) and sum(n in value for n in names) > 1:
                yield SchemaError(
                    f"You may only specify one of these parameters: {', '.join(names)}.",
                    param_name(base, names[1]),
                )
    return check


def _one_required(where: str, names: tuple[str, ...]) -> _Check:
    def check(ctx: Context) -> Iterator[SchemaError]:
        for base, value in _each(ctx.params, _dotted(where) if where else ()):
            if isinstance(value, dict) and not any(n in value for n in names):
                yield SchemaError(
                    f"Missing required param: {param_name(base, names[0])}. "
                    f"One of {' or '.join(names)} is required.",
                    param_name(base, names[0]),
                    "parameter_missing",
                )
    return check


def _max_items(param: str, limit: int) -> _Check:
    def check(ctx: Context) -> Iterator[SchemaError]:
        for name, value in _each(ctx.params, _dotted(param)):
            if isinstance(value, (list, dict)) and len(value) > limit:
                yield SchemaError(f"You may pass up to {limit} entries in {name}.", name)
    return check


def _max_length(param: str, limit: int) -> _Check:
    def check(ctx: Context) -> Iterator[SchemaError]:
        for name, value in _each(ctx.params, _dotted(param)):
            if isinstance(value, str) and len(value) > limit:
                yield SchemaError(f"{name} can be at most {limit} characters long.", name)
    return check


def _between(param: str, low: int, high: int) -> _Check:
    def check(ctx: Context) -> Iterator[SchemaError]:
        for name, value in _each(ctx.params, _dotted(param)):
            if isinstance(value, int) and not low <= value <= high:
                yield SchemaError(f"{name} must be between {low} and {high}.", name)
    return check


def _at_least(param: str, low: int) -> _Check:
    def check(ctx: Context) -> Iterator[SchemaError]:
        for name, value in _each(ctx.params, _dotted(param)):
            if isinstance(value, int) and value < low:
                yield SchemaError(f"{name} must be at least {low}.", name)
    return check


def _line_items_required(ctx: Context) -> Iterator[SchemaError]:
    if ctx.mode in ("payment", "subscription") and not ctx.params.get("line_items"):
        yield SchemaError(
            f"Missing required param: line_items (required in {ctx.mode} mode).",
            "line_items",
            "parameter_missing",
        )


def _currency_in_setup(ctx: Context) -> Iterator[SchemaError]:
    if (
        ctx.mode == "setup"
        and "currency" not in ctx.params
        and "allowed_payment_method_types" not in ctx.params
    ):
        yield SchemaError(
            "Missing required param: currency (required in setup mode when "
            "allowed_payment_method_types is not set).",
            "currency",
            "parameter_missing",
        )


def _expires_at(ctx: Context) -> Iterator[SchemaError]:
    expires_at = ctx.params.get("expires_at")
    if ctx.now is not None and isinstance(expires_at, int) and not (
        ctx.now + 1800 <= expires_at <= ctx.now + 86400
    ):
        yield SchemaError(
            "The `expires_at` timestamp must be between 30 minutes and 24 hours after "
            "Checkout Session creation.",
            "expires_at",
        )


_YEARS3 = {"day": 1095, "week": 156, "month": 36, "year": 3}


def _interval_count(where: str) -> _Check:
    def check(ctx: Context) -> Iterator[SchemaError]:
        for base, value in _each(ctx.params, _dotted(where)):
            if not isinstance(value, dict):
                continue
            count = value.get("interval_count", 1)
            most = _YEARS3.get(value.get("interval", ""))
            if isinstance(count, int) and (count < 1 or (most is not None and count > most)):
                name = param_name(base, "interval_count")
                yield SchemaError(
                    f"{name} must be between 1 and {most or 'the 3-year maximum'} for "
                    f"interval {value.get('interval')} (at most three years).",
                    name,
                )
    return check


def _is_recurring(item: Any, ctx: Context) -> bool | None:
    if not isinstance(item, dict):
        return None
    data = item.get("price_data")
    if isinstance(data, dict):
        return "recurring" in data
    price = item.get("price")
    return ctx.recurring_price(price) if isinstance(price, str) else None


def _items_of(ctx: Context) -> Iterator[tuple[str, Any]]:
    for key in ("line_items", "optional_items"):
        items = ctx.params.get(key)
        if isinstance(items, list):
            for i, item in enumerate(items):
                yield param_name(key, i), item


def _line_item_limits(ctx: Context) -> Iterator[SchemaError]:
    items = list(_items_of(ctx))
    if ctx.mode == "payment" and len(items) > 100:
        yield SchemaError(
            "In payment mode a session can have at most 100 line items (optional items "
            "included).", items[100][0],
        )
    if ctx.mode == "subscription":
        counts = {True: 0, False: 0}
        for name, item in items:
            kind = _is_recurring(item, ctx)
            if kind is None:
                continue
            counts[kind] += 1
            if counts[kind] > 20:
                what = "recurring" if kind else "one-time"
                yield SchemaError(
                    f"In subscription mode a session can have at most 20 line items with "
                    f"{what} prices (optional items included).", name,
                )
                return


def _recurring_matches_mode(ctx: Context) -> Iterator[SchemaError]:
    kinds = [(name, item, _is_recurring(item, ctx)) for name, item in _items_of(ctx)]
    if ctx.mode == "payment":
        for name, item, kind in kinds:
            if kind:
                where = "[price_data][recurring]" if "price_data" in item else "[price]"
                yield SchemaError(
                    "You specified `payment` mode but passed a recurring price. Either "
                    "switch to `subscription` mode or use only one-time prices.",
                    name + where,
                )
                return
    if ctx.mode == "subscription" and kinds and all(k is False for _, _, k in kinds):
        yield SchemaError(
            "You must provide at least one recurring price in `subscription` mode when "
            "using prices.",
            "line_items",
        )


def _metadata_limits(ctx: Context) -> Iterator[SchemaError]:
    yield from _metadata_in(ctx.params, "")


def _metadata_in(value: Any, param: str) -> Iterator[SchemaError]:
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from _metadata_in(item, param_name(param, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            name = param_name(param, key)
            if key == "metadata" and isinstance(item, dict):
                yield from _one_metadata(item, name)
            else:
                yield from _metadata_in(item, name)


def _currencies(ctx: Context) -> Iterator[SchemaError]:
    for name, value in _keyed(ctx.params, "", "currency"):
        if isinstance(value, str) and not re.fullmatch(r"[a-z]{3}", value):
            yield SchemaError(f"Invalid currency: {shown(value)}", name, "parameter_invalid")


def _keyed(value: Any, param: str, wanted: str) -> Iterator[tuple[str, Any]]:
    """(param, value) of every key ``wanted`` at any depth."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from _keyed(item, param_name(param, i), wanted)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == wanted:
                yield param_name(param, key), item
            else:
                yield from _keyed(item, param_name(param, key), wanted)


def _one_metadata(data: Mapping[str, Any], param: str) -> Iterator[SchemaError]:
    if len(data) > 50:
        yield SchemaError("You can specify up to 50 keys for metadata.", param)
    for key, value in data.items():
        name = param_name(param, key)
        if len(key) > 40:
            yield SchemaError("Metadata keys can be at most 40 characters long.", name)
        elif "[" in key or "]" in key:
            yield SchemaError("Metadata keys cannot contain '[' or ']'.", name)
        elif isinstance(value, str) and len(value) > 500:
            yield SchemaError("Metadata values can be at most 500 characters long.", name)


_CS = "checkout.sessions.create"
_CSP = "checkout.SessionCreateParams"
_CURRENCY = (
    "Three-letter [ISO currency code](https://www.iso.org/iso-4217-currency-codes.html), "
    "in lowercase."
)
_ELEMENTS_ONLY_NOT = "You can't set this parameter if `ui_mode` is `elements`."

RULES: tuple[Rule, ...] = (
    Rule(_CS, ("line_items",), _CSP,
         "The parameter is required for `payment` and `subscription` mode.",
         _line_items_required, presence=True),
    Rule(_CS, ("line_items",), _CSP,
         "For `payment` mode, there is a maximum of 100 line items",
         _line_item_limits),
    Rule(_CS, ("line_items",), _CSP,
         "For `subscription` mode, there is a maximum of 20 line items with recurring Prices "
         "and 20 line items with one-time Prices.",
         _line_item_limits),
    Rule(_CS, ("mode", "line_items"), _CSP,
         "Pass `subscription` if the Checkout Session includes at least one recurring item.",
         _recurring_matches_mode),
    Rule(_CS, ("line_items",), _CSP, "One of `price` or `price_data` is required.",
         _one_required("line_items.[]", ("price", "price_data"))),
    Rule(_CS, ("line_items",), _CSP, "One of `price` or `price_data` is required.",
         _exclusive("line_items.[]", ("price", "price_data"))),
    Rule(_CS, ("line_items",), _CSP, "One of `product` or `product_data` is required.",
         _one_required("line_items.[].price_data", ("product", "product_data"))),
    Rule(_CS, ("line_items",), _CSP, "One of `product` or `product_data` is required.",
         _exclusive("line_items.[].price_data", ("product", "product_data"))),
    Rule(_CS, ("line_items",), _CSP,
         "One of `unit_amount` or `unit_amount_decimal` is required.",
         _one_required("line_items.[].price_data", ("unit_amount", "unit_amount_decimal"))),
    Rule(_CS, ("line_items",), _CSP,
         "Only one of `unit_amount` and `unit_amount_decimal` can be set.",
         _exclusive("line_items.[].price_data", ("unit_amount", "unit_amount_decimal"))),
    Rule(_CS, ("line_items",), _CSP,
         "Maximum of three years interval allowed (3 years, 36 months, or 156 weeks).",
         _interval_count("line_items.[].price_data.recurring")),
    Rule(_CS, ("line_items",), _CSP, "You can specify a value up to 999999.",
         _between("line_items.[].adjustable_quantity.maximum", 0, 999999)),
    Rule(_CS, ("line_items",), _CSP,
         "A list of up to 8 URLs of images for this product",
         _max_items("line_items.[].price_data.product_data.images", 8)),
    Rule(_CS, ("optional_items",), _CSP,
         "There is a maximum of 10 optional items allowed on a Checkout Session",
         _max_items("optional_items", 10)),
    Rule(_CS, ("currency",), _CSP,
         "Required in `setup` mode when `allowed_payment_method_types` is not set.",
         _currency_in_setup, presence=True),
    Rule(_CS, ("expires_at",), _CSP,
         "It can be anywhere from 30 minutes to 24 hours after Checkout Session creation.",
         _expires_at),
    Rule(_CS, ("success_url",), _CSP,
         "This parameter is not allowed if ui_mode is `embedded_page` or `elements`.",
         _not_with_ui_modes("success_url", ("embedded_page", "elements"))),
    Rule(_CS, ("cancel_url",), _CSP,
         "This parameter is not allowed if ui_mode is `embedded_page` or `elements`.",
         _not_with_ui_modes("cancel_url", ("embedded_page", "elements"))),
    Rule(_CS, ("permissions",), _CSP,
         "Can only be set when creating `embedded_page` or `elements` sessions.",
         _only_with_ui_modes("permissions", ("embedded_page", "elements"))),
    *(
        Rule(_CS, (name,), _CSP, _ELEMENTS_ONLY_NOT, _not_with_ui_modes(name, ("elements",)))
        for name in (
            "after_expiration", "custom_fields", "custom_text", "origin_context",
            "submit_type", "payment_method_options.acss_debit",
            "payment_method_options.card.restrictions", "tax_id_collection.required",
        )
    ),
    Rule(_CS, ("branding_settings",), _CSP,
         "This parameter is not allowed if ui_mode is `elements`.",
         _not_with_ui_modes("branding_settings", ("elements",))),
    Rule(_CS, ("optional_items",), _CSP,
         "You can't set this parameter if `ui_mode` is `elements` or `form`.",
         _not_with_ui_modes("optional_items", ("elements", "form"))),
    Rule(_CS, ("customer_creation",), _CSP, "Can only be set in `payment` and `setup` mode.",
         _only_in_modes("customer_creation", ("payment", "setup"))),
    Rule(_CS, ("payment_method_collection",), _CSP,
         "Can only be set in `subscription` mode. Defaults to `always`.",
         _only_in_modes("payment_method_collection", ("subscription",))),
    Rule(_CS, ("saved_payment_method_options",), _CSP,
         "Only available in `payment` and `subscription` mode.",
         _only_in_modes("saved_payment_method_options", ("payment", "subscription"))),
    Rule(_CS, ("submit_type",), _CSP,
         "`submit_type` can only be specified on Checkout Sessions in\n    `payment` or "
         "`subscription` mode.",
         _only_in_modes("submit_type", ("payment", "subscription"))),
    Rule(_CS, ("payment_intent_data",), _CSP,
         "A subset of parameters to be passed to PaymentIntent creation for Checkout "
         "Sessions in `payment` mode.",
         _only_in_modes("payment_intent_data", ("payment",))),
    Rule(_CS, ("subscription_data",), _CSP,
         "A subset of parameters to be passed to subscription creation for Checkout "
         "Sessions in `subscription` mode.",
         _only_in_modes("subscription_data", ("subscription",))),
    Rule(_CS, ("setup_intent_data",), _CSP,
         "A subset of parameters to be passed to SetupIntent creation for Checkout "
         "Sessions in `setup` mode.",
         _only_in_modes("setup_intent_data", ("setup",))),
    Rule(_CS, ("invoice_creation",), _CSP,
         "Generate a post-purchase Invoice for one-time payments.",
         _only_in_modes("invoice_creation", ("payment",))),
    Rule(_CS, ("customer_update",), _CSP, "Can only be provided when `customer` is provided.",
         _requires("customer_update", "customer")),
    Rule(_CS, ("customer", "customer_email"), _CSP,
         "If provided, this value will be used when the Customer object is created.",
         _exclusive("", ("customer", "customer_email"))),
    Rule(_CS, ("subscription_data",), _CSP, "Has to be at least 1.",
         _at_least("subscription_data.trial_period_days", 1)),
    Rule(_CS, ("custom_fields",), _CSP, "Up to 3 fields are supported.",
         _max_items("custom_fields", 3)),
    Rule(_CS, ("custom_fields",), _CSP, "Up to 200 options allowed.",
         _max_items("custom_fields.[].dropdown.options", 200)),
    Rule(_CS, ("custom_fields",), _CSP,
         "Must be unique to this field, alphanumeric, and up to 200 characters.",
         _max_length("custom_fields.[].key", 200)),
    Rule(_CS, ("shipping_options",), _CSP, "Up to a maximum of 5.",
         _max_items("shipping_options", 5)),
    Rule(_CS, ("discounts",), _CSP, "Currently, only up to one may be specified.",
         _max_items("discounts", 1)),
    Rule(_CS, ("invoice_creation",), _CSP,
         "A list of up to 4 custom fields to be displayed on the invoice.",
         _max_items("invoice_creation.invoice_data.custom_fields", 4)),
    Rule(_CS, ("metadata",), "API limit",
         "https://docs.stripe.com/api/metadata: up to 50 keys, key names up to 40 "
         "characters long (no square brackets), values up to 500 characters long.",
         _metadata_limits),
    Rule(_CS, ("currency",), _CSP, _CURRENCY, _currencies),
    Rule("prices.create", ("currency",), "PriceCreateParams", _CURRENCY, _currencies),
    Rule("prices.create", ("recurring",), "PriceCreateParams",
         "Maximum of three years interval allowed (3 years, 36 months, or 156 weeks).",
         _interval_count("recurring")),
    # Not in PriceCreateParams' docstrings; the SDK says it of a line item's price_data,
    # which has the same two fields, and the API refuses a price with neither or both.
    Rule("prices.create", ("product",), _CSP, "One of `product` or `product_data` is required.",
         _one_required("", ("product", "product_data"))),
    Rule("prices.create", ("product",), _CSP, "One of `product` or `product_data` is required.",
         _exclusive("", ("product", "product_data"))),
    Rule("prices.create", ("unit_amount",), "PriceCreateParams",
         "Only one of `unit_amount` and `unit_amount_decimal` can be set.",
         _exclusive("", ("unit_amount", "unit_amount_decimal"))),
    Rule("prices.create", ("metadata",), "API limit", "https://docs.stripe.com/api/metadata",
         _metadata_limits),
    Rule("prices.list", ("lookup_keys",), "PriceListParams",
         "You can specify up to 10 lookup_keys.", _max_items("lookup_keys", 10)),
    Rule("products.create", ("default_price_data",), "ProductCreateParams", _CURRENCY,
         _currencies),
    Rule("products.create", ("images",), "ProductCreateParams",
         "A list of up to 8 URLs of images for this product", _max_items("images", 8)),
    Rule("products.create", ("metadata",), "API limit",
         "https://docs.stripe.com/api/metadata", _metadata_limits),
    Rule("events.list", ("types",), "EventListParams",
         "You may pass either `type` or `types`, but not both.",
         _exclusive("", ("type", "types"))),
    Rule("events.list", ("types",), "EventListParams", "An array of up to 20 strings",
         _max_items("types", 20)),
    *(
        Rule(endpoint, ("limit",), ENDPOINTS[endpoint],
             "Limit can range between 1 and 100, and the default is 10.",
             _between("limit", 1, 100))
        for endpoint in ENDPOINTS if endpoint.endswith(".list")
    ),
)
"""The documented rules, by endpoint. Where the SDK's wording is weaker than the API's
behaviour (payment_intent_data "for ... `payment` mode", invoice_creation "for one-time
payments", customer_email "used when the Customer object is created"), the rule follows
the API's refusal and the quote is the closest sentence the SDK has."""


def no_price_knowledge(price: str) -> bool | None:
    return None


def session_mode(params: Mapping[str, Any],
                 recurring_price: Callable[[str], bool | None] = no_price_knowledge) -> str:
    """The session's mode: ``params["mode"]``, else (``mode`` is optional) ``subscription``
    when an item is known to be recurring and ``payment`` otherwise."""
    mode = params.get("mode")
    if isinstance(mode, str):
        return mode
    probe = Context(params, None, recurring_price)
    if any(_is_recurring(item, probe) for _, item in _items_of(probe)):
        return "subscription"
    return "payment"
