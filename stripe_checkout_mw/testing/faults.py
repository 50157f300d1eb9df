"""Fault injection: answer the next API requests with errors, garbage or delays.

:meth:`StripeEmulator.fail_next
<stripe_checkout_mw.testing.StripeEmulator.fail_next>` queues a :class:`Fault`;
the API front door takes the first one matching each request from the
:class:`FaultQueue` and, through :func:`fault_response`, answers with it instead of
(or, with no status, after a delay before) handling the request. This is how a
test proves that a client survives 500s, 429s, timeouts and malformed bodies.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Union

from .server import HttpResponse

__all__ = ["Fault", "FaultBody", "FaultQueue", "default_fault_body", "fault_response"]

FaultBody = Union[bytes, str, dict[str, Any], None]
"""What a fault answers: raw bytes or text, a dict sent as JSON, or ``None`` for the
error JSON Stripe would send with that status."""


@dataclass
class Fault:
    """One queued fault: what to answer, how often, and to which requests."""

    status: int | None
    headers: dict[str, str]
    body: FaultBody
    delay: float | None
    remaining: int
    method: str | None = None
    path: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or path.startswith(self.path)
        )


class FaultQueue:
    """Faults in the order they were asked for; each matching request takes one."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._faults: deque[Fault] = deque()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def take(self, method: str, path: str) -> Fault | None:
        """The first fault matching the request, used up once its count runs out."""
        with self._lock:
            fault = next((f for f in self._faults if f.matches(method, path)), None)
            if fault is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
            return fault


def default_fault_body(status: int) -> dict[str, Any]:
    """The error JSON Stripe sends with ``status``, marked as injected."""
    if status == 429:
        return {"error": {"type": "invalid_request_error", "code": "rate_limit",
                          "message": "Too many requests hit the API too quickly "
                                     "(injected by the emulator)."}}
    if status == 402:
        return {"error": {"type": "card_error", "code": "card_declined",
                          "message": "Your card was declined (injected by the emulator)."}}
    if status == 409:
        return {"error": {"type": "invalid_request_error", "code": "lock_timeout",
                          "message": "This object cannot be accessed right now because "
                                     "another API request or Stripe process is accessing "
                                     "it (injected by the emulator)."}}
    if status >= 500:
        return {"error": {"type": "api_error",
                          "message": "An unknown error occurred (injected by the emulator)."}}
    return {"error": {"type": "invalid_request_error",
                      "message": f"Injected error {status} (emulator)."}}


def fault_response(fault: Fault, headers: list[tuple[str, str]],
                   stopping: threading.Event) -> HttpResponse | None:
    """Wait out the fault's delay, then its answer (``None``: handle the request).

    ``headers`` are the ones a normal answer would carry; the fault's own headers
    replace those of the same name. The delay ends early when the server stops.
    """
    if fault.delay:
        stopping.wait(fault.delay)
    if fault.status is None:
        return None
    body = fault.body
    if body is None:
        body = default_fault_body(fault.status)
    if isinstance(body, dict):
        raw = json.dumps(body, indent=2).encode("utf-8")
    elif isinstance(body, str):
        raw = body.encode("utf-8")
    else:
        raw = body
    overridden = {name.lower() for name in fault.headers}
    merged = [(n, v) for n, v in [("Content-Type", "application/json"), *headers]
              if n.lower() not in overridden]
    merged.extend(fault.headers.items())
    return HttpResponse(fault.status, raw, merged)
