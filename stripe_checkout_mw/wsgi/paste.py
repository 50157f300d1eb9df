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

Every key is one of :class:`~stripe_checkout_mw.CheckoutMiddleware`'s options, converted
and checked by the same table (:mod:`stripe_checkout_mw.settings.options`) as keywords given in
Python, so the README's options table holds the rules for both. The price lookup has
keys of its own:

- ``catalog = path.json``: a :class:`~stripe_checkout_mw.Catalog` file; a relative path
  is taken from the ``.ini`` file's folder.
- ``price_lookup = lookup_keys`` (with ``lookup_keys_ttl = 300``): prices kept in Stripe.
- ``price_lookup = client_prices`` with ``client_currencies = usd eur`` and
  ``client_max_unit_amount = 10000`` (``client_min_unit_amount``, default 50): the
  browser's prices, bounded. Read :class:`~stripe_checkout_mw.ClientPrices` first.
- ``price_lookup = module:callable``: a lookup of your own.

A value ``env:NAME`` is read from the environment variable ``NAME`` when the app is
loaded, so secrets and per-machine addresses stay out of the file
(``stripe_api_base = env:STRIPE_API_BASE``). An empty value, or an unset variable,
leaves the option at its default (a WARNING names the variable), which for
``stripe_api_base``, ``store``, ``secret_key``, ``domain_url`` and ``webhook_secret`` is
the environment (``STRIPE_API_BASE``, ``STRIPE_CHECKOUT_STORE`` ...). ``env:NAME`` naming
another variable than the option's own (``webhook_secret = env:MY_WHSEC``) with ``NAME``
unset is an error naming ``NAME``: the fallback would read the other variable unseen.

A key this filter does not know is an error naming it and the nearest known key: a
typo such as ``requre_email`` must not silently leave a shop taking orders without an
email address. ``stripe-checkout-mw check --ini FILE`` reads the section through
:func:`ini_options` too, so it refuses exactly what ``loadapp`` refuses.

PasteDeploy is needed only to read the ``.ini`` file (the ``paste`` extra:
``pip install -e '.[paste]'`` in a clone); this module imports nothing from it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..checkout.prices import DEFAULT_MIN_UNIT_AMOUNT, Catalog, ClientPrices, StripeLookupKeys
from ..errors import OptionError
from ..settings.options import (
    OPTIONS,
    PRICE_OPTIONS,
    Converter,
    callable_or_reference,
    unknown_option,
)
from .middleware import CheckoutMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["PRICE_KEYS", "filter_app_factory", "ini_options", "price_lookup_from_keys",
           "resolve_value"]

_ENV_PREFIX = "env:"

log = logging.getLogger("stripe_checkout_mw")

