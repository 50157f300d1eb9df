"""Stripe's objects as plain data: the one place that turns what the SDK returns, or what an
event carries, into ``dict``s and ids the ledger and the event appliers can store.

Every part that reads a Stripe object calls these, so a change in how the SDK exposes its
JSON (``last_response``, ``to_dict``) is made once. Nothing here calls Stripe or imports
another part of the package.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["event_object", "id_of", "to_plain"]


def to_plain(obj: Any) -> dict[str, Any]:
    """A Stripe object (or any mapping) as a plain, JSON-able ``dict``.

    An object the SDK just returned carries the JSON it was built from
    (``last_response.data``): that is used as it is, rather than converted back from the
    object (which costs about as much as building it did).

    :raises TypeError: ``obj`` is neither a Stripe object nor a mapping.
    """
    response = getattr(obj, "last_response", None)
    data = getattr(response, "data", None)
    object_id = getattr(obj, "id", None)
    if isinstance(data, dict) and object_id is not None and data.get("id") == object_id:
        return data
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        result = to_dict(for_json=True)
        if isinstance(result, dict):
            return result
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"expected a Stripe object or a mapping, got {type(obj).__name__}")


def event_object(payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The object a Stripe event is about (``data.object``), or ``None`` when it has none."""
    data = payload.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    return obj if isinstance(obj, Mapping) else None


def id_of(value: Any) -> str | None:
    """The id of an expandable field: the id itself, or the ``id`` of the expanded object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None
