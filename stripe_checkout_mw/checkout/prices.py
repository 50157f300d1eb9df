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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .. import schema
from ..errors import HTTPError, OptionError
from .validation import ValidationError

if TYPE_CHECKING:
    import stripe
    from _typeshed.wsgi import WSGIEnvironment

    from ..stripe_api.guard import StripeGuard

log = logging.getLogger("stripe_checkout_mw")

LineItem = dict[str, Any]
CustomPriceLookup = Callable[[list[LineItem], "WSGIEnvironment"], list[LineItem]]

_PRODUCT_FIELDS = frozenset({"name", "description", "images"})
_PRICE_DATA_FIELDS = frozenset({"currency", "unit_amount", "product_data", "recurring"})
_ENTRY_FIELDS = frozenset({"name", "unit_amount", "currency", "description", "images", "recurring"})
_MAX_UNIT_AMOUNT = 99_999_999  # Stripe's ceiling for unit_amount in most currencies
#: ClientPrices' default floor, in minor units: Stripe's smallest charge in USD and EUR.
DEFAULT_MIN_UNIT_AMOUNT = 50


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


class UnknownItem(ValidationError):
    """A line item names a price key the lookup does not know (answered 400 "Unknown
    item."); ``key`` is the browser's value, to be logged only through ``loggable``."""

    def __init__(self, key: object, param: str) -> None:
        super().__init__("Unknown item.", param=param)
        self.key = key


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


def _intervals() -> tuple[Any, ...]:
    """Stripe's enum (day, week, month, year), from the SDK's schema."""
    return schema.enum_values("checkout.sessions.create",
                              ("line_items", "[]", "price_data", "recurring", "interval"))


