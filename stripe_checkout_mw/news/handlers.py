"""The app's event handlers: the registry behind ``mw.on(event_type)`` and the job that runs
them after an event is committed.

Usage::

    handlers = WebhookHandlers()

    @handlers.on("checkout.session.expired")
    def expired(event: stripe.Event) -> None:
        ...
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Callable, TypeVar

import stripe

from ..ledger.pipeline import JobKind
from ..ledger.store import Job

__all__ = ["HANDLERS", "EventHandler", "HandlersJob", "WebhookHandlers"]

#: A handler takes the verified ``stripe.Event``; its return value is ignored.
EventHandler = Callable[[stripe.Event], Any]
_H = TypeVar("_H", bound=EventHandler)

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
