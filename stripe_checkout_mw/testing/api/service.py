"""Serving one decoded API request: route, idempotency, validation, handler.

This is the layer between the HTTP front door
(:mod:`stripe_checkout_mw.testing.api_door`, which decodes the form,
authenticates and renders) and the resource modules: it knows nothing
about sockets or headers beyond the idempotency key, so tests can drive the API
through :meth:`~.state.StripeState.handle` without a server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .routes import ApiCall, Route, find_route
from .validation import validate_params

if TYPE_CHECKING:
    from .state import StripeState

__all__ = ["ApiResponse", "serve"]


@dataclass
class ApiResponse:
    """What the API answers: status, JSON body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: list[tuple[str, str]] = field(default_factory=list)


def serve(
    state: StripeState,
    method: str,
    path: str,
    params: dict[str, Any],
    *,
    idempotency_key: str | None,
    request_id: str,
) -> ApiResponse:
    """Answer one authenticated API request; refusals raise ``ApiError``."""
    route, match = find_route(method, path)
    with state.lock:
        if method == "POST" and idempotency_key is not None:
            return _serve_idempotent(state, route, match, params, path,
                                     idempotency_key, request_id)
        return ApiResponse(200, _call(state, route, match, params, {
            "id": request_id, "idempotency_key": None}))


def _call(state: StripeState, route: Route, match: re.Match[str],
          params: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    now = state.now()
    valid = validate_params(route.endpoint, params, now=now,
                            recurring_price=state.recurring_price)
    return route.handler(state, ApiCall(params, match.groups(), request, now, valid))


def _serve_idempotent(state: StripeState, route: Route, match: re.Match[str],
                      params: dict[str, Any], path: str, key: str,
                      request_id: str) -> ApiResponse:
    fingerprint = state.idempotency.fingerprint(path, params)
    stored = state.idempotency.replay(key, fingerprint)
    if stored is not None:
        return ApiResponse(stored.status, stored.body, [("Idempotent-Replayed", "true")])
    body = _call(state, route, match, params, {"id": request_id, "idempotency_key": key})
    # Like Stripe, only a request that got past validation is saved: a 400 may be
    # retried with the same key once the caller fixed nothing but the transient cause.
    state.idempotency.save(key, fingerprint, 200, body)
    return ApiResponse(200, body)