def _check_recurring(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("interval") not in _intervals():
        raise ValueError(f"{where}: recurring must be {{'interval': 'day|week|month|year'}}")
    count = value.get("interval_count", 1)
    if set(value) - {"interval", "interval_count"} or type(count) is not int or count < 1:
        raise ValueError(f"{where}: recurring takes only interval and interval_count (>= 1)")
    return dict(value)


def _check_currency(value: object, where: str) -> str:
    if not isinstance(value, str) or len(value) != 3 or not value.isalpha():
        raise ValueError(f"{where}: currency must be a three-letter ISO code such as 'usd'")
    return value.lower()


def _check_amount(value: object, where: str, low: int = 0) -> int:
    if type(value) is not int or not low <= value <= _MAX_UNIT_AMOUNT:
        raise ValueError(f"{where}: unit_amount must be a whole number of minor units (cents)"
                         + (f" of at least {low}" if low else ""))
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
            return PricedItem(line, self.name or self.key, self.unit_amount, self.currency,
                              recurring=self.recurring is not None)
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


def _check_with_stripes_schema(entry: _Entry) -> None:
    """Refuse a catalog entry Stripe would refuse as a line item (a 4-year interval,
    nine images...), naming the entry and the parameter."""
    if entry.price is not None:
        return
    mode = "subscription" if entry.recurring else "payment"
    try:
        schema.validate("checkout.sessions.create",
                        {"line_items": [entry.priced(1).line_item]}, partial=True, mode=mode)
    except schema.SchemaError as exc:
        param = exc.param.replace("line_items[0][price_data]", "").strip("[]").replace("][", ".")
        raise ValueError(f"price_lookup: catalog entry {entry.key!r}: {param or 'entry'}: "
                         f"{exc.message}") from None


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
        # A price of 0 is a typo or a free gift nobody reviewed: either way not for sale.
        _check_amount(value["unit_amount"], where, low=1),
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
        if not isinstance(mapping, Mapping):
            got = "a list" if isinstance(mapping, list) else f"a {type(mapping).__name__}"
            raise OptionError("price_lookup", (
                f"the catalog must map each product key to its entry (a JSON object such as "
                f'{{"tee": {{"name": "T-shirt", "unit_amount": 2000, "currency": "usd"}}}}), '
                f"got {got}"))
        if not mapping:
            raise OptionError("price_lookup", "the catalog is empty; give at least one product")
        self._entries = {key: _parse_entry(key, value) for key, value in mapping.items()}
        for entry in self._entries.values():
            _check_with_stripes_schema(entry)
        # Entries naming a Stripe price learn its type, currency and amount on first use.
        self._stripe_prices: dict[str, _Entry] = {}
        self._stripe_prices_lock = threading.Lock()
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
        return [self._from_stripe(self._entry(item, i), client).priced(item["quantity"])
                for i, item in enumerate(items)]

    def _from_stripe(self, entry: _Entry, client: stripe.StripeClient | None) -> _Entry:
        """``entry`` with the type, currency and amount of the Stripe price it names,
        retrieved once per process, so mode, currency and item limits are decided right."""
        if entry.price is None or client is None:
            return entry
        with self._stripe_prices_lock:
            known = self._stripe_prices.get(entry.price)
        if known is None:
            price = client.v1.prices.retrieve(entry.price)
            recurring = getattr(price, "recurring", None)
            known = replace(
                entry,
                currency=price.currency,
                unit_amount=price.unit_amount,
                recurring=None if recurring is None else {
                    "interval": recurring.interval,
                    "interval_count": recurring.interval_count,
                },
            )
            with self._stripe_prices_lock:
                self._stripe_prices[entry.price] = known
        return known

    def _entry(self, item: LineItem, index: int) -> _Entry:
        where = f"line_items[{index}]"
        if "price" in item:
            entry = self._entries.get(item["price"])
            if entry is None:
                raise UnknownItem(item["price"], param=f"{where}[price]")
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
    :param min_unit_amount: the smallest unit amount, in minor units, for every currency
        (default :data:`DEFAULT_MIN_UNIT_AMOUNT`, 50: Stripe's smallest charge in USD and
        EUR is 0.50, and 50 yen in JPY; GBP allows 0.30, some currencies need more, see
        Stripe's "minimum and maximum charge amounts"). It must be at least 1: a browser
        that can send 0 can make an order free.
    """

    def __init__(
        self,
        *,
        currencies: Iterable[str],
        max_unit_amount: int,
        min_unit_amount: int = DEFAULT_MIN_UNIT_AMOUNT,
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
        if type(min_unit_amount) is not int or min_unit_amount < 1:
            raise OptionError("price_lookup", "ClientPrices(min_unit_amount=...) must be a whole "
                              "number of minor units >= 1 (0 would let the browser order for "
                              "free)")
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


class StripeLookupKeys(PriceLookup):
    """Prices kept in Stripe, named by their lookup keys; one copy of them per process.

    Requests name items by lookup key (``{"price": "basic_monthly", "quantity": 1}``).
    The first checkout loads every active price that has a lookup key (``prices.list``,
    100 a page, products expanded so their names and ``active`` flags come along); after
    that every key, known or made up, is answered from that copy: no request makes a
    Stripe call of its own, so a stream of random keys cannot become a stream of calls.

    Every ``ttl`` seconds the copy is refreshed by one call at a time (single flight), in
    a background thread: requests keep being served from the last good copy meanwhile,
    and if the refresh fails the old copy stays in use and the refresh is tried again a
    little later. Only while no copy exists yet (the first checkouts, or Stripe down since
    start-up) does a checkout wait for the load, and concurrent ones share that one load.

    :param ttl: seconds the copy is trusted before a refresh starts (> 0).
    :param client: the ``StripeClient`` to use; by default the middleware's own.
    :param retry_after: seconds after a failed first load during which checkouts get 503
        without a new attempt (a failed refresh is retried after this too, at least 1 s).
    """

    _PAGE = 100

    def __init__(
        self, ttl: float = 300, *, client: stripe.StripeClient | None = None,
        retry_after: float = 2.0,
    ) -> None:
        if (
            isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl)
            or ttl <= 0
        ):
            raise OptionError("price_lookup", "StripeLookupKeys(ttl=...) must be seconds > 0")
        if (
            isinstance(retry_after, bool) or not isinstance(retry_after, (int, float))
            or not math.isfinite(retry_after) or retry_after < 0
        ):
            raise OptionError("price_lookup", "StripeLookupKeys(retry_after=...) must be "
                              "seconds >= 0")
        self.ttl = float(ttl)
        self.retry_after = float(retry_after)
        self._attempts = 0  # first-load attempts started
        self.client = client
        self.lookups = 0  # API calls made (pages listed), for tests and benchmarks
        #: The middleware's guard (set by the checkout service): the background refresh
        #: goes through it without waiting, so a hanging Stripe opens the circuit and an
        #: open circuit skips the refresh. ``None``: unguarded.
        self.guard: StripeGuard | None = None
        self._prices: dict[str, stripe.Price] | None = None
        self._due = 0.0  # monotonic time the next refresh may start
        self._load_lock = threading.Lock()  # held by the one load or refresh in flight

    def resolve(
        self, items: list[LineItem], client: stripe.StripeClient | None
    ) -> list[PricedItem]:
        client = self.client or client
        if client is None:
            raise RuntimeError("StripeLookupKeys needs a client: pass client=StripeClient(...)")
        for i, item in enumerate(items):
            if "price" not in item:
                raise ValidationError("Items are named by price.", param=f"line_items[{i}][price]")
        prices = self._current(client)
        priced = []
        for i, item in enumerate(items):
            price = prices.get(item["price"])
            if price is None:
                raise UnknownItem(item["price"], param=f"line_items[{i}][price]")
            product = price.product
            product_name = getattr(product, "name", None) if not isinstance(product, str) else None
            priced.append(
                PricedItem(
                    {"price": price.id, "quantity": item["quantity"]},
                    price.nickname or product_name or price.lookup_key,
                    price.unit_amount,
                    price.currency,
                    recurring=price.type == "recurring",
                )
            )
        return priced

    def _current(self, client: stripe.StripeClient) -> dict[str, stripe.Price]:
        """The copy to answer from, starting a background refresh when it is due."""
        prices = self._prices
        if prices is None:
            return self._first_load(client)
        if time.monotonic() >= self._due and self._load_lock.acquire(blocking=False):
            # The lock passes to the refresh thread, which releases it when done.
            try:
                threading.Thread(
                    target=self._refresh, args=(client,), name="StripeLookupKeys refresh",
                    daemon=True,
                ).start()
            except BaseException:
                self._load_lock.release()
                raise
        return prices

    def _first_load(self, client: stripe.StripeClient) -> dict[str, stripe.Price]:
        attempt = self._attempts
        with self._load_lock:
            if self._prices is not None:  # another request loaded it while this one waited
                return self._prices
            # The attempt this request waited for failed, or one failed a moment ago:
            # share that failure rather than each waiting request calling Stripe in turn.
            if self._attempts != attempt or time.monotonic() < self._due:
                raise _unavailable()
            self._attempts += 1
            try:
                self._prices = self._load(client)
            except Exception:
                self._due = time.monotonic() + self.retry_after
                raise
            self._due = time.monotonic() + self.ttl
            return self._prices

    def _refresh(self, client: stripe.StripeClient) -> None:
        try:
            if self.guard is None:
                self._prices = self._load(client)
            else:
                with self.guard.call("price refresh", wait=False):
                    self._prices = self._load(client)
            self._due = time.monotonic() + self.ttl
        except Exception as exc:
            self._due = time.monotonic() + min(self.ttl, max(self.retry_after, 1.0))
            log.warning("StripeLookupKeys: refreshing the prices failed (%s); the last good "
                        "copy stays in use", type(exc).__name__)
        finally:
            self._load_lock.release()

    def _load(self, client: stripe.StripeClient) -> dict[str, stripe.Price]:
        """Every active price with a lookup key whose product is not archived, by key."""
        prices: dict[str, stripe.Price] = {}
        params: dict[str, Any] = {"active": True, "limit": self._PAGE,
                                  "expand": ["data.product"]}
        while True:
            self.lookups += 1
            page = client.v1.prices.list(params=params)  # type: ignore[arg-type]
            for price in page.data:
                product = price.product
                if getattr(product, "active", True) is False:  # archived: not for sale
                    continue
                if price.lookup_key:
                    prices[price.lookup_key] = price
            if not page.has_more or not page.data:
                return prices
            params = {**params, "starting_after": page.data[-1].id}


def _unavailable() -> HTTPError:
    return HTTPError(503, "The shop's prices could not be loaded; try again in a moment.",
                     type="api_error", headers=[("Retry-After", "2")])
