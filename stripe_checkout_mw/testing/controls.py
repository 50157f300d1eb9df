"""The emulator's checkout controls: what a test does to Checkout Sessions, Prices
and Products without going through HTTP, plus :class:`ControlHooks`, what every
control mixin needs from :class:`~stripe_checkout_mw.testing.StripeEmulator`.

:class:`CheckoutControls` is mixed into the emulator; use its methods on it
(``emu.pay(session_id)``). Like the billing controls, a method that causes events
waits, by default, until their webhook deliveries are done (or given up).
"""

from __future__ import annotations

import copy
import threading
from typing import Any, Callable, TypeVar

from .api import ApiError, StripeState, checkout_sessions, prices, products
from .api.card_outcomes import card_number
from .cards import CARD_OK, payment_error
from .hosted_checkout import charges_now
from .outbox import WebhookOutbox

__all__ = ["CheckoutControls", "ControlHooks"]

T = TypeVar("T")


class ControlHooks:
    """The emulator's lock, state and waits, as the control mixins reach them."""

    # Provided by StripeEmulator.
    _lock: threading.RLock
    _outbox: WebhookOutbox

    def _require_state(self) -> StripeState:
        raise NotImplementedError

    def _wait(self, event_ids: list[str], timeout: float) -> None:
        raise NotImplementedError

    def _emitting(self, action: Callable[[StripeState], T], *, wait: bool,
                  timeout: float) -> T:
        """Run ``action`` under the lock; then wait for the events it emitted."""
        with self._lock:
            state = self._require_state()
            first = len(state.events)
            try:
                result = action(state)
            except ApiError as exc:
                raise ValueError(exc.message) from None
            emitted = [e["id"] for e in state.events[first:]]
            result = copy.deepcopy(result)
        if wait:
            self._wait(emitted, timeout)
        return result

    def _session(self, session_id: str) -> dict[str, Any]:
        """The stored session (not a copy); ``KeyError`` for an unknown id."""
        try:
            return checkout_sessions.stored_session(self._require_state(), session_id)
        except ApiError:
            raise KeyError(f"no such checkout session {session_id!r}") from None


class CheckoutControls(ControlHooks):
    """Sessions to inspect, prices and products to add, payments and expiry."""

    def session(self, session_id: str) -> dict[str, Any]:
        """A copy of the Checkout Session ``session_id`` as the API would return it."""
        with self._lock:
            return copy.deepcopy(self._session(session_id))

    @property
    def sessions(self) -> list[dict[str, Any]]:
        """Every Checkout Session created so far, oldest first (copies)."""
        with self._lock:
            return copy.deepcopy(list(self._require_state().sessions.values()))

    def line_items(self, session_id: str) -> list[dict[str, Any]]:
        """Copies of the session's ``item`` objects."""
        with self._lock:
            self._session(session_id)
            return copy.deepcopy(self._require_state().line_items[session_id])

    def add_product(self, name: str, *, description: str | None = None,
                    metadata: dict[str, str] | None = None) -> dict[str, Any]:
        """Create a product directly (no HTTP); returns it as the API would."""
        with self._lock:
            return copy.deepcopy(products.new_product(
                self._require_state(), name, description=description, metadata=metadata))

    def add_price(
        self,
        unit_amount: int = 1500,
        currency: str = "usd",
        lookup_key: str | None = None,
        recurring: dict[str, Any] | None = None,
        product_name: str | None = None,
        *,
        product: str | None = None,
        nickname: str | None = None,
        active: bool = True,
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create a price directly (no HTTP) and return it as Stripe would.

        ``recurring={"interval": "month"}`` makes a subscription price. A
        ``lookup_key`` already used moves to the new price. Without ``product`` a
        product named ``product_name`` (or after the lookup key) is created.
        """
        if recurring is not None and recurring.get("interval") not in (
            "day", "week", "month", "year"
        ):
            raise ValueError("recurring needs an interval: day, week, month or year")
        with self._lock:
            state = self._require_state()
            if product is None:
                name = product_name or (f"Product {lookup_key}" if lookup_key else "Product")
                product = str(products.new_product(state, name)["id"])
            elif product not in state.products:
                raise ValueError(f"no such product {product!r}")
            return copy.deepcopy(prices.new_price(
                state, unit_amount=unit_amount, currency=currency.lower(), product=product,
                lookup_key=lookup_key, recurring=recurring, nickname=nickname,
                active=active, metadata=metadata,
            ))

    def pay(
        self,
        session_id: str,
        async_payment: str | None = None,
        *,
        email: str | None = None,
        delayed: bool = False,
        card: str = CARD_OK,
        wait: bool = True,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Pay for a session as a customer would on the hosted page.

        ``card`` is the test card typed (or a ``pm_card_...`` id): a subscription
        saves it, and its later charges behave as :mod:`.cards` says (a declined
        card raises ``ValueError``).

        - ``pay(id)``: ``complete``/``paid``, ``checkout.session.completed``.
        - ``pay(id, delayed=True)``: ``complete``/``unpaid`` (a delayed method), the
          same event; settle it later with ``async_payment``.
        - ``pay(id, async_payment="succeeded"|"failed")``: on a delayed session,
          sends ``checkout.session.async_payment_succeeded``/``_failed`` (succeeded
          also makes it ``paid``); on an open session it first completes it unpaid.

        With ``wait`` (the default) it returns once the events' webhook deliveries
        are done (or given up), raising ``TimeoutError`` after ``timeout`` seconds.
        Returns a copy of the session. Raises ``ValueError`` when the session cannot
        be paid (expired, already paid).
        """
        if async_payment not in (None, "succeeded", "failed"):
            raise ValueError("async_payment must be 'succeeded', 'failed' or None")
        with self._lock:
            state = self._require_state()
            session = self._session(session_id)
            first = len(state.events)
            try:
                if session["status"] == "open":
                    number = card_number(card)
                    error = payment_error(email or "customer@example.com", number,
                                          delayed, charges_now=charges_now(state, session))
                    if error is not None:
                        raise ValueError(error)
                    checkout_sessions.complete(
                        state, session_id, email=email,
                        delayed=delayed or async_payment is not None, card=number)
                elif async_payment is None:
                    raise ValueError(f"session {session_id} is {session['status']}, "
                                     "not open")
                if async_payment is not None:
                    checkout_sessions.settle(state, session_id,
                                             succeeded=async_payment == "succeeded")
            except ApiError as exc:
                raise ValueError(exc.message) from None
            events = [e["id"] for e in state.events[first:]]
        if wait:
            self._wait(events, timeout)
        return self.session(session_id)

    def expire(self, session_id: str, *, wait: bool = True,
               timeout: float = 10.0) -> dict[str, Any]:
        """Expire an open session (``checkout.session.expired``), as time would."""
        with self._lock:
            state = self._require_state()
            self._session(session_id)
            try:
                event = checkout_sessions.expire(state, session_id, request=None)
            except ApiError as exc:
                raise ValueError(exc.message) from None
        if wait:
            self._wait([event["id"]], timeout)
        return self.session(session_id)
