"""The table of the middleware's options: each one row, declared once.

A row (:class:`Option`) holds an option's default, the environment variable it falls back
to, its converter and its one-line doc. Everything else follows from :data:`OPTIONS`:

- ``CheckoutMiddleware``'s keywords (written out for IDEs and type checkers; a test fails
  when their names, defaults or ``:param`` lines differ from the table);
- the PasteDeploy filter's keys (:mod:`stripe_checkout_mw.wsgi.paste`), with the price keys
  of :data:`PRICE_OPTIONS`;
- ``check --ini`` and every operator's command (``sync``, ``fulfil-pending``, ``orders``,
  ``events``), which read a configuration through the same
  :func:`~stripe_checkout_mw.settings.rules.load_settings` as the middleware;
- the README's options table (:func:`markdown_rows`; a test fails when it differs).

A converter takes the value as Python code would pass it or as an ``.ini`` file writes
it, alike: ``max_quantity=12`` and ``max_quantity="12"``, ``timeout=(3, 10)`` and
``timeout="3 10"``, ``require_email=True`` and ``require_email="yes"``, ``fulfill=func``
and ``fulfill="shop.orders:fulfill"``. Rules that involve more than one option (the
redirect URLs built from ``domain_url``, the webhook path needing a secret, the ui-mode
rules, the marker) are in :func:`stripe_checkout_mw.settings.rules.load_settings`, the one
function every entry point calls.

To add an option: add one row to :data:`OPTIONS` (its default, a converter, ``env`` if the
environment may give it, and its doc; reuse a converter when one fits), then run the tests:
they name the keyword to add to ``CheckoutMiddleware.__init__`` (the same default, and a
``:param`` line of the row's doc) and the README row to add (:func:`markdown_rows` prints
it). If code reads the option, give :class:`~stripe_checkout_mw.settings.rules.Settings` a
typed field of that name, without a default: the value comes from the table. The ``.ini``
key, ``check`` and the commands follow by themselves.
"""
from __future__ import annotations

import difflib
import importlib
import ipaddress
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from .. import schema
from ..errors import OptionError, OptionTypeError
from ..urls import origin_of

__all__ = ["OPTIONS", "PAGE_UI_MODES", "PRICE_OPTIONS", "UI_MODES", "Option", "OptionError",
           "OptionTypeError", "configured", "convert_options", "markdown_rows", "param_doc",
           "reserved_in"]


_TRUE = frozenset({"true", "yes", "on", "y", "t", "1"})
_FALSE = frozenset({"false", "no", "off", "n", "f", "0"})
_KEY_PREFIXES = ("sk_test_", "sk_live_", "rk_test_", "rk_live_")
_MODES = ("payment", "subscription")
#: Parameters the middleware sets itself; letting ``session_options`` override them
#: would let configuration (or a buggy callable) undo the price and redirect guarantees.
RESERVED_SESSION_PARAMS = frozenset(
    {"line_items", "success_url", "cancel_url", "mode", "customer_email",
     "shipping_address_collection", "payment_method_types", "ui_mode", "return_url",
     "redirect_on_completion"}
)
#: Where the customer pays: Stripe's hosted page, or the shop's own page with Stripe.js.
UI_MODES = ("hosted_page", "embedded_page", "elements")
#: The modes whose page runs Stripe.js: a publishable key and a return_url, no
#: success_url or cancel_url.
PAGE_UI_MODES = UI_MODES[1:]
_OLD_UI_MODES = {"hosted": "hosted_page", "embedded": "embedded_page", "custom": "elements"}
_REDIRECTS = ("always", "if_required", "never")

Converter = Callable[[str, Any], Any]


def reserved_in(session_options: Mapping[str, Any]) -> set[str]:
    """The reserved parameters ``session_options`` sets; ``ui_mode="hosted_page"``, the
    default and the page the middleware redirects to, may be stated."""
    reserved = set(RESERVED_SESSION_PARAMS.intersection(session_options))
    if session_options.get("ui_mode") == "hosted_page":
        reserved.discard("ui_mode")
    return reserved


def _blank(value: object) -> bool:
    """None, or an empty ``.ini`` value: both mean "not configured"."""
    return value is None or (isinstance(value, str) and not value.strip())


def _type_name(value: object) -> str:
    return type(value).__name__


# -- converters: (option name, value) -> checked value, raising OptionError ------------------

