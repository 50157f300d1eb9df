"""The emulator's in-memory Stripe: the stored objects, nothing about HTTP or routes.

:class:`StripeState` is moto's "backend": dictionaries of Stripe objects, the
events emitted so far, the idempotency answers and the clock. The resource modules
(:mod:`.checkout_sessions`, :mod:`.prices`, ...) read and change it; the route
table is :mod:`.routes` and serving a decoded request is :mod:`.service`.
Callers hold :attr:`StripeState.lock`, the one lock the emulator shares with its
webhook delivery thread, while they touch it.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from .idempotency import IdempotencyStore
from .objects import BillingObjects
from .service import ApiResponse, serve

__all__ = ["StripeState"]


class StripeState:
    """Stripe's objects in memory.

    :param lock: the emulator-wide lock.
    :param api_base: used for the hosted page ``url`` of each session.
    :param on_event: called (under the lock) with each new event, to queue delivery
        and set its ``pending_webhooks``.
    :param clock: seconds since the epoch; injectable so expiry can be tested.
    """

    def __init__(
        self,
        *,
        lock: threading.RLock,
        api_base: str,
        on_event: Callable[[dict[str, Any]], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lock = lock
        self.api_base = api_base
        self.on_event = on_event
        self.clock = clock
        self.prices: dict[str, dict[str, Any]] = {}
        self.products: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.line_items: dict[str, list[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.billing = BillingObjects()
        self.webhook_endpoints: dict[str, dict[str, Any]] = {}
        """Registered endpoints (``/v1/webhook_endpoints``) by id, oldest first."""
        self.webhook_secrets: dict[str, str] = {}
        """Endpoint id -> its signing secret (returned only at creation)."""
        self.idempotency = IdempotencyStore()

    def now(self) -> int:
        return int(self.clock())

    def recurring_price(self, price_id: str) -> bool | None:
        """Whether a stored price is recurring (``None``: no such price)."""
        price = self.prices.get(price_id)
        return None if price is None else price["type"] == "recurring"

    def handle(
        self,
        method: str,
        path: str,
        params: dict[str, Any],
        *,
        idempotency_key: str | None,
        request_id: str,
    ) -> ApiResponse:
        """Answer one authenticated API request (auth is checked by the caller).

        The entry point for driving the API without sockets; the work is
        :func:`.service.serve`.
        """
        return serve(self, method, path, params, idempotency_key=idempotency_key,
                     request_id=request_id)
