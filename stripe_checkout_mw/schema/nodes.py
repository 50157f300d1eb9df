"""The schema's types: one node class per shape a Stripe parameter can have.

Each :class:`Node` checks a value in its wire form (strings, dicts, lists, as a form
body decodes) and returns it coerced to its declared type, or raises
:class:`SchemaError` naming the parameter as Stripe does (``line_items[0][price]``).
:func:`to_wire` puts Python values in that form first, the way the SDK encodes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "ABSENT",
    "AnyNode",
    "ArrayNode",
    "EnumNode",
    "Field",
    "MapNode",
    "Node",
    "ObjectNode",
    "ScalarNode",
    "SchemaError",
    "UnionNode",
    "param_name",
    "shown",
    "to_wire",
]

_MAX_DEPTH = 40
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_INT64 = 2**63


class SchemaError(ValueError):
    """A parameter Stripe would refuse: ``param`` is Stripe's name for it, ``code`` one of
    Stripe's error codes (``parameter_unknown``, ``parameter_missing``,
    ``parameter_invalid_integer``, ``parameter_invalid_empty``, ``parameter_invalid``)."""

    def __init__(self, message: str, param: str, code: str = "parameter_invalid") -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def param_name(param: str, key: object) -> str:
    return f"{param}[{key}]" if param else str(key)


def shown(value: object) -> str:
    text = value if isinstance(value, str) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _empty(param: str) -> SchemaError:
    return SchemaError(
        f"You passed an empty string for '{param}'. We assume empty values are an attempt "
        f"to unset a parameter; however '{param}' cannot be unset. You should remove "
        f"'{param}' from your request or supply a non-empty value.",
        param,
        "parameter_invalid_empty",
    )


# --- nodes -----------------------------------------------------------------------------


class Node:
    """One type of the schema; :meth:`check` coerces a wire value or raises."""

    kind = "any"

    def check(self, value: Any, param: str, depth: int = 0) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        return self.kind


class AnyNode(Node):
    """A value the SDK types as ``Any``: accepted as it is."""

    def check(self, value: Any, param: str, depth: int = 0) -> Any:
        return value


@dataclass(eq=False)
class ScalarNode(Node):
    """``str``, ``int``, ``bool``, ``float`` or ``Decimal``; ``allow_empty`` when the SDK
    says ``Literal['']|str`` (an empty string unsets the field)."""

    type: type
    allow_empty: bool = False

    @property
    def kind(self) -> str:  # type: ignore[override]
        return {str: "string", int: "integer", bool: "boolean", float: "number",
                Decimal: "decimal"}[self.type]

    def check(self, value: Any, param: str, depth: int = 0) -> Any:
        if not isinstance(value, str):
            raise SchemaError(f"Invalid {self.kind}: {param} must be a {self.kind}", param)
        if value == "":
            if self.allow_empty:
                return ""
            raise _empty(param)
        if self.type is str:
            return value
        if self.type is bool:
            if value in ("true", "false"):
                return value == "true"
            raise SchemaError(f"Invalid boolean: {shown(value)}", param)
        if self.type is int:
            if _INTEGER.fullmatch(value) and -_INT64 <= int(value) < _INT64:
                return int(value)
            raise SchemaError(
                f"Invalid integer: {shown(value)}", param, "parameter_invalid_integer"
            )
        if _NUMBER.fullmatch(value):
            try:
                return Decimal(value) if self.type is Decimal else float(value)
            except (InvalidOperation, ValueError, OverflowError):
                pass
        raise SchemaError(f"Invalid decimal: {shown(value)}", param)


@dataclass(eq=False)
class EnumNode(Node):
    """A ``Literal`` choice. The SDK writes every enum as ``Literal[...]|str`` so that old
    clients survive new values; the API itself refuses a value outside the list."""

    values: tuple[Any, ...]
    kind = "enum"

    def _wire(self) -> dict[str, Any]:
        return {(str(v).lower() if isinstance(v, bool) else str(v)): v for v in self.values}

    def check(self, value: Any, param: str, depth: int = 0) -> Any:
        wire = self._wire()
        if isinstance(value, str) and value in wire:
            return wire[value]
        if value == "":
            raise _empty(param)
        choices = [w for w in wire if w] or ["an empty string"]
        listed = ", ".join(choices[:-1]) + (", or " if len(choices) > 1 else "") + choices[-1]
        raise SchemaError(f"Invalid {param}: must be one of {listed}", param)

    def describe(self) -> str:
        return "enum"


@dataclass(eq=False)
class ArrayNode(Node):
    """``List[X]``."""

    item: Node
    kind = "array"

    def check(self, value: Any, param: str, depth: int = 0) -> Any:
        if isinstance(value, dict) and value and all(
            isinstance(k, str) and k.isdigit() for k in value
        ):
            value = [value[k] for k in sorted(value, key=int)]
        if not isinstance(value, list):
            if value == "":
                raise _empty(param)
            raise SchemaError(f"Invalid array: {param} must be an array", param)
        return [self.item.check(v, param_name(param, i), depth + 1) for i, v in enumerate(value)]


@dataclass(eq=False)
class MapNode(Node):
    """``Dict[str, X]`` (metadata and other free-form keys)."""

    value: Node
    kind = "map"

    def check(self, value: Any, param: str, depth: int = 0) -> Any:
        if isinstance(value, list):
            value = {str(i): v for i, v in enumerate(value)}
        if not isinstance(value, dict):
            if value == "":
                raise _empty(param)
            raise SchemaError(f"Invalid hash: {param} must be a hash (dictionary)", param)
        return {k: self.value.check(v, param_name(param, k), depth + 1) for k, v in value.items()}


@dataclass(frozen=True)
class Field:
    """One key of an object: its node and whether the SDK marks it required."""

    node: Node
    required: bool


@dataclass(eq=False)
class ObjectNode(Node):
    """A ``TypedDict``: known keys only, required ones present."""

    name: str
    fields: dict[str, Field] = field(default_factory=dict)
    cls: type | None = None
    kind = "object"

    def check(self, value: Any, param: str, depth: int = 0) -> Any:
        if not isinstance(value, dict):
            if value == "":
                raise _empty(param)
            raise SchemaError(f"Invalid hash: {param} must be a hash (dictionary)", param)
        if depth > _MAX_DEPTH:
            raise SchemaError(f"Invalid hash: {param} is nested too deeply", param)
        result: dict[str, Any] = {}
        for key, item in value.items():
            known = self.fields.get(key)
            if known is None:
                raise SchemaError(
                    f"Received unknown parameter: {param_name(param, key)}",
                    param_name(param, key),
                    "parameter_unknown",
                )
            result[key] = known.node.check(item, param_name(param, key), depth + 1)
        for key, known in self.fields.items():
            if known.required and key not in value:
                raise SchemaError(
                    f"Missing required param: {param_name(param, key)}.",
                    param_name(param, key),
                    "parameter_missing",
                )
        return result


@dataclass(eq=False)
class UnionNode(Node):
    """``Union[...]`` of shapes, e.g. ``Literal['']|List[str]`` or ``int|Dict``."""

    options: tuple[Node, ...]
    kind = "union"

    def check(self, value: Any, param: str, depth: int = 0) -> Any:
        errors: list[SchemaError] = []
        for option in self.options:
            try:
                return option.check(value, param, depth)
            except SchemaError as exc:
                errors.append(exc)
        shaped = [
            err for option, err in zip(self.options, errors)
            if _shape_matches(option, value)
        ] or errors
        raise max(shaped, key=lambda err: len(err.param))


def _shape_matches(node: Node, value: Any) -> bool:
    if isinstance(value, dict):
        return isinstance(node, (ObjectNode, MapNode, ArrayNode))
    if isinstance(value, list):
        return isinstance(node, (ArrayNode, MapNode))
    return isinstance(node, (ScalarNode, EnumNode))


# --- Python values to their wire form ----------------------------------------------------


ABSENT = object()
"""What :func:`to_wire` makes of ``None`` and empty containers: nothing is sent."""


def to_wire(value: Any, param: str, depth: int = 0) -> Any:
    """What the SDK's form encoder makes of a Python value: ``None`` and empty
    lists/dicts are dropped, booleans become ``"true"``/``"false"``, numbers strings."""
    if depth > _MAX_DEPTH:
        raise SchemaError(f"Invalid value: {param} is nested too deeply", param)
    if value is None:
        return ABSENT
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SchemaError(
                    f"Invalid hash: the keys of {param or 'the request'} must be strings",
                    param_name(param, shown(key)),
                )
            wire = to_wire(item, param_name(param, key), depth + 1)
            if wire is not ABSENT:
                result[key] = wire
        return result if result else ABSENT
    if isinstance(value, (list, tuple)):
        items = []
        for i, item in enumerate(value):
            if item is None:
                name = param_name(param, i)
                raise SchemaError(f"Invalid value: {name} is null", name)
            wire = to_wire(item, param_name(param, i), depth + 1)
            if wire is not ABSENT:  # an empty hash or list in a list sends nothing
                items.append(wire)
        return items if items else ABSENT
    raise SchemaError(f"Invalid value: {param} cannot be a {type(value).__name__}", param)
