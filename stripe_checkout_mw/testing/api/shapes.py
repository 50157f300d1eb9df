"""The shapes of Stripe's objects, read from the SDK's resource classes.

``stripe.checkout.Session``, ``stripe.Price`` and the other resource classes declare
every field of the object the API returns, with its type, as class annotations (nested
objects are nested classes). The emulator builds its objects from them so that a field
an SDK upgrade adds shows up at once, as ``null`` or the type's blank value:

- :func:`blank` is a complete object with nothing known: ``null`` where the SDK says
  ``Optional``, ``[]``, ``false``, ``0`` or a blank nested object otherwise;
- :func:`shaped` puts an accepted create parameter into the object's shape (the
  ``custom_fields`` a session was created with come back with every key Stripe's
  ``custom_fields`` carry);
- :func:`problems` lists where a JSON object strays from the declared types (the
  tests walk every emulated object with it).

Only the annotations are read (never evaluated), so the SDK's ``TYPE_CHECKING``-only
imports (``ExpandableField["Customer"]``) need not resolve: such a field is an id or
the expanded object.
"""

from __future__ import annotations

import typing
from decimal import Decimal
from typing import Any, Union

import typing_extensions
from stripe._list_object import ListObject
from stripe._stripe_object import StripeObject, UntypedStripeObject

__all__ = ["blank", "declared", "problems", "shaped"]

_UNION_TYPE = getattr(__import__("types"), "UnionType", None)
_INCLUDABLE = {"line_items"}
"""Fields Stripe leaves out unless the request expands them (``expand[]=line_items``)."""
_SPARSE = {"PaymentMethodOptions"}


def declared(cls: type) -> dict[str, Any]:
    """The fields ``cls`` declares, by name, with their (unevaluated) annotations."""
    fields: dict[str, Any] = {}
    for name, hint in vars(cls).get("__annotations__", {}).items():
        if name.startswith("_") or typing_extensions.get_origin(hint) is typing.ClassVar:
            continue
        fields[name] = hint
    return fields


def _is_union(hint: Any) -> bool:
    origin = typing_extensions.get_origin(hint)
    return origin is Union or (_UNION_TYPE is not None and origin is _UNION_TYPE)


def _optional(hint: Any) -> bool:
    return _is_union(hint) and type(None) in typing_extensions.get_args(hint)


def _arms(hint: Any) -> tuple[Any, ...]:
    if _is_union(hint):
        return tuple(a for a in typing_extensions.get_args(hint) if a is not type(None))
    return (hint,)


def _is_object_class(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, StripeObject) and not issubclass(
        hint, UntypedStripeObject
    )


def blank(cls: type, *, includable: bool = False) -> dict[str, Any]:
    """Every field of ``cls`` with its blank value; ``object`` set to the literal."""
    result: dict[str, Any] = {}
    for name, hint in declared(cls).items():
        if name in _INCLUDABLE and not includable:
            continue
        result[name] = _blank(hint)
    return result


def _is_container(cls: type) -> bool:
    """A class like ``PaymentMethodOptions``: one optional sub-object per payment
    method, of which Stripe sends only the methods in use (elsewhere an unset
    optional field is sent as ``null``)."""
    return cls.__name__ in _SPARSE


def _blank(hint: Any) -> Any:
    if _optional(hint):
        return None
    hint = _arms(hint)[0]
    origin = typing_extensions.get_origin(hint)
    if origin is typing_extensions.Literal:
        return typing_extensions.get_args(hint)[0]
    if origin is list:
        return []
    if origin is ListObject:
        return {"object": "list", "data": [], "has_more": False, "url": ""}
    if origin in (dict, UntypedStripeObject) or hint is UntypedStripeObject:
        return {}
    if _is_object_class(hint):
        return {} if _is_container(hint) else blank(hint)
    return {bool: False, int: 0, float: 0, str: "", Decimal: "0"}.get(hint)


def shaped(hint: Any, value: Any) -> Any:
    """``value`` (a coerced create parameter) in the shape the object declares for the
    field typed ``hint``; keys the parameter lacks get their blank value."""
    for arm in _arms(hint):
        origin = typing_extensions.get_origin(arm)
        if _is_object_class(arm) and isinstance(value, dict):
            fields = declared(arm)
            if _is_container(arm):
                return {name: shaped(fields[name], v) for name, v in value.items()
                        if name in fields}
            return {
                name: shaped(sub, value[name]) if name in value else _blank(sub)
                for name, sub in fields.items()
            }
        if origin is list and isinstance(value, list):
            (item,) = typing_extensions.get_args(arm)
            return [shaped(item, v) for v in value]
        if (origin in (dict, UntypedStripeObject) or arm is UntypedStripeObject) and (
            isinstance(value, dict)
        ):
            return dict(value)
        if not problems(arm, _json(value), ""):
            return _json(value)
    return _blank(hint)


def _json(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def problems(hint: Any, value: Any, path: str, *, complete: bool = True) -> list[str]:
    """Where the JSON ``value`` strays from the declared type ``hint`` (empty if it does
    not): an undeclared key, a wrong type, a value outside a ``Literal``, and with
    ``complete`` a missing top-level key. Nested objects may leave keys out, as Stripe's
    do (``payment_method_options`` carries only the methods in use)."""
    if value is None:
        return [] if _optional(hint) or hint is Any else [f"{path}: null, not optional"]
    found: list[str] = []
    for arm in _arms(hint):
        found = _problems_one(arm, value, path, complete)
        if not found:
            return []
    return found


def _problems_one(hint: Any, value: Any, path: str, complete: bool = False) -> list[str]:
    origin = typing_extensions.get_origin(hint)
    args = typing_extensions.get_args(hint)
    if hint is Any:
        return []
    if isinstance(hint, (str, typing.ForwardRef)):
        # ExpandableField["Customer"]: an id, or the expanded object.
        return [] if isinstance(value, (str, dict)) else [f"{path}: not an id or object"]
    if origin is typing_extensions.Literal:
        return [] if value in args else [f"{path}: {value!r} not one of {args!r}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: not a list"]
        return [p for i, v in enumerate(value)
                for p in problems(args[0], v, f"{path}[{i}]", complete=False)]
    if origin is ListObject:
        if not isinstance(value, dict) or value.get("object") != "list":
            return [f"{path}: not a list object"]
        return [p for i, v in enumerate(value.get("data", []))
                for p in problems(args[0], v, f"{path}[data][{i}]", complete=False)]
    if origin in (dict, UntypedStripeObject) or hint is UntypedStripeObject:
        return [] if isinstance(value, dict) else [f"{path}: not a hash"]
    if _is_object_class(hint):
        if not isinstance(value, dict):
            return [f"{path}: not an object"]
        fields = declared(hint)
        found = [f"{path}[{k}]: not declared" for k in value if k not in fields]
        for name, sub in fields.items():
            if name not in value:
                if complete and name not in _INCLUDABLE:
                    found.append(f"{path}[{name}]: missing")
                continue
            found += problems(sub, value[name], f"{path}[{name}]", complete=False)
        return found
    if hint is bool:
        return [] if isinstance(value, bool) else [f"{path}: not a boolean"]
    if hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{path}: not an integer"]
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{path}: not a number"]
    if hint in (str, Decimal):
        return [] if isinstance(value, str) else [f"{path}: not a string"]
    if hint is type(None):
        return [f"{path}: not null"]
    return [f"{path}: undeclared type {hint!r}"]
