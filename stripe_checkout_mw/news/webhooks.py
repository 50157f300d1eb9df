"""Stripe webhooks: signature check, exactly-once processing, handlers and fulfilment.

Stripe delivers each event at least once, in no particular order, and retries for days while
the endpoint answers anything but 2xx. :class:`WebhookReceiver` turns that into "each event
takes effect once":

1. The ``Stripe-Signature`` header is checked over the raw body against every configured
   secret (so an old and a new secret both work while one is being rotated), with a tolerance
   on the timestamp against replays. Anything that fails is a 400 and leaves no trace.
2. The fulfilment pipeline (:mod:`stripe_checkout_mw.ledger.pipeline`) claims the event
   id, moves the order and records what is now due (the event's handlers as one job, the order's
   fulfilment as another) in one durable transaction. Only after that commit do the jobs run,
   in that order: the registered handlers, then ``fulfill``. A failing handler stops the
   delivery before ``fulfill`` (500; the redelivery runs the handlers again, then
   ``fulfill``); a database that cannot commit runs nothing (500).
3. A duplicate delivery applies nothing, but runs any job of its session that is still due
   (an earlier attempt failed or never finished), and otherwise answers
   ``{"received": true, "duplicate": true}``.

Handlers and ``fulfill`` run outside any transaction, so they may be slow without holding
locks, but they can run again after a failure (see the README's fulfil contract): make them
idempotent.

Usage, framework-free::

    handlers = WebhookHandlers()

    @handlers.on("checkout.session.expired")
    def expired(event: stripe.Event) -> None:
        ...

    receiver = WebhookReceiver(store=store, secrets=["whsec_..."], handlers=handlers,
                               fulfill=ship, client=client)
    body = receiver.handle(raw_body, environ.get("HTTP_STRIPE_SIGNATURE"))  # or HTTPError
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Callable, TypeVar

import stripe

from ..billing.subscriptions import (
    SUBSCRIPTION_EVENTS,
    Fetched,
    NeedsSubscription,
    SubscriptionLedger,
    subscription_id_of,
)
from ..errors import HTTPError
from ..ledger.orders import AWAITING_PAYMENT, EXPIRED, PAID, PAYMENT_FAILED, FulfillFunc, Order
from ..ledger.pipeline import (
    Applied,
    EventClaim,
    JobFailed,
    JobKind,
    JobsPending,
    Outcome,
    Pipeline,
)
from ..ledger.store import Job, NewJob, OrderStore, StoreError, StoreTransaction
from ..marker import is_marked
from .fulfilment import FulfilJob, NeedsItems, fetch_items, order_from_stripe, settle
from .payments import PaymentEvents

__all__ = ["HANDLERS", "EventHandler", "HandlersJob", "WebhookHandlers", "WebhookReceiver"]

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
#: The job kind of an event's handlers; its key is the event id.
HANDLERS = "handlers"


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


class HandlersJob(JobKind):
    """Runs an event's handlers as a job (key: the event id; payload: the event).

    The event is rebuilt from the payload when the job runs after its delivery (a retry
    driven by a redelivery or a status lookup).
    """

    kind = HANDLERS

    def __init__(self, handlers: WebhookHandlers, client: stripe.StripeClient) -> None:
        self.handlers = handlers
        self.client = client

    def run(self, job: Job, known: Mapping[str, Any]) -> None:
        event = known.get(job.key)
        if not isinstance(event, stripe.Event):
            event = self.client.construct_event_without_verification(json.dumps(job.payload))
        for handler in self.handlers.for_event(str(job.payload.get("type", ""))):
            handler(event)


class WebhookReceiver:
    """Verify, deduplicate and apply Stripe webhook deliveries (see the module docstring).

    One receiver serves every thread; it keeps no per-request state.

    :param store: the ledger and processed-event log.
    :param secrets: the endpoint's signing secret(s), ``whsec_...``. Several are tried in turn,
        for rotation. There is no way to skip the check.
    :param handlers: the handlers to run for each new event.
    :param fulfill: called with the :class:`~stripe_checkout_mw.ledger.orders.Order` once its
        payment is committed, outside any transaction; raising answers 500 and the next
        delivery or lookup calls it again (with a higher ``order.fulfilment_attempt``).
    :param client: the Stripe client the events are bound to.
    :param tolerance: seconds a signature's timestamp may be old; older deliveries are
        rejected as possible replays.
    :param adopt_unknown_sessions: what to do with a Checkout Session this ledger never
        recorded (created by another integration, a Payment Link, the Dashboard, or another
        deployment sharing the Stripe account or ``stripe listen``). By default it is not
        added to the ledger and never fulfilled, only logged; its handlers still run. ``True``
        records it from the event's session object and fulfils it like any other order.
    :param marker: this shop's session marker (:mod:`stripe_checkout_mw.marker`): a marked
        session missing from the ledger is recorded from Stripe (its ``line_items``) and
        settled as usual. ``None`` recognises no session without a row.
    :param pipeline: the fulfilment pipeline to share with the status lookup; by default one
        is built on ``store`` that runs ``fulfill`` and the handlers.
    :param subscriptions: the subscriptions ledger: subscription events (and completed
        subscription-mode sessions) re-fetch their subscription into it, and completed
        sessions record their customer. ``None`` keeps no subscriptions.
    :param payment_events: applies refund and dispute events
        (:class:`~stripe_checkout_mw.news.payments.PaymentEvents`); ``None`` only runs
        their handlers.
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
        marker: str | None = None,
        pipeline: Pipeline | None = None,
        subscriptions: SubscriptionLedger | None = None,
        payment_events: PaymentEvents | None = None,
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
        self.marker = marker
        if pipeline is None:
            pipeline = Pipeline(store, [HandlersJob(handlers, client), FulfilJob(store, fulfill)])
        self.pipeline = pipeline
        self.subscriptions = subscriptions
        self.payment_events = payment_events

    def __repr__(self) -> str:
        # Never the secrets: a repr ends up in logs and tracebacks.
        return f"<WebhookReceiver store={self.store!r} secrets={len(self._secrets)}>"

    def handle(self, raw_body: bytes, signature_header: str | None) -> dict[str, object]:
        """Process one delivery; returns the JSON body of its 200 answer.

        ``raw_body`` must be the request body exactly as received: the signature covers those
        bytes, and re-encoded JSON does not verify.

        - ``{"received": True}``: claimed and committed, and its jobs ran (or, for a
          redelivery, jobs still due from an earlier attempt ran now).
        - ``{"received": True, "duplicate": True}``: already processed; nothing ran.

        :raises HTTPError: 400 ``invalid_request_error`` for a missing, malformed, wrong or
            stale signature, or a body that is not a Stripe event (nothing recorded); 500
            ``api_error`` when the store, a handler, ``fulfill`` or Stripe (the items of a
            marked session) failed, logged with the event id: Stripe delivers it again and
            nothing is lost.
        """
        verified = self._verify(raw_body, signature_header)
        if isinstance(verified, str):
            logger.warning("webhook rejected: %s", verified)
            raise HTTPError(400, verified)
        event, payload = verified
        event_id = str(payload["id"])
        event_type = str(payload["type"])
        session = _session_of(event_type, payload)
        session_id = session["id"] if session is not None else None
        try:
            outcome = self._process(event, payload, session)
            duplicate = outcome.duplicate and not outcome.ran
        except (StoreError, JobFailed, JobsPending, stripe.StripeError) as exc:
            # The exception's type only: a traceback or message could carry a secret or
            # a customer's details into the logs. fulfill() should log its own errors.
            cause = exc.cause if isinstance(exc, JobFailed) else exc
            logger.error(
                "webhook event %s (%s) not completed: %s; Stripe will retry it",
                event_id,
                event_type,
                type(cause).__name__,
            )
            raise HTTPError(500, "webhook handler failed; Stripe will retry",
                            type="api_error") from None
        if duplicate:
            logger.info("webhook event %s (%s) is a duplicate; ignored", event_id, event_type)
            return {"received": True, "duplicate": True}
        logger.info(
            "webhook event %s (%s) processed%s",
            event_id,
            event_type,
            f" for {session_id}" if session_id else "",
        )
        return {"received": True}

    def process_event(self, payload: dict[str, Any]) -> Outcome:
        """Apply an event read from Stripe's Events API (authenticated by the API call, so
        not signed), as a delivery would: a duplicate applies nothing but runs jobs still due.

        :raises StoreError, JobFailed, JobsPending, stripe.StripeError: as for a delivery.
        """
        return self._process(None, payload, _session_of(str(payload["type"]), payload))

    def _process(
        self, event: stripe.Event | None, payload: dict[str, Any],
        session: dict[str, Any] | None,
    ) -> Outcome:
        """Run the event through the pipeline (``event``: the SDK object for the handlers, if
        already built; :class:`HandlersJob` builds it from the payload otherwise)."""
        event_id = str(payload["id"])
        event_type = str(payload["type"])
        known: dict[str, Any] = {} if event is None else {event_id: event}
        if self.payment_events is not None and self.payment_events.handles(event_type):
            return self.payment_events.process(self.pipeline, known, payload, lambda subject: [
                NewJob(HANDLERS, event_id, subject, payload)
            ] if self.handlers.for_event(event_type) else [])
        session_id = session["id"] if session is not None else None
        claim = EventClaim(event_id, event_type, session_id)
        items: list[dict[str, Any]] | None = None
        fetched: dict[str, Fetched] = {}
        while True:
            try:
                outcome = self.pipeline.process(
                    functools.partial(self._apply, payload=payload, session=session,
                                      items=items, fetched=fetched),
                    subject=session_id or event_id, event=claim, known=known,
                )
            except NeedsItems:
                assert session_id is not None  # raised only for a session's event
                items = fetch_items(self.client, session_id)
                continue
            except NeedsSubscription as need:
                assert self.subscriptions is not None  # raised only by the ledger
                fetched[need.subscription_id] = self.subscriptions.fetch(
                    self.client, need.subscription_id)
                continue
            return outcome

    def _apply(
        self,
        tx: StoreTransaction,
        payload: dict[str, Any],
        session: dict[str, Any] | None,
        items: list[dict[str, Any]] | None,
        fetched: dict[str, Fetched] | None = None,
    ) -> Applied:
        """The ledger changes and jobs of a newly claimed event (the pipeline's apply step)."""
        event_id = str(payload["id"])
        event_type = str(payload["type"])
        jobs: list[NewJob] = []
        if self.handlers.for_event(event_type):
            subject = session["id"] if session is not None else event_id
            jobs.append(NewJob(HANDLERS, event_id, subject, payload))
        target = _target_status(event_type, session)
        if session is None or target is None:
            return Applied(jobs + self._subscription_jobs(tx, payload, event_id, fetched))
        record: Order | None = None
        order = tx.lock_order(session["id"])
        if order is None and is_marked(session, self.marker):
            if items is None:
                raise NeedsItems(session["id"])  # fetched outside the transaction
            record = order_from_stripe(session, items)
        elif order is None and self.adopt_unknown_sessions:
            record = Order.from_session(session, status="open")
        applied = settle(tx, session["id"], target, session, record=record, locked=(order,))
        if applied.value is None:
            logger.info(
                "webhook event %s: session %s is not in this ledger (created elsewhere); "
                "not fulfilled",
                event_id,
                session["id"],
            )
        applied.jobs[:0] = jobs
        if (self.subscriptions is not None and applied.value is not None
                and target in (PAID, AWAITING_PAYMENT)):
            # The ref is the one this shop sent, read from its own order row.
            self.subscriptions.customers.record_session(
                tx, session, applied.value.client_reference_id)
        applied.jobs += self._subscription_jobs(tx, payload, session["id"], fetched)
        return applied

    def _subscription_jobs(self, tx: StoreTransaction, payload: dict[str, Any], subject: str,
                           fetched: dict[str, Fetched] | None) -> list[NewJob]:
        event_type = str(payload["type"])
        subscription_id = subscription_id_of(event_type, payload)
        if self.subscriptions is None or subscription_id is None:
            return []
        if not event_type.startswith("checkout.session.") and (
                event_type not in SUBSCRIPTION_EVENTS):
            return []
        return self.subscriptions.apply(tx, subscription_id, fetched or {}, subject)

    def _verify(
        self, raw_body: bytes, header: str | None
    ) -> str | tuple[stripe.Event | None, dict[str, Any]]:
        """The event (``None`` when no handler needs the SDK object) and its parsed payload,
        or the reason (a safe message) it is refused."""
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
        event: stripe.Event | None = None
        if (payload.get("object") != "event" or "detail" in payload
                or "specversion" in payload or self.handlers.for_event(payload["type"])):
            # The SDK's Event is built only when a handler will receive it, or to let the
            # SDK judge a body that is not plainly a snapshot event: building one costs more
            # than the rest of a delivery. The signature was verified above; verifying again
            # would only double the HMAC.
            try:
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

