"""The middleware's options: read once, checked once, at construction.

Every mistake an operator can make in configuration is reported here, when the app
starts, by a ``ValueError`` or ``TypeError`` whose message begins with the option's
name and says how to fix it, never on a customer's first checkout.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Union
from urllib.parse import urlsplit

from .http import origin_of
from .prices import CustomPriceLookup, PriceLookup
from .validation import MAX_ITEMS, DefaultValidator, Validator

log = logging.getLogger("stripe_checkout_mw")

SessionOptions = Union[Mapping[str, Any], Callable[[dict[str, Any]], Mapping[str, Any]], None]
Timeout = Union[float, tuple[float, float]]

#: Parameters the middleware sets itself; letting ``session_options`` override them
#: would let configuration (or a buggy callable) undo the price and redirect guarantees.
RESERVED_SESSION_PARAMS = frozenset(
    {"line_items", "success_url", "cancel_url", "mode", "customer_email",
     "shipping_address_collection", "payment_method_types", "ui_mode"}
)
_KEY_PREFIXES = ("sk_test_", "sk_live_", "rk_test_", "rk_live_")
_MODES = ("payment", "subscription")


@dataclass(frozen=True)
class Settings:
    """The checked configuration of one middleware. Build it with :func:`load_settings`."""

    # repr=False: a Settings repr may end up in a log or a traceback; secrets must not.
    secret_key: str = field(repr=False)
    path: str
    success_url: str
    cancel_url: str
    price_lookup: PriceLookup | CustomPriceLookup
    validator: Validator
    allowed_countries: tuple[str, ...]
    mode: str | None
    session_options: SessionOptions
    stripe_api_base: str | None
    max_network_retries: int
    timeout: tuple[float, float]
    max_body: int
    allowed_origins: frozenset[str]
    webhook_path: str | None
    webhook_secrets: tuple[str, ...] = field(repr=False)
    status_path: str | None
    store: str | None = field(repr=False)  # a database URL may carry a password
    #: Whether an order ledger is kept: a store or a webhook secret was configured.
    uses_store: bool

    @property
    def livemode(self) -> bool:
        return "_live_" in self.secret_key


def _absolute_url(option: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{option}: expected an absolute URL string, got {type(value).__name__}")
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{option}: {value!r} is not an absolute http(s) URL; "
                         f"write it in full, e.g. 'https://shop.example.com'")
    return value


def _url_path(option: str, value: object) -> str:
    if not isinstance(value, str) or not value.startswith("/") or any(c in value for c in "?# "):
        raise ValueError(f"{option}: {value!r} must be a path starting with '/', "
                         f"e.g. '/create-checkout-session'")
    return value


def _secret_key(value: str | None) -> str:
    key = value if value is not None else os.environ.get("STRIPE_SECRET_KEY")
    if not key:
        raise ValueError("secret_key: no Stripe secret key; pass secret_key='sk_test_...' "
                         "or set STRIPE_SECRET_KEY")
    if not isinstance(key, str) or not key.startswith(_KEY_PREFIXES):
        kind = "a publishable key" if str(key).startswith("pk_") else "not a secret key"
        raise ValueError(f"secret_key: this is {kind}; use the secret key (sk_test_... or "
                         f"sk_live_...) from the Stripe dashboard")
    return key


def _webhook_secrets(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        value = os.environ.get("STRIPE_WEBHOOK_SECRET") or ()
    secrets = (value,) if isinstance(value, str) else tuple(value)
    for secret in secrets:
        if not isinstance(secret, str) or not secret.startswith("whsec_"):
            raise ValueError("webhook_secret: expected the endpoint's signing secret "
                             "('whsec_...'), or a list of them while rotating")
    return secrets


def _timeout(value: Timeout) -> tuple[float, float]:
    pair = value if isinstance(value, tuple) else (min(float(value), 5.0), float(value))
    if len(pair) != 2 or not all(
        isinstance(t, (int, float)) and math.isfinite(t) and t > 0 for t in pair
    ):
        raise ValueError("timeout: give seconds > 0, or a (connect, read) pair of them")
    return (float(pair[0]), float(pair[1]))


def _int_option(option: str, value: object, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{option}: must be a whole number from {low} to {high}")
    return value


def _countries(value: Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        raise TypeError("allowed_countries: give a list such as ['GB', 'US'], not a string")
    countries = tuple(value)
    for country in countries:
        if not isinstance(country, str) or len(country) != 2 or not country.isupper():
            raise ValueError(f"allowed_countries: {country!r} is not a two-letter "
                             f"country code such as 'GB'")
    return countries


def _origins(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        raise TypeError("allowed_origins: give a list such as ['https://shop.example.com']")
    origins = set()
    for origin in value:
        normal = origin_of(origin) if isinstance(origin, str) else None
        if normal is None or normal.split("://", 1)[0] not in ("http", "https"):
            raise ValueError(f"allowed_origins: {origin!r} is not an origin such as "
                             f"'https://shop.example.com' (wildcards are not allowed)")
        origins.add(normal)
    return frozenset(origins)


def _session_options(value: SessionOptions) -> SessionOptions:
    if value is None or callable(value):
        return value
    if not isinstance(value, Mapping):
        raise TypeError("session_options: give a dict of Checkout Session parameters or a "
                        "callable that returns one")
    reserved = RESERVED_SESSION_PARAMS.intersection(value)
    if reserved:
        raise ValueError(f"session_options: {sorted(reserved)} are set by the middleware "
                         f"itself; use its own options instead")
    return dict(value)


def load_settings(
    *,
    secret_key: str | None,
    path: str,
    domain_url: str | None,
    success_url: str | None,
    cancel_url: str | None,
    price_lookup: PriceLookup | CustomPriceLookup | None,
    validator: Validator | None,
    require_email: bool,
    max_quantity: int,
    allowed_countries: Iterable[str] | None,
    mode: str | None,
    session_options: SessionOptions,
    stripe_api_base: str | None,
    max_network_retries: int,
    timeout: Timeout,
    max_body: int,
    allowed_origins: Iterable[str],
    webhook_path: str | None,
    webhook_secret: str | Sequence[str] | None,
    status_path: str | None,
    store: str | None,
) -> Settings:
    """Check every option and fill defaults from the environment (see the README)."""
    key = _secret_key(secret_key)
    if success_url is None or cancel_url is None:
        domain = domain_url if domain_url is not None else os.environ.get("WEB_APP_URL")
        if not domain:
            raise ValueError("domain_url: needed to build success_url and cancel_url; pass "
                             "domain_url='https://shop.example.com' or set WEB_APP_URL "
                             "(or give both success_url and cancel_url)")
        domain = _absolute_url("domain_url", domain).rstrip("/")
        if success_url is None:
            success_url = f"{domain}/success?session_id={{CHECKOUT_SESSION_ID}}"
        if cancel_url is None:
            cancel_url = f"{domain}/cancel"
    success_url = _absolute_url("success_url", success_url)
    cancel_url = _absolute_url("cancel_url", cancel_url)
    if "_live_" in key and not (success_url.startswith("https:") and cancel_url.startswith(
            "https:")):
        log.warning("A live Stripe key is configured with a plain-http success or cancel URL; "
                    "customers will be sent back over an unencrypted connection")

    if price_lookup is None:
        raise ValueError("price_lookup: required; choose Catalog({...}) for prices kept with "
                         "the app, StripeLookupKeys() for prices kept in Stripe, or "
                         "ClientPrices(currencies=[...], max_unit_amount=...) to trust the "
                         "browser's prices")
    if not callable(price_lookup):
        raise TypeError("price_lookup: expected Catalog, StripeLookupKeys, ClientPrices or a "
                        "callable (items, environ) -> line items")
    if mode is not None and mode not in _MODES:
        raise ValueError(f"mode: {mode!r} is not supported; use 'payment', 'subscription' or "
                         f"None to choose from the prices")
    max_quantity = _int_option("max_quantity", max_quantity, 1, 999_999)
    if validator is None:
        validator = DefaultValidator(
            require_email=bool(require_email),
            max_quantity=max_quantity,
            max_items=MAX_ITEMS[mode or "payment"],
        )
    elif not callable(validator):
        raise TypeError("validator: expected a callable (body, environ) -> cleaned body")

    secrets = _webhook_secrets(webhook_secret)
    if webhook_path is not None and not secrets:
        raise ValueError("webhook_path: webhooks need their signing secret; pass "
                         "webhook_secret='whsec_...' or set STRIPE_WEBHOOK_SECRET")
    if secrets and webhook_path is None:
        webhook_path = "/stripe-webhook"
    uses_store = bool(secrets) or store is not None or bool(os.environ.get("STRIPE_CHECKOUT_STORE"))
    paths = [_url_path("path", path)]
    if webhook_path is not None:
        paths.append(_url_path("webhook_path", webhook_path))
    if status_path is not None and uses_store:
        paths.append(_url_path("status_path", status_path))
    else:
        status_path = None
    if len(set(paths)) != len(paths):
        raise ValueError("path: path, webhook_path and status_path must all differ")

    return Settings(
        secret_key=key,
        path=path,
        success_url=success_url,
        cancel_url=cancel_url,
        price_lookup=price_lookup,
        validator=validator,
        allowed_countries=_countries(allowed_countries),
        mode=mode,
        session_options=_session_options(session_options),
        stripe_api_base=(
            _absolute_url("stripe_api_base", stripe_api_base).rstrip("/")
            if stripe_api_base is not None else None
        ),
        max_network_retries=_int_option("max_network_retries", max_network_retries, 0, 10),
        timeout=_timeout(timeout),
        max_body=_int_option("max_body", max_body, 1024, 16 * 1024 * 1024),
        allowed_origins=_origins(allowed_origins),
        webhook_path=webhook_path,
        webhook_secrets=secrets,
        status_path=status_path,
        store=store,
        uses_store=uses_store,
    )
