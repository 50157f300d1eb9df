"""Stripe's list object and its cursor pagination (``limit``, ``starting_after``...)."""

from __future__ import annotations

import copy
import operator
from typing import Any

from .errors import invalid, no_such, unknown
from .params import as_int, as_str

__all__ = ["filter_created", "list_object"]

_CREATED_OPS = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


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
        newer = items[: ids.index(cursor)]
        # has_more says whether newer items remain, so previous_page() keeps walking.
        return {"object": "list", "data": copy.deepcopy(newer[-limit:]),
                "has_more": len(newer) > limit, "url": url}
    return {
        "object": "list",
        "data": copy.deepcopy(items[:limit]),
        "has_more": len(items) > limit,
        "url": url,
    }


def filter_created(items: list[dict[str, Any]], params: dict[str, Any],
                   key: str = "created") -> list[dict[str, Any]]:
    """``items`` whose ``key`` matches ``params[key]``: an int or ``{gt,gte,lt,lte}``."""
    if key not in params:
        return items
    value = params[key]
    if isinstance(value, str):
        wanted = as_int(value, key)
        return [item for item in items if item[key] == wanted]
    if not isinstance(value, dict):
        raise invalid(f"Invalid {key}: must be an integer or a hash of gt, gte, lt, lte",
                      key)
    for op, bound in value.items():
        if op not in _CREATED_OPS:
            raise unknown(f"{key}[{op}]")
        limit = as_int(bound, f"{key}[{op}]")
        items = [item for item in items if _CREATED_OPS[op](item[key], limit)]
    return items
