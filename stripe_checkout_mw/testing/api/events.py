"""Events: ``/v1/events`` (retrieve, list) and :func:`emit`, which records a new one.

An event carries a deep copy of its object as it was when the event happened; the
state's ``on_event`` callback (the emulator's webhook queue) sees each new event.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from stripe import Event

from .errors import invalid, no_such
from .ids import new_id
from .lists import filter_created, list_object
from .params import as_bool, as_list, as_str, sub
from .rules import ParamRule, RuleContext, plain
from .shapes import blank
from .version import API_VERSION

if TYPE_CHECKING:
    from .routes import ApiCall
    from .state import StripeState

__all__ = ["LIST_RULES", "RETENTION", "emit", "list_events",
           "retrieve_event"]

RETENTION = 30 * 24 * 3600
"""Stripe lists events of the last 30 days only."""


def _types(value: Any, param: str, ctx: RuleContext) -> list[str]:
    types = [as_str(t, sub(param, i)) for i, t in enumerate(as_list(value, param))]
    if len(types) > 20:
        raise invalid("You may pass up to 20 event types in `types`.", param)
    return types


LIST_RULES: tuple[ParamRule, ...] = (
    ParamRule("type", plain(as_str), exclusive_with=("types",)),
    ParamRule("types", _types),
    ParamRule("delivery_success", plain(as_bool)),
)


def emit(
    state: StripeState, kind: str, obj: dict[str, Any], request: dict[str, Any] | None,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record a ``kind`` event about ``obj`` and hand it to ``state.on_event``.

    ``previous`` becomes ``data.previous_attributes`` (``*.updated`` events).
    """
    event = blank(Event)
    event.update({
        "id": new_id("evt_"),
        "object": "event",
        "api_version": API_VERSION,
        "created": state.now(),
        "data": {"object": copy.deepcopy(obj), "previous_attributes": None},
        "livemode": False,
        "pending_webhooks": 0,
        "request": request or {"id": None, "idempotency_key": None},
        "type": kind,
    })
    if previous is not None:
        event["data"]["previous_attributes"] = copy.deepcopy(previous)
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
    params, valid = call.params, call.valid
    oldest = call.now - RETENTION
    events = [e for e in reversed(state.events) if e["created"] >= oldest]
    if "type" in valid:
        wanted: str = valid["type"]
        if wanted.endswith("*"):
            events = [e for e in events if e["type"].startswith(wanted[:-1])]
        else:
            events = [e for e in events if e["type"] == wanted]
    if "types" in valid:
        events = [e for e in events if e["type"] in valid["types"]]
    if "delivery_success" in valid:
        # pending_webhooks counts the endpoints that have not had a 2xx for it.
        delivered: bool = valid["delivery_success"]
        events = [e for e in events if (e["pending_webhooks"] == 0) == delivered]
    events = filter_created(events, params)
    return list_object(events, "/v1/events", params)
