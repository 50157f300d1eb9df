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
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from .errors import ApiError, invalid, missing, no_such, unknown
from .ids import new_id
from .lists import list_object
from .params import (
    LIST_PARAMS,
    RETRIEVE_PARAMS,
    as_bool,
    as_currency,
    as_dict,
    as_int,
    as_list,
    as_metadata,
    as_str,
    as_url,
    check_keys,
    expand_list,
    sub,
)
from .version import API_VERSION

__all__ = ["ApiResponse", "StripeState"]

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
UI_MODES = frozenset({"hosted_page", "embedded_page", "elements", "form"})
OLD_UI_MODES = {"hosted": "hosted_page", "embedded": "embedded_page", "custom": "elements"}
MODES = frozenset({"payment", "subscription", "setup"})
INTERVALS = frozenset({"day", "week", "month", "year"})


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
            raise invalid("Idempotency keys can be at most 255 characters long.",
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
        data = as_dict(value, param)
        check_keys(data, RECURRING_PARAMS, param)
        if "interval" not in data:
            raise missing(sub(param, "interval"))
        interval = as_str(data["interval"], sub(param, "interval"))
        if interval not in INTERVALS:
            raise invalid(f"Invalid interval: must be one of {', '.join(sorted(INTERVALS))}",
                           sub(param, "interval"))
        result: dict[str, Any] = {"interval": interval}
        if "interval_count" in data:
            result["interval_count"] = as_int(data["interval_count"],
                                               sub(param, "interval_count"), 1)
        return result

    def _amount(self, data: dict[str, Any], param: str) -> tuple[int, str | None]:
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

    def _product_from(self, data: dict[str, Any], param: str) -> str:
        def name(key: str) -> str:
            return sub(param, key) if param else key

        if "product" in data and "product_data" in data:
            raise invalid("You may only specify one of these parameters: product, "
                           "product_data.", param or "product")
        if "product" in data:
            product_id = as_str(data["product"], name("product"))
            if product_id not in self.products:
                raise ApiError(f"No such product: '{product_id}'", param=name("product"),
                               code="resource_missing")
            return product_id
        if "product_data" in data:
            pdata = as_dict(data["product_data"], name("product_data"))
            check_keys(pdata, PRODUCT_DATA_PARAMS, name("product_data"))
            if "name" not in pdata:
                raise missing(sub(name("product_data"), "name"))
            product = self.new_product(
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

    def _create_price(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        check_keys(params, PRICE_CREATE_PARAMS, None)
        if "currency" not in params:
            raise missing("currency")
        currency = as_currency(params["currency"], "currency")
        amount, decimal_text = self._amount(params, "")
        product = self._product_from(params, "")
        lookup_key = None
        if "lookup_key" in params:
            lookup_key = as_str(params["lookup_key"], "lookup_key")
            transfer = as_bool(params.get("transfer_lookup_key", "false"),
                                "transfer_lookup_key")
            holder = next((p for p in self.prices.values() if p["lookup_key"] == lookup_key),
                          None)
            if holder is not None and not transfer:
                raise invalid(
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
            nickname=as_str(params["nickname"], "nickname") if "nickname" in params else None,
            active=as_bool(params.get("active", "true"), "active"),
            metadata=as_metadata(params.get("metadata", {}), "metadata"),
        )
        return copy.deepcopy(price)

    def _get_price(self, params: dict[str, Any], price_id: str, *,
                   request: dict[str, Any]) -> dict[str, Any]:
        check_keys(params, RETRIEVE_PARAMS, None)
        if price_id not in self.prices:
            raise no_such("price", price_id)
        return copy.deepcopy(self.prices[price_id])

    def _list_prices(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        check_keys(params, LIST_PARAMS | {"active", "currency", "lookup_keys", "product",
                                            "recurring", "type"}, None)
        prices = list(reversed(self.prices.values()))
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

    def _create_product(self, params: dict[str, Any], *,
                        request: dict[str, Any]) -> dict[str, Any]:
        check_keys(params, PRODUCT_CREATE_PARAMS, None)
        if "name" not in params:
            raise missing("name")
        product_id = None
        if "id" in params:
            product_id = as_str(params["id"], "id")
            if product_id in self.products:
                raise ApiError("Product already exists.", param="id",
                               code="resource_already_exists")
        product = self.new_product(
            as_str(params["name"], "name"),
            product_id=product_id,
            description=(as_str(params["description"], "description")
                         if "description" in params else None),
            active=as_bool(params.get("active", "true"), "active"),
            metadata=as_metadata(params.get("metadata", {}), "metadata"),
            images=[as_str(v, "images") for v in as_list(params.get("images", []),
                                                              "images")],
        )
        return copy.deepcopy(product)

    def _get_product(self, params: dict[str, Any], product_id: str, *,
                     request: dict[str, Any]) -> dict[str, Any]:
        check_keys(params, RETRIEVE_PARAMS, None)
        if product_id not in self.products:
            raise no_such("product", product_id)
        return copy.deepcopy(self.products[product_id])

    def _list_products(self, params: dict[str, Any], *,
                       request: dict[str, Any]) -> dict[str, Any]:
        check_keys(params, LIST_PARAMS | {"active", "ids", "shippable", "url"}, None)
        products = list(reversed(self.products.values()))
        if "active" in params:
            active = as_bool(params["active"], "active")
            products = [p for p in products if p["active"] == active]
        return list_object(products, "/v1/products", params)

    # -- checkout sessions ---------------------------------------------------------

    def _line_item(
        self, raw: Any, index: int, mode: str
    ) -> tuple[dict[str, Any], int]:
        param = sub("line_items", index)
        item = as_dict(raw, param)
        check_keys(item, LINE_ITEM_PARAMS, param)
        if "price" in item and "price_data" in item:
            raise invalid("You may only specify one of these parameters: price, price_data.",
                           param)
        if "price" in item:
            price_id = as_str(item["price"], sub(param, "price"))
            price = self.prices.get(price_id)
            if price is None:
                raise ApiError(f"No such price: '{price_id}'", param=sub(param, "price"),
                               code="resource_missing")
            if not price["active"]:
                raise invalid(f"The price specified ({price_id}) is inactive. This field "
                               "only accepts active prices.", sub(param, "price"))
        elif "price_data" in item:
            pparam = sub(param, "price_data")
            data = as_dict(item["price_data"], pparam)
            check_keys(data, PRICE_DATA_PARAMS, pparam)
            if "currency" not in data:
                raise missing(sub(pparam, "currency"))
            currency = as_currency(data["currency"], sub(pparam, "currency"))
            amount, decimal_text = self._amount(data, pparam)
            recurring = (self._recurring(data["recurring"], sub(pparam, "recurring"))
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
            raise unknown(
                "payment_method_types",
                f". It can no longer be sent on create at API version {API_VERSION}: "
                "Stripe chooses payment methods dynamically; use "
                "excluded_payment_method_types to narrow them.",
            )
        check_keys(params, SESSION_CREATE_PARAMS, None)
        if "mode" not in params:
            raise missing("mode")
        mode = as_str(params["mode"], "mode")
        if mode not in MODES:
            raise invalid(f"Invalid mode: must be one of {', '.join(sorted(MODES))}", "mode")
        ui_mode = as_str(params.get("ui_mode", "hosted_page"), "ui_mode")
        if ui_mode in OLD_UI_MODES:
            raise invalid(
                f"Invalid ui_mode: '{ui_mode}' is no longer supported at API version "
                f"{API_VERSION}; use '{OLD_UI_MODES[ui_mode]}'.",
                "ui_mode",
            )
        if ui_mode not in UI_MODES:
            raise invalid(f"Invalid ui_mode: must be one of {', '.join(sorted(UI_MODES))}",
                           "ui_mode")
        success_url = as_url(params["success_url"], "success_url") \
            if "success_url" in params else None
        cancel_url = as_url(params["cancel_url"], "cancel_url") \
            if "cancel_url" in params else None
        if "customer" in params and "customer_email" in params:
            raise invalid("You may only specify one of these parameters: customer, "
                           "customer_email.", "customer_email")
        customer = as_str(params["customer"], "customer") if "customer" in params else None
        if customer is not None and not customer.startswith("cus_"):
            raise ApiError(f"No such customer: '{customer}'", param="customer",
                           code="resource_missing")
        customer_email = (as_str(params["customer_email"], "customer_email")
                          if "customer_email" in params else None)
        if customer_email is not None and "@" not in customer_email:
            raise invalid("Invalid email address: " + customer_email, "customer_email",
                           "email_invalid")
        client_reference_id = None
        if "client_reference_id" in params:
            client_reference_id = as_str(params["client_reference_id"],
                                          "client_reference_id")
            if len(client_reference_id) > 200:
                raise invalid("client_reference_id can be at most 200 characters.",
                               "client_reference_id")
        metadata = as_metadata(params.get("metadata", {}), "metadata")
        now = self.now()
        expires_at = now + 24 * 3600
        if "expires_at" in params:
            expires_at = as_int(params["expires_at"], "expires_at")
            if not now + 30 * 60 <= expires_at <= now + 24 * 3600:
                raise invalid("The `expires_at` timestamp must be between 30 minutes and "
                               "24 hours from Checkout Session creation.", "expires_at")
        if "subscription_data" in params:
            if mode != "subscription":
                raise invalid("subscription_data can only be used in `subscription` mode.",
                               "subscription_data")
            sub_data = as_dict(params["subscription_data"], "subscription_data")
            if "trial_period_days" in sub_data:
                as_int(sub_data["trial_period_days"], "subscription_data[trial_period_days]", 1)
        shipping = None
        if "shipping_address_collection" in params:
            sac = as_dict(params["shipping_address_collection"],
                           "shipping_address_collection")
            check_keys(sac, frozenset({"allowed_countries"}), "shipping_address_collection")
            if "allowed_countries" not in sac:
                raise missing("shipping_address_collection[allowed_countries]")
            countries = []
            for i, country in enumerate(as_list(
                    sac["allowed_countries"], "shipping_address_collection[allowed_countries]")):
                cparam = f"shipping_address_collection[allowed_countries][{i}]"
                code = as_str(country, cparam)
                if not re.fullmatch(r"[A-Z]{2}", code):
                    raise invalid(f"Invalid country: {code}", cparam)
                countries.append(code)
            shipping = {"allowed_countries": countries}
        automatic_tax = {"enabled": False, "liability": None, "provider": None, "status": None}
        if "automatic_tax" in params:
            tax = as_dict(params["automatic_tax"], "automatic_tax")
            check_keys(tax, frozenset({"enabled", "liability"}), "automatic_tax")
            if "enabled" not in tax:
                raise missing("automatic_tax[enabled]")
            automatic_tax["enabled"] = as_bool(tax["enabled"], "automatic_tax[enabled]")
        phone = {"enabled": False}
        if "phone_number_collection" in params:
            pnc = as_dict(params["phone_number_collection"], "phone_number_collection")
            phone["enabled"] = as_bool(pnc.get("enabled", "false"),
                                        "phone_number_collection[enabled]")
        allow_promotion_codes = (as_bool(params["allow_promotion_codes"],
                                          "allow_promotion_codes")
                                 if "allow_promotion_codes" in params else None)
        excluded = [as_str(v, sub("excluded_payment_method_types", i)) for i, v in
                    enumerate(as_list(params.get("excluded_payment_method_types", []),
                                       "excluded_payment_method_types"))]

        items: list[dict[str, Any]] = []
        raw_items = as_list(params.get("line_items", []), "line_items")
        if mode == "setup" and raw_items:
            raise invalid("line_items cannot be used in `setup` mode.", "line_items")
        if mode in ("payment", "subscription") and not raw_items:
            raise ApiError(f"line_items is required in `{mode}` mode.", param="line_items",
                           code="parameter_missing")
        for index, raw in enumerate(raw_items):
            line, _ = self._line_item(raw, index, mode)
            items.append(line)
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
        currency: str | None = currencies[0] if currencies else None
        if "currency" in params:
            currency = as_currency(params["currency"], "currency")
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
        return self._session_view(session, expand_list(params))

    def _session_view(self, session: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        view = copy.deepcopy(session)
        if "line_items" in expand:
            view["line_items"] = list_object(
                self.line_items[session["id"]],
                f"/v1/checkout/sessions/{session['id']}/line_items",
                {"limit": "100"},
            )
        return view

    def session(self, session_id: str, param: str = "id") -> dict[str, Any]:
        """The stored session (not a copy), expired lazily once past ``expires_at``."""
        session = self.sessions.get(session_id)
        if session is None:
            raise no_such("checkout.session", session_id, param)
        if session["status"] == "open" and self.now() >= session["expires_at"]:
            self.expire(session_id, request=None)
        return session

    def _get_session(self, params: dict[str, Any], session_id: str, *,
                     request: dict[str, Any]) -> dict[str, Any]:
        check_keys(params, RETRIEVE_PARAMS, None)
        return self._session_view(self.session(session_id), expand_list(params))

    def _list_sessions(self, params: dict[str, Any], *,
                       request: dict[str, Any]) -> dict[str, Any]:
        check_keys(params, LIST_PARAMS | {"client_reference_id", "customer",
                                            "customer_details", "payment_intent",
                                            "payment_link", "status", "subscription"}, None)
        for session_id in list(self.sessions):
            self.session(session_id)
        sessions = list(reversed(self.sessions.values()))
        if "status" in params:
            status = as_str(params["status"], "status")
            sessions = [s for s in sessions if s["status"] == status]
        for key in ("customer", "payment_intent", "subscription", "client_reference_id"):
            if key in params:
                wanted = as_str(params[key], key)
                sessions = [s for s in sessions if s.get(key) == wanted]
        return list_object(sessions, "/v1/checkout/sessions", params)

    def _get_line_items(self, params: dict[str, Any], session_id: str, *,
                        request: dict[str, Any]) -> dict[str, Any]:
        check_keys(params, LIST_PARAMS, None)
        self.session(session_id, "session")
        return list_object(self.line_items[session_id],
                            f"/v1/checkout/sessions/{session_id}/line_items", params)

    def _expire_session(self, params: dict[str, Any], session_id: str, *,
                        request: dict[str, Any]) -> dict[str, Any]:
        check_keys(params, frozenset({"expand"}), None)
        session = self.session(session_id, "session")
        if session["status"] != "open":
            raise invalid("Only Checkout Sessions with a status of `open` can be expired. "
                           f"This session has status `{session['status']}`.", "session",
                           "checkout_session_not_open")
        self.expire(session_id, request=request)
        return self._session_view(session, expand_list(params))

    # -- transitions (used by the hosted page and the test helpers) -----------------

    def expire(self, session_id: str, *, request: dict[str, Any] | None) -> dict[str, Any]:
        """Expire an open session and emit ``checkout.session.expired``."""
        session = self.sessions[session_id]
        if session["status"] != "open":
            raise invalid(f"Checkout Session {session_id} is {session['status']}, not open.",
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
            raise invalid(f"Checkout Session {session_id} is {session['status']}, not open.",
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
            raise invalid(
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
        check_keys(params, RETRIEVE_PARAMS, None)
        for event in self.events:
            if event["id"] == event_id:
                return copy.deepcopy(event)
        raise no_such("event", event_id)

    def _list_events(self, params: dict[str, Any], *, request: dict[str, Any]) -> dict[str, Any]:
        check_keys(params, LIST_PARAMS | {"delivery_success", "type", "types"}, None)
        events = list(reversed(self.events))
        if "type" in params:
            wanted = as_str(params["type"], "type")
            if wanted.endswith("*"):
                events = [e for e in events if e["type"].startswith(wanted[:-1])]
            else:
                events = [e for e in events if e["type"] == wanted]
        if "types" in params:
            types = [as_str(t, "types") for t in as_list(params["types"], "types")]
            events = [e for e in events if e["type"] in types]
        return list_object(events, "/v1/events", params)
