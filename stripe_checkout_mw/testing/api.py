"""The in-memory part of the emulator: Stripe's objects, its validation and its errors.

:class:`StripeState` knows nothing about sockets. It takes a decoded request
(method, path, lower-cased headers, params) and answers with a status and a JSON
body shaped like Stripe's, so it can be exercised directly and served by
:mod:`stripe_checkout_mw.testing.server`. Every public method takes the one lock the
emulator shares with its webhook delivery thread.

Only the slice of the API this project uses is emulated: Checkout Sessions, their
line items, Prices, Products and Events. The point is to reject what Stripe rejects
(unknown parameters, the removed ``payment_method_types``, bad modes, mixed
currencies...) so that a test against the emulator fails where production would.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

__all__ = [
    "API_VERSION",
    "ApiError",
    "ApiResponse",
    "StripeState",
]

API_VERSION = "2026-10-28.endive"
"""The API version the emulator speaks and stamps on its events."""

_ALNUM = string.ascii_letters + string.digits

# Create parameters of POST /v1/checkout/sessions that the emulator accepts. Anything
# else is rejected by name, as Stripe does, so a typo fails in tests, not in production.
SESSION_CREATE_PARAMS = frozenset(
    {
        "adaptive_pricing",
        "after_expiration",
        "allow_promotion_codes",
        "automatic_tax",
        "billing_address_collection",
        "cancel_url",
        "client_reference_id",
        "consent_collection",
        "currency",
        "custom_fields",
        "custom_text",
        "customer",
        "customer_creation",
        "customer_email",
        "customer_update",
        "discounts",
        "excluded_payment_method_types",
        "expand",
        "expires_at",
        "invoice_creation",
        "line_items",
        "locale",
        "metadata",
        "mode",
        "payment_intent_data",
        "payment_method_collection",
        "payment_method_configuration",
        "payment_method_options",
        "phone_number_collection",
        "redirect_on_completion",
        "return_url",
        "saved_payment_method_options",
        "setup_intent_data",
        "shipping_address_collection",
        "shipping_options",
        "submit_type",
        "subscription_data",
        "success_url",
        "tax_id_collection",
        "ui_mode",
        "wallet_options",
    }
)
LINE_ITEM_PARAMS = frozenset(
    {"adjustable_quantity", "dynamic_tax_rates", "metadata", "price", "price_data",
     "quantity", "tax_rates"}
)
PRICE_DATA_PARAMS = frozenset(
    {"currency", "product", "product_data", "recurring", "tax_behavior", "unit_amount",
     "unit_amount_decimal"}
)
PRODUCT_DATA_PARAMS = frozenset(
    {"description", "images", "metadata", "name", "tax_code", "unit_label"}
)
RECURRING_PARAMS = frozenset({"interval", "interval_count"})
PRICE_CREATE_PARAMS = frozenset(
    {"active", "billing_scheme", "currency", "expand", "lookup_key", "metadata", "nickname",
     "product", "product_data", "recurring", "tax_behavior", "transfer_lookup_key",
     "unit_amount", "unit_amount_decimal"}
)
PRODUCT_CREATE_PARAMS = frozenset(
    {"active", "default_price_data", "description", "expand", "id", "images", "metadata",
     "name", "shippable", "statement_descriptor", "tax_code", "type", "unit_label", "url"}
)
_RETRIEVE_PARAMS = frozenset({"expand"})
_LIST_PARAMS = frozenset({"created", "ending_before", "expand", "limit", "starting_after"})
UI_MODES = frozenset({"hosted_page", "embedded_page", "elements", "form"})
OLD_UI_MODES = {"hosted": "hosted_page", "embedded": "embedded_page", "custom": "elements"}
MODES = frozenset({"payment", "subscription", "setup"})
INTERVALS = frozenset({"day", "week", "month", "year"})


def new_id(prefix: str, length: int = 24) -> str:
    """A Stripe-looking id: ``prefix`` plus random letters and digits."""
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


class ApiError(Exception):
    """An error Stripe would answer with; rendered as ``{"error": {...}}``."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.param is not None:
            error["param"] = self.param
        if self.code is not None:
            error["code"] = self.code
        return {"error": error}


def _unknown(param: str, extra: str = "") -> ApiError:
    return ApiError(
        f"Received unknown parameter: {param}{extra}", param=param, code="parameter_unknown"
    )


def _missing(param: str) -> ApiError:
    return ApiError(
        f"Missing required param: {param}.", param=param, code="parameter_missing"
    )


def _invalid(message: str, param: str, code: str = "parameter_invalid") -> ApiError:
    return ApiError(message, param=param, code=code)


def _no_such(kind: str, ident: str, param: str = "id") -> ApiError:
    return ApiError(
        f"No such {kind}: '{ident}'", status=404, param=param, code="resource_missing"
    )


def _sub(prefix: str, key: str | int) -> str:
    return f"{prefix}[{key}]"


