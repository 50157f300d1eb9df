"""The emulator's record of the API requests it received, for tests to inspect.

:attr:`StripeEmulator.requests <stripe_checkout_mw.testing.StripeEmulator.requests>`
hands out copies of the list kept here: what a client sent (headers, decoded
params, idempotency key) and what it was answered.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["RecordedRequest", "RequestLog"]


@dataclass
class RecordedRequest:
    """One API request the emulator received (hosted page requests are not recorded).

    ``headers`` has lower-cased names; ``params`` is the decoded form (values are the
    strings that were on the wire); ``request_id`` is the ``Request-Id`` answered
    (and the ``request.id`` of an event it caused); ``status`` is what the emulator
    answered (``None`` while it is still answering); ``fault`` is true when
    ``fail_next`` answered it.
    """

    method: str
    path: str
    query: str
    headers: dict[str, str]
    params: dict[str, Any]
    body: bytes
    at: float
    request_id: str
    status: int | None = None
    fault: bool = False

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


class RequestLog:
    """The API requests received so far, oldest first, under the emulator's lock."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._records: list[RecordedRequest] = []

    def add(self, record: RecordedRequest) -> None:
        with self._lock:
            self._records.append(record)

    def answered(self, record: RecordedRequest, status: int, *, fault: bool) -> None:
        """Note what ``record`` was answered (``fault``: by an injected fault)."""
        with self._lock:
            record.status = status
            record.fault = fault

    def snapshot(self) -> list[RecordedRequest]:
        """A copy of the list (the records themselves are shared)."""
        with self._lock:
            return list(self._records)
