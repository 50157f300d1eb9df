"""Webhook signing and delivery for the emulator.

Each event is POSTed to the webhook URL with a ``Stripe-Signature`` header made the
way Stripe makes it: ``t=<unix time>,v1=<hex HMAC-SHA256 of f"{t}.{body}">``, keyed
with the whole ``whsec_...`` secret, so ``stripe.StripeClient.construct_event`` (or
any receiver written for Stripe) verifies it unchanged.

Delivery runs on one background thread. An answer other than 2xx, a connection
error or a timeout is retried ``attempts`` times in all, waiting ``backoff`` seconds
and doubling: Stripe retries for days, tests want milliseconds. Every attempt is
recorded as a :class:`Delivery`.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import http.client
import itertools
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

__all__ = ["Delivery", "DeliveryWorker", "sign_payload"]

_USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def sign_payload(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header value for ``payload`` signed with ``secret``."""
    t = int(time.time()) if timestamp is None else timestamp
    signed = f"{t}.".encode() + payload
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


@dataclass(frozen=True)
class Delivery:
    """One attempt to deliver one event.

    ``status`` is the receiver's HTTP status, or ``None`` when there was no answer;
    ``error`` then says why (connection refused, timeout...).
    """

    event_id: str
    event_type: str
    attempt: int
    url: str
    status: int | None
    error: str | None
    at: float
    duration: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class _Job:
    event: dict[str, Any]
    payload: bytes
    url: str
    attempt: int
    secret: str | None = None


def post_payload(url: str, payload: bytes, signature: str, timeout: float) -> int:
    """POST one signed payload; return the status. Raises ``OSError`` on no answer."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OSError(f"unsupported webhook URL {url!r}")
    conn_class = (http.client.HTTPSConnection if parts.scheme == "https"
                  else http.client.HTTPConnection)
    conn = conn_class(parts.hostname, parts.port, timeout=timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        conn.request(
            "POST",
            path,
            body=payload,
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": _USER_AGENT,
                "Accept": "*/*; q=0.5, application/xml",
                "Cache-Control": "no-cache",
                "Stripe-Signature": signature,
            },
        )
        response = conn.getresponse()
        response.read()
        return response.status
    except http.client.HTTPException as exc:
        raise OSError(f"bad HTTP answer: {exc!r}") from exc
    finally:
        conn.close()


class DeliveryWorker:
    """The background thread that delivers, retries and records webhook attempts.

    :param lock: the emulator's lock; the worker's condition variable shares it.
    :param secret: returns the signing secret at send time.
    :param record: called under the lock with each :class:`Delivery`.
    :param attempts: attempts per event in all (at least 1).
    :param backoff: seconds before the first retry, doubled for each later one.
    :param timeout: seconds to wait for the receiver to answer.
    """

    def __init__(
        self,
        *,
        lock: threading.RLock,
        secret: Callable[[], str],
        record: Callable[[Delivery], None],
        on_done: Callable[[dict[str, Any], bool], None],
        attempts: int,
        backoff: float,
        timeout: float,
    ) -> None:
        self._cond = threading.Condition(lock)
        self._secret = secret
        self._record = record
        self._on_done = on_done
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.timeout = timeout
        self._queue: list[tuple[float, int, _Job]] = []
        self._seq = itertools.count()
        self._outstanding: dict[str, int] = {}
        self._first_attempt_done: set[str] = set()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="stripe-emulator-webhooks", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._queue.clear()
            self._outstanding.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def enqueue(self, event: dict[str, Any], url: str, *, secret: str | None = None,
                api_version: str | None = None) -> None:
        """Queue ``event`` for delivery to ``url`` (call under the lock), signed with
        ``secret`` (default: the worker's), stamped with ``api_version`` if given."""
        with self._cond:
            body = {**event, "api_version": api_version} if api_version else event
            payload = json.dumps(body, indent=2).encode("utf-8")
            job = _Job(event, payload, url, 1, secret)
            self._outstanding[event["id"]] = self._outstanding.get(event["id"], 0) + 1
            self._first_attempt_done.discard(event["id"])
            heapq.heappush(self._queue, (time.monotonic(), next(self._seq), job))
            self._cond.notify_all()

    def wait(self, event_ids: list[str] | None, timeout: float,
             first_attempt_only: bool = False) -> bool:
        """Wait until those events (or all) are delivered or given up; False on timeout."""
        def settled() -> bool:
            if self._stopping:
                return True
            if event_ids is None:
                return not self._outstanding
            if first_attempt_only:
                return all(e in self._first_attempt_done or e not in self._outstanding
                           for e in event_ids)
            return all(e not in self._outstanding for e in event_ids)

        with self._cond:
            return self._cond.wait_for(settled, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    if self._queue:
                        delay = self._queue[0][0] - time.monotonic()
                        if delay <= 0:
                            break
                        self._cond.wait(delay)
                    else:
                        self._cond.wait()
                if self._stopping:
                    return
                _, _, job = heapq.heappop(self._queue)
                secret = job.secret or self._secret()
            self._attempt(job, secret)

    def _attempt(self, job: _Job, secret: str) -> None:
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            status = post_payload(job.url, job.payload, sign_payload(job.payload, secret),
                                  self.timeout)
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
        delivery = Delivery(
            event_id=job.event["id"],
            event_type=job.event["type"],
            attempt=job.attempt,
            url=job.url,
            status=status,
            error=error,
            at=time.time(),
            duration=time.monotonic() - started,
        )
        with self._cond:
            if self._stopping:
                return
            self._record(delivery)
            event_id = job.event["id"]
            self._first_attempt_done.add(event_id)
            if not delivery.ok and job.attempt < self.attempts:
                due = time.monotonic() + self.backoff * (2 ** (job.attempt - 1))
                retry = _Job(job.event, job.payload, job.url, job.attempt + 1, job.secret)
                heapq.heappush(self._queue, (due, next(self._seq), retry))
            else:
                left = self._outstanding.get(event_id, 1) - 1
                if left <= 0:
                    self._outstanding.pop(event_id, None)
                    self._first_attempt_done.discard(event_id)
                else:
                    self._outstanding[event_id] = left
                self._on_done(job.event, delivery.ok)
            self._cond.notify_all()