def _check_keys(value: dict[str, Any], allowed: frozenset[str], prefix: str | None) -> None:
    for key in value:
        if key not in allowed:
            raise _unknown(_sub(prefix, key) if prefix else key)


def _as_str(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise _invalid(f"Invalid string: {param} must be a string", param)
    return value


def _as_dict(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"Invalid hash: {param} must be a hash (dictionary)", param)
    return value


def _as_list(value: Any, param: str) -> list[Any]:
    if isinstance(value, dict) and not value:
        return []
    if not isinstance(value, list):
        raise _invalid(f"Invalid array: {param} must be an array", param)
    return value


def _as_int(value: Any, param: str, minimum: int | None = None) -> int:
    if not isinstance(value, str) or not re.fullmatch(r"-?\d{1,18}", value):
        raise _invalid(f"Invalid integer: {value!r}", param, "parameter_invalid_integer")
    number = int(value)
    if minimum is not None and number < minimum:
        raise _invalid(
            f"This value must be greater than or equal to {minimum}.",
            param,
            "parameter_invalid_integer",
        )
    return number


def _as_bool(value: Any, param: str) -> bool:
    if value in ("true", "false"):
        return bool(value == "true")
    raise _invalid(f"Invalid boolean: {value!r}", param)


def _as_url(value: Any, param: str) -> str:
    text = _as_str(value, param)
    if not re.match(r"^https?://[^/\s]+", text):
        raise ApiError(
            f"Not a valid URL: {param} must be an absolute http(s) URL",
            param=param,
            code="url_invalid",
        )
    return text


def _as_metadata(value: Any, param: str) -> dict[str, str]:
    if value == "":
        return {}
    data = _as_dict(value, param)
    if len(data) > 50:
        raise _invalid("You can specify up to 50 keys for metadata.", param)
    result: dict[str, str] = {}
    for key, item in data.items():
        if len(key) > 40:
            raise _invalid("Metadata keys can be at most 40 characters long.", _sub(param, key))
        text = _as_str(item, _sub(param, key))
        if len(text) > 500:
            raise _invalid("Metadata values can be at most 500 characters long.",
                           _sub(param, key))
        result[key] = text
    return result


def _as_currency(value: Any, param: str) -> str:
    text = _as_str(value, param).lower()
    if not re.fullmatch(r"[a-z]{3}", text):
        raise _invalid(f"Invalid currency: {value}", param, "invalid_currency")
    return text


def _list_object(items: list[dict[str, Any]], url: str, params: dict[str, Any]) -> dict[str, Any]:
    limit = 10
    if "limit" in params:
        limit = _as_int(params["limit"], "limit", 1)
        if limit > 100:
            raise _invalid("This value must be less than or equal to 100.", "limit")
    if "starting_after" in params:
        cursor = _as_str(params["starting_after"], "starting_after")
        ids = [item["id"] for item in items]
        if cursor not in ids:
            raise _no_such("object", cursor, "starting_after")
        items = items[ids.index(cursor) + 1 :]
    if "ending_before" in params:
        cursor = _as_str(params["ending_before"], "ending_before")
        ids = [item["id"] for item in items]
        if cursor not in ids:
            raise _no_such("object", cursor, "ending_before")
        items = items[: ids.index(cursor)][-limit:]
    return {
        "object": "list",
        "data": copy.deepcopy(items[:limit]),
        "has_more": len(items) > limit,
        "url": url,
    }


def _expand_list(params: dict[str, Any]) -> list[str]:
    if "expand" not in params:
        return []
    return [_as_str(v, _sub("expand", i)) for i, v in
            enumerate(_as_list(params["expand"], "expand"))]


@dataclass
class ApiResponse:
    """What the API answers: status, JSON body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Stored:
    fingerprint: str
    status: int
    body: dict[str, Any]


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., dict[str, Any]]


class StripeState:
    """Stripe's objects in memory, with the API's handlers and the checkout transitions.

    :param lock: the emulator-wide lock every method takes.
    :param api_base: used for the hosted page ``url`` of each session.
    :param on_event: called (under the lock) with each new event, to queue delivery
        and set its ``pending_webhooks``.
    :param clock: seconds since the epoch; injectable so expiry can be tested.
    """

    def __init__(
        self,
        *,
        lock: threading.RLock,
        api_base: str,
        on_event: Callable[[dict[str, Any]], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lock = lock
        self.api_base = api_base
        self.on_event = on_event
        self.clock = clock
        self.prices: dict[str, dict[str, Any]] = {}
        self.products: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.line_items: dict[str, list[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._idempotency: dict[str, _Stored] = {}
        self._routes = [
            _Route("POST", re.compile(r"/v1/checkout/sessions"), self._create_session),
            _Route("GET", re.compile(r"/v1/checkout/sessions"), self._list_sessions),
            _Route("GET", re.compile(r"/v1/checkout/sessions/([^/]+)"), self._get_session),
            _Route("GET", re.compile(r"/v1/checkout/sessions/([^/]+)/line_items"),
                   self._get_line_items),
            _Route("POST", re.compile(r"/v1/checkout/sessions/([^/]+)/expire"),
                   self._expire_session),
            _Route("GET", re.compile(r"/v1/prices"), self._list_prices),
            _Route("POST", re.compile(r"/v1/prices"), self._create_price),
            _Route("GET", re.compile(r"/v1/prices/([^/]+)"), self._get_price),
            _Route("GET", re.compile(r"/v1/products"), self._list_products),
            _Route("POST", re.compile(r"/v1/products"), self._create_product),
            _Route("GET", re.compile(r"/v1/products/([^/]+)"), self._get_product),
            _Route("GET", re.compile(r"/v1/events"), self._list_events),
            _Route("GET", re.compile(r"/v1/events/([^/]+)"), self._get_event),
        ]

    def now(self) -> int:
        return int(self.clock())

    # -- dispatch ------------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        params: dict[str, Any],
        *,
        idempotency_key: str | None,
        request_id: str,
    ) -> ApiResponse:
        """Answer one authenticated API request (auth is checked by the caller)."""
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match and route.method == method:
                break
        else:
            raise ApiError(
                f"Unrecognized request URL ({method}: {path}). Please see "
                "https://stripe.com/docs or we can help at https://support.stripe.com/.",
                status=404,
            )
        with self.lock:
            if method == "POST" and idempotency_key is not None:
                return self._idempotent(route, match, params, path, idempotency_key,
                                        request_id)
            return ApiResponse(200, route.handler(params, *match.groups(),
                                                  request={"id": request_id,
                                                           "idempotency_key": None}))

    def _idempotent(
        self,
        route: _Route,
        match: re.Match[str],
        params: dict[str, Any],
        path: str,
        key: str,
        request_id: str,
    ) -> ApiResponse:
        if len(key) > 255:
            raise _invalid("Idempotency keys can be at most 255 characters long.",
                           "Idempotency-Key")
        fingerprint = json.dumps([path, params], sort_keys=True)
        stored = self._idempotency.get(key)
        if stored is not None:
            if stored.fingerprint != fingerprint:
                raise ApiError(
                    "Keys for idempotent requests can only be used with the same "
                    "parameters they were first used with. Try using a key other than "
                    f"'{key}' if you meant to execute a different request.",
                    type="idempotency_error",
                )
            return ApiResponse(stored.status, copy.deepcopy(stored.body),
                               [("Idempotent-Replayed", "true")])
        body = route.handler(params, *match.groups(),
                             request={"id": request_id, "idempotency_key": key})
        # Like Stripe, only a request that got past validation is saved: a 400 may be
        # retried with the same key once the caller fixed nothing but the transient cause.
        self._idempotency[key] = _Stored(fingerprint, 200, copy.deepcopy(body))
        return ApiResponse(200, body)

    # -- prices and products -------------------------------------------------------

    def new_product(
        self,
        name: str,
        *,
        product_id: str | None = None,
        description: str | None = None,
        active: bool = True,
        metadata: dict[str, str] | None = None,
        images: list[str] | None = None,
    ) -> dict[str, Any]:
        now = self.now()
        ident = product_id or new_id("prod_", 14)
        product: dict[str, Any] = {
            "id": ident,
            "object": "product",
            "active": active,
            "created": now,
            "default_price": None,
            "description": description,
            "images": images or [],
            "livemode": False,
            "marketing_features": [],
            "metadata": metadata or {},
            "name": name,
            "package_dimensions": None,
            "shippable": None,
            "statement_descriptor": None,
            "tax_code": None,
            "type": "service",
            "unit_label": None,
            "updated": now,
            "url": None,
        }
        self.products[ident] = product
        return product

    def new_price(
        self,
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
        if lookup_key is not None:
            # A lookup key belongs to one price at a time (transfer_lookup_key semantics).
            for other in self.prices.values():
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
        price: dict[str, Any] = {
            "id": price_id,
            "object": "price",
            "active": active,
            "billing_scheme": "per_unit",
            "created": self.now(),
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
        }
        self.prices[price_id] = price
        return price

    def _recurring(self, value: Any, param: str) -> dict[str, Any]:
        data = _as_dict(value, param)
        _check_keys(data, RECURRING_PARAMS, param)
        if "interval" not in data:
            raise _missing(_sub(param, "interval"))
        interval = _as_str(data["interval"], _sub(param, "interval"))
        if interval not in INTERVALS:
            raise _invalid(f"Invalid interval: must be one of {', '.join(sorted(INTERVALS))}",
                           _sub(param, "interval"))
        result: dict[str, Any] = {"interval": interval}
        if "interval_count" in data:
            result["interval_count"] = _as_int(data["interval_count"],
                                               _sub(param, "interval_count"), 1)
        return result

    def _amount(self, data: dict[str, Any], param: str) -> tuple[int, str | None]:
        if "unit_amount" in data and "unit_amount_decimal" in data:
            raise _invalid("You may only specify one of these parameters: unit_amount, "
                           "unit_amount_decimal.", param)
        if "unit_amount" in data:
            return _as_int(data["unit_amount"], _sub(param, "unit_amount") if param else
                           "unit_amount", 0), None
        if "unit_amount_decimal" in data:
            name = _sub(param, "unit_amount_decimal") if param else "unit_amount_decimal"
            text = _as_str(data["unit_amount_decimal"], name)
            try:
                dec = Decimal(text)
            except InvalidOperation:
                raise _invalid(f"Invalid decimal: {text}", name) from None
            if dec < 0 or not dec.is_finite():
                raise _invalid("This value must be greater than or equal to 0.", name)
            return int(dec.to_integral_value()), text
        raise _missing(_sub(param, "unit_amount") if param else "unit_amount")

    def _product_from(self, data: dict[str, Any], param: str) -> str:
        def name(key: str) -> str:
            return _sub(param, key) if param else key

        if "product" in data and "product_data" in data:
            raise _invalid("You may only specify one of these parameters: product, "
                           "product_data.", param or "product")
        if "product" in data:
            product_id = _as_str(data["product"], name("product"))
            if product_id not in self.products:
                raise ApiError(f"No such product: '{product_id}'", param=name("product"),
                               code="resource_missing")
            return product_id
        if "product_data" in data:
            pdata = _as_dict(data["product_data"], name("product_data"))
            _check_keys(pdata, PRODUCT_DATA_PARAMS, name("product_data"))
            if "name" not in pdata:
                raise _missing(_sub(name("product_data"), "name"))
            product = self.new_product(
                _as_str(pdata["name"], _sub(name("product_data"), "name")),
                description=(_as_str(pdata["description"],
                                     _sub(name("product_data"), "description"))
                             if "description" in pdata else None),
                metadata=_as_metadata(pdata.get("metadata", {}),
                                      _sub(name("product_data"), "metadata")),
                images=[_as_str(v, _sub(name("product_data"), "images"))
                        for v in _as_list(pdata.get("images", []),
                                          _sub(name("product_data"), "images"))],
            )
            return str(product["id"])
        raise _missing(name("product"))

    def _create_price(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        _check_keys(params, PRICE_CREATE_PARAMS, None)
        if "currency" not in params:
            raise _missing("currency")
        currency = _as_currency(params["currency"], "currency")
        amount, decimal_text = self._amount(params, "")
        product = self._product_from(params, "")
        lookup_key = None
        if "lookup_key" in params:
            lookup_key = _as_str(params["lookup_key"], "lookup_key")
            transfer = _as_bool(params.get("transfer_lookup_key", "false"),
                                "transfer_lookup_key")
            holder = next((p for p in self.prices.values() if p["lookup_key"] == lookup_key),
                          None)
            if holder is not None and not transfer:
                raise _invalid(
                    f"A price ({holder['id']}) already uses that lookup key. Pass "
                    "transfer_lookup_key=true to move it to the new price.",
                    "lookup_key",
                    "lookup_key_already_exists",
                )
        recurring = (self._recurring(params["recurring"], "recurring")
                     if "recurring" in params else None)
        price = self.new_price(
            unit_amount=amount,
            unit_amount_decimal=decimal_text,
            currency=currency,
            product=product,
            lookup_key=lookup_key,
            recurring=recurring,
            nickname=_as_str(params["nickname"], "nickname") if "nickname" in params else None,
            active=_as_bool(params.get("active", "true"), "active"),
            metadata=_as_metadata(params.get("metadata", {}), "metadata"),
        )
        return copy.deepcopy(price)

    def _get_price(self, params: dict[str, Any], price_id: str, *,
                   request: dict[str, Any]) -> dict[str, Any]:
        _check_keys(params, _RETRIEVE_PARAMS, None)
        if price_id not in self.prices:
            raise _no_such("price", price_id)
        return copy.deepcopy(self.prices[price_id])

    def _list_prices(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        _check_keys(params, _LIST_PARAMS | {"active", "currency", "lookup_keys", "product",
                                            "recurring", "type"}, None)
        prices = list(reversed(self.prices.values()))
        if "lookup_keys" in params:
            keys = [_as_str(v, _sub("lookup_keys", i)) for i, v in
                    enumerate(_as_list(params["lookup_keys"], "lookup_keys"))]
            if len(keys) > 10:
                raise _invalid("You may only specify up to 10 lookup keys.", "lookup_keys")
            prices = [p for p in prices if p["lookup_key"] in keys]
        if "active" in params:
            active = _as_bool(params["active"], "active")
            prices = [p for p in prices if p["active"] == active]
        if "currency" in params:
            currency = _as_currency(params["currency"], "currency")
            prices = [p for p in prices if p["currency"] == currency]
        if "product" in params:
            product = _as_str(params["product"], "product")
            prices = [p for p in prices if p["product"] == product]
        if "type" in params:
            kind = _as_str(params["type"], "type")
            prices = [p for p in prices if p["type"] == kind]
        return _list_object(prices, "/v1/prices", params)

    def _create_product(self, params: dict[str, Any], *,
                        request: dict[str, Any]) -> dict[str, Any]:
        _check_keys(params, PRODUCT_CREATE_PARAMS, None)
        if "name" not in params:
            raise _missing("name")
        product_id = None
        if "id" in params:
            product_id = _as_str(params["id"], "id")
            if product_id in self.products:
                raise ApiError("Product already exists.", param="id",
                               code="resource_already_exists")
        product = self.new_product(
            _as_str(params["name"], "name"),
            product_id=product_id,
            description=(_as_str(params["description"], "description")
                         if "description" in params else None),
            active=_as_bool(params.get("active", "true"), "active"),
            metadata=_as_metadata(params.get("metadata", {}), "metadata"),
            images=[_as_str(v, "images") for v in _as_list(params.get("images", []),
                                                              "images")],
        )
        return copy.deepcopy(product)

    def _get_product(self, params: dict[str, Any], product_id: str, *,
                     request: dict[str, Any]) -> dict[str, Any]:
        _check_keys(params, _RETRIEVE_PARAMS, None)
        if product_id not in self.products:
            raise _no_such("product", product_id)
        return copy.deepcopy(self.products[product_id])

    def _list_products(self, params: dict[str, Any], *,
                       request: dict[str, Any]) -> dict[str, Any]:
        _check_keys(params, _LIST_PARAMS | {"active", "ids", "shippable", "url"}, None)
        products = list(reversed(self.products.values()))
        if "active" in params:
            active = _as_bool(params["active"], "active")
            products = [p for p in products if p["active"] == active]
        return _list_object(products, "/v1/products", params)

    # -- checkout sessions ---------------------------------------------------------

    def _line_item(
        self, raw: Any, index: int, mode: str
    ) -> tuple[dict[str, Any], int]:
        param = _sub("line_items", index)
        item = _as_dict(raw, param)
        _check_keys(item, LINE_ITEM_PARAMS, param)
        if "price" in item and "price_data" in item:
            raise _invalid("You may only specify one of these parameters: price, price_data.",
                           param)
        if "price" in item:
            price_id = _as_str(item["price"], _sub(param, "price"))
            price = self.prices.get(price_id)
            if price is None:
                raise ApiError(f"No such price: '{price_id}'", param=_sub(param, "price"),
                               code="resource_missing")
            if not price["active"]:
                raise _invalid(f"The price specified ({price_id}) is inactive. This field "
                               "only accepts active prices.", _sub(param, "price"))
        elif "price_data" in item:
            pparam = _sub(param, "price_data")
            data = _as_dict(item["price_data"], pparam)
            _check_keys(data, PRICE_DATA_PARAMS, pparam)
            if "currency" not in data:
                raise _missing(_sub(pparam, "currency"))
            currency = _as_currency(data["currency"], _sub(pparam, "currency"))
            amount, decimal_text = self._amount(data, pparam)
            recurring = (self._recurring(data["recurring"], _sub(pparam, "recurring"))
                         if "recurring" in data else None)
            product = self._product_from(data, pparam)
            # Inline prices exist only for this session, so lookups never return them.
            price = self.new_price(unit_amount=amount, unit_amount_decimal=decimal_text,
                                   currency=currency, product=product, recurring=recurring,
                                   active=False)
        else:
            raise ApiError("You must specify either `price` or `price_data` in each line "
                           "item.", param=param, code="parameter_missing")
        if "quantity" not in item:
            raise _missing(_sub(param, "quantity"))
        quantity = _as_int(item["quantity"], _sub(param, "quantity"), 1)
        if "adjustable_quantity" in item:
            _as_dict(item["adjustable_quantity"], _sub(param, "adjustable_quantity"))
        if mode == "payment" and price["type"] == "recurring":
            raise _invalid(
                "You specified `payment` mode but passed a recurring price. Either switch "
                "to `subscription` mode or use only one-time prices.",
                _sub(param, "price") if "price" in item else _sub(param, "price_data"),
            )
        product_obj = self.products.get(price["product"])
        amount_each = int(price["unit_amount"] or 0)
        line = {
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
        }
        return line, quantity

    def _create_session(self, params: dict[str, Any], *,
                        request: dict[str, Any]) -> dict[str, Any]:
        if "payment_method_types" in params:
            raise _unknown(
                "payment_method_types",
                f". It can no longer be sent on create at API version {API_VERSION}: "
                "Stripe chooses payment methods dynamically; use "
                "excluded_payment_method_types to narrow them.",
            )
        _check_keys(params, SESSION_CREATE_PARAMS, None)
        if "mode" not in params:
            raise _missing("mode")
        mode = _as_str(params["mode"], "mode")
        if mode not in MODES:
            raise _invalid(f"Invalid mode: must be one of {', '.join(sorted(MODES))}", "mode")
        ui_mode = _as_str(params.get("ui_mode", "hosted_page"), "ui_mode")
        if ui_mode in OLD_UI_MODES:
            raise _invalid(
                f"Invalid ui_mode: '{ui_mode}' is no longer supported at API version "
                f"{API_VERSION}; use '{OLD_UI_MODES[ui_mode]}'.",
                "ui_mode",
            )
        if ui_mode not in UI_MODES:
            raise _invalid(f"Invalid ui_mode: must be one of {', '.join(sorted(UI_MODES))}",
                           "ui_mode")
        success_url = _as_url(params["success_url"], "success_url") \
            if "success_url" in params else None
        cancel_url = _as_url(params["cancel_url"], "cancel_url") \
            if "cancel_url" in params else None
        if "customer" in params and "customer_email" in params:
            raise _invalid("You may only specify one of these parameters: customer, "
                           "customer_email.", "customer_email")
        customer = _as_str(params["customer"], "customer") if "customer" in params else None
        if customer is not None and not customer.startswith("cus_"):
            raise ApiError(f"No such customer: '{customer}'", param="customer",
                           code="resource_missing")
        customer_email = (_as_str(params["customer_email"], "customer_email")
                          if "customer_email" in params else None)
        if customer_email is not None and "@" not in customer_email:
            raise _invalid("Invalid email address: " + customer_email, "customer_email",
                           "email_invalid")
        client_reference_id = None
        if "client_reference_id" in params:
            client_reference_id = _as_str(params["client_reference_id"],
                                          "client_reference_id")
            if len(client_reference_id) > 200:
                raise _invalid("client_reference_id can be at most 200 characters.",
                               "client_reference_id")
        metadata = _as_metadata(params.get("metadata", {}), "metadata")
        now = self.now()
        expires_at = now + 24 * 3600
        if "expires_at" in params:
            expires_at = _as_int(params["expires_at"], "expires_at")
            if not now + 30 * 60 <= expires_at <= now + 24 * 3600:
                raise _invalid("The `expires_at` timestamp must be between 30 minutes and "
                               "24 hours from Checkout Session creation.", "expires_at")
        if "subscription_data" in params:
            if mode != "subscription":
                raise _invalid("subscription_data can only be used in `subscription` mode.",
                               "subscription_data")
            sub = _as_dict(params["subscription_data"], "subscription_data")
            if "trial_period_days" in sub:
                _as_int(sub["trial_period_days"], "subscription_data[trial_period_days]", 1)
        shipping = None
        if "shipping_address_collection" in params:
            sac = _as_dict(params["shipping_address_collection"],
                           "shipping_address_collection")
            _check_keys(sac, frozenset({"allowed_countries"}), "shipping_address_collection")
            if "allowed_countries" not in sac:
                raise _missing("shipping_address_collection[allowed_countries]")
            countries = []
            for i, country in enumerate(_as_list(
                    sac["allowed_countries"], "shipping_address_collection[allowed_countries]")):
                cparam = f"shipping_address_collection[allowed_countries][{i}]"
                code = _as_str(country, cparam)
                if not re.fullmatch(r"[A-Z]{2}", code):
                    raise _invalid(f"Invalid country: {code}", cparam)
                countries.append(code)
            shipping = {"allowed_countries": countries}
        automatic_tax = {"enabled": False, "liability": None, "provider": None, "status": None}
        if "automatic_tax" in params:
            tax = _as_dict(params["automatic_tax"], "automatic_tax")
            _check_keys(tax, frozenset({"enabled", "liability"}), "automatic_tax")
            if "enabled" not in tax:
                raise _missing("automatic_tax[enabled]")
            automatic_tax["enabled"] = _as_bool(tax["enabled"], "automatic_tax[enabled]")
        phone = {"enabled": False}
        if "phone_number_collection" in params:
            pnc = _as_dict(params["phone_number_collection"], "phone_number_collection")
            phone["enabled"] = _as_bool(pnc.get("enabled", "false"),
                                        "phone_number_collection[enabled]")
        allow_promotion_codes = (_as_bool(params["allow_promotion_codes"],
                                          "allow_promotion_codes")
                                 if "allow_promotion_codes" in params else None)
        excluded = [_as_str(v, _sub("excluded_payment_method_types", i)) for i, v in
                    enumerate(_as_list(params.get("excluded_payment_method_types", []),
                                       "excluded_payment_method_types"))]

        items: list[dict[str, Any]] = []
        raw_items = _as_list(params.get("line_items", []), "line_items")
        if mode == "setup" and raw_items:
            raise _invalid("line_items cannot be used in `setup` mode.", "line_items")
        if mode in ("payment", "subscription") and not raw_items:
            raise ApiError(f"line_items is required in `{mode}` mode.", param="line_items",
                           code="parameter_missing")
        for index, raw in enumerate(raw_items):
            line, _ = self._line_item(raw, index, mode)
            items.append(line)
        recurring_count = sum(1 for i in items if i["price"]["type"] == "recurring")
        one_time_count = len(items) - recurring_count
        if mode == "payment" and len(items) > 100:
            raise _invalid("You may only specify up to 100 line items in `payment` mode.",
                           "line_items")
        if mode == "subscription":
            if recurring_count == 0:
                raise _invalid("You must provide at least one recurring price in "
                               "`subscription` mode when using prices.", "line_items")
            if recurring_count > 20 or one_time_count > 20:
                raise _invalid("You may only specify up to 20 recurring and 20 one-time "
                               "line items in `subscription` mode.", "line_items")
        currencies = sorted({i["currency"] for i in items})
        if len(currencies) > 1:
            raise _invalid("All line items must have the same currency; got "
                           f"{', '.join(currencies)}.", "line_items")
        currency: str | None = currencies[0] if currencies else None
        if "currency" in params:
            currency = _as_currency(params["currency"], "currency")
        amount = sum(int(i["amount_total"]) for i in items) if items else None

        session_id = new_id("cs_test_a1", 56)
        session: dict[str, Any] = {
            "id": session_id,
            "object": "checkout.session",
            "adaptive_pricing": None,
            "after_expiration": None,
            "allow_promotion_codes": allow_promotion_codes,
            "amount_subtotal": amount,
            "amount_total": amount,
            "automatic_tax": automatic_tax,
            "billing_address_collection": params.get("billing_address_collection"),
            "cancel_url": cancel_url,
            "client_reference_id": client_reference_id,
            "client_secret": None,
            "collected_information": None,
            "consent": None,
            "consent_collection": params.get("consent_collection"),
            "created": now,
            "currency": currency,
            "custom_fields": [],
            "custom_text": params.get("custom_text") or {
                "after_submit": None, "shipping_address": None, "submit": None,
                "terms_of_service_acceptance": None},
            "customer": customer,
            "customer_creation": None if mode == "subscription" or customer else "if_required",
            "customer_details": None,
            "customer_email": customer_email,
            "discounts": [],
            "excluded_payment_method_types": excluded,
            "expires_at": expires_at,
            "invoice": None,
            "invoice_creation": None,
            "livemode": False,
            "locale": params.get("locale"),
            "metadata": metadata,
            "mode": mode,
            "origin_context": None,
            "payment_intent": None,
            "payment_link": None,
            "payment_method_collection": "always" if mode != "payment" else None,
            "payment_method_configuration_details": None,
            "payment_method_options": {},
            "payment_method_types": ["card"],
            "payment_status": "no_payment_required" if mode == "setup" else "unpaid",
            "phone_number_collection": phone,
            "recovered_from": None,
            "saved_payment_method_options": None,
            "setup_intent": None,
            "shipping_address_collection": shipping,
            "shipping_cost": None,
            "shipping_options": [],
            "status": "open",
            "submit_type": params.get("submit_type"),
            "subscription": None,
            "success_url": success_url,
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": ui_mode,
            "url": f"{self.api_base}/pay/{session_id}" if ui_mode == "hosted_page" else None,
            "wallet_options": None,
        }
        if ui_mode != "hosted_page":
            session["client_secret"] = f"{session_id}_secret_{new_id('', 24)}"
        self.sessions[session_id] = session
        self.line_items[session_id] = items
        return self._session_view(session, _expand_list(params))

    def _session_view(self, session: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        view = copy.deepcopy(session)
        if "line_items" in expand:
            view["line_items"] = _list_object(
                self.line_items[session["id"]],
                f"/v1/checkout/sessions/{session['id']}/line_items",
                {"limit": "100"},
            )
        return view

    def session(self, session_id: str, param: str = "id") -> dict[str, Any]:
        """The stored session (not a copy), expired lazily once past ``expires_at``."""
        session = self.sessions.get(session_id)
        if session is None:
            raise _no_such("checkout.session", session_id, param)
        if session["status"] == "open" and self.now() >= session["expires_at"]:
            self.expire(session_id, request=None)
        return session

    def _get_session(self, params: dict[str, Any], session_id: str, *,
                     request: dict[str, Any]) -> dict[str, Any]:
        _check_keys(params, _RETRIEVE_PARAMS, None)
        return self._session_view(self.session(session_id), _expand_list(params))

    def _list_sessions(self, params: dict[str, Any], *,
                       request: dict[str, Any]) -> dict[str, Any]:
        _check_keys(params, _LIST_PARAMS | {"client_reference_id", "customer",
                                            "customer_details", "payment_intent",
                                            "payment_link", "status", "subscription"}, None)
        for session_id in list(self.sessions):
            self.session(session_id)
        sessions = list(reversed(self.sessions.values()))
        if "status" in params:
            status = _as_str(params["status"], "status")
            sessions = [s for s in sessions if s["status"] == status]
        for key in ("customer", "payment_intent", "subscription", "client_reference_id"):
            if key in params:
                wanted = _as_str(params[key], key)
                sessions = [s for s in sessions if s.get(key) == wanted]
        return _list_object(sessions, "/v1/checkout/sessions", params)

    def _get_line_items(self, params: dict[str, Any], session_id: str, *,
                        request: dict[str, Any]) -> dict[str, Any]:
        _check_keys(params, _LIST_PARAMS, None)
        self.session(session_id, "session")
        return _list_object(self.line_items[session_id],
                            f"/v1/checkout/sessions/{session_id}/line_items", params)

    def _expire_session(self, params: dict[str, Any], session_id: str, *,
                        request: dict[str, Any]) -> dict[str, Any]:
        _check_keys(params, frozenset({"expand"}), None)
        session = self.session(session_id, "session")
        if session["status"] != "open":
            raise _invalid("Only Checkout Sessions with a status of `open` can be expired. "
                           f"This session has status `{session['status']}`.", "session",
                           "checkout_session_not_open")
        self.expire(session_id, request=request)
        return self._session_view(session, _expand_list(params))

    # -- transitions (used by the hosted page and the test helpers) -----------------

    def expire(self, session_id: str, *, request: dict[str, Any] | None) -> dict[str, Any]:
        """Expire an open session and emit ``checkout.session.expired``."""
        session = self.sessions[session_id]
        if session["status"] != "open":
            raise _invalid(f"Checkout Session {session_id} is {session['status']}, not open.",
                           "session")
        session["status"] = "expired"
        session["url"] = None
        return self.emit("checkout.session.expired", session, request)

    def complete(
        self, session_id: str, *, email: str | None = None, delayed: bool = False
    ) -> dict[str, Any]:
        """Take payment for an open session; emit ``checkout.session.completed``.

        ``delayed`` completes it with ``payment_status: unpaid``, as a bank debit
        would; :meth:`settle` later says whether the money arrived.
        """
        session = self.session(session_id, "session")
        if session["status"] != "open":
            raise _invalid(f"Checkout Session {session_id} is {session['status']}, not open.",
                           "session")
        mode = session["mode"]
        session["status"] = "complete"
        session["url"] = None
        email = email or session["customer_email"] or "customer@example.com"
        session["customer_details"] = {
            "address": None,
            "business_name": None,
            "email": email,
            "individual_name": None,
            "name": None,
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        }
        if mode == "payment":
            session["payment_intent"] = new_id("pi_")
            if session["amount_total"] == 0:
                session["payment_status"] = "no_payment_required"
            else:
                session["payment_status"] = "unpaid" if delayed else "paid"
        elif mode == "subscription":
            session["subscription"] = new_id("sub_")
            session["invoice"] = new_id("in_")
            session["payment_status"] = "unpaid" if delayed else "paid"
        else:
            session["setup_intent"] = new_id("seti_")
        if session["customer"] is None and mode != "payment":
            session["customer"] = new_id("cus_", 14)
        return self.emit("checkout.session.completed", session, None)

    def settle(self, session_id: str, *, succeeded: bool) -> dict[str, Any]:
        """Finish a delayed payment: emit ``async_payment_succeeded`` or ``_failed``."""
        session = self.session(session_id, "session")
        if session["status"] != "complete" or session["payment_status"] != "unpaid":
            raise _invalid(
                f"Checkout Session {session_id} has no pending delayed payment (status "
                f"{session['status']}, payment_status {session['payment_status']}).",
                "session",
            )
        if succeeded:
            session["payment_status"] = "paid"
            kind = "checkout.session.async_payment_succeeded"
        else:
            kind = "checkout.session.async_payment_failed"
        return self.emit(kind, session, None)

    def emit(
        self, kind: str, obj: dict[str, Any], request: dict[str, Any] | None
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "id": new_id("evt_"),
            "object": "event",
            "api_version": API_VERSION,
            "created": self.now(),
            "data": {"object": copy.deepcopy(obj)},
            "livemode": False,
            "pending_webhooks": 0,
            "request": request or {"id": None, "idempotency_key": None},
            "type": kind,
        }
        self.events.append(event)
        self.on_event(event)
        return event

    # -- events --------------------------------------------------------------------

    def _get_event(self, params: dict[str, Any], event_id: str, *,
                   request: dict[str, Any]) -> dict[str, Any]:
        _check_keys(params, _RETRIEVE_PARAMS, None)
        for event in self.events:
            if event["id"] == event_id:
                return copy.deepcopy(event)
        raise _no_such("event", event_id)

    def _list_events(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        _check_keys(params, _LIST_PARAMS | {"delivery_success", "type", "types"}, None)
        events = list(reversed(self.events))
        if "type" in params:
            wanted = _as_str(params["type"], "type")
            if wanted.endswith("*"):
                events = [e for e in events if e["type"].startswith(wanted[:-1])]
            else:
                events = [e for e in events if e["type"] == wanted]
        if "types" in params:
            types = [_as_str(t, "types") for t in _as_list(params["types"], "types")]
            events = [e for e in events if e["type"] in types]
        return _list_object(events, "/v1/events", params)
