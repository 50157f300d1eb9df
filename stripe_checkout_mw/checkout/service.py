"""Creating a Checkout Session: validated order -> server prices -> Stripe parameters.

This is the seed's ``createCheckoutSession`` without its flaws: amounts come from the
price lookup, the redirect URLs from configuration, ``payment_method_types`` is never
sent (Stripe removed it from create), every create carries an idempotency key so the
SDK's retries cannot make two sessions, and Stripe's errors become safe answers.

The idempotency key Stripe gets is never the browser's ``Idempotency-Key`` as is: it is a
digest of that key and of the exact parameters of this order. The same key with another
cart is another session (not a 400 that blocks the customer), and someone replaying a
key they saw gets a session back only for the identical order, never another's.

It knows nothing of WSGI beyond passing ``environ`` on to user callables, so it can be
driven directly in tests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import stripe

from .. import schema
from ..errors import HTTPError
from ..marker import MARKER_KEY, shop_marker
from ..settings.options import reserved_in
from ..stripe_api.guard import StripeGuard, loggable
from .prices import PricedItem, StripeLookupKeys, UnknownItem, resolve_prices
from .validation import ValidationError, check_total

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

    from ..settings.rules import Settings

log = logging.getLogger("stripe_checkout_mw")

#: Called with the new session and its priced items before the answer leaves.
#: The customer parameters of the current user's checkout (``client_reference_id``,
#: ``customer``), from
#: :class:`~stripe_checkout_mw.billing.customers.CustomerDirectory`; may raise ``HTTPError``.
CustomerParams = Callable[["WSGIEnvironment"], dict[str, str]]
SessionRecorder = Callable[["stripe.checkout.Session", list[PricedItem], dict[str, Any]], None]
#: Whether the signed-in user of ``environ`` already has an active subscription.
ActiveSubscriber = Callable[["WSGIEnvironment"], bool]


@dataclass(frozen=True)
class CreatedSession:
    """What the browser needs: the session's id and the hosted page's address, or (in
    the embedded modes, which have no page at Stripe) the client secret for Stripe.js."""

    session_id: str
    url: str | None
    client_secret: str | None = None


class CheckoutService:
    """Creates Checkout Sessions for one configuration.

    :param settings: the checked configuration.
    :param client: the ``StripeClient`` every create goes through.
    :param record: called with each created session before it is answered (the ledger).
    :param guard: the bulkhead and circuit breaker every Stripe call of a checkout (price
        look-up and create) goes through.
    :param customers: the signed-in user's customer parameters, when ``customer_ref`` is
        configured (:mod:`stripe_checkout_mw.billing.customers`).
    :param subscribed: whether the signed-in user already has an active subscription; a
        subscription checkout of such a user is refused with 409 (one subscription per
        user, unless ``multiple_subscriptions``: then it is ``None``).
    """

    def __init__(
        self,
        settings: Settings,
        client: stripe.StripeClient,
        record: SessionRecorder | None = None,
        guard: StripeGuard | None = None,
        customers: CustomerParams | None = None,
        subscribed: ActiveSubscriber | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.record = record
        self.guard = guard or StripeGuard(max_concurrent=settings.max_concurrent_stripe_calls,
                                          cooldown=settings.circuit_cooldown,
                                          timeout=settings.timeout[1])
        if isinstance(settings.price_lookup, StripeLookupKeys):
            settings.price_lookup.guard = self.guard
        #: Put in every session's metadata so the webhook and status paths recognise this
        #: shop's sessions without their ledger row (see :mod:`stripe_checkout_mw.marker`).
        self.marker: str = (settings.marker.value if settings.marker is not None
                            else shop_marker(settings.return_address))
        self.customers = customers
        self.subscribed = subscribed

    def create(
        self, body: dict[str, Any], environ: WSGIEnvironment, idempotency_key: str | None
    ) -> CreatedSession:
        """Validate, price and create; raise :class:`HTTPError` for anything else.

        :param idempotency_key: the browser's ``Idempotency-Key`` (checked), or None.
        """
        settings = self.settings
        # Before anything reaches Stripe: a misconfigured customer_ref must call nothing.
        customer = self.customers(environ) if self.customers is not None else None
        try:
            order = settings.validator(body, environ)
        except ValidationError as exc:
            raise HTTPError(400, exc.message, param=exc.param) from None
        action = "price look-up"
        try:
            # The guard must see Stripe's own errors (a timeout opens the circuit), so
            # they become answers only outside it.
            with self.guard.call():
                priced = resolve_prices(settings.price_lookup, order["line_items"], environ,
                                        self.client)
                params = self.params(order, priced)
                if customer is not None:
                    params.update(customer)
                    if "customer" in params:
                        params.pop("customer_email", None)
                    elif params["mode"] == "payment":
                        params["customer_creation"] = "always"
                if params["mode"] == "subscription" and self.subscribed is not None \
                        and self.subscribed(environ):
                    raise _already_subscribed(self.settings.subscription_path)
                action = "checkout session create"
                session = self.client.v1.checkout.sessions.create(
                    params=params,  # type: ignore[arg-type]  # built dynamically, checked above
                    options={"idempotency_key": order_idempotency_key(idempotency_key, params)},
                )
        except UnknownItem as exc:
            self.guard.refusals.note(
                "unknown item", "checkout refused: unknown price key %s at %s (not in the "
                "price_lookup's catalog or Stripe's lookup keys)", loggable(exc.key), exc.param)
            raise HTTPError(400, exc.message, param=exc.param) from None
        except ValidationError as exc:
            raise HTTPError(400, exc.message, param=exc.param) from None
        except stripe.StripeError as exc:
            raise stripe_error_to_http(exc, action) from None
        session_id = getattr(session, "id", None)
        # The hosted page has a url, the embedded modes a client secret instead.
        needed = "url" if settings.ui_mode == "hosted_page" else "client_secret"
        handle = getattr(session, needed, None)
        if not isinstance(handle, str) or not handle or not isinstance(session_id, str):
            log.error("Stripe returned a session without an id or a %s", needed)
            raise HTTPError(502, "The payment provider sent an unusable answer.", type="api_error")
        if self.record is not None:
            self.record(session, priced, order)
        log.info("checkout session %s created (%s, %d item(s))", session_id, params["mode"],
                 len(priced))
        if needed == "url":
            return CreatedSession(session_id, handle)
        return CreatedSession(session_id, None, client_secret=handle)

    def params(self, order: dict[str, Any], priced: list[PricedItem]) -> dict[str, Any]:
        """The Checkout Session create parameters for a validated, priced order."""
        settings = self.settings
        if not priced:
            raise ValidationError("line_items must be a non-empty list.", param="line_items")
        currencies = {item.currency for item in priced if item.currency is not None}
        if len(currencies) > 1:
            raise ValidationError("All items must be in one currency.", param="line_items")
        check_total([(item.unit_amount, item.line_item.get("quantity")) for item in priced],
                    allow_free=settings.allow_free_orders)
        recurring = sum(item.recurring for item in priced)
        mode = settings.mode or ("subscription" if recurring else "payment")
        if mode == "payment" and recurring:
            raise ValidationError("Subscriptions cannot be bought in this checkout.",
                                  param="line_items")
        params: dict[str, Any] = {
            "mode": mode,
            "line_items": [item.line_item for item in priced],
        }
        if settings.ui_mode != "hosted_page":
            params["ui_mode"] = settings.ui_mode
        for name in ("success_url", "cancel_url", "return_url", "redirect_on_completion"):
            if getattr(settings, name) is not None:
                params[name] = getattr(settings, name)
        if order.get("customer_email"):
            params["customer_email"] = order["customer_email"]
        if settings.allowed_countries:
            params["shipping_address_collection"] = {
                "allowed_countries": list(settings.allowed_countries)
            }
        extra = settings.session_options
        if callable(extra):
            extra = extra(order)
            if not isinstance(extra, Mapping) or reserved_in(extra):
                log.error("session_options callable returned reserved or invalid parameters")
                raise HTTPError(500, "The shop's checkout is misconfigured.", type="api_error")
        if extra:
            params.update(extra)
            if "customer" in extra:
                # Stripe takes one of the two: the shop's own customer wins.
                params.pop("customer_email", None)
        params["metadata"] = {**dict(params.get("metadata") or {}), MARKER_KEY: self.marker}
        data = params.get("subscription_data") or {}
        if mode == "subscription" and isinstance(data, Mapping):
            # The subscription carries the marker too: only subscriptions this shop sold
            # give entitlement (billing.subscriptions), whatever else the customer has.
            metadata = data.get("metadata") or {}
            if isinstance(metadata, Mapping):
                params["subscription_data"] = {
                    **data, "metadata": {**metadata, MARKER_KEY: self.marker}}
        _check_with_stripes_schema(params, priced)
        return params


def _already_subscribed(change_path: str | None) -> HTTPError:
    """The 409 for a second subscription: the way forward is a plan change."""
    where = f" (POST {change_path})" if change_path else ""
    log.info("checkout refused: the signed-in user already has an active subscription")
    return HTTPError(409, f"You already have an active subscription. Change its plan "
                          f"instead{where} rather than buying a second one.",
                     param="line_items")


def order_idempotency_key(browser_key: str | None, params: Mapping[str, Any]) -> str:
    """The key Stripe gets: the browser's key scoped to this exact order, or a new one.

    ``params`` are the create parameters: the cleaned order's priced items, email and
    everything else Stripe will be asked for, so "the identical order" means exactly that.
    """
    if browser_key is None:
        return f"scmw-{uuid.uuid4()}"
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=repr)
    digest = hashlib.sha256()
    for part in (browser_key, canonical):
        encoded = part.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "big"))  # framed: no two splits collide
        digest.update(encoded)
    return f"scmw-o-{digest.hexdigest()}"


def _check_with_stripes_schema(params: dict[str, Any], priced: list[PricedItem]) -> None:
    """Refuse, before Stripe is called, what Stripe's schema refuses: the cart's item
    limits per mode are the customer's (400); anything else comes from configuration or
    a ``session_options`` callable (500 "misconfigured", the parameter in the log)."""
    recurring = {item.line_item["price"]: item.recurring for item in priced
                 if isinstance(item.line_item.get("price"), str)}
    try:
        schema.validate("checkout.sessions.create", params, recurring_price=recurring.get)
    except schema.SchemaError as exc:
        if exc.param.startswith("line_items"):
            raise ValidationError(exc.message, param=exc.param) from None
        log.error("the checkout's parameters are refused by Stripe's schema at %s: %s",
                  exc.param, exc.message)
        raise HTTPError(500, "The shop's checkout is misconfigured.", type="api_error") from None


def stripe_error_to_http(exc: stripe.StripeError, action: str) -> HTTPError:
    """Turn a Stripe SDK error into the answer the browser may see, and log the detail.

    The log line carries Stripe's request id, status and error code, which is what a
    support request to Stripe needs; the browser gets a short message and nothing of
    Stripe's internals.
    """
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    log.warning(
        "Stripe %s failed: %s (status %s, code %s, request %s)",
        action, type(exc).__name__, exc.http_status, code, exc.request_id,
    )
    if isinstance(exc, stripe.IdempotencyError):
        # Keys are scoped to the order, so this is a config change between two identical
        # carts (session_options), not a customer's mistake.
        return HTTPError(400, "This Idempotency-Key was already used for a different checkout.",
                         type="idempotency_error", param="Idempotency-Key")
    if isinstance(exc, stripe.RateLimitError):
        return HTTPError(503, "The payment provider is busy; try again in a moment.",
                         type="api_error", headers=[("Retry-After", "2")])
    if isinstance(exc, (stripe.AuthenticationError, stripe.PermissionError)):
        log.error("Stripe refused the configured secret key: the payment provider is "
                  "misconfigured (request %s)", exc.request_id)
        return HTTPError(500, "The payment provider is misconfigured.", type="api_error")
    if isinstance(exc, stripe.InvalidRequestError):
        return HTTPError(400, "The payment provider rejected this checkout.",
                         param=getattr(error, "param", None))
    return HTTPError(502, "The payment provider could not be reached; try again.",
                     type="api_error")
