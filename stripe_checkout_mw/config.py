"""The middleware's settings: options read once, checked once, at construction.

Every mistake an operator can make in configuration is reported when the app starts, by
an :class:`~stripe_checkout_mw.options.OptionError` naming the option and saying how to
fix it, never on a customer's first checkout. Each option on its own is converted by the
table in :mod:`.options`; this module adds the rules that involve several options.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, Union

from . import schema
from .http import origin_of
from .options import RESERVED_SESSION_PARAMS, OptionError, absolute_url, convert_options
from .prices import CustomPriceLookup, PriceLookup
from .validation import MAX_ITEMS, DefaultValidator, Validator

if TYPE_CHECKING:
    from .orders import Order

__all__ = ["RESERVED_SESSION_PARAMS", "SessionOptions", "Settings", "Timeout", "load_settings"]

log = logging.getLogger("stripe_checkout_mw")

SessionOptions = Union[Mapping[str, Any], Callable[[dict[str, Any]], Mapping[str, Any]], None]
Timeout = Union[float, tuple[float, float]]


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
    fulfill: Callable[[Order], None] | None = None
    #: ``domain_url``'s origin: the shop's own origin for the CSRF check (None: use Host).
    shop_origin: str | None = None
    max_concurrent_stripe_calls: int = 4
    circuit_cooldown: float = 10.0
    status_stripe_budget: float = 5.0
    allow_free_orders: bool = False
    status_shows_email: bool = False
    #: Seconds a fulfilment or handler job is held by the worker running it.
    job_lease: float = 300.0
    #: Days a processed event id is kept to refuse duplicates.
    event_retention_days: float = 30.0
    #: The app's ``customer_ref(environ)`` (its user id), or None: no customers, no portal.
    customer_ref: Callable[[Any], Any] | None = None
    #: The billing portal path, served when ``customer_ref`` is set and a store is kept.
    portal_path: str | None = None
    #: Where the billing portal sends the customer back.
    portal_return_url: str | None = None
    subscription_changed: Callable[[Any], None] | None = None
    #: Whether ``past_due`` (Stripe still retrying a payment) gives access.
    past_due_is_active: bool = True
    #: ``refunded(order)`` and ``disputed(order)``, run after a refund or dispute is recorded.
    refunded: Callable[[Order], object] | None = None
    disputed: Callable[[Order], object] | None = None

    @property
    def livemode(self) -> bool:
        return "_live_" in self.secret_key


def load_settings(given: Mapping[str, Any]) -> Settings:
    """Convert and check ``given`` options (see :mod:`.options`), then the rules between them.

    Options not given take the table's default, which for some is the environment.

    :raises OptionError: naming the option and the fix, for the first value refused.
    """
    options = convert_options(given)
    key: str = options["secret_key"]
    success_url, cancel_url = options["success_url"], options["cancel_url"]
    if success_url is None or cancel_url is None:
        domain = options["domain_url"]
        if domain is None:
            raise OptionError("domain_url", "needed to build success_url and cancel_url; pass "
                              "domain_url='https://shop.example.com' or set WEB_APP_URL (or "
                              "give both success_url and cancel_url)")
        domain = domain.rstrip("/")
        if success_url is None:
            success_url = absolute_url(
                "domain_url", f"{domain}/success?session_id={{CHECKOUT_SESSION_ID}}")
        if cancel_url is None:
            cancel_url = absolute_url("domain_url", f"{domain}/cancel")
    if "_live_" in key and not (success_url.startswith("https:") and cancel_url.startswith(
            "https:")):
        log.warning("A live Stripe key is configured with a plain-http success or cancel URL; "
                    "customers will be sent back over an unencrypted connection")

    mode = options["mode"]
    _check_session_options(options["session_options"], mode)
    validator = options["validator"]
    if validator is None:
        validator = DefaultValidator(
            require_email=options["require_email"],
            max_quantity=options["max_quantity"],
            max_items=MAX_ITEMS[mode or "payment"],
        )

    secrets = options["webhook_secret"]
    webhook_path = options["webhook_path"]
    if webhook_path is not None and not secrets:
        raise OptionError("webhook_path", "webhooks need their signing secret; pass "
                          "webhook_secret='whsec_...' or set STRIPE_WEBHOOK_SECRET")
    if secrets and webhook_path is None:
        webhook_path = "/stripe-webhook"
    store = options["store"]
    uses_store = bool(secrets) or store is not None or bool(os.environ.get("STRIPE_CHECKOUT_STORE"))
    status_path = options["status_path"] if uses_store else None
    portal_path = options["portal_path"] if uses_store and options["customer_ref"] else None
    paths = [p for p in (options["path"], webhook_path, status_path, portal_path)
             if p is not None]
    if len(set(paths)) != len(paths):
        raise OptionError("path", "path, webhook_path, status_path and portal_path must all "
                          "differ")
    portal_return_url = options["portal_return_url"]
    if portal_return_url is None:
        base = options["domain_url"] or origin_of(success_url) or ""
        portal_return_url = absolute_url("portal_return_url", f"{base.rstrip('/')}/account")

    api_base = options["stripe_api_base"]
    derived = {
        "success_url": success_url, "cancel_url": cancel_url, "validator": validator,
        "webhook_path": webhook_path, "webhook_secrets": secrets, "status_path": status_path,
        "uses_store": uses_store, "portal_path": portal_path,
        "portal_return_url": portal_return_url,
        "shop_origin": origin_of(options["domain_url"]) if options["domain_url"] else None,
        "stripe_api_base": api_base.rstrip("/") if api_base is not None else None,
    }
    # An option with a Settings field of its name is carried over as converted.
    values = {name: value for name, value in options.items() if name in _FIELDS}
    values.update(derived)
    return Settings(**values)


_FIELDS = frozenset(f.name for f in fields(Settings))


def _check_session_options(session_options: SessionOptions, mode: str | None) -> None:
    """Refuse a ``session_options`` dict Stripe would refuse in a mode the middleware can
    produce: ``mode=None`` chooses per cart, so the options must suit both modes (a
    callable's result is checked per request instead)."""
    if not isinstance(session_options, Mapping):
        return
    for each in (mode,) if mode else ("payment", "subscription"):
        try:
            schema.validate("checkout.sessions.create", session_options, partial=True,
                            mode=each)
        except schema.SchemaError as exc:
            hint = (" (mode=None lets each cart choose payment or subscription; set mode or "
                    "drop the parameter)" if mode is None else "")
            raise OptionError("session_options", f"{exc.param or 'the dict'} is refused by "
                              f"Stripe in {each} mode: {exc.message}{hint}") from None