#: The ``.ini`` keys that choose and configure the price lookup, and their converters
#: (not middleware options: they build the ``price_lookup`` object). From the options
#: table's :data:`~stripe_checkout_mw.settings.options.PRICE_OPTIONS`.
PRICE_KEYS: dict[str, Converter] = {key: row.convert for key, row in PRICE_OPTIONS.items()}

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
    :class:`~stripe_checkout_mw.OptionError` naming the key for an unknown key or a value
    refused.
    """
    return CheckoutMiddleware(app, **ini_options(local_conf, global_conf.get("here")))


def ini_options(local_conf: Mapping[str, object], here: str | None) -> dict[str, Any]:
    """The options of one ``.ini`` filter section, for ``CheckoutMiddleware(app, **...)``.

    Unknown keys are refused, ``env:NAME`` values read, empty values dropped (the option
    keeps its default) and the price keys turned into one ``price_lookup``; the option
    values stay strings, for the options table to convert.

    :param here: the ``.ini`` file's folder, for a relative ``catalog`` path.
    :raises OptionError: naming the key.
    """
    for key in local_conf:
        if key not in OPTIONS and key not in PRICE_KEYS:
            raise unknown_option(key, {*OPTIONS, *PRICE_KEYS})
    values = {key: text for key, raw in local_conf.items() if (text := resolve_value(key, raw))}
    options: dict[str, Any] = {key: text for key, text in values.items()
                               if key in OPTIONS and key not in PRICE_KEYS}
    prices = {key: PRICE_KEYS[key](key, text) for key, text in values.items() if key in PRICE_KEYS}
    options["price_lookup"] = price_lookup_from_keys(prices, here)
    return options


def resolve_value(key: str, raw: object) -> str:
    """An ``.ini`` value stripped, with ``env:NAME`` replaced by that variable.

    :raises OptionError: naming the key and ``NAME`` when that variable is unset or empty.
    """
    if not isinstance(raw, str):
        raise OptionError(key, f"expected a string from the .ini file, got {type(raw).__name__}")
    text = raw.strip()
    if text.startswith(_ENV_PREFIX):
        name = text[len(_ENV_PREFIX):].strip()
        if not name:
            raise OptionError(key, "'env:' needs a variable name, e.g. env:STRIPE_API_BASE")
        value = os.environ.get(name, "").strip()
        if not value:
            _unset(key, text, name)
        return value
    return text


def _unset(key: str, text: str, name: str) -> None:
    """``env:NAME`` with NAME unset or empty: the option falls back to its default, unless
    that default is another variable, which would then be read in NAME's place unseen."""
    state = "empty" if name in os.environ else "not set"
    option = OPTIONS.get(key)
    if option is not None and option.env is not None and option.env != name:
        raise OptionError(key, f"{text}: the environment variable {name} is {state}; set "
                          f"{name} (the option would otherwise fall back to {option.env})")
    if option is None or option.env != name:
        log.warning("%s = %s: the environment variable %s is %s; %s takes its default",
                    key, text, name, state, key)


def price_lookup_from_keys(prices: Mapping[str, Any], here: str | None) -> Any:
    """The price lookup the converted :data:`PRICE_KEYS` describe.

    :raises OptionError: naming the key at fault.
    """
    prices = dict(prices)
    kind = prices.pop("price_lookup", None)
    if kind is None:
        if "catalog" not in prices:
            raise OptionError("catalog", "no prices configured; add 'catalog = "
                              "path/to/catalog.json' (or price_lookup = lookup_keys | "
                              "client_prices | module:callable)")
        kind = "catalog"
    custom = kind not in _LOOKUP_KINDS
    if custom and ":" not in kind:
        raise OptionError("price_lookup", f"{kind!r} is not one of {', '.join(_LOOKUP_KINDS)} "
                          f"or a 'module:callable' reference")
    extra = sorted(set(prices) - _KIND_KEYS.get(kind, set()))
    if extra:
        raise OptionError(extra[0], f"does not apply to price_lookup = {kind}; remove it or "
                          f"change price_lookup")
    if custom:
        return callable_or_reference("a price lookup")("price_lookup", kind)
    if kind == "catalog":
        if "catalog" not in prices:
            raise OptionError("catalog", "price_lookup = catalog needs 'catalog = "
                              "path/to/file.json'")
        path = Path(prices["catalog"])
        if not path.is_absolute() and here:
            path = Path(here) / path
        try:
            return Catalog.from_file(path)
        except OptionError as exc:
            raise OptionError("catalog", exc.detail) from None
        except ValueError as exc:  # a product's mistake, named by its key
            raise OptionError("catalog", f"{path}: {exc}") from None
    if kind == "lookup_keys":
        return StripeLookupKeys(prices.get("lookup_keys_ttl", 300))
    if "client_currencies" not in prices or "client_max_unit_amount" not in prices:
        raise OptionError("client_currencies", "price_lookup = client_prices needs "
                          "client_currencies and client_max_unit_amount")
    return ClientPrices(
        currencies=list(prices["client_currencies"]),
        max_unit_amount=prices["client_max_unit_amount"],
        min_unit_amount=prices.get("client_min_unit_amount", DEFAULT_MIN_UNIT_AMOUNT),
    )
