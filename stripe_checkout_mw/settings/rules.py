"""The middleware's settings: options read once, checked once, at construction.

Every mistake an operator can make in configuration is reported when the app starts, by
an :class:`~stripe_checkout_mw.settings.options.OptionError` naming the option and saying how to
fix it, never on a customer's first checkout. Each option on its own is converted by the
table in :mod:`.options`; this module adds the rules that involve several options.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, Union

from .. import schema
from ..checkout.prices import CustomPriceLookup, PriceLookup
from ..checkout.validation import MAX_ITEMS, DefaultValidator, Validator
from ..errors import OptionError
from ..ledger.store import DEFAULT_STORE_URL
from ..marker import Marker, marker_for
from ..urls import origin_of
from .options import (
    PAGE_UI_MODES,
    RESERVED_SESSION_PARAMS,
    absolute_url,
    configured,
    convert_options,
)

if TYPE_CHECKING:
    from ..ledger.orders import Order

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
    #: ``hosted_page``, ``embedded_page`` or ``elements`` (see :data:`.options.UI_MODES`).
    ui_mode: str
    #: None in the embedded modes, where Stripe refuses them.
    success_url: str | None
    cancel_url: str | None
    #: Where Stripe.js sends the customer in the embedded modes (None on the hosted page
    #: and with ``redirect_on_completion="never"``).
    return_url: str | None
    redirect_on_completion: str | None
    publishable_key: str | None
    #: ``GET`` here answers ``{"publishableKey", "uiMode"}`` for the shop's page.
    config_path: str
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
    #: The ledger's URL: the ``store`` option, else ``STRIPE_CHECKOUT_STORE``, else
    #: :data:`~stripe_checkout_mw.ledger.store.DEFAULT_STORE_URL`.
    store: str = field(repr=False)  # a database URL may carry a password
    #: Whether the shop keeps that ledger: a store or a webhook secret was configured.
    uses_store: bool
    #: Put in every session's metadata, so the webhook, the status path and ``sync``
    #: recognise this shop's sessions without their ledger row
    #: (:mod:`stripe_checkout_mw.marker`); None when the settings (an operator's command's,
    #: ``serving=False``) name no return address and no ``shop_id``.
    marker: Marker | None
    #: The ``shop_id`` option: names this shop in its sessions' marker (None: derived).
    shop_id: str | None
    fulfill: Callable[[Order], None] | None
    #: The shop's public address (``{domain_url}{webhook_path}`` is its webhook URL).
    domain_url: str | None
    #: ``domain_url``'s origin: the shop's own origin for the CSRF check (None: use Host).
    shop_origin: str | None
    max_concurrent_stripe_calls: int
    circuit_cooldown: float
    status_stripe_budget: float
    allow_free_orders: bool
    status_shows_email: bool
    #: Seconds a fulfilment or handler job is held by the worker running it.
    job_lease: float
    #: Days a processed event id is kept to refuse duplicates.
    event_retention_days: float
    #: The app's ``customer_ref(environ)`` (its user id), or None: no customers, no portal.
    customer_ref: Callable[[Any], Any] | None
    #: The billing portal path, served when ``customer_ref`` is set and a store is kept.
    portal_path: str | None
    #: Where the billing portal sends the customer back.
    portal_return_url: str | None
    subscription_changed: Callable[[Any], None] | None
    #: Whether ``past_due`` (Stripe still retrying a payment) gives access.
    past_due_is_active: bool
    #: Days ``past_due`` gives access after the payment first failed (none at all when
    #: ``past_due_is_active`` is false).
    past_due_grace_days: float
    #: Days ``incomplete`` gives access.
    incomplete_grace_days: float
    #: Price id or lookup key -> the features it gives (``mw.subscriptions.has_feature``).
    features: dict[str, tuple[str, ...]]
    #: Prices whose subscriptions give access without the shop's marker.
    entitling_prices: tuple[str, ...]
    #: ``refunded(order)`` and ``disputed(order)``, run after a refund or dispute is recorded.
    refunded: Callable[[Order], object] | None
    disputed: Callable[[Order], object] | None
    #: Whether a user with an active subscription may check out another one.
    multiple_subscriptions: bool
    subscription_endpoint: bool
    #: ``{path}/subscription`` when ``subscription_endpoint`` is on, else None.
    subscription_path: str | None
    #: ``GET`` here answers the Prometheus metrics (None: not served).
    metrics_path: str | None
    #: The networks whose requests may read the metrics path.
    metrics_allow: tuple[Any, ...]
    #: ``hook(measurement)``, called with each measurement as it is recorded.
    metrics_hook: Callable[[Any], object] | None
    #: ``GET`` here answers the load balancer's health check (None: not served).
    health_path: str | None
    #: The hooks for the money after the checkout (see :mod:`stripe_checkout_mw.news.invoices`).
    invoice_paid: Callable[[Any], object] | None
    payment_failed: Callable[[Any], object] | None
    action_required: Callable[[Any], object] | None
    trial_will_end: Callable[[Any], object] | None

    @property
    def return_address(self) -> str:
        """Where this shop's customers come back to, which tells its sessions apart (the
        marker): success_url, or return_url in the embedded modes, or with
        ``redirect_on_completion="never"`` (no URL at all) the publishable key and path."""
        return self.success_url or self.return_url or f"{self.publishable_key} {self.path}"

    @property
    def livemode(self) -> bool:
        return "_live_" in self.secret_key


def load_settings(given: Mapping[str, Any], *, serving: bool = True) -> Settings:
    """Convert and check ``given`` options (see :mod:`.options`), then the rules between them.

    Options not given take the table's default, which for some is the environment. Every
    entry point calls this: the middleware, the PasteDeploy filter, ``check`` and the
    operator's commands, so the same options give the same settings everywhere.

    :param serving: False for the operator's commands, which serve no page and price
        nothing: the options only the pages need (``price_lookup``, the redirect URLs and
        ``domain_url``, the embedded modes' publishable key) may then be missing. The
        settings are the middleware's whenever the options are complete; without a return
        address the marker is None (no session is recognised by its marker alone).
    :raises OptionError: naming the option and the fix, for the first value refused.
    """
    if not serving and not configured(given, "price_lookup"):
        given = {**given, "price_lookup": _prices_not_configured}
    options = convert_options(given)
    key: str = options["secret_key"]
    ui_mode: str = options["ui_mode"]
    secrets = options["webhook_secret"]
    store = options["store"]  # the option, else its environment variable
    uses_store = bool(secrets) or store is not None
    if ui_mode in PAGE_UI_MODES:
        success_url = cancel_url = None
        return_url, redirect = _page_return(options, ui_mode, needs_session_id=(
            uses_store and options["status_path"] is not None), serving=serving)
    else:
        success_url, cancel_url = _hosted_urls(options, serving=serving)
        return_url = redirect = None
    back = [url for url in (success_url, cancel_url, return_url) if url is not None]
    if "_live_" in key and not all(url.startswith("https:") for url in back):
        log.warning("A live Stripe key is configured with a plain-http success, cancel or "
                    "return URL; customers will be sent back over an unencrypted connection")
    publishable_key = _publishable_key(options["publishable_key"], key,
                                       ui_mode if serving else "hosted_page")
    # The return address tells this shop's sessions apart (see Settings.return_address).
    address = success_url or return_url or (
        f"{publishable_key} {options['path']}"
        if redirect == "never" and publishable_key is not None else None)

    mode = options["mode"]
    _check_session_options(options["session_options"], mode, ui_mode)
    validator = options["validator"]
    if validator is None:
        validator = DefaultValidator(
            require_email=options["require_email"],
            max_quantity=options["max_quantity"],
            max_items=MAX_ITEMS[mode or "payment"],
        )

    webhook_path = options["webhook_path"]
    if webhook_path is not None and not secrets:
        raise OptionError("webhook_path", "webhooks need their signing secret; pass "
                          "webhook_secret='whsec_...' or set STRIPE_WEBHOOK_SECRET")
    if secrets and webhook_path is None:
        webhook_path = "/stripe-webhook"
    status_path = options["status_path"] if uses_store else None
    portal_path = options["portal_path"] if uses_store and options["customer_ref"] else None
    config_path = options["path"].rstrip("/") + "/config"
    subscription_path = None
    if options["subscription_endpoint"]:
        if not (uses_store and options["customer_ref"]):
            raise OptionError("subscription_endpoint", "plan changes are per signed-in user: "
                              "give customer_ref and a store (store= or webhook_secret=), or "
                              "leave subscription_endpoint off")
        subscription_path = options["path"].rstrip("/") + "/subscription"
    paths = [p for p in (options["path"], config_path, webhook_path, status_path, portal_path,
                         subscription_path, options["metrics_path"], options["health_path"])
             if p is not None]
    if len(set(paths)) != len(paths):
        raise OptionError("path", f"path, {config_path} (the page's configuration), "
                          f"{subscription_path or '{path}/subscription'} (plan changes), "
                          f"webhook_path, status_path, portal_path, metrics_path and "
                          f"health_path must all differ")
    portal_return_url = options["portal_return_url"]
    base = options["domain_url"] or origin_of(success_url or return_url or "")
    if portal_return_url is None and base:
        portal_return_url = absolute_url("portal_return_url", f"{base.rstrip('/')}/account")
    elif portal_return_url is None and portal_path is not None:
        raise OptionError("portal_return_url", "needed by the billing portal; pass "
                          "portal_return_url='https://shop.example.com/account' or "
                          "domain_url")

    api_base = options["stripe_api_base"]
    derived = {
        "success_url": success_url, "cancel_url": cancel_url, "validator": validator,
        "return_url": return_url, "redirect_on_completion": redirect,
        "publishable_key": publishable_key, "config_path": config_path,
        "webhook_path": webhook_path, "webhook_secrets": secrets, "status_path": status_path,
        "store": store or DEFAULT_STORE_URL, "uses_store": uses_store,
        "marker": marker_for(options["shop_id"], address),
        "portal_path": portal_path,
        "portal_return_url": portal_return_url,
        "subscription_path": subscription_path,
        "shop_origin": origin_of(options["domain_url"]) if options["domain_url"] else None,
        "stripe_api_base": api_base.rstrip("/") if api_base is not None else None,
    }
    # An option with a Settings field of its name is carried over as converted.
    values = {name: value for name, value in options.items() if name in _FIELDS}
    values.update(derived)
    return Settings(**values)


_FIELDS = frozenset(f.name for f in fields(Settings))


def _check_session_options(
    session_options: SessionOptions, mode: str | None, ui_mode: str
) -> None:
    """Refuse a ``session_options`` dict Stripe would refuse in a mode the middleware can
    produce, with the configured ``ui_mode``: ``mode=None`` chooses per cart, so the options
    must suit both modes (a callable's result is checked per request instead)."""
    if not isinstance(session_options, Mapping):
        return
    for each in (mode,) if mode else ("payment", "subscription"):
        try:
            schema.validate("checkout.sessions.create", {**session_options, "ui_mode": ui_mode},
                            partial=True, mode=each)
        except schema.SchemaError as exc:
            hint = (" (mode=None lets each cart choose payment or subscription; set mode or "
                    "drop the parameter)" if mode is None else "")
            raise OptionError("session_options", f"{exc.param or 'the dict'} is refused by "
                              f"Stripe in {each} mode: {exc.message}{hint}") from None


def _prices_not_configured(items: Any, environ: Any) -> Any:
    """The price lookup of an operator's command given none: the commands price nothing."""
    raise AssertionError("an operator's command never prices an order")


def _domain(options: Mapping[str, Any], needed_for: str) -> str:
    domain = options["domain_url"]
    if domain is None:
        raise OptionError("domain_url", f"needed to build {needed_for}; pass "
                          f"domain_url='https://shop.example.com' or set WEB_APP_URL (or "
                          f"give {needed_for} in full)")
    return str(domain).rstrip("/")


def _hosted_urls(options: Mapping[str, Any], *,
                 serving: bool) -> tuple[str | None, str | None]:
    """success_url and cancel_url for Stripe's hosted page; return_url has no place there.

    Not serving, a URL that needs the missing ``domain_url`` stays None."""
    for name in ("return_url", "redirect_on_completion"):
        if options[name] is not None:
            raise OptionError(name, "applies to ui_mode='embedded_page' or 'elements' only; "
                              "on the hosted page use success_url and cancel_url")
    success_url, cancel_url = options["success_url"], options["cancel_url"]
    if not serving and options["domain_url"] is None:
        return success_url, cancel_url
    if success_url is None or cancel_url is None:
        domain = _domain(options, "success_url and cancel_url")
        if success_url is None:
            success_url = absolute_url(
                "domain_url", f"{domain}/success?session_id={{CHECKOUT_SESSION_ID}}")
        if cancel_url is None:
            cancel_url = absolute_url("domain_url", f"{domain}/cancel")
    return success_url, cancel_url


def _page_return(options: Mapping[str, Any], ui_mode: str, needs_session_id: bool,
                 serving: bool) -> tuple[str | None, str | None]:
    """return_url and redirect_on_completion for the embedded modes.

    Stripe refuses success_url and cancel_url there, and applies redirect_on_completion
    to ``embedded_page`` only; ``"never"`` sends nobody to a return_url.
    """
    for name in ("success_url", "cancel_url"):
        if options[name] is not None:
            raise OptionError(name, f"Stripe refuses it with ui_mode={ui_mode!r}; the "
                              f"customer comes back to return_url instead")
    redirect: str | None = options["redirect_on_completion"]
    if redirect is not None and ui_mode != "embedded_page":
        raise OptionError("redirect_on_completion", "applies to ui_mode='embedded_page' only")
    return_url: str | None = options["return_url"]
    if redirect == "never":
        if return_url is not None:
            raise OptionError("return_url", "redirect_on_completion='never' sends nobody "
                              "there; drop one of the two")
        return None, redirect
    if return_url is None and not serving and options["domain_url"] is None:
        return None, redirect
    if return_url is None:
        return_url = absolute_url("domain_url", _domain(options, "return_url")
                                  + "/return?session_id={CHECKOUT_SESSION_ID}")
    elif needs_session_id and "{CHECKOUT_SESSION_ID}" not in return_url:
        raise OptionError("return_url", "the return page looks the order up by its session, "
                          "so the URL must carry {CHECKOUT_SESSION_ID}, e.g. "
                          "'https://shop.example.com/return?session_id={CHECKOUT_SESSION_ID}'")
    return return_url, redirect


def _publishable_key(key: str | None, secret_key: str, ui_mode: str) -> str | None:
    """The key the page gives Stripe.js: required by the embedded modes, same mode as
    the secret key."""
    if key is None:
        if ui_mode in PAGE_UI_MODES:
            raise OptionError("publishable_key", f"ui_mode={ui_mode!r} runs Stripe.js on the "
                              f"shop's page, which needs the publishable key; pass "
                              f"publishable_key='pk_test_...' or set STRIPE_PUBLISHABLE_KEY")
        return None
    if ("_live_" in key) != ("_live_" in secret_key):
        raise OptionError("publishable_key", "its mode does not match the secret key's (one "
                          "is live, the other test); use the pair from the same dashboard "
                          "mode")
    return key
