"""Stripe's list object and its cursor pagination (``limit``, ``starting_after``...)."""

from __future__ import annotations

import copy
from typing import Any

from .errors import invalid, no_such
from .params import as_int, as_str

__all__ = ["list_object"]


def list_object(items: list[dict[str, Any]], url: str, params: dict[str, Any]) -> dict[str, Any]:
    """One page of ``items`` (newest first) as ``{"object": "list", ...}``.

    ``params`` are the request's own list parameters; a cursor that names no item
    is a 404 on that cursor, as with Stripe.
    """
    limit = 10
    if "limit" in params:
        limit = as_int(params["limit"], "limit", 1)
        if limit > 100:
            raise invalid("This value must be less than or equal to 100.", "limit")
    if "starting_after" in params:
        cursor = as_str(params["starting_after"], "starting_after")
        ids = [item["id"] for item in items]
        if cursor not in ids:
            raise no_such("object", cursor, "starting_after")
        items = items[ids.index(cursor) + 1 :]
    if "ending_before" in params:
        cursor = as_str(params["ending_before"], "ending_before")
        ids = [item["id"] for item in items]
        if cursor not in ids:
            raise no_such("object", cursor, "ending_before")
        items = items[: ids.index(cursor)][-limit:]
    return {
        "object": "list",
        "data": copy.deepcopy(items[:limit]),
        "has_more": len(items) > limit,
        "url": url,
    }
