"""The success page's order status lookup.

The customer often lands on the success page before Stripe's webhook arrives. Rather than show
"unpaid" for an order that is paid, :class:`OrderStatus` asks Stripe when the ledger has not
seen the payment yet and, if Stripe says paid, fulfils the order right there through the same
once-only path the webhook uses (:func:`~stripe_checkout_mw.orders.settle_order`), so whichever
of the two comes first fulfils and the other finds it done.

It only ever answers about sessions this shop's ledger recorded, and only with
:meth:`Order.public_view() <stripe_checkout_mw.orders.Order.public_view>`: an id that is
unknown here is a 404 even if Stripe knows it, and the Stripe session itself is never returned.

Usage, framework-free::

    status = OrderStatus(store=store, client=client, fulfill=ship)
    code, body = status.lookup(request.args.get("session_id", ""))
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any, Callable

import stripe

from .orders import (
    AWAITING_PAYMENT,
    OPEN,
    PAID,
    FulfillFunc,
    session_to_dict,
    settle_order,
    status_for_session,
)
from .store import OrderStore

__all__ = ["SESSION_ID_PATTERN", "OrderStatus"]

logger = logging.getLogger("stripe_checkout_mw")

#: What a Checkout Session id looks like; anything else is refused before any lookup.
SESSION_ID_PATTERN = re.compile(r"cs_(?:test|live)_[A-Za-z0-9_]{1,240}")

_REFRESHABLE = (OPEN, AWAITING_PAYMENT)


class OrderStatus:
    """Answer ``GET <status path>?session_id=cs_...`` for the success page.

    :param store: the ledger.
    :param client: the Stripe client used to retrieve a session the ledger has not seen paid.
    :param fulfill: the same hook the webhook receiver calls; it still runs once per order.
    :param min_refresh_interval: seconds between two Stripe retrievals of one session by this
        process. A success page that polls then costs Stripe (rate limit: 25 requests/s in
        test mode) at most one call per interval; the answers in between come from the
        ledger. ``0`` asks Stripe every time.
    :param may_call_stripe: asked before each retrieval (the process's Stripe budget);
        ``False`` answers from the ledger instead. Default: always allowed.
    """

    def __init__(
        self,
        *,
        store: OrderStore,
        client: stripe.StripeClient,
        fulfill: FulfillFunc | None,
        min_refresh_interval: float = 2.0,
        may_call_stripe: Callable[[], bool] | None = None,
    ) -> None:
        if fulfill is not None and not callable(fulfill):
            raise TypeError("status: fulfill must be callable or None")
        if min_refresh_interval < 0:
            raise ValueError("status: min_refresh_interval must be 0 or more seconds")
        self.store = store
        self.client = client
        self.fulfill = fulfill
        self.min_refresh_interval = min_refresh_interval
        self.may_call_stripe = may_call_stripe
        # Only throttles calls to Stripe; correctness never depends on it.
        self._last_refresh: dict[str, float] = {}
        self._refresh_lock = threading.Lock()

    def lookup(self, session_id: str) -> tuple[int, dict[str, object]]:
        """``(http_status, json_body)`` for one session id.

        - 200 with :meth:`Order.public_view() <stripe_checkout_mw.orders.Order.public_view>`.
        - 400 ``invalid_request_error`` (param ``session_id``): not a Checkout Session id.
        - 404 ``invalid_request_error``: not in this shop's ledger.
        - 502 ``api_error``: the ledger has not seen the payment and Stripe could not be asked.
        - 503 ``api_error``: Stripe says paid but fulfilment failed; it will be retried (by the
          next lookup or the webhook).
        """
        if not isinstance(session_id, str) or not SESSION_ID_PATTERN.fullmatch(session_id):
            return 400, _error(
                "invalid_request_error",
                "session_id must be a Checkout Session id (cs_test_... or cs_live_...)",
                "session_id",
            )
        try:
            order = self.store.get(session_id)
        except Exception as exc:
            logger.error(
                "status: could not read order %s from the store: %s", session_id,
                type(exc).__name__,
            )
            return 503, _error("api_error", "the order ledger is unavailable; try again shortly")
        if order is None:
            return 404, _error(
                "invalid_request_error", "no such checkout session in this shop", "session_id"
            )
        needs_fulfilment = order.status == PAID and not order.fulfilled
        if not (order.status in _REFRESHABLE or needs_fulfilment) or not self._due(session_id):
            return 200, order.public_view()
        if self.may_call_stripe is not None and not self.may_call_stripe():
            return 200, order.public_view()  # over this process's budget: the ledger answers

        try:
            session = session_to_dict(self.client.v1.checkout.sessions.retrieve(session_id))
        except stripe.StripeError as exc:
            _log_stripe_error(session_id, exc)
            return 502, _error(
                "api_error",
                "could not check the payment with the payment provider; try again shortly",
            )
        if session.get("id") != session_id:
            logger.error("status: Stripe returned another session for %s", session_id)
            return 502, _error("api_error", "the payment provider gave an unexpected answer")
        target = _target(session, needs_fulfilment)
        if target is None:
            return 200, order.public_view()
        try:
            with self.store.transaction() as tx:
                settled = settle_order(tx, session_id, target, session, self.fulfill)
        except Exception as exc:
            logger.error(
                "status: settling order %s as %s failed with %s and was rolled back",
                session_id,
                target,
                type(exc).__name__,
            )
            message = (
                "payment received; the order is still being processed, try again shortly"
                if target == PAID
                else "the order could not be updated; try again shortly"
            )
            return 503, _error("api_error", message)
        return 200, (settled or order).public_view()

    def _due(self, session_id: str) -> bool:
        """Whether this process may ask Stripe about ``session_id`` now."""
        if self.min_refresh_interval <= 0:
            return True
        now = time.monotonic()
        with self._refresh_lock:
            last = self._last_refresh.get(session_id)
            if last is not None and now - last < self.min_refresh_interval:
                return False
            if len(self._last_refresh) >= 10_000:
                cutoff = now - self.min_refresh_interval
                self._last_refresh = {k: v for k, v in self._last_refresh.items() if v >= cutoff}
            self._last_refresh[session_id] = now
        return True


def _target(session: dict[str, Any], needs_fulfilment: bool) -> str | None:
    target = status_for_session(session)
    if target is None and needs_fulfilment:
        return PAID
    return target


def _log_stripe_error(session_id: str, exc: stripe.StripeError) -> None:
    # The class, status and request id identify the failure; Stripe's message is left out
    # because some (authentication errors) quote part of the API key.
    level = logging.ERROR if isinstance(exc, stripe.AuthenticationError) else logging.WARNING
    logger.log(
        level,
        "status: retrieving %s from Stripe failed: %s (HTTP %s, request %s)",
        session_id,
        type(exc).__name__,
        exc.http_status,
        exc.request_id,
    )


def _error(error_type: str, message: str, param: str | None = None) -> dict[str, object]:
    return {"error": {"type": error_type, "message": message, "param": param}}
