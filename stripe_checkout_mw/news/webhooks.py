"""The Stripe webhook endpoint: check the signature, then hand the event to the router.

Stripe delivers each event at least once, in no particular order, and retries for days while
the endpoint answers anything but 2xx. :class:`WebhookReceiver` turns that into "each event
takes effect once":

1. The ``Stripe-Signature`` header is checked over the raw body against every configured
   secret (so an old and a new secret both work while one is being rotated), with a tolerance
   on the timestamp against replays. Anything that fails is a 400 and leaves no trace.
2. The verified event goes to the router (:class:`~stripe_checkout_mw.news.router.EventRouter`),
   whose applier claims the event id in the fulfilment pipeline
   (:mod:`stripe_checkout_mw.ledger.pipeline`), changes the ledger and records what is now due
   (the event's handlers as one job, the order's fulfilment as another) in one durable
   transaction. Only after that commit do the jobs run, in that order: the registered
   handlers, then ``fulfill``. A failing handler stops the delivery before ``fulfill`` (500;
   the redelivery runs the handlers again, then ``fulfill``); a database that cannot commit
   runs nothing (500).
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

    events = EventRouter.build(store=store, handlers=handlers, fulfill=ship, client=client)
    receiver = WebhookReceiver(secrets=["whsec_..."], events=events, client=client)
    body = receiver.handle(raw_body, environ.get("HTTP_STRIPE_SIGNATURE"))  # or HTTPError
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import stripe

from ..errors import HTTPError
from ..ledger.pipeline import JobFailed, JobsPending, JobsScheduled
from ..ledger.store import StoreError
from ..observe.metrics import NO_METRICS, Recorder
from ..stripe_api.plain import event_object
from .router import EventRouter

__all__ = ["WebhookReceiver"]

logger = logging.getLogger("stripe_checkout_mw")


class WebhookReceiver:
    """Verify Stripe webhook deliveries and apply them once (see the module docstring).

    One receiver serves every thread; it keeps no per-request state.

    :param secrets: the endpoint's signing secret(s), ``whsec_...``. Several are tried in turn,
        for rotation. There is no way to skip the check.
    :param events: applies each verified event (``sync`` applies its events there too).
    :param client: builds the SDK's ``stripe.Event`` a handler receives.
    :param tolerance: seconds a signature's timestamp may be old; older deliveries are
        rejected as possible replays.
    """

    #: Counts each delivery's outcome (``webhooks``); the middleware gives it its recorder.
    metrics: Recorder = NO_METRICS

    def __init__(
        self,
        *,
        secrets: Sequence[str],
        events: EventRouter,
        client: stripe.StripeClient,
        tolerance: int = 300,
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
        self._secrets = tuple(s.strip() for s in secrets)
        self.events = events
        self.client = client
        self.tolerance = tolerance
        #: API versions of events already warned about (once per version, per receiver).
        self._versions_seen: set[str] = set()
        self._versions_lock = threading.Lock()

    def __repr__(self) -> str:
        # Never the secrets: a repr ends up in logs and tracebacks.
        return f"<WebhookReceiver events={self.events!r} secrets={len(self._secrets)}>"

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
            self.metrics.count("webhooks", type="unverified", outcome="bad_signature")
            raise HTTPError(400, verified)
        event, payload = verified
        event_id = str(payload["id"])
        event_type = str(payload["type"])
        self._note_api_version(payload.get("api_version"), event_id)
        session_id = _session_id(event_type, payload)
        try:
            outcome = self.events.apply(payload, event)
            duplicate = outcome.duplicate and not outcome.ran
        except JobsScheduled as exc:
            # An early redelivery (or a resend) while a failed job waits for its retry: the
            # failure was logged when it happened; the 500 makes Stripe come back later.
            logger.info("webhook event %s (%s) waits for a job's retry in %.0f s; "
                        "Stripe will deliver it again", event_id, event_type,
                        max(0.0, exc.due_at - time.time()))
            self.metrics.count("webhooks", type=event_type, outcome="failed")
            raise HTTPError(500, "webhook handler failed; Stripe will retry",
                            type="api_error") from None
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
            self.metrics.count("webhooks", type=event_type, outcome="failed")
            raise HTTPError(500, "webhook handler failed; Stripe will retry",
                            type="api_error") from None
        self.metrics.count("webhooks", type=event_type,
                           outcome="duplicate" if duplicate else "processed")
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

    def _note_api_version(self, version: object, event_id: str) -> None:
        """Warn once per version about events rendered in another API version than the
        installed SDK's: their objects may lack or rename fields the appliers read, and the
        SDK does not check (the endpoint's version is fixed at creation; see
        ``webhook-endpoint setup``)."""
        if not isinstance(version, str) or version == stripe.api_version:
            return
        with self._versions_lock:
            if version in self._versions_seen or len(self._versions_seen) >= 16:
                return
            self._versions_seen.add(version)
        logger.warning("webhook event %s is rendered in Stripe API version %.40s, not the "
                       "SDK's %s; run `python -m stripe_checkout_mw webhook-endpoint setup` "
                       "to create an endpoint at the SDK's version", event_id, version,
                       stripe.api_version)

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
                or "specversion" in payload or self.events.handlers.for_event(payload["type"])):
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


def _session_id(event_type: str, payload: Mapping[str, Any]) -> str | None:
    """The id of the Checkout Session a ``checkout.session.*`` event is about (for the log)."""
    obj = event_object(payload) if event_type.startswith("checkout.session.") else None
    found = obj.get("id") if obj is not None else None
    return found if isinstance(found, str) and found else None