def to_bool(option: str, value: Any) -> bool:
    """``True``/``False``, or ``"true"``/``"yes"``/``"on"``/``"1"`` and their opposites."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise OptionError(option, f"{value!r} is not a boolean; write true or false")
    raise OptionTypeError(option, f"expected True or False, got {_type_name(value)}")


def _to_int(option: str, value: Any) -> int:
    if isinstance(value, str):
        try:
            return int(value.strip(), 10)
        except ValueError:
            raise OptionError(option, f"{value!r} is not a whole number") from None
    if type(value) is not int:  # not bool, not float
        raise OptionTypeError(option, f"expected a whole number, got {_type_name(value)}")
    return value


def int_between(low: int, high: int) -> Converter:
    """A converter for a whole number from ``low`` to ``high`` (digits in ``.ini`` files)."""
    def convert(option: str, value: Any) -> int:
        number = _to_int(option, value)
        if not low <= number <= high:
            raise OptionError(option, f"must be a whole number from {low} to {high}")
        return number
    return convert


def to_words(option: str, value: Any) -> tuple[str, ...]:
    """A list or tuple of strings, or one string of words separated by spaces or commas."""
    if isinstance(value, str):
        return tuple(value.replace(",", " ").split())
    if isinstance(value, (Mapping, bytes)) or not isinstance(value, Iterable):
        raise OptionTypeError(option, f"give a list of strings, got {_type_name(value)}")
    words = tuple(value)
    for word in words:
        if not isinstance(word, str):
            raise OptionTypeError(option, f"give a list of strings, not {word!r}")
    return words


def absolute_url(option: str, value: Any) -> str:
    if not isinstance(value, str):
        raise OptionTypeError(option, f"expected an absolute URL string, got {_type_name(value)}")
    url: str = value.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise OptionError(option, f"{url!r} is not an absolute http(s) URL; write it in "
                          f"full, e.g. 'https://shop.example.com'")
    return url


def optional_url(option: str, value: Any) -> str | None:
    return None if _blank(value) else absolute_url(option, value)


def url_path(option: str, value: Any) -> str:
    if isinstance(value, str):
        value = value.strip()
    if not isinstance(value, str) or not value.startswith("/") or any(c in value for c in "?# "):
        raise OptionError(option, f"{value!r} must be a path starting with '/', "
                          f"e.g. '/create-checkout-session'")
    return value


def optional_path(option: str, value: Any) -> str | None:
    return None if _blank(value) else url_path(option, value)


def optional_text(option: str, value: Any) -> str | None:
    if _blank(value):
        return None
    if not isinstance(value, str):
        raise OptionTypeError(option, f"expected a string, got {_type_name(value)}")
    return value.strip()


_SHOP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")


def _shop_id(option: str, value: Any) -> str | None:
    text = optional_text(option, value)
    if text is not None and not _SHOP_ID.fullmatch(text):
        raise OptionError(option, "expected 1 to 100 letters, digits, '.', '_', ':' or '-' "
                          f"starting with a letter or digit, got {text[:120]!r}")
    return text


def from_environment(variable: str, convert: Converter) -> Converter:
    """A converter whose blank value is read from the environment ``variable`` instead."""
    def read(option: str, value: Any) -> Any:
        if not _blank(value):
            return convert(option, value)
        try:
            return convert(option, os.environ.get(variable, "").strip() or None)
        except OptionError as exc:
            if variable in exc.detail:  # the message already says where to set it
                raise
            raise type(exc)(option, f"{exc.detail} (read from {variable})") from None
    return read


def imported(option: str, value: str) -> Any:
    """Import ``package.module:name`` (``name`` may be dotted: ``module:Class.attr``)."""
    module_name, sep, attr = value.strip().partition(":")
    if not sep or not module_name or not attr:
        raise OptionError(option, f"{value!r} is not a 'module:name' reference, "
                          f"e.g. 'shop.orders:fulfill'")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise OptionError(option, f"cannot import module {module_name!r} ({exc}); is it "
                          f"installed, or its folder on PYTHONPATH?") from None
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise OptionError(option, f"module {module_name!r} has no {attr!r}") from None
    return target


def callable_or_reference(what: str) -> Converter:
    """A converter for a callable, or a ``"module:name"`` string naming one; None stays None."""
    def convert(option: str, value: Any) -> Any:
        if _blank(value):
            return None
        if isinstance(value, str):
            target = imported(option, value)
            if not callable(target):
                raise OptionError(option, f"{value!r} is not callable")
            return target
        if not callable(value):
            raise OptionTypeError(option, f"expected {what}, got {_type_name(value)}")
        return value
    return convert


def _secret_key(option: str, value: Any) -> str:
    if value is None:
        raise OptionError(option, "not set; pass secret_key='sk_test_...' or set "
                          "STRIPE_SECRET_KEY")
    if not isinstance(value, str):
        raise OptionTypeError(option, f"expected a string, got {_type_name(value)}")
    key = value.strip()
    if not key.startswith(_KEY_PREFIXES):
        kind = "a publishable key (pk_...)" if key.startswith("pk_") else "not a secret key"
        raise OptionError(option, f"this is {kind}; use the secret key (sk_test_... or "
                          f"sk_live_...) from the Stripe dashboard")
    return key


def _price_lookup(option: str, value: Any) -> Any:
    if value is None:
        raise OptionError(option, "required; choose Catalog({...}) for prices kept with the "
                          "app, StripeLookupKeys() for prices kept in Stripe, or "
                          "ClientPrices(currencies=[...], max_unit_amount=...) to trust the "
                          "browser's prices")
    return callable_or_reference(
        "Catalog, StripeLookupKeys, ClientPrices or a callable (items, environ) -> line items"
    )(option, value)


def _mode(option: str, value: Any) -> str | None:
    mode = optional_text(option, value)
    if mode is not None and mode not in _MODES:
        raise OptionError(option, f"{mode!r} is not supported; use 'payment', 'subscription' "
                          f"or None to choose from the prices")
    return mode


def _ui_mode(option: str, value: Any) -> str:
    mode = optional_text(option, value) or "hosted_page"
    if mode in UI_MODES:
        return mode
    if mode in _OLD_UI_MODES:
        raise OptionError(option, f"{mode!r} is Stripe's old name; use {_OLD_UI_MODES[mode]!r}")
    raise OptionError(option, f"{mode!r} is not supported; use 'hosted_page' (Stripe's page, "
                      f"the default), 'embedded_page' (Embedded Checkout) or 'elements' "
                      f"(Elements on the shop's page)")


def _redirect_on_completion(option: str, value: Any) -> str | None:
    redirect = optional_text(option, value)
    if redirect is not None and redirect not in _REDIRECTS:
        raise OptionError(option, f"{redirect!r} is not one of 'always' (Stripe's default), "
                          f"'if_required' or 'never'")
    return redirect


def _publishable_key(option: str, value: Any) -> str | None:
    key = optional_text(option, value)
    if key is None:
        return None
    if not key.startswith(("pk_test_", "pk_live_")) or len(key) <= len("pk_test_") or not (
            key.isascii() and key.isprintable()):
        kind = "a secret key" if key.startswith(("sk_", "rk_")) else "not a publishable key"
        raise OptionError(option, f"this is {kind}; use the publishable key (pk_test_... or "
                          f"pk_live_...) from the Stripe dashboard")
    return key


def _countries(option: str, value: Any) -> tuple[str, ...]:
    countries = () if value is None else to_words(option, value)
    # Stripe's own list, from the SDK's schema: it lacks e.g. CU, IR, KP, SY, VI and AS.
    known = schema.enum_values(
        "checkout.sessions.create", ("shipping_address_collection", "allowed_countries", "[]")
    )
    for country in countries:
        if country not in known:
            raise OptionError(option, f"{country!r} is not a country Stripe ships to; give "
                              f"two-letter codes such as 'GB' from Stripe's list")
    return countries


def _origins(option: str, value: Any) -> frozenset[str]:
    origins = set()
    for origin in to_words(option, value):
        normal = origin_of(origin)
        if normal is None or normal.split("://", 1)[0] not in ("http", "https"):
            raise OptionError(option, f"{origin!r} is not an origin such as "
                              f"'https://shop.example.com' (wildcards are not allowed)")
        origins.add(normal)
    return frozenset(origins)


def _session_options(option: str, value: Any) -> Any:
    if _blank(value) or callable(value):
        return None if _blank(value) else value
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("{"):
            return callable_or_reference("a dict or a callable")(option, text)
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise OptionError(option, f"not a valid JSON object ({exc})") from None
    if not isinstance(value, Mapping):
        raise OptionTypeError(option, "give a dict of Checkout Session parameters or a "
                              "callable that returns one")
    reserved = reserved_in(value)
    if reserved:
        raise OptionError(option, f"{sorted(reserved)} are set by the middleware itself; use "
                          f"its own options instead")
    return dict(value)


def _features(option: str, value: Any) -> dict[str, tuple[str, ...]]:
    """Price id or lookup key -> feature names: a dict from Python; in an ``.ini`` file a
    JSON object, or one ``price = feature feature ...`` line per price."""
    if _blank(value):
        return {}
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise OptionError(option, f"not a valid JSON object ({exc})") from None
        else:
            value = {}
            for line in text.splitlines():
                price, equals, names = line.partition("=")
                if not line.strip():
                    continue
                if not equals or not price.strip():
                    raise OptionError(option, f"{line.strip()!r} is not a line "
                                      "`price = feature feature ...`")
                value[price.strip()] = names
    if not isinstance(value, Mapping):
        raise OptionTypeError(option, "give a dict of price id or lookup key -> a list of "
                              f"feature names, got {_type_name(value)}")
    features = {}
    for price, names in value.items():
        if not isinstance(price, str) or not price.strip():
            raise OptionTypeError(option, f"the key {price!r} is not a price id or lookup key")
        features[price.strip()] = to_words(f"{option}[{price}]", names)
    return features


def _seconds(option: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise OptionError(option, f"{value!r} is not a number of seconds") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OptionTypeError(option, f"give seconds (10) or a (connect, read) tuple such as "
                              f"(3, 10), not {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise OptionError(option, "give seconds > 0, or a (connect, read) pair of them")
    return float(value)


def positive_number(unit: str) -> Converter:
    """A converter for a finite number > 0 of ``unit`` ("seconds"), digits in ``.ini`` files."""
    def convert(option: str, value: Any) -> float:
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise OptionError(option, f"{value!r} is not a number of {unit}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OptionTypeError(option, f"give a number of {unit}, not {value!r}")
        if not (math.isfinite(value) and value > 0):
            raise OptionError(option, f"give a number of {unit} > 0")
        return float(value)
    return convert


def _timeout(option: str, value: Any) -> tuple[float, float]:
    if isinstance(value, str):
        parts: Any = value.replace(",", " ").split()
        if len(parts) not in (1, 2):
            raise OptionError(option, "give seconds, or 'connect read' seconds, e.g. '3 10'")
        value = parts[0] if len(parts) == 1 else tuple(parts)
    if isinstance(value, tuple):
        if len(value) != 2:
            raise OptionError(option, "give seconds > 0, or a (connect, read) pair of them")
        return (_seconds(option, value[0]), _seconds(option, value[1]))
    read = _seconds(option, value)
    return (min(read, 5.0), read)


def _webhook_secrets(option: str, value: Any) -> tuple[str, ...]:
    secrets = () if value is None else to_words(option, value)
    for secret in secrets:
        if not secret.startswith("whsec_"):
            raise OptionError(option, "not a webhook signing secret (whsec_...); copy it from "
                              "the webhook endpoint in the Stripe dashboard, or give a list "
                              "of them while rotating")
    return secrets


def job_lease(option: str, value: Any) -> float:
    """Seconds a job's lease lasts: 1 to 86400, longer than ``fulfill`` can take."""
    seconds = _seconds(option, value)
    if not 1 <= seconds <= 86400:
        raise OptionError(option, f"must be from 1 to 86400 seconds (got {seconds:g}); choose "
                          "more than your fulfill() can take, e.g. 300")
    return seconds


