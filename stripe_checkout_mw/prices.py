"""Where the amount a customer pays comes from: the server, never the browser.

The browser names what it wants (``{"price": "tee", "quantity": 2}``); a price lookup
turns that into Stripe line items whose amounts the shop controls. Three are built in:

- :class:`Catalog`: a fixed list of products kept with the app (a dict or a JSON file).
- :class:`StripeLookupKeys`: prices kept in Stripe, named by their lookup keys.
- :class:`ClientPrices`: the seed's behaviour, forwarding the browser's ``price_data``
  within bounds. Only for shops that truly price on the client; it logs a warning.

Any callable ``(items, environ) -> list of Stripe line items`` works too.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Union

from .options import OptionError
from .validation import ValidationError

if TYPE_CHECKING:
    import stripe
    from _typeshed.wsgi import WSGIEnvironment

log = logging.getLogger("stripe_checkout_mw")

LineItem = dict[str, Any]
CustomPriceLookup = Callable[[list[LineItem], "WSGIEnvironment"], list[LineItem]]

_INTERVALS = frozenset({"day", "week", "month", "year"})
_PRODUCT_FIELDS = frozenset({"name", "description", "images"})
_PRICE_DATA_FIELDS = frozenset({"currency", "unit_amount", "product_data", "recurring"})
_ENTRY_FIELDS = frozenset({"name", "unit_amount", "currency", "description", "images", "recurring"})
_MAX_UNIT_AMOUNT = 99_999_999  # Stripe's ceiling for unit_amount in most currencies


@dataclass(frozen=True)
class PricedItem:
    """One line item as Stripe will get it, plus what the order ledger keeps of it."""

    line_item: LineItem
    name: str | None
    unit_amount: int | None
    currency: str | None
    recurring: bool

    def ledger_entry(self) -> dict[str, Any]:
        """The item as the order ledger and the success page show it."""
        price = self.line_item.get("price")
        return {
            "name": self.name,
            "quantity": self.line_item["quantity"],
            "unit_amount": self.unit_amount,
            "currency": self.currency,
            "price": price if isinstance(price, str) else None,
        }

    @classmethod
    def describe(cls, line_item: LineItem) -> PricedItem:
        """Read what can be known of a line item a custom lookup returned."""
        data = line_item.get("price_data")
        if not isinstance(data, dict):
            return cls(line_item, None, None, None, recurring=False)
        product = data.get("product_data")
        name = product.get("name") if isinstance(product, dict) else None
        amount = data.get("unit_amount")
        currency = data.get("currency")
        return cls(
            line_item,
            name if isinstance(name, str) else None,
            amount if isinstance(amount, int) else None,
            currency.lower() if isinstance(currency, str) else None,
            recurring="recurring" in data,
        )


class PriceLookup(ABC):
    """Base of the built-in lookups: they know more than a plain callable returns."""

    @abstractmethod
    def resolve(
        self, items: list[LineItem], client: stripe.StripeClient | None
    ) -> list[PricedItem]:
        """Price the validated ``items``; raise :class:`ValidationError` for unknown ones."""

    def __call__(self, items: list[LineItem], environ: WSGIEnvironment) -> list[LineItem]:
        return [priced.line_item for priced in self.resolve(items, None)]


def resolve_prices(
    lookup: PriceLookup | CustomPriceLookup,
    items: list[LineItem],
    environ: WSGIEnvironment,
    client: stripe.StripeClient,
) -> list[PricedItem]:
    """Price ``items`` with any lookup, built-in or a user's callable."""
    if isinstance(lookup, PriceLookup):
        return lookup.resolve(items, client)
    line_items = lookup(items, environ)
    if not isinstance(line_items, list) or not all(isinstance(i, dict) for i in line_items):
        raise TypeError("price_lookup must return a list of Stripe line item dicts")
    return [PricedItem.describe(item) for item in line_items]


