"""Events: ``/v1/events`` (retrieve, list) and :func:`emit`, which records a new one.

An event carries a deep copy of its object as it was when the event happened; the
state's ``on_event`` callback (the emulator's webhook queue) sees each new event.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .errors import no_such
from .ids import new_id
from .lists import list_object
from .params import LIST_PARAMS, as_list, as_str
from .version import API_VERSION

if TYPE_CHECKING:
    from .state import ApiCall, StripeState

__all__ = ["LIST_FILTERS", "emit", "list_events", "retrieve_event"]

LIST_FILTERS = LIST_PARAMS | {"delivery_success", "type", "types"}


def emit(
    state: StripeState, kind: str, obj: dict[str, Any], request: dict[str, Any] | None
) -> dict[str, Any]:
    """Record a ``kind`` event about ``obj`` and hand it to ``state.on_event``."""
    event: dict[str, Any] = {
        "id": new_id("evt_"),
        "object": "event",
        "api_version": API_VERSION,
        "created": state.now(),
        "data": {"object": copy.deepcopy(obj)},
        "livemode": False,
        "pending_webhooks": 0,
        "request": request or {"id": None, "idempotency_key": None},
        "type": kind,
    }
    state.events.append(event)
    state.on_event(event)
    return event


def retrieve_event(state: StripeState, call: ApiCall) -> dict[str, Any]:
    event_id = call.ids[0]
    for event in state.events:
        if event["id"] == event_id:
            return copy.deepcopy(event)
    raise no_such("event", event_id)


def list_events(state: StripeState, call: ApiCall) -> dict[str, Any]:
    params = call.params
    events = list(reversed(state.events))
    if "type" in params:
        wanted = as_str(params["type"], "type")
        if wanted.endswith("*"):
            events = [e for e in events if e["type"].startswith(wanted[:-1])]
        else:
            events = [e for e in events if e["type"] == wanted]
    if "types" in params:
        types = [as_str(t, "types") for t in as_list(params["types"], "types")]
        events = [e for e in events if e["type"] in types]
    return list_object(events, "/v1/events", params)
