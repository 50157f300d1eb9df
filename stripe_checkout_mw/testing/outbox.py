"""Which events are sent where: the emulator's webhook endpoint and its switches.

:class:`WebhookOutbox` sits between the API (which emits events) and the
:class:`~.webhooks.DeliveryWorker` (which signs, posts and retries them): it holds
the webhook URL, the "drop everything" switch of
:meth:`~.billing.BillingControls.drop_webhooks`, the list of delivery attempts,
and the waits that make ``pay()`` and friends deterministic.

Two kinds of receiver: the emulator's own ``webhook_url`` (a test control, not a
registered endpoint) gets every event, signed with the emulator's
``webhook_secret``; each endpoint registered through ``/v1/webhook_endpoints`` gets
only the types it enables, signed with its own secret, with its ``api_version``.
"""

from __future__ import annotations

import threading
from typing import Any, Callable
from urllib.parse import urlsplit

from .api.webhook_endpoints import wants
from .webhooks import Delivery, DeliveryWorker

__all__ = ["WebhookOutbox", "check_webhook_url"]


def check_webhook_url(url: str | None) -> None:
    """Refuse (``ValueError``) anything but ``None`` or an absolute http(s) URL."""
    if url is not None and (urlsplit(url).scheme not in ("http", "https")
                            or not urlsplit(url).hostname):
        raise ValueError(f"webhook_url must be an absolute http(s) URL, not {url!r}")


class WebhookOutbox:
    """Queues each new event for the webhook URL and keeps the delivery record.

    :param lock: the emulator's lock (the worker's condition shares it).
    :param secret: returns the signing secret at send time.
    :param url: the webhook URL, or ``None`` to deliver nothing.
    :param attempts, backoff, timeout: the :class:`~.webhooks.DeliveryWorker`'s.
    """

    def __init__(self, *, lock: threading.RLock, secret: Callable[[], str],
                 url: str | None, attempts: int, backoff: float, timeout: float) -> None:
        check_webhook_url(url)
        self._lock = lock
        self.url = url
        self.dropping = False
        self._registry: Callable[[], list[tuple[dict[str, Any], str]]] = list
        self._deliveries: list[Delivery] = []
        self._worker = DeliveryWorker(
            lock=lock, secret=secret, record=self._deliveries.append,
            on_done=_delivery_done, attempts=attempts, backoff=backoff, timeout=timeout,
        )

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        """Drop pending deliveries and end the worker thread."""
        self._worker.stop()

    def set_url(self, url: str | None) -> None:
        check_webhook_url(url)
        with self._lock:
            self.url = url

    def set_registry(self, registry: Callable[[], list[tuple[dict[str, Any], str]]]) -> None:
        """Where the registered endpoints come from: (endpoint, secret) pairs."""
        self._registry = registry

    def set_dropping(self, drop: bool) -> None:
        with self._lock:
            self.dropping = drop

    @property
    def deliveries(self) -> list[Delivery]:
        """Every delivery attempt so far, oldest first (a copy of the list)."""
        with self._lock:
            return list(self._deliveries)

    def on_event(self, event: dict[str, Any]) -> None:
        """Queue a new event (called under the lock by the state's ``emit``).

        ``pending_webhooks`` counts the receivers that still have to get it, and
        stays 1 for a dropped event, as if every retry had failed.
        """
        if self.dropping:
            event["pending_webhooks"] = 1
            return
        endpoints = [(e, secret) for e, secret in self._registry()
                     if wants(e, event["type"])]
        event["pending_webhooks"] = len(endpoints) + (self.url is not None)
        if self.url is not None:
            self._worker.enqueue(event, self.url)
        for endpoint, secret in endpoints:
            self._worker.enqueue(event, endpoint["url"], secret=secret,
                                 api_version=endpoint["api_version"])

    def redeliver(self, event_id: str, events: Callable[[], list[dict[str, Any]]]) -> None:
        """Send event ``event_id`` (looked up in ``events()``) again, freshly signed.

        ``RuntimeError`` with no URL, ``KeyError`` for an unknown event.
        """
        with self._lock:
            if self.url is None:
                raise RuntimeError("no webhook_url is set; nothing to deliver to")
            event = next((e for e in events() if e["id"] == event_id), None)
            if event is None:
                raise KeyError(f"no such event {event_id!r}")
            event["pending_webhooks"] = 1
            self._worker.enqueue(event, self.url)

    def wait(self, event_ids: list[str] | None, timeout: float) -> None:
        """Wait until those events (``None``: all) are delivered or given up.

        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        if event_ids == []:
            return
        if not self._worker.wait(event_ids, timeout):
            raise TimeoutError(f"webhook deliveries still pending after {timeout} s")

    def wait_first_attempts(self, event_ids: list[str], timeout: float) -> None:
        """Wait, at most ``timeout`` seconds, until each event was tried once."""
        self._worker.wait(event_ids, timeout, first_attempt_only=True)


def _delivery_done(event: dict[str, Any], ok: bool) -> None:
    if ok:
        event["pending_webhooks"] = max(0, event["pending_webhooks"] - 1)
