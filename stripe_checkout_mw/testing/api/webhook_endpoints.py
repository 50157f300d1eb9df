"""Webhook endpoints: ``/v1/webhook_endpoints`` (create, list, retrieve, update, delete).

An endpoint registered here gets, signed with its own ``secret`` (returned only by
create), every event whose type its ``enabled_events`` names (``*``: all), while its
``status`` is ``enabled``; ``disabled: true`` stops deliveries (and, as at Stripe,
events emitted meanwhile are never sent to it). Its ``api_version`` is fixed at
creation and stamped on the events it receives (the data is not re-rendered). At
most :data:`MAX_ENDPOINTS` per account. The emulator's own ``webhook_url`` is not
one of them: it keeps getting every event (see
:class:`~stripe_checkout_mw.testing.outbox.WebhookOutbox`).
"""

from __future__ import annotations

import copy
import secrets
from typing import TYPE_CHECKING, Any

from stripe import WebhookEndpoint

from .errors import invalid, no_such
from .ids import new_id
from .lists import list_object
from .params import as_url
from .shapes import blank

if TYPE_CHECKING:
    from .routes import ApiCall
    from .state import StripeState

__all__ = ["MAX_ENDPOINTS", "create_endpoint", "delete_endpoint", "list_endpoints",
           "retrieve_endpoint", "update_endpoint", "wants"]

MAX_ENDPOINTS = 16


def wants(endpoint: dict[str, Any], event_type: str) -> bool:
    """Whether an enabled ``endpoint`` is sent events of ``event_type``."""
    enabled = endpoint["enabled_events"]
    return endpoint["status"] == "enabled" and ("*" in enabled or event_type in enabled)


def _stored(state: StripeState, endpoint_id: str) -> dict[str, Any]:
    endpoint = state.webhook_endpoints.get(endpoint_id)
    if endpoint is None:
        raise no_such("webhook_endpoint", endpoint_id)
    return endpoint


def _events(value: list[str]) -> list[str]:
    if not value:
        raise invalid("enabled_events must name at least one event type.",
                      "enabled_events")
    return list(value)


def create_endpoint(state: StripeState, call: ApiCall) -> dict[str, Any]:
    valid = call.valid
    if len(state.webhook_endpoints) >= MAX_ENDPOINTS:
        raise invalid(f"You have reached the maximum of {MAX_ENDPOINTS} test webhook "
                      "endpoints.", "url")
    endpoint = blank(WebhookEndpoint)
    endpoint.update(
        id=new_id("we_"), created=state.now(), url=as_url(call.params["url"], "url"),
        enabled_events=_events(valid["enabled_events"]), status="enabled",
        api_version=valid.get("api_version"), description=valid.get("description"),
        metadata=dict(valid.get("metadata") or {}))
    secret = "whsec_" + secrets.token_hex(24)
    state.webhook_endpoints[endpoint["id"]] = endpoint
    state.webhook_secrets[endpoint["id"]] = secret
    return {**copy.deepcopy(endpoint), "secret": secret}


def retrieve_endpoint(state: StripeState, call: ApiCall) -> dict[str, Any]:
    return copy.deepcopy(_stored(state, call.ids[0]))


def list_endpoints(state: StripeState, call: ApiCall) -> dict[str, Any]:
    return list_object(list(reversed(state.webhook_endpoints.values())),
                       "/v1/webhook_endpoints", call.params)


def update_endpoint(state: StripeState, call: ApiCall) -> dict[str, Any]:
    endpoint = _stored(state, call.ids[0])
    valid = call.valid
    if "url" in valid:
        endpoint["url"] = as_url(call.params["url"], "url")
    if "enabled_events" in valid:
        endpoint["enabled_events"] = _events(valid["enabled_events"])
    if "disabled" in valid:
        endpoint["status"] = "disabled" if valid["disabled"] else "enabled"
    if "description" in valid:
        endpoint["description"] = valid["description"] or None
    if "metadata" in valid:
        merged = {**endpoint["metadata"], **(valid["metadata"] or {})}
        endpoint["metadata"] = {k: v for k, v in merged.items() if v != ""}
    return copy.deepcopy(endpoint)


def delete_endpoint(state: StripeState, call: ApiCall) -> dict[str, Any]:
    endpoint = _stored(state, call.ids[0])
    del state.webhook_endpoints[endpoint["id"]]
    del state.webhook_secrets[endpoint["id"]]
    return {"id": endpoint["id"], "object": "webhook_endpoint", "deleted": True}
