"""The PasteDeploy filter: ``CheckoutMiddleware`` configured from an ``.ini`` file.

Pyramid and Pylons-era apps compose middleware in a PasteDeploy pipeline; this module
lets them add checkout the same way, with no Python code::

    [pipeline:main]
    pipeline = checkout shop

    [filter:checkout]
    use = egg:stripe-checkout-mw#checkout
    catalog = %(here)s/catalog.json
    require_email = true
    allowed_countries = GB US
    fulfill = shop.orders:fulfill

    [app:shop]
    use = egg:shop

Every key is one of :class:`~stripe_checkout_mw.CheckoutMiddleware`'s options, written
as the ``.ini`` way requires: booleans as ``true``/``false`` (also ``yes``/``no``,
``on``/``off``, ``1``/``0``), numbers as digits, lists separated by spaces or commas,
callables as ``module:name``. The price lookup has keys of its own:

- ``catalog = path.json``: a :class:`~stripe_checkout_mw.Catalog` file; a relative path
  is taken from the ``.ini`` file's folder.
- ``price_lookup = lookup_keys`` (with ``lookup_keys_ttl = 300``): prices kept in Stripe.
- ``price_lookup = client_prices`` with ``client_currencies = usd eur`` and
  ``client_max_unit_amount = 10000`` (``client_min_unit_amount``, default 0): the
  browser's prices, bounded. Read :class:`~stripe_checkout_mw.ClientPrices` first.
- ``price_lookup = module:callable``: a lookup of your own.

A value ``env:NAME`` is read from the environment variable ``NAME`` when the app is
loaded, so secrets and per-machine addresses stay out of the file
(``stripe_api_base = env:STRIPE_API_BASE``). An empty value, or an unset variable,
leaves the option at its default, which for ``secret_key``, ``domain_url`` and
``webhook_secret`` is already the environment (``STRIPE_SECRET_KEY``, ``WEB_APP_URL``,
``STRIPE_WEBHOOK_SECRET``).

A key this filter does not know is an error naming it: a typo such as ``requre_email``
must not silently leave a shop taking orders without an email address.

PasteDeploy is needed only to read the ``.ini`` file (the ``paste`` extra:
``pip install stripe-checkout-mw[paste]``); this module imports nothing from it.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .middleware import CheckoutMiddleware
from .prices import Catalog, ClientPrices, StripeLookupKeys

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["OPTION_KEYS", "PRICE_KEYS", "asbool", "asint", "aslist", "check_keys",
           "filter_app_factory", "resolve_value"]

_TRUE = frozenset({"true", "yes", "on", "y", "t", "1"})
_FALSE = frozenset({"false", "no", "off", "n", "f", "0"})
_ENV_PREFIX = "env:"


def asbool(key: str, value: str) -> bool:
    """``"true"``/``"yes"``/``"on"``/``"1"`` and their opposites, any case."""
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{key}: {value!r} is not a boolean; write true or false")


def asint(key: str, value: str) -> int:
    """A whole number written in decimal digits."""
    try:
        return int(value.strip(), 10)
    except ValueError:
        raise ValueError(f"{key}: {value!r} is not a whole number") from None


def asfloat(key: str, value: str) -> float:
    """A number of seconds such as ``10`` or ``2.5``."""
    try:
        return float(value.strip())
    except ValueError:
        raise ValueError(f"{key}: {value!r} is not a number") from None


def aslist(key: str, value: str) -> list[str]:
    """Words separated by spaces, commas or new lines: ``GB US`` or ``GB, US``."""
    return value.replace(",", " ").split()


def astext(key: str, value: str) -> str:
    return value.strip()


def asobject(key: str, value: str) -> Any:
    """Import ``package.module:name`` (``name`` may be dotted: ``module:Class.attr``)."""
    module_name, sep, attr = value.strip().partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{key}: {value!r} is not a 'module:name' reference, "
                         f"e.g. 'shop.orders:fulfill'")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{key}: cannot import module {module_name!r} ({exc})") from None
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"{key}: module {module_name!r} has no {attr!r}") from None
    return target


def ascallable(key: str, value: str) -> Any:
    target = asobject(key, value)
    if not callable(target):
        raise ValueError(f"{key}: {value!r} is not callable")
    return target


def _timeout(key: str, value: str) -> float | tuple[float, float]:
    parts = aslist(key, value)
    if len(parts) == 1:
        return asfloat(key, parts[0])
    if len(parts) == 2:
        return (asfloat(key, parts[0]), asfloat(key, parts[1]))
    raise ValueError(f"{key}: give seconds, or 'connect read' seconds, e.g. '3 10'")


def _secrets(key: str, value: str) -> str | list[str]:
    secrets = aslist(key, value)
    return secrets[0] if len(secrets) == 1 else secrets


def _session_options(key: str, value: str) -> Any:
    text = value.strip()
    if text.startswith("{"):
        try:
            options = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{key}: not a valid JSON object ({exc})") from None
        return options
    return asobject(key, text)


_Converter = Callable[[str, str], Any]

#: The ``.ini`` keys that are ``CheckoutMiddleware`` options, with their conversions.
OPTION_KEYS: dict[str, _Converter] = {
    "secret_key": astext,
    "path": astext,
    "domain_url": astext,
    "success_url": astext,
    "cancel_url": astext,
    "validator": ascallable,
    "require_email": asbool,
    "max_quantity": asint,
    "allowed_countries": aslist,
    "mode": astext,
    "session_options": _session_options,
    "stripe_api_base": astext,
    "max_network_retries": asint,
    "timeout": _timeout,
    "max_body": asint,
    "allowed_origins": aslist,
    "webhook_path": astext,
    "webhook_secret": _secrets,
    "status_path": astext,
    "store": astext,
    "fulfill": ascallable,
}

#: The ``.ini`` keys that choose and configure the price lookup.
PRICE_KEYS: dict[str, _Converter] = {
    "catalog": astext,
    "price_lookup": astext,
    "lookup_keys_ttl": asfloat,
    "client_currencies": aslist,
    "client_max_unit_amount": asint,
    "client_min_unit_amount": asint,
}

_LOOKUP_KINDS = ("catalog", "lookup_keys", "client_prices")
_KIND_KEYS = {
    "catalog": {"catalog"},
    "lookup_keys": {"lookup_keys_ttl"},
    "client_prices": {"client_currencies", "client_max_unit_amount", "client_min_unit_amount"},
}


def filter_app_factory(
    app: WSGIApplication, global_conf: Mapping[str, str], **local_conf: str
) -> CheckoutMiddleware:
    """Wrap ``app`` in a :class:`CheckoutMiddleware` built from ``.ini`` strings.

    The ``paste.filter_app_factory`` entry point (``checkout`` and ``main``). Raises
    ``ValueError`` naming the key for an unknown key or a value that does not convert,
    and whatever ``CheckoutMiddleware`` raises for a value it refuses.
    """
    check_keys(local_conf)
    values = {key: text for key, raw in local_conf.items() if (text := resolve_value(key, raw))}
    options = {key: OPTION_KEYS[key](key, text)
               for key, text in values.items() if key in OPTION_KEYS}
    prices = {key: PRICE_KEYS[key](key, text) for key, text in values.items() if key in PRICE_KEYS}
    options["price_lookup"] = _price_lookup(prices, global_conf.get("here"))
    return CheckoutMiddleware(app, **options)


def check_keys(keys: Iterable[str]) -> None:
    """Raise ``ValueError`` naming the first key this filter does not know."""
    unknown = sorted(set(keys) - OPTION_KEYS.keys() - PRICE_KEYS.keys())
    if unknown:
        valid = ", ".join(sorted({*OPTION_KEYS, *PRICE_KEYS}))
        raise ValueError(f"{unknown[0]}: not a stripe-checkout-mw option (check its spelling); "
                         f"valid keys are: {valid}")


def resolve_value(key: str, raw: object) -> str:
    """An ``.ini`` value stripped, with ``env:NAME`` replaced by that variable ("" if unset)."""
    if not isinstance(raw, str):
        raise ValueError(f"{key}: expected a string from the .ini file, got {type(raw).__name__}")
    text = raw.strip()
    if text.startswith(_ENV_PREFIX):
        name = text[len(_ENV_PREFIX):].strip()
        if not name:
            raise ValueError(f"{key}: 'env:' needs a variable name, e.g. env:STRIPE_API_BASE")
        return os.environ.get(name, "").strip()
    return text


def _price_lookup(prices: dict[str, Any], here: str | None) -> Any:
    kind = prices.pop("price_lookup", None)
    if kind is None:
        if "catalog" not in prices:
            raise ValueError("catalog: no prices configured; add 'catalog = path/to/catalog.json'"
                             " (or price_lookup = lookup_keys | client_prices | module:callable)")
        kind = "catalog"
    custom = kind not in _LOOKUP_KINDS
    if custom and ":" not in kind:
        raise ValueError(f"price_lookup: {kind!r} is not one of {', '.join(_LOOKUP_KINDS)} "
                         f"or a 'module:callable' reference")
    extra = sorted(set(prices) - _KIND_KEYS.get(kind, set()))
    if extra:
        raise ValueError(f"{extra[0]}: does not apply to price_lookup = {kind}; remove it "
                         f"or change price_lookup")
    if custom:
        return ascallable("price_lookup", kind)
    if kind == "catalog":
        if "catalog" not in prices:
            raise ValueError("catalog: price_lookup = catalog needs 'catalog = path/to/file.json'")
        path = Path(prices["catalog"])
        if not path.is_absolute() and here:
            path = Path(here) / path
        try:
            return Catalog.from_file(path)
        except ValueError as exc:
            raise ValueError(f"catalog: {str(exc).split(': ', 1)[-1]}") from None
    if kind == "lookup_keys":
        return StripeLookupKeys(prices.get("lookup_keys_ttl", 300))
    if "client_currencies" not in prices or "client_max_unit_amount" not in prices:
        raise ValueError("client_currencies: price_lookup = client_prices needs "
                         "client_currencies and client_max_unit_amount")
    return ClientPrices(
        currencies=prices["client_currencies"],
        max_unit_amount=prices["client_max_unit_amount"],
        min_unit_amount=prices.get("client_min_unit_amount", 0),
    )
