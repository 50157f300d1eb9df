"""The table of the middleware's options: each name, its default and its converter.

``CheckoutMiddleware(app, **options)``, the PasteDeploy filter and the ``check`` command
all read options through :func:`convert_options`, so a value one of them refuses, every
one of them refuses, with the same :class:`OptionError`.

A converter takes the value as Python code would pass it or as an ``.ini`` file writes
it, alike: ``max_quantity=12`` and ``max_quantity="12"``, ``timeout=(3, 10)`` and
``timeout="3 10"``, ``require_email=True`` and ``require_email="yes"``, ``fulfill=func``
and ``fulfill="shop.orders:fulfill"``. Rules that involve more than one option (the
redirect URLs built from ``domain_url``, the webhook path needing a secret) are in
:func:`stripe_checkout_mw.settings.rules.load_settings`.

To add an option: add one row to :data:`OPTIONS` below (its default and a converter;
reuse a converter when one fits), add the same keyword with the same default to
``CheckoutMiddleware.__init__``, and, if code reads it, a typed field of that name to
``config.Settings``. Tests check that the three agree; the ``.ini`` key and ``check``
follow by themselves.
"""

from __future__ import annotations

import difflib
import importlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from .. import schema
from ..errors import OptionError, OptionTypeError
from ..urls import origin_of

__all__ = ["OPTIONS", "Option", "OptionError", "OptionTypeError", "convert_options",
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


@dataclass(frozen=True)
class Option:
    """One row of :data:`OPTIONS`: what an option is when not given, and its converter."""

    default: Any
    convert: Converter


#: Every option of ``CheckoutMiddleware``, the ``.ini`` filter and ``check``. A default is
#: what ``__init__`` declares; the converter gets it too, so it may stand for "read the
#: environment" (``from_environment``). Add a row here to add an option (see the module
#: docstring for the other two places).
OPTIONS: dict[str, Option] = {
    "secret_key": Option(None, from_environment("STRIPE_SECRET_KEY", _secret_key)),
    "path": Option("/create-checkout-session", url_path),
    "domain_url": Option(None, from_environment("WEB_APP_URL", optional_url)),
    "success_url": Option(None, optional_url),
    "cancel_url": Option(None, optional_url),
    "ui_mode": Option("hosted_page", _ui_mode),
    "return_url": Option(None, optional_url),
    "redirect_on_completion": Option(None, _redirect_on_completion),
    "publishable_key": Option(None, from_environment("STRIPE_PUBLISHABLE_KEY",
                                                     _publishable_key)),
    "price_lookup": Option(None, _price_lookup),
    "validator": Option(None, callable_or_reference("a callable (body, environ) -> body")),
    "require_email": Option(False, to_bool),
    "max_quantity": Option(999, int_between(1, 999_999)),
    "allowed_countries": Option(None, _countries),
    "mode": Option(None, _mode),
    "session_options": Option(None, _session_options),
    "stripe_api_base": Option(None, from_environment("STRIPE_API_BASE", optional_url)),
    "max_network_retries": Option(2, int_between(0, 10)),
    "timeout": Option(10.0, _timeout),
    "max_body": Option(65536, int_between(1024, 16 * 1024 * 1024)),
    "allowed_origins": Option((), _origins),
    "webhook_path": Option(None, optional_path),
    "webhook_secret": Option(None, from_environment("STRIPE_WEBHOOK_SECRET", _webhook_secrets)),
    "status_path": Option("/checkout-session", optional_path),
    "store": Option(None, optional_text),
    "fulfill": Option(None, callable_or_reference("a callable fulfill(order)")),
    # Per-process limits on the Stripe calls requests cause (stripe_guard.py).
    "max_concurrent_stripe_calls": Option(3, int_between(1, 1000)),
    "circuit_cooldown": Option(10.0, positive_number("seconds")),
    "status_stripe_budget": Option(5.0, positive_number("retrieves per second")),
    "allow_free_orders": Option(False, to_bool),
    "status_shows_email": Option(False, to_bool),
    "job_lease": Option(300.0, job_lease),
    "event_retention_days": Option(30.0, retention_days),
    "customer_ref": Option(None, callable_or_reference(
        "a callable customer_ref(environ) -> the user's id or None")),
    "portal_path": Option("/billing-portal", optional_path),
    "portal_return_url": Option(None, optional_url),
    "subscription_changed": Option(None, callable_or_reference(
        "a callable subscription_changed(subscription)")),
    "past_due_is_active": Option(True, to_bool),
    "refunded": Option(None, callable_or_reference("a callable refunded(order)")),
    "disputed": Option(None, callable_or_reference("a callable disputed(order)")),
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