def retention_days(option: str, value: Any) -> float:
    """Days processed event ids are kept: more than 0 and at most 3650."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise OptionError(option, f"{value!r} is not a number of days") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OptionTypeError(option, f"give a number of days such as 30, not {value!r}")
    if not (math.isfinite(value) and 0 < value <= 3650):
        raise OptionError(option, "give days > 0 and at most 3650, e.g. 30 (Stripe retries a "
                          "delivery for 3 days)")
    return float(value)


def grace_days(high: float, why: str) -> Converter:
    """A converter for a number of days from 0 to ``high`` (``why`` says why no more)."""
    def convert(option: str, value: Any) -> float:
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise OptionError(option, f"{value!r} is not a number of days") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise OptionTypeError(option, f"give a number of days, not {value!r}")
        if not (math.isfinite(value) and 0 <= value <= high):
            raise OptionError(option, f"give days from 0 to {high:g} ({why})")
        return float(value)
    return convert


def _networks(option: str, value: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                                                 ...]:
    """Networks (``10.0.0.0/8``) or single addresses, as a list or one string of words."""
    found = []
    for word in to_words(option, value):
        try:
            found.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            raise OptionError(option, f"{word!r} is not a network or address such as "
                              f"'10.0.0.0/8' or '127.0.0.1'") from None
    return tuple(found)


@dataclass(frozen=True)
class Option:
    """One row of :data:`OPTIONS`: everything about one option, in one place.

    :param default: what the option is when not given (the keyword's default in
        ``CheckoutMiddleware.__init__``, which a test holds to this value).
    :param convert: the converter, ``(name, value) -> checked value``; it gets the default
        too. With ``env``, a blank value reads that environment variable instead.
    :param doc: what the option means, one line of Markdown: the README's options table
        and the keyword's ``:param`` line are this text (tests hold them to it).
    :param env: the environment variable a value not given falls back to.
    :param shown: the README's default column, when it is not just the default (or
        ``$VARIABLE``): ``"required"``, or a value the rules build from other options.
    """

    default: Any
    convert: Converter
    doc: str
    env: str | None = None
    shown: str | None = None

    def __post_init__(self) -> None:
        if self.env is not None:
            object.__setattr__(self, "convert", from_environment(self.env, self.convert))

    @property
    def shown_default(self) -> str:
        """The default as the README shows it (Markdown)."""
        if self.shown is not None:
            return self.shown
        if self.env is not None:
            return f"`${self.env}`"
        return f"`{self.default}`" if isinstance(self.default, str) else f"`{self.default!r}`"


#: Every option of ``CheckoutMiddleware``, the ``.ini`` filter, ``check`` and the operator's
#: commands; the one place an option is declared (see the module docstring).
OPTIONS: dict[str, Option] = {
    "secret_key": Option(
        None, _secret_key,
        env="STRIPE_SECRET_KEY",
        doc="Stripe secret key (`sk_test_`/`sk_live_`, or a restricted `rk_` key)"),
    "path": Option(
        "/create-checkout-session", url_path,
        doc=("where orders are posted; matched on `PATH_INFO` (works under a `SCRIPT_NAME` "
             "mount)")),
    "domain_url": Option(
        None, optional_url,
        env="WEB_APP_URL",
        doc="the shop's public address, used for the two URLs below"),
    "success_url": Option(
        None, optional_url,
        shown="`{domain_url}/success?session_id={CHECKOUT_SESSION_ID}`",
        doc="where Stripe sends a paying customer"),
    "cancel_url": Option(
        None, optional_url,
        shown="`{domain_url}/cancel`",
        doc="where Stripe sends a customer who gives up"),
    "ui_mode": Option(
        "hosted_page", _ui_mode,
        shown='`"hosted_page"`',
        doc=('`"embedded_page"` (Embedded Checkout) or `"elements"` put the payment on your'
             " own page; see below")),
    "return_url": Option(
        None, optional_url,
        shown="`{domain_url}/return?session_id={CHECKOUT_SESSION_ID}`",
        doc="the embedded modes' return page (instead of the two URLs above)"),
    "redirect_on_completion": Option(
        None, _redirect_on_completion,
        shown='`None` (Stripe\'s `"always"`)',
        doc=('`embedded_page` only: `"if_required"` or `"never"` call the page\'s '
             "`onComplete` instead")),
    "publishable_key": Option(
        None, _publishable_key,
        env="STRIPE_PUBLISHABLE_KEY",
        doc=("`pk_test_`/`pk_live_` (the secret key's mode), served to your page; required "
             "in the embedded modes")),
    "price_lookup": Option(
        None, _price_lookup,
        shown="required",
        doc="`Catalog`, `StripeLookupKeys`, `ClientPrices` or a callable"),
    "validator": Option(
        None, callable_or_reference("a callable (body, environ) -> body"),
        shown="`DefaultValidator`",
        doc=("callable `(body, environ) -> cleaned body`, raising `ValidationError(message,"
             " param=None)`")),
    "require_email": Option(
        False, to_bool,
        doc="refuse orders without `customer_email`"),
    "max_quantity": Option(
        999, int_between(1, 999_999),
        doc="largest quantity of one line item"),
    "allowed_countries": Option(
        None, _countries,
        doc=('shipping countries, e.g. `["GB", "US"]` (the seed\'s), checked against the 238'
             " Stripe ships to; `None` collects no address")),
    "mode": Option(
        None, _mode,
        doc='`"payment"` or `"subscription"`; `None` decides from the prices'),
    "session_options": Option(
        None, _session_options,
        doc=("extra session parameters (`allow_promotion_codes`, `automatic_tax`, `locale`,"
             " `metadata`, `client_reference_id`, ...), a dict or a callable of the cleaned"
             " order; the parameters the middleware sets itself are refused "
             '(`ui_mode="hosted_page"`, the default, may be stated). A dict is checked at '
             "construction against Stripe's schema (from the installed `stripe` package) "
             "for every mode the middleware can produce, both when `mode` is `None`; a "
             "callable's result is checked per request, and a refusal is a 500 "
             '"misconfigured" that logs the parameter. A `customer` here replaces the '
             "browser's `customer_email`")),
    "stripe_api_base": Option(
        None, optional_url,
        env="STRIPE_API_BASE",
        shown="`$STRIPE_API_BASE`, else Stripe",
        doc=("another API address, e.g. the emulator's; when set, one warning naming it is "
             "logged at construction (`check` uses the same address)")),
    "max_network_retries": Option(
        2, int_between(0, 10),
        doc="SDK retries of network errors, 409 and 5xx, all with the same idempotency key"),
    "timeout": Option(
        10.0, _timeout,
        doc=("seconds per attempt to Stripe, or `(connect, read)`; a number `t` means "
             "`(min(t, 5), t)`. Worst case for one checkout: `(max_network_retries + 1) * "
             "timeout` plus backoff (0.5 s, 1 s)")),
    "max_body": Option(
        65536, int_between(1024, 16 * 1024 * 1024),
        doc="largest order body in bytes; larger ones get 413 without being read"),
    "allowed_origins": Option(
        (), _origins,
        doc="other origins allowed to post orders (CORS headers are sent for these only)"),
    "webhook_path": Option(
        None, optional_path,
        shown="`/stripe-webhook` when a secret is set",
        doc="where Stripe posts events; giving it without a secret is an error"),
    "webhook_secret": Option(
        None, _webhook_secrets,
        env="STRIPE_WEBHOOK_SECRET",
        doc="`whsec_...` signing secret, or a list of them while rotating"),
    "status_path": Option(
        "/checkout-session", optional_path,
        doc=("`GET ?session_id=cs_...` for the success page (served when there is a store: "
             "`store`, `$STRIPE_CHECKOUT_STORE` or a webhook secret)")),
    "store": Option(
        None, optional_text,
        env="STRIPE_CHECKOUT_STORE",
        shown="`$STRIPE_CHECKOUT_STORE`, else `sqlite:///stripe-checkout-orders.db`",
        doc="order ledger URL: `sqlite:///path.db` or `postgresql://...`"),
    "fulfill": Option(
        None, callable_or_reference("a callable fulfill(order)"),
        doc=("`fulfill(order)`, called for each paid order after its payment is committed "
             "(see the `fulfill` contract)")),
    "max_concurrent_stripe_calls": Option(
        3, int_between(1, 1000),
        doc=("the ceiling of the Stripe calls (checkout, price look-up, billing portal, "
             "status look-up) in flight at once per process, and so of the threads a hanging "
             "Stripe can hold; the limit under it follows Stripe's latency. A call beyond it "
             "waits for a slot while Stripe answers in time and gets 503 with `Retry-After` "
             "once Stripe is slow. Set it to the server's threads minus two (see \"Serving in "
             "production\")")),
    "circuit_cooldown": Option(
        10.0, positive_number("seconds"),
        doc=("after 5 connection failures or timeouts in a row, checkouts answer 503 at "
             "once for this many seconds; then one probe checkout decides whether Stripe is"
             " back")),
    "status_stripe_budget": Option(
        5.0, positive_number("retrieves per second"),
        doc=("Stripe retrieves per second the status path may make, per process; beyond it "
             "the status path answers from the ledger")),
    "allow_free_orders": Option(
        False, to_bool,
        doc="accept orders whose total is 0"),
    "status_shows_email": Option(
        False, to_bool,
        doc=("show the customer's email in full on the status path; by default it is masked"
             " (`a***@example.com`)")),
    "job_lease": Option(
        300.0, job_lease,
        doc=("seconds a worker holds an order's fulfilment (or an event's handlers) while "
             "running it; more than `fulfill` can take, 1 to 86400")),
    "event_retention_days": Option(
        30.0, retention_days,
        doc=("days a processed event id is kept to refuse duplicates (Stripe retries for "
             "3); older ones are pruned")),
    "customer_ref": Option(
        None, callable_or_reference(
            "a callable customer_ref(environ) -> the user's id or None"),
        doc=("`customer_ref(environ)` -> the signed-in user's id (a string) or `None`, from"
             " your app's own session: checkouts reuse the user's Stripe Customer and "
             "`mw.subscriptions`/`mw.customers` answer per user (see Subscriptions and "
             "customers)")),
    "portal_path": Option(
        "/billing-portal", optional_path,
        doc=("`POST` here opens Stripe's billing portal for the signed-in user (served when"
             " `customer_ref` is set and there is a store)")),
    "portal_return_url": Option(
        None, optional_url,
        shown="`{domain_url}/account`",
        doc="where the billing portal sends the customer back"),
    "subscription_changed": Option(
        None, callable_or_reference( "a callable subscription_changed(subscription)"),
        doc=("`subscription_changed(subscription)`, called once per stored change of a "
             "user's subscription status or items, after the commit (retried while it "
             "raises)")),
    "past_due_is_active": Option(
        True, to_bool,
        doc=("whether a `past_due` subscription (Stripe still retrying the payment) gives "
             "access in `is_active`")),
    "past_due_grace_days": Option(
        14, grace_days(365, "a year of unpaid access is no grace"),
        doc=("days a `past_due` subscription keeps giving access (`is_active`, features) "
             "after its payment first failed: Stripe's recommended retry window (2 weeks); "
             "0 ends access at once, as `past_due_is_active=False` does")),
    "incomplete_grace_days": Option(
        0, grace_days(1, "Stripe expires an incomplete subscription after 23 hours"),
        doc=("days an `incomplete` subscription (first payment failed or awaiting the "
             "customer's authentication) gives access; 0 (none) until Stripe says it is paid")),
    "features": Option(
        None, _features,
        doc=("the features each price gives, `{price id or lookup key: [feature, ...]}` (in "
             "an `.ini` a JSON object, or `price = feature feature` lines), for "
             '`mw.subscriptions.has_feature(user, feature)` (see "Features and grants")')),
    "entitling_prices": Option(
        (), to_words,
        doc=("price ids or lookup keys whose subscriptions give access without the shop's "
             "marker (sold before it existed, or made in the Dashboard); others made outside "
             "this shop's checkout give none")),
    "refunded": Option(
        None, callable_or_reference("a callable refunded(order)"),
        doc=("`refunded(order)`, called after a refund of a paid order is recorded, once "
             'per new refunded amount (see "Refunds, disputes and missed webhooks")')),
    "disputed": Option(
        None, callable_or_reference("a callable disputed(order)"),
        doc=("`disputed(order)`, called after a dispute of the payment is recorded or "
             "changes status")),
    "multiple_subscriptions": Option(
        False, to_bool,
        doc=("let a signed-in user with an active subscription buy another (add-ons); by "
             "default that checkout is refused with 409, pointing to a plan change")),
    "subscription_endpoint": Option(
        False, to_bool,
        doc=("serve `POST {path}/subscription`: the signed-in user previews or makes a plan "
             'change from the shop\'s page (needs `customer_ref` and a store; see "Plan '
             'changes")')),
    "invoice_paid": Option(
        None, callable_or_reference("a callable invoice_paid(invoice)"),
        doc=("`invoice_paid(invoice)`, called once per paid invoice of a user: the first, "
             "each renewal, a change, a manual one (`invoice.billing_reason` says which)")),
    "payment_failed": Option(
        None, callable_or_reference("a callable payment_failed(invoice)"),
        doc=("`payment_failed(invoice)`, called once per failed payment attempt of a "
             "user's open invoice (dunning: email `invoice.hosted_invoice_url`)")),
    "action_required": Option(
        None, callable_or_reference("a callable action_required(invoice)"),
        doc=("`action_required(invoice)`, called once for an invoice whose payment needs "
             "the customer's authentication (3-D Secure) at `invoice.hosted_invoice_url`")),
    "trial_will_end": Option(
        None, callable_or_reference("a callable trial_will_end(subscription)"),
        doc=("`trial_will_end(subscription)`, called once per trial end Stripe announces "
             "(about three days before) while the subscription is trialing")),

    # What an operator watches (observe/): opt-in paths and a hook.
    "metrics_path": Option(
        None, optional_path,
        doc=("`GET` here answers Prometheus metrics (needs `prometheus-client`, the "
             "`[metrics]` extra); see \"Metrics and health\"")),
    "metrics_allow": Option(
        ("127.0.0.1", "::1"), _networks,
        shown="`127.0.0.1 ::1` (loopback)",
        doc=("networks (`\"10.0.0.0/8 192.168.1.7\"`) whose requests (`REMOTE_ADDR`) may read "
             "`metrics_path`; others get 403")),
    "metrics_hook": Option(
        None, callable_or_reference("a callable hook(measurement)"),
        doc=("`hook(measurement)` (or `\"module:function\"`), called with each measurement as "
             "it is recorded, for statsd, OpenTelemetry and the like")),
    "health_path": Option(
        None, optional_path,
        doc=("`GET` here answers 200 or 503 for a load balancer: ledger reachable, breaker "
             "state, oldest due job; never calls Stripe")),
    "shop_id": Option(
        None, _shop_id,
        env="STRIPE_CHECKOUT_SHOP_ID",
        shown="`$STRIPE_CHECKOUT_SHOP_ID`, else derived from `success_url`",
        doc=("names this shop in its sessions' marker, so shops sharing one Stripe account "
             "(developers on one test account) never take each other's sessions; sessions "
             "marked before it was set are still recognised (see \"Sharing a Stripe "
             "account\")")),
}


def unknown_option(name: str, known: Iterable[str] = OPTIONS) -> OptionTypeError:
    """The error for an option that does not exist, naming the nearest one."""
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]}?" if close else f"the options are: {', '.join(names)}"
    return OptionTypeError(name, f"not a stripe-checkout-mw option; {hint}")


def convert_options(given: Mapping[str, Any]) -> dict[str, Any]:
    """Every option converted: the given ones, and the table's default for the rest.

    :raises OptionError: for the first unknown option or refused value (an
        :class:`OptionTypeError`, also a ``TypeError``, for an unknown name or a wrong type).
    """
    for name in given:
        if name not in OPTIONS:
            raise unknown_option(name)
    return {name: option.convert(name, given.get(name, option.default))
            for name, option in OPTIONS.items()}


def configured(given: Mapping[str, Any], name: str) -> bool:
    """Whether ``given`` or the option's environment variable sets option ``name``."""
    option = OPTIONS[name]
    if not _blank(given.get(name)):
        return True
    return option.env is not None and bool(os.environ.get(option.env, "").strip())


