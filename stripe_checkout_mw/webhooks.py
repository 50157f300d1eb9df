"""Stripe webhooks: signature check, exactly-once processing, handlers and fulfilment.

Stripe delivers each event at least once, in no particular order, and retries for days while
the endpoint answers anything but 2xx. :class:`WebhookReceiver` turns that into "each event
takes effect once":

1. The ``Stripe-Signature`` header is checked over the raw body against every configured
   secret (so an old and a new secret both work while one is being rotated), with a tolerance
   on the timestamp against replays. Anything that fails is a 400 and leaves no trace.
2. In one store transaction: the event id is claimed (a duplicate answers
   ``{"received": true, "duplicate": true}`` and runs nothing), the order moves to its new
   status, the registered handlers run, and, the first time the order is paid, ``fulfill``
   runs. If any of them raises, the whole transaction is rolled back and the answer is 500,
   so Stripe delivers the event again and the retry does the work.

Handlers run inside that transaction, before ``fulfill``: a failing handler then costs nothing
irreversible, and ``fulfill``, the one call that must happen once, runs last, right before the
commit. The transaction holds locks (on SQLite the whole database's write lock), so handlers
and ``fulfill`` must be quick: record the work and do anything slow elsewhere.

Usage, framework-free::

    handlers = WebhookHandlers()

    @handlers.on("checkout.session.expired")
    def expired(event: stripe.Event) -> None:
        ...

    receiver = WebhookReceiver(store=store, secrets=["whsec_..."], handlers=handlers,
                               fulfill=ship, client=client)
    status, body = receiver.handle(raw_body, environ.get("HTTP_STRIPE_SIGNATURE"))
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Callable, TypeVar

import stripe

from .orders import (
    AWAITING_PAYMENT,
    EXPIRED,
    OPEN,
    PAID,
    PAYMENT_FAILED,
    FulfillFunc,
    Order,
    settle_order,
)
from .store import OrderStore

__all__ = ["EventHandler", "WebhookHandlers", "WebhookReceiver"]

logger = logging.getLogger("stripe_checkout_mw")

#: A handler takes the verified ``stripe.Event``; its return value is ignored.
EventHandler = Callable[[stripe.Event], Any]
_H = TypeVar("_H", bound=EventHandler)

_ASYNC_EVENTS = {
    "checkout.session.async_payment_succeeded": PAID,
    "checkout.session.async_payment_failed": PAYMENT_FAILED,
    "checkout.session.expired": EXPIRED,
}
_COMPLETED = "checkout.session.completed"


class WebhookHandlers:
    """The registry behind ``mw.on(event_type)``.

    ``on(event_type)`` is a decorator that registers the function and returns it unchanged;
    ``"*"`` matches every event. Handlers for an event run in the order they were registered.
    Register them at start-up, before requests arrive.
    """

    def __init__(self) -> None:
        self._handlers: list[tuple[str, EventHandler]] = []

    def on(self, event_type: str) -> Callable[[_H], _H]:
        """Register the decorated function for ``event_type`` (``"*"`` for all events)."""
        if not isinstance(event_type, str) or not event_type.strip():
            raise ValueError("on: the event type must be a non-empty string, or '*' for all")

        def register(func: _H) -> _H:
            self.add(event_type, func)
            return func

        return register

    def add(self, event_type: str, handler: EventHandler) -> None:
        """Register ``handler`` for ``event_type``, as :meth:`on` does without a decorator."""
        if not callable(handler):
            raise TypeError("on: the handler must be callable")
        self._handlers.append((event_type, handler))

    def for_event(self, event_type: str) -> list[EventHandler]:
        """The handlers an event of ``event_type`` runs, in registration order."""
        return [h for t, h in self._handlers if t in (event_type, "*")]

    def __len__(self) -> int:
        return len(self._handlers)


class WebhookReceiver:
    """Verify, deduplicate and apply Stripe webhook deliveries (see the module docstring).

    One receiver serves every thread; it keeps no per-request state.

    :param store: the ledger and processed-event log.
    :param secrets: the endpoint's signing secret(s), ``whsec_...``. Several are tried in turn,
        for rotation. There is no way to skip the check.
    :param handlers: the handlers to run for each new event.
    :param fulfill: called with the :class:`~stripe_checkout_mw.orders.Order` the first time
        an order is paid, inside the transaction; raising rolls everything back.
    :param client: the Stripe client the events are bound to.
    :param tolerance: seconds a signature's timestamp may be old; older deliveries are
        rejected as possible replays.
    :param adopt_unknown_sessions: what to do with a Checkout Session this ledger never
        recorded (created by another integration, a Payment Link, the Dashboard, or another
        deployment sharing the Stripe account or ``stripe listen``). By default it is not
        added to the ledger and never fulfilled, only logged; its handlers still run. ``True``
        records it from the event's session object and fulfils it like any other order.
    """

    def __init__(
        self,
        *,
        store: OrderStore,
        secrets: Sequence[str],
        handlers: WebhookHandlers,
        fulfill: FulfillFunc | None,
        client: stripe.StripeClient,
        tolerance: int = 300,
        adopt_unknown_sessions: bool = False,
    ) -> None:
        if isinstance(secrets, str):
            secrets = [secrets]
        secrets = list(secrets)
        if not secrets:
            raise ValueError("webhooks: at least one webhook signing secret (whsec_...) is needed")
        if not all(isinstance(s, str) and s.strip() for s in secrets):
            raise ValueError("webhooks: every webhook secret must be a non-empty string")
        if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance <= 0:
            raise ValueError("webhooks: tolerance must be a positive number of seconds")
        if fulfill is not None and not callable(fulfill):
            raise TypeError("webhooks: fulfill must be callable or None")
        self.store = store
        self._secrets = tuple(s.strip() for s in secrets)
        self.handlers = handlers
        self.fulfill = fulfill
        self.client = client
        self.tolerance = tolerance
        self.adopt_unknown_sessions = adopt_unknown_sessions

    def __repr__(self) -> str:
        # Never the secrets: a repr ends up in logs and tracebacks.
        return f"<WebhookReceiver store={self.store!r} secrets={len(self._secrets)}>"

    def handle(
        self, raw_body: bytes, signature_header: str | None
    ) -> tuple[int, dict[str, object]]:
        """Process one delivery; returns ``(http_status, json_body)``.

        ``raw_body`` must be the request body exactly as received: the signature covers those
        bytes, and re-encoded JSON does not verify.

        - 200 ``{"received": True}``: processed and committed.
        - 200 ``{"received": True, "duplicate": True}``: already processed; nothing ran.
        - 400 ``invalid_request_error``: missing, malformed, wrong or stale signature, or a
          body that is not a Stripe event; nothing recorded.
        - 500 ``api_error``: a handler, ``fulfill`` or the store failed; rolled back and logged
          with the event id, and Stripe will deliver it again.
        """
        verified = self._verify(raw_body, signature_header)
        if isinstance(verified, str):
            logger.warning("webhook rejected: %s", verified)
            return 400, _error("invalid_request_error", verified)
        event, payload = verified
        event_id = str(payload["id"])
        event_type = str(payload["type"])
        session = _session_of(event_type, payload)
        session_id = session["id"] if session is not None else None
        try:
            duplicate = self._apply(event, event_id, event_type, session)
        except Exception as exc:
            # The exception's type only: a traceback or message could carry a secret or
            # a customer's details into the logs. fulfil() should log its own errors.
            logger.error(
                "webhook event %s (%s) failed with %s and was rolled back; Stripe will retry it",
                event_id,
                event_type,
                type(exc).__name__,
            )
            return 500, _error("api_error", "webhook handler failed; Stripe will retry")
        if duplicate:
            logger.info("webhook event %s (%s) is a duplicate; ignored", event_id, event_type)
            return 200, {"received": True, "duplicate": True}
        logger.info(
            "webhook event %s (%s) processed%s",
            event_id,
            event_type,
            f" for {session_id}" if session_id else "",
        )
        return 200, {"received": True}

    def _apply(
        self,
        event: stripe.Event,
        event_id: str,
        event_type: str,
        session: dict[str, Any] | None,
    ) -> bool:
        """Claim and apply the event in one transaction; ``True`` if it was a duplicate."""
        target = _target_status(event_type, session)
        with self.store.transaction() as tx:
            if not tx.claim_event(event_id, event_type, session["id"] if session else None):
                return True
            if session is None or target is None:
                self._run_handlers(event, event_type)
                return False
            if self.adopt_unknown_sessions and tx.insert_order(
                Order.from_session(session, status=OPEN)
            ):
                logger.info(
                    "session %s was not in the ledger; recorded from event %s",
                    session["id"],
                    event_id,
                )
            order = settle_order(
                tx,
                session["id"],
                target,
                session,
                self.fulfill,
                before_fulfil=lambda: self._run_handlers(event, event_type),
            )
            if order is None:
                logger.info(
                    "webhook event %s: session %s is not in this ledger (created elsewhere); "
                    "not fulfilled",
                    event_id,
                    session["id"],
                )
        return False

    def _run_handlers(self, event: stripe.Event, event_type: str) -> None:
        for handler in self.handlers.for_event(event_type):
            handler(event)

    def _verify(
        self, raw_body: bytes, header: str | None
    ) -> str | tuple[stripe.Event, dict[str, Any]]:
        """The event and its parsed payload, or the reason (a safe message) it is refused."""
        if header is None or not header.strip():
            return "missing Stripe-Signature header; webhook requests must come from Stripe"
        if not _header_is_well_formed(header):
            return "malformed Stripe-Signature header; expected 't=<timestamp>,v1=<signature>'"
        try:
            text = bytes(raw_body).decode("utf-8")
        except UnicodeDecodeError:
            return "webhook body is not UTF-8 text, so it cannot be a Stripe event"
        secret = self._matching_secret(text, header)
        if secret is None:
            if self._matching_secret(text, header, check_age=False) is not None:
                return (
                    f"Stripe-Signature timestamp is older than the {self.tolerance} s tolerance; "
                    "check this server's clock (an old delivery may be a replay)"
                )
            return (
                "no signature in Stripe-Signature matches the webhook signing secret; check "
                "that the configured secret is this endpoint's (whsec_...)"
            )
        try:
            payload = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
            payload = None
        if (
            not isinstance(payload, dict)
            or not isinstance(payload.get("id"), str)
            or not payload["id"]
            or not isinstance(payload.get("type"), str)
            or not payload["type"]
        ):
            return "webhook body is signed but is not a JSON Stripe event with an id and a type"
        try:
            # The signature was verified above; verifying again would only double the HMAC.
            event = self.client.construct_event_without_verification(text)
        except (ValueError, TypeError, AttributeError, RecursionError):
            return "webhook body is signed but is not a Stripe snapshot event"
        return event, payload

    def _matching_secret(self, text: str, header: str, *, check_age: bool = True) -> str | None:
        for secret in self._secrets:
            try:
                stripe.WebhookSignature.verify_header(
                    text, header, secret, self.tolerance if check_age else None
                )
            except stripe.SignatureVerificationError:
                continue
            return secret
        return None


def _header_is_well_formed(header: str) -> bool:
    if not header.isascii():  # the SDK's compare_digest raises on non-ASCII signatures
        return False
    fields = [part.partition("=") for part in header.split(",")]
    timestamps = [value for key, sep, value in fields if key.strip() == "t" and sep]
    signatures = [value for key, sep, value in fields if key.strip() == "v1" and value]
    return len(timestamps) >= 1 and timestamps[0].strip().isdigit() and bool(signatures)


def _session_of(event_type: str, payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Checkout Session a ``checkout.session.*`` event is about, as a plain dict."""
    if not event_type.startswith("checkout.session."):
        return None
    data = payload.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not obj["id"]:
        logger.warning("webhook event %s carries no checkout session", payload.get("id"))
        return None
    return obj


def _target_status(event_type: str, session: Mapping[str, Any] | None) -> str | None:
    if session is None:
        return None
    if event_type == _COMPLETED:
        if session.get("payment_status") in ("paid", "no_payment_required"):
            return PAID
        return AWAITING_PAYMENT
    return _ASYNC_EVENTS.get(event_type)


def _error(error_type: str, message: str) -> dict[str, object]:
    return {"error": {"type": error_type, "message": message, "param": None}}