def _check_recurring(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("interval") not in _INTERVALS:
        raise ValueError(f"{where}: recurring must be {{'interval': 'day|week|month|year'}}")
    count = value.get("interval_count", 1)
    if set(value) - {"interval", "interval_count"} or type(count) is not int or count < 1:
        raise ValueError(f"{where}: recurring takes only interval and interval_count (>= 1)")
    return dict(value)


def _check_currency(value: object, where: str) -> str:
    if not isinstance(value, str) or len(value) != 3 or not value.isalpha():
        raise ValueError(f"{where}: currency must be a three-letter ISO code such as 'usd'")
    return value.lower()


def _check_amount(value: object, where: str) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_UNIT_AMOUNT:
        raise ValueError(f"{where}: unit_amount must be a whole number of minor units (cents)")
    return value


def _check_name(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 250:
        raise ValueError(f"{where}: name must be a non-empty string of at most 250 characters")
    return value


def _check_images(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or len(value) > 8 or not all(
        isinstance(url, str) and url.startswith("https://") and len(url) <= 2048 for url in value
    ):
        raise ValueError(f"{where}: images must be a list of at most 8 https:// URLs")
    return list(value)


@dataclass(frozen=True)
class _Entry:
    key: str
    price: str | None
    name: str | None
    unit_amount: int | None
    currency: str | None
    description: str | None
    images: list[str] | None
    recurring: dict[str, Any] | None

    def priced(self, quantity: int) -> PricedItem:
        if self.price is not None:
            line: LineItem = {"price": self.price, "quantity": quantity}
            return PricedItem(line, self.name or self.key, None, None, recurring=False)
        product: dict[str, Any] = {"name": self.name}
        if self.description:
            product["description"] = self.description
        if self.images:
            product["images"] = self.images
        data: dict[str, Any] = {
            "currency": self.currency, "unit_amount": self.unit_amount, "product_data": product
        }
        if self.recurring:
            data["recurring"] = self.recurring
        return PricedItem(
            {"price_data": data, "quantity": quantity},
            self.name, self.unit_amount, self.currency, recurring=self.recurring is not None,
        )


def _parse_entry(key: object, value: object) -> _Entry:
    where = f"price_lookup: catalog entry {key!r}"
    if not isinstance(key, str) or not 0 < len(key) <= 200:
        raise ValueError(f"{where}: keys must be non-empty strings of at most 200 characters")
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: must be an object")
    if "price" in value:
        price = value["price"]
        if set(value) - {"price", "name"} or not isinstance(price, str) or not price.startswith(
            "price_"
        ):
            raise ValueError(
                f"{where}: a Stripe price entry is {{'price': 'price_...'}} (and optionally 'name')"
            )
        name = _check_name(value["name"], where) if "name" in value else None
        return _Entry(key, price, name, None, None, None, None, None)
    unknown = set(value) - _ENTRY_FIELDS
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; "
                         f"use 'price' or name/unit_amount/currency")
    for field in ("name", "unit_amount", "currency"):
        if field not in value:
            raise ValueError(f"{where}: missing {field!r} (or give a Stripe 'price' id)")
    description = value.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 500):
        raise ValueError(f"{where}: description must be a string of at most 500 characters")
    return _Entry(
        key,
        None,
        _check_name(value["name"], where),
        _check_amount(value["unit_amount"], where),
        _check_currency(value["currency"], where),
        description,
        _check_images(value["images"], where) if "images" in value else None,
        _check_recurring(value["recurring"], where) if "recurring" in value else None,
    )


class Catalog(PriceLookup):
    """Products and prices kept with the app; the browser can only pick from them.

    ::

        Catalog({
            "tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"},
            "club": {"name": "Club", "unit_amount": 900, "currency": "usd",
                     "recurring": {"interval": "month"}},
            "mug": {"price": "price_1Nxyz"},          # a price kept in Stripe
        })

    Requests name items by key: ``{"price": "tee", "quantity": 2}``. A seed-style item
    with ``price_data`` is accepted only when its product name, currency and unit_amount
    match an entry exactly, and then the catalog's own data is what Stripe receives.
    """

    def __init__(self, mapping: Mapping[str, Mapping[str, Any]]) -> None:
        if not isinstance(mapping, Mapping) or not mapping:
            raise OptionError("price_lookup", "the catalog is empty; give at least one product")
        self._entries = {key: _parse_entry(key, value) for key, value in mapping.items()}
        self._by_data = {
            (e.name, e.currency, e.unit_amount): e
            for e in self._entries.values()
            if e.price is None
        }

    @classmethod
    def from_file(cls, path: str | Path) -> Catalog:
        """Load a catalog from a JSON file holding one object of entries."""
        try:
            mapping = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise OptionError("price_lookup", f"cannot read catalog {str(path)!r}: "
                              f"{exc.strerror}") from None
        except ValueError as exc:
            raise OptionError("price_lookup", f"catalog {str(path)!r} is not valid JSON: "
                              f"{exc}") from None
        return cls(mapping)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def stripe_price_ids(self) -> list[str]:
        """The Stripe price ids the catalog refers to (for ``check``)."""
        return [e.price for e in self._entries.values() if e.price is not None]

    def resolve(
        self, items: list[LineItem], client: stripe.StripeClient | None
    ) -> list[PricedItem]:
        return [self._entry(item, i).priced(item["quantity"]) for i, item in enumerate(items)]

    def _entry(self, item: LineItem, index: int) -> _Entry:
        where = f"line_items[{index}]"
        if "price" in item:
            entry = self._entries.get(item["price"])
            if entry is None:
                raise ValidationError("Unknown item.", param=f"{where}[price]")
            return entry
        data = item["price_data"]
        product = data.get("product_data")
        currency = data.get("currency")
        amount = data.get("unit_amount")
        entry = None
        if (
            not set(data) - _PRICE_DATA_FIELDS
            and isinstance(product, dict)
            and not set(product) - _PRODUCT_FIELDS
            and isinstance(product.get("name"), str)
            and isinstance(currency, str)
            and type(amount) is int
        ):
            entry = self._by_data.get((product.get("name"), currency.lower(), amount))
        if entry is None or data.get("recurring") != entry.recurring:
            raise ValidationError(
                "This item and price are not in the shop's catalog.", param=f"{where}[price_data]"
            )
        return entry


class ClientPrices(PriceLookup):
    """The seed's behaviour: the browser's ``price_data`` goes to Stripe, within bounds.

    .. warning:: The customer's browser decides what they pay. Use it only where that is
       acceptable (donations, pay-what-you-want); a shop should use :class:`Catalog` or
       :class:`StripeLookupKeys`.

    :param currencies: the currencies accepted, such as ``["usd"]``.
    :param max_unit_amount: the largest unit amount, in minor units.
    :param min_unit_amount: the smallest unit amount (default 0).
    """

    def __init__(
        self, *, currencies: Iterable[str], max_unit_amount: int, min_unit_amount: int = 0
    ) -> None:
        if isinstance(currencies, str):
            raise OptionError(
                "price_lookup", "ClientPrices(currencies=...) takes a list, e.g. ['usd']"
            )
        self.currencies = frozenset(
            _check_currency(c, "price_lookup: ClientPrices") for c in currencies
        )
        if not self.currencies:
            raise OptionError("price_lookup", "ClientPrices needs at least one currency")
        self.max_unit_amount = _check_amount(max_unit_amount, "price_lookup: ClientPrices max")
        self.min_unit_amount = _check_amount(min_unit_amount, "price_lookup: ClientPrices min")
        if self.min_unit_amount > self.max_unit_amount:
            raise OptionError("price_lookup", "ClientPrices min_unit_amount exceeds "
                              "max_unit_amount")
        log.warning(
            "ClientPrices is configured: amounts come from the customer's browser "
            "(bounded to %s..%s in %s)",
            self.min_unit_amount, self.max_unit_amount, ", ".join(sorted(self.currencies)),
        )

    def resolve(
        self, items: list[LineItem], client: stripe.StripeClient | None
    ) -> list[PricedItem]:
        return [self._priced(item, f"line_items[{i}]") for i, item in enumerate(items)]

    def _priced(self, item: LineItem, where: str) -> PricedItem:
        if "price_data" not in item:
            raise ValidationError("This shop takes prices as price_data.", param=f"{where}[price]")
        where = f"{where}[price_data]"
        data = item["price_data"]
        try:
            if set(data) - _PRICE_DATA_FIELDS:
                raise ValueError(f"{where}: unknown field")
            currency = _check_currency(data.get("currency"), where)
            amount = _check_amount(data.get("unit_amount"), where)
            product = data.get("product_data")
            if not isinstance(product, dict) or set(product) - _PRODUCT_FIELDS:
                raise ValueError(f"{where}: product_data takes name, description and images")
            clean_product: dict[str, Any] = {"name": _check_name(product.get("name"), where)}
            description = product.get("description")
            if description is not None:
                if not isinstance(description, str) or len(description) > 500:
                    raise ValueError(f"{where}: description is at most 500 characters")
                clean_product["description"] = description
            if "images" in product:
                clean_product["images"] = _check_images(product["images"], where)
            recurring = (
                _check_recurring(data["recurring"], where) if "recurring" in data else None
            )
        except ValueError as exc:
            raise ValidationError(str(exc).split(": ", 1)[-1], param=where) from None
        if currency not in self.currencies:
            raise ValidationError("This currency is not accepted.", param=f"{where}[currency]")
        if not self.min_unit_amount <= amount <= self.max_unit_amount:
            raise ValidationError("This amount is outside the allowed range.",
                                  param=f"{where}[unit_amount]")
        clean: dict[str, Any] = {
            "currency": currency, "unit_amount": amount, "product_data": clean_product
        }
        if recurring is not None:
            clean["recurring"] = recurring
        return PricedItem(
            {"price_data": clean, "quantity": item["quantity"]},
            clean_product["name"], amount, currency, recurring=recurring is not None,
        )


_CacheEntry = tuple[float, Union["stripe.Price", None]]


class StripeLookupKeys(PriceLookup):
    """Prices kept in Stripe, named by their lookup keys and cached for ``ttl`` seconds.

    Requests name items by lookup key (``{"price": "basic_monthly", "quantity": 1}``).
    Keys are resolved with ``prices.list(lookup_keys=[...], active=true)``, ten a call,
    so N checkouts cost at most one look-up per key per ``ttl``; unknown keys are
    remembered too, so a stream of made-up keys cannot turn into a stream of API calls.

    :param ttl: seconds a resolved price is trusted before it is looked up again.
    :param client: the ``StripeClient`` to use; by default the middleware's own.
    """

    _BATCH = 10
    _MAX_CACHED = 10_000

    def __init__(self, ttl: float = 300, *, client: stripe.StripeClient | None = None) -> None:
        if not isinstance(ttl, (int, float)) or not math.isfinite(ttl) or ttl < 0:
            raise ValueError("price_lookup: StripeLookupKeys(ttl=...) must be seconds >= 0")
        self.ttl = float(ttl)
        self.client = client
        self.lookups = 0  # API calls made, for tests and benchmarks
        self._cache: dict[str, _CacheEntry] = {}
        self._lock = threading.Lock()

    def resolve(
        self, items: list[LineItem], client: stripe.StripeClient | None
    ) -> list[PricedItem]:
        client = self.client or client
        if client is None:
            raise RuntimeError("StripeLookupKeys needs a client: pass client=StripeClient(...)")
        for i, item in enumerate(items):
            if "price" not in item:
                raise ValidationError("Items are named by price.", param=f"line_items[{i}][price]")
        prices = self._prices({item["price"] for item in items}, client)
        priced = []
        for i, item in enumerate(items):
            price = prices.get(item["price"])
            if price is None:
                raise ValidationError("Unknown item.", param=f"line_items[{i}][price]")
            priced.append(
                PricedItem(
                    {"price": price.id, "quantity": item["quantity"]},
                    price.nickname or price.lookup_key,
                    price.unit_amount,
                    price.currency,
                    recurring=price.type == "recurring",
                )
            )
        return priced

    def _prices(
        self, keys: set[str], client: stripe.StripeClient
    ) -> dict[str, stripe.Price | None]:
        now = time.monotonic()
        found = self._fresh(keys, now)
        if len(found) == len(keys):
            return found
        with self._lock:  # one fetch at a time, so concurrent misses cost one call
            found = self._fresh(keys, now)
            missing = sorted(keys - found.keys())
            fetched: dict[str, stripe.Price | None] = dict.fromkeys(missing)
            for start in range(0, len(missing), self._BATCH):
                batch = missing[start : start + self._BATCH]
                self.lookups += 1
                listed = client.v1.prices.list(
                    params={"lookup_keys": batch, "active": True, "limit": self._BATCH}
                )
                for listed_price in listed.data:
                    if listed_price.lookup_key in fetched:
                        fetched[listed_price.lookup_key] = listed_price
            if len(self._cache) + len(fetched) > self._MAX_CACHED:
                self._cache.clear()
            expires = time.monotonic() + self.ttl
            for key, price in fetched.items():
                self._cache[key] = (expires, price)
            found.update(fetched)
        return found

    def _fresh(self, keys: set[str], now: float) -> dict[str, stripe.Price | None]:
        cache = self._cache
        return {
            key: entry[1]
            for key in keys
            if (entry := cache.get(key)) is not None and entry[0] > now
        }