def markdown_rows() -> list[str]:
    """The README's options table, one Markdown row per option, in the table's order."""
    return [f"| `{name}` | {option.shown_default} | {option.doc} |"
            for name, option in OPTIONS.items()]


def param_doc(name: str) -> str:
    """The text of option ``name``'s ``:param`` line (reStructuredText, on one line)."""
    option = OPTIONS[name]
    text = f"{option.doc}. Default: {option.shown_default}."
    return re.sub(r"`([^`]+)`", r"``\1``", text)


# -- the .ini file's price keys --------------------------------------------------------------

def _ini_text(option: str, value: Any) -> str:
    return str(value).strip()


def _ini_seconds(option: str, value: Any) -> float:
    try:
        return float(str(value).strip())
    except ValueError:
        raise OptionError(option, f"{value!r} is not a number of seconds") from None


#: The ``.ini`` keys that choose and configure the price lookup: not options of the
#: middleware, they build its ``price_lookup`` (see :mod:`stripe_checkout_mw.wsgi.paste`).
PRICE_OPTIONS: dict[str, Option] = {
    "catalog": Option(None, _ini_text, doc=(
        "a `Catalog` JSON file; a relative path is taken from the `.ini` file's folder")),
    "price_lookup": Option(None, _ini_text, doc=(
        "`catalog` (the default), `lookup_keys`, `client_prices` or `module:callable`")),
    "lookup_keys_ttl": Option(300, _ini_seconds, doc=(
        "seconds `StripeLookupKeys` keeps the prices it loaded")),
    "client_currencies": Option(None, to_words, doc=(
        "the currencies `ClientPrices` accepts, e.g. `usd eur`")),
    "client_max_unit_amount": Option(None, int_between(0, 99_999_999), doc=(
        "the largest unit amount `ClientPrices` accepts, in minor units")),
    "client_min_unit_amount": Option(None, int_between(1, 99_999_999), doc=(
        "the smallest unit amount `ClientPrices` accepts (default 50)")),
}
