"""Stripe's own parameter schema, read from the installed ``stripe`` SDK.

The SDK ships one ``TypedDict`` per endpoint ("File generated from our OpenAPI spec"):
``stripe.params.checkout.SessionCreateParams`` and the nested classes it names. This
module walks them at run time with :func:`typing.get_type_hints` and turns them into a
small tree of nodes (objects with required and optional keys, lists, maps, enums,
scalars, unions), so upgrading the SDK updates the schema and nothing here lists
parameters by hand. What the types cannot say (``line_items`` is required in payment
mode, ``success_url`` is refused with ``ui_mode=embedded_page``, 20 recurring plus 20
one-time items in subscription mode...) is a short table of :data:`RULES`, each with the
SDK docstring sentence or the API limit it comes from.

Usage::

    from stripe_checkout_mw import schema

    params = schema.validate("checkout.sessions.create", {"mode": "payment", ...})
    schema.validate("checkout.sessions.create", decode_form(body))  # wire strings too

:func:`validate` takes a Python params dict (as passed to ``client.v1...create``) or a
decoded form body (every scalar a string: ``"true"``, ``"123"``); the Python values are
first put in their wire form the way the SDK encodes them, so both are judged alike. It
returns the params with scalars coerced to their declared types and raises
:class:`SchemaError` (and nothing else, whatever the input) naming the parameter the way
Stripe does: ``line_items[0][price_data][currency]``.

The walked schema is cached: it is built once per process, on first use.
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
import sys
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Union

import typing_extensions

__all__ = [
    "ENDPOINTS",
    "RULES",
    "AnyNode",
    "ArrayNode",
    "EnumNode",
    "MapNode",
    "Node",
    "ObjectNode",
    "Rule",
    "ScalarNode",
    "SchemaError",
    "UnionNode",
    "enum_values",
    "node_at",
    "params_class",
    "schema_for",
    "session_mode",
    "validate",
]

ENDPOINTS: dict[str, str] = {
    "checkout.sessions.create": "checkout.SessionCreateParams",
    "checkout.sessions.list": "checkout.SessionListParams",
    "checkout.sessions.retrieve": "checkout.SessionRetrieveParams",
    "checkout.sessions.expire": "checkout.SessionExpireParams",
    "checkout.sessions.list_line_items": "checkout.SessionLineItemListParams",
    "prices.create": "PriceCreateParams",
    "prices.list": "PriceListParams",
    "prices.retrieve": "PriceRetrieveParams",
    "products.create": "ProductCreateParams",
    "products.list": "ProductListParams",
    "products.retrieve": "ProductRetrieveParams",
    "events.list": "EventListParams",
    "events.retrieve": "EventRetrieveParams",
    "customers.create": "CustomerCreateParams",
    "customers.list": "CustomerListParams",
    "customers.retrieve": "CustomerRetrieveParams",
    "subscriptions.list": "SubscriptionListParams",
    "subscriptions.retrieve": "SubscriptionRetrieveParams",
    "subscriptions.update": "SubscriptionUpdateParams",
    "subscriptions.cancel": "SubscriptionCancelParams",
    "invoices.list": "InvoiceListParams",
    "invoices.retrieve": "InvoiceRetrieveParams",
    "billing_portal.sessions.create": "billing_portal.SessionCreateParams",
    "payment_intents.list": "PaymentIntentListParams",
    "payment_intents.retrieve": "PaymentIntentRetrieveParams",
    "charges.list": "ChargeListParams",
    "charges.retrieve": "ChargeRetrieveParams",
    "refunds.list": "RefundListParams",
    "refunds.retrieve": "RefundRetrieveParams",
    "disputes.list": "DisputeListParams",
    "disputes.retrieve": "DisputeRetrieveParams",
}
"""Endpoint name -> params class under ``stripe.params``, for every endpoint the project
calls or emulates. Another endpoint is one more row (``"refunds.create":
"RefundCreateParams"``); :func:`schema_for` also takes a dotted name or the class."""

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


def _sub(param: str, key: object) -> str:
    return f"{param}[{key}]" if param else str(key)


def _show(value: object) -> str:
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
            raise SchemaError(f"Invalid boolean: {_show(value)}", param)
        if self.type is int:
            if _INTEGER.fullmatch(value) and -_INT64 <= int(value) < _INT64:
                return int(value)
            raise SchemaError(
                f"Invalid integer: {_show(value)}", param, "parameter_invalid_integer"
            )
        if _NUMBER.fullmatch(value):
            try:
                return Decimal(value) if self.type is Decimal else float(value)
            except (InvalidOperation, ValueError, OverflowError):
                pass
        raise SchemaError(f"Invalid decimal: {_show(value)}", param)


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
        return [self.item.check(v, _sub(param, i), depth + 1) for i, v in enumerate(value)]


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
        return {k: self.value.check(v, _sub(param, k), depth + 1) for k, v in value.items()}


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
                    f"Received unknown parameter: {_sub(param, key)}",
                    _sub(param, key),
                    "parameter_unknown",
                )
            result[key] = known.node.check(item, _sub(param, key), depth + 1)
        for key, known in self.fields.items():
            if known.required and key not in value:
                raise SchemaError(
                    f"Missing required param: {_sub(param, key)}.",
                    _sub(param, key),
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


# --- walking the SDK -------------------------------------------------------------------


def params_class(name: str) -> type:
    """The SDK class for ``"checkout.SessionCreateParams"`` (under ``stripe.params``)."""
    module_path, _, class_name = ("stripe.params." + name).rpartition(".")
    module = importlib.import_module(module_path)
    cls = getattr(module, class_name)
    if not typing_extensions.is_typeddict(cls):
        raise TypeError(f"{name} is not a params TypedDict of the stripe SDK")
    return typing.cast(type, cls)


def _request_option_keys() -> frozenset[str]:
    from stripe._request_options import RequestOptions

    return frozenset(RequestOptions.__annotations__)


def _own_annotations(cls: type) -> dict[str, Any]:
    """The class's annotations minus the SDK's per-request options (api_key...), which a
    top-level params class inherits but which never go on the wire."""
    annotations = dict(cls.__annotations__)
    bases = getattr(cls, "__orig_bases__", ())
    if any(getattr(base, "__name__", "") == "RequestOptions" for base in bases):
        for key in _request_option_keys():
            annotations.pop(key, None)
    return annotations


class _Builder:
    def __init__(self) -> None:
        self.objects: dict[type, ObjectNode] = {}

    def object(self, cls: type) -> ObjectNode:
        if cls in self.objects:
            return self.objects[cls]
        node = ObjectNode(cls.__name__, cls=cls)
        self.objects[cls] = node
        annotations = _own_annotations(cls)
        shim = type(cls.__name__, (), {
            "__annotations__": annotations,
            "__module__": cls.__module__,
        })
        try:
            hints = typing.get_type_hints(
                shim, globalns=vars(sys.modules[cls.__module__]), include_extras=True
            )
        except TypeError:
            # Python < 3.10 cannot evaluate the SDK's "Literal[...]|str" strings: the
            # forward references are evaluated one by one (see _evaluate) instead.
            hints = annotations
        total = getattr(cls, "__total__", True)
        for key, hint in hints.items():
            origin = typing_extensions.get_origin(hint)
            required = total
            if origin is typing_extensions.NotRequired:
                required, hint = False, typing_extensions.get_args(hint)[0]
            elif origin is typing_extensions.Required:
                required, hint = True, typing_extensions.get_args(hint)[0]
            node.fields[key] = Field(self.node(hint, cls.__module__), required)
        return node

    def node(self, hint: Any, module: str) -> Node:
        if isinstance(hint, (str, typing.ForwardRef)):
            hint = _evaluate(hint if isinstance(hint, str) else hint.__forward_arg__, module)
        origin = typing_extensions.get_origin(hint)
        args = typing_extensions.get_args(hint)
        if hint is Any:
            return AnyNode()
        if isinstance(hint, type) and typing_extensions.is_typeddict(hint):
            return self.object(hint)
        if hint in (str, int, bool, float, Decimal):
            return ScalarNode(hint)
        if origin is typing_extensions.Literal:
            return EnumNode(tuple(args))
        if origin in (list, Sequence, tuple):
            return ArrayNode(self.node(args[0], module) if args else AnyNode())
        if origin in (dict, Mapping):
            return MapNode(self.node(args[1], module) if len(args) == 2 else AnyNode())
        if origin is not None and getattr(origin, "__name__", "") == "UntypedStripeObject":
            return MapNode(self.node(args[0], module) if args else AnyNode())
        if origin is Union or (_UNION_TYPE is not None and origin is _UNION_TYPE):
            return self.union(args, module)
        if hint is type(None):
            return AnyNode()
        raise TypeError(f"unsupported annotation in the stripe SDK params: {hint!r}")

    def union(self, args: Sequence[Any], module: str) -> Node:
        literals: list[Any] = []
        others: list[Any] = []
        args = [_evaluate(a.__forward_arg__, module) if isinstance(a, typing.ForwardRef)
                else a for a in args]
        for arg in args:
            if arg is type(None):
                continue
            if typing_extensions.get_origin(arg) is typing_extensions.Literal:
                literals.extend(typing_extensions.get_args(arg))
            else:
                others.append(arg)
        if str in others and any(v != "" for v in literals):
            # An SDK enum ("Literal[...]|str"): the str arm is for forward compatibility.
            others.remove(str)
        elif str in others and literals == [""]:
            others.remove(str)
            literals = []
            others.insert(0, _EMPTY_STR)
        options: list[Node] = [EnumNode(tuple(literals))] if literals else []
        maps = 0
        for arg in others:
            built = (ScalarNode(str, allow_empty=True) if arg is _EMPTY_STR
                     else self.node(arg, module))
            if isinstance(built, MapNode):
                maps += 1
                if maps > 1:
                    continue  # Dict[str, X] | UntypedStripeObject[X] are the same map
            options.append(built)
        return options[0] if len(options) == 1 else UnionNode(tuple(options))


_EMPTY_STR = object()


class _PipeToUnion(ast.NodeTransformer):
    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if not isinstance(node.op, ast.BitOr):
            return node
        return ast.Subscript(value=ast.Name(id="_Union", ctx=ast.Load()),
                             slice=ast.Tuple(elts=[node.left, node.right], ctx=ast.Load()),
                             ctx=ast.Load())


@functools.cache
def _evaluate(text: str, module: str) -> Any:
    """A forward reference of the SDK evaluated in its module, ``A|B`` read as
    ``Union[A, B]`` so that it also works before Python 3.10."""
    tree = ast.fix_missing_locations(_PipeToUnion().visit(ast.parse(text, mode="eval")))
    namespace = {**vars(sys.modules[module]), "_Union": Union}
    return eval(compile(tree, f"<annotation in {module}>", "eval"), namespace)  # noqa: S307
_UNION_TYPE = getattr(types, "UnionType", None)  # X | Y in annotations, Python >= 3.10


@functools.cache
def _schema_for_class(cls: type) -> ObjectNode:
    return _Builder().object(cls)


def schema_for(endpoint: str | type) -> ObjectNode:
    """The walked schema of an endpoint (a name in :data:`ENDPOINTS`, a dotted name under
    ``stripe.params`` such as ``"CustomerCreateParams"``, or the class). Cached."""
    if isinstance(endpoint, str):
        endpoint = params_class(ENDPOINTS.get(endpoint, endpoint))
    return _schema_for_class(endpoint)


def node_at(endpoint: str | type, path: Sequence[str]) -> Node:
    """The node at ``path`` (keys, ``"[]"`` for a list's items, ``"{}"`` for a map's
    values), looking through unions; e.g. the enum of
    ``("shipping_address_collection", "allowed_countries", "[]")``."""
    node: Node = schema_for(endpoint)
    for step in path:
        node = _step(node, step)
    return node


def enum_values(endpoint: str | type, path: Sequence[str]) -> tuple[Any, ...]:
    """The values of the enum at ``path`` (see :func:`node_at`), without ``''``."""
    node = node_at(endpoint, path)
    if not isinstance(node, EnumNode):
        raise TypeError(f"{'/'.join(path)} is a {node.describe()}, not an enum")
    return tuple(v for v in node.values if v != "")


def _step(node: Node, step: str) -> Node:
    candidates = node.options if isinstance(node, UnionNode) else (node,)
    for candidate in candidates:
        if isinstance(candidate, ObjectNode) and step in candidate.fields:
            return candidate.fields[step].node
        if isinstance(candidate, ArrayNode) and step == "[]":
            return candidate.item
        if isinstance(candidate, MapNode) and step == "{}":
            return candidate.value
    raise KeyError(f"no {step!r} in {node.describe()}")


# --- Python values to their wire form ----------------------------------------------------


_ABSENT = object()


def _to_wire(value: Any, param: str, depth: int = 0) -> Any:
    """What the SDK's form encoder makes of a Python value: ``None`` and empty
    lists/dicts are dropped, booleans become ``"true"``/``"false"``, numbers strings."""
    if depth > _MAX_DEPTH:
        raise SchemaError(f"Invalid value: {param} is nested too deeply", param)
    if value is None:
        return _ABSENT
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
                    _sub(param, _show(key)),
                )
            wire = _to_wire(item, _sub(param, key), depth + 1)
            if wire is not _ABSENT:
                result[key] = wire
        return result if result else _ABSENT
    if isinstance(value, (list, tuple)):
        items = []
        for i, item in enumerate(value):
            if item is None:
                raise SchemaError(f"Invalid value: {_sub(param, i)} is null", _sub(param, i))
            wire = _to_wire(item, _sub(param, i), depth + 1)
            if wire is not _ABSENT:  # an empty hash or list in a list sends nothing
                items.append(wire)
        return items if items else _ABSENT
    raise SchemaError(f"Invalid value: {param} cannot be a {type(value).__name__}", param)


# --- cross-field rules -----------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What a rule sees: the coerced params, the mode the session will have, and (for the
    emulator, which knows its prices) whether a price id is recurring."""

    params: Mapping[str, Any]
    mode: str | None
    recurring_price: Callable[[str], bool | None]
    now: int | None = None


@dataclass(frozen=True)
class Rule:
    """A documented constraint the types cannot express.

    ``source`` is the SDK class whose docstring says it (or ``"API limit"``), ``quote``
    the sentence, verbatim, so a test can find it in the installed SDK.
    """

    endpoint: str
    params: tuple[str, ...]
    source: str
    quote: str
    check: _Check


_Check = Callable[[Context], Iterator[SchemaError]]


def _each(value: Any, path: Sequence[str], param: str = "") -> Iterator[tuple[str, Any]]:
    """(param, value) for every match of ``path``; ``"[]"`` walks a list's items."""
    if not path:
        yield param, value
        return
    head, rest = path[0], path[1:]
    if head == "[]":
        if isinstance(value, list):
            for i, item in enumerate(value):
                yield from _each(item, rest, _sub(param, i))
    elif isinstance(value, dict) and head in value:
        yield from _each(value[head], rest, _sub(param, head))


def _dotted(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def _only_in_modes(param: str, modes: tuple[str, ...]) -> _Check:
    def check(ctx: Context) -> Iterator[SchemaError]:
        if ctx.mode is not None and ctx.mode not in modes:
            for name, _ in _each(ctx.params, _dotted(param)):
                yield SchemaError(
                    f"{name} can only be used in {' or '.join(modes)} mode "
                    f"(this session is in {ctx.mode} mode).",
                    name,
                )
    return check


def _not_with_ui_modes(param: str, ui_modes: tuple[str, ...]) -> _Check:
    def check(ctx: Context) -> Iterator[SchemaError]:
        ui_mode = ctx.params.get("ui_mode", "hosted_page")
        if ui_mode in ui_modes:
            for name, _ in _each(ctx.params, _dotted(param)):
                yield SchemaError(f"{name} is not allowed when ui_mode is {ui_mode}.", name)
    return check


def _only_with_ui_modes(param: str, ui_modes: tuple[str, ...]) -> _Check:
    def check(ctx: Context) -> Iterator[SchemaError]:
        ui_mode = ctx.params.get("ui_mode", "hosted_page")
        if ui_mode not in ui_modes:
            for name, _ in _each(ctx.params, _dotted(param)):
                yield SchemaError(
                    f"{name} can only be set when ui_mode is {' or '.join(ui_modes)}.", name
                )
    return check


def _requires(param: str, other: str) -> _Check:
    def check(ctx: Context) -> Iterator[SchemaError]:
        if param in ctx.params and other not in ctx.params:
            yield SchemaError(f"{param} can only be used with {other}.", param)
    return check


def _exclusive(where: str, names: tuple[str, ...]) -> _Check:
    def check(ctx: Context) -> Iterator[SchemaError]:
        for base, value in _each(ctx.params, _dotted(where) if where else ()):
            if isinstance(value, dict) and sum(n in value for n in names) > 1:
                yield SchemaError(
                    f"You may only specify one of these parameters: {', '.join(names)}.",
                    _sub(base, names[1]),
                )
    return check


def _one_required(where: str, names: tuple[str, ...]) -> _Check:
    def check(ctx: Context) -> Iterator[SchemaError]:
        for base, value in _each(ctx.params, _dotted(where) if where else ()):
            if isinstance(value, dict) and not any(n in value for n in names):
                yield SchemaError(
                    f"Missing required param: {_sub(base, names[0])}. "
                    f"One of {' or '.join(names)} is required.",
                    _sub(base, names[0]),
                    "parameter_missing",
                )
    return check


def _max_items(param: str, limit: int) -> _Check:
    def check(ctx: Context) -> Iterator[SchemaError]:
        for name, value in _each(ctx.params, _dotted(param)):
            if isinstance(value, (list, dict)) and len(value) > limit:
                yield SchemaError(f"You may pass up to {limit} entries in {name}.", name)
    return check


def _max_length(param: str, limit: int) -> _Check:
    def check(ctx: Context) -> Iterator[SchemaError]:
        for name, value in _each(ctx.params, _dotted(param)):
            if isinstance(value, str) and len(value) > limit:
                yield SchemaError(f"{name} can be at most {limit} characters long.", name)
    return check


def _between(param: str, low: int, high: int) -> _Check:
    def check(ctx: Context) -> Iterator[SchemaError]:
        for name, value in _each(ctx.params, _dotted(param)):
            if isinstance(value, int) and not low <= value <= high:
                yield SchemaError(f"{name} must be between {low} and {high}.", name)
    return check


def _line_items_required(ctx: Context) -> Iterator[SchemaError]:
    if ctx.mode in ("payment", "subscription") and not ctx.params.get("line_items"):
        yield SchemaError(
            f"Missing required param: line_items (required in {ctx.mode} mode).",
            "line_items",
            "parameter_missing",
        )


def _currency_in_setup(ctx: Context) -> Iterator[SchemaError]:
    if (
        ctx.mode == "setup"
        and "currency" not in ctx.params
        and "allowed_payment_method_types" not in ctx.params
    ):
        yield SchemaError(
            "Missing required param: currency (required in setup mode when "
            "allowed_payment_method_types is not set).",
            "currency",
            "parameter_missing",
        )


def _expires_at(ctx: Context) -> Iterator[SchemaError]:
    expires_at = ctx.params.get("expires_at")
    if ctx.now is not None and isinstance(expires_at, int) and not (
        ctx.now + 1800 <= expires_at <= ctx.now + 86400
    ):
        yield SchemaError(
            "The `expires_at` timestamp must be between 30 minutes and 24 hours after "
            "Checkout Session creation.",
            "expires_at",
        )


_YEARS3 = {"day": 1095, "week": 156, "month": 36, "year": 3}


def _interval_count(where: str) -> _Check:
    def check(ctx: Context) -> Iterator[SchemaError]:
        for base, value in _each(ctx.params, _dotted(where)):
            if not isinstance(value, dict):
                continue
            count = value.get("interval_count", 1)
            most = _YEARS3.get(value.get("interval", ""))
            if isinstance(count, int) and (count < 1 or (most is not None and count > most)):
                name = _sub(base, "interval_count")
                yield SchemaError(
                    f"{name} must be between 1 and {most or 'the 3-year maximum'} for "
                    f"interval {value.get('interval')} (at most three years).",
                    name,
                )
    return check


def _is_recurring(item: Any, ctx: Context) -> bool | None:
    if not isinstance(item, dict):
        return None
    data = item.get("price_data")
    if isinstance(data, dict):
        return "recurring" in data
    price = item.get("price")
    return ctx.recurring_price(price) if isinstance(price, str) else None


def _items_of(ctx: Context) -> Iterator[tuple[str, Any]]:
    for key in ("line_items", "optional_items"):
        items = ctx.params.get(key)
        if isinstance(items, list):
            for i, item in enumerate(items):
                yield _sub(key, i), item


def _line_item_limits(ctx: Context) -> Iterator[SchemaError]:
    items = list(_items_of(ctx))
    if ctx.mode == "payment" and len(items) > 100:
        yield SchemaError(
            "In payment mode a session can have at most 100 line items (optional items "
            "included).", items[100][0],
        )
    if ctx.mode == "subscription":
        counts = {True: 0, False: 0}
        for name, item in items:
            kind = _is_recurring(item, ctx)
            if kind is None:
                continue
            counts[kind] += 1
            if counts[kind] > 20:
                what = "recurring" if kind else "one-time"
                yield SchemaError(
                    f"In subscription mode a session can have at most 20 line items with "
                    f"{what} prices (optional items included).", name,
                )
                return


def _recurring_matches_mode(ctx: Context) -> Iterator[SchemaError]:
    kinds = [(name, item, _is_recurring(item, ctx)) for name, item in _items_of(ctx)]
    if ctx.mode == "payment":
        for name, item, kind in kinds:
            if kind:
                where = "[price_data][recurring]" if "price_data" in item else "[price]"
                yield SchemaError(
                    "You specified `payment` mode but passed a recurring price. Either "
                    "switch to `subscription` mode or use only one-time prices.",
                    name + where,
                )
                return
    if ctx.mode == "subscription" and kinds and all(k is False for _, _, k in kinds):
        yield SchemaError(
            "You must provide at least one recurring price in `subscription` mode when "
            "using prices.",
            "line_items",
        )


def _metadata_limits(ctx: Context) -> Iterator[SchemaError]:
    yield from _metadata_in(ctx.params, "")


def _metadata_in(value: Any, param: str) -> Iterator[SchemaError]:
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from _metadata_in(item, _sub(param, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            name = _sub(param, key)
            if key == "metadata" and isinstance(item, dict):
                yield from _one_metadata(item, name)
            else:
                yield from _metadata_in(item, name)


def _currencies(ctx: Context) -> Iterator[SchemaError]:
    for name, value in _keyed(ctx.params, "", "currency"):
        if isinstance(value, str) and not re.fullmatch(r"[a-z]{3}", value):
            yield SchemaError(f"Invalid currency: {_show(value)}", name, "parameter_invalid")


def _keyed(value: Any, param: str, wanted: str) -> Iterator[tuple[str, Any]]:
    """(param, value) of every key ``wanted`` at any depth."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from _keyed(item, _sub(param, i), wanted)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == wanted:
                yield _sub(param, key), item
            else:
                yield from _keyed(item, _sub(param, key), wanted)


def _one_metadata(data: Mapping[str, Any], param: str) -> Iterator[SchemaError]:
    if len(data) > 50:
        yield SchemaError("You can specify up to 50 keys for metadata.", param)
    for key, value in data.items():
        name = _sub(param, key)
        if len(key) > 40:
            yield SchemaError("Metadata keys can be at most 40 characters long.", name)
        elif "[" in key or "]" in key:
            yield SchemaError("Metadata keys cannot contain '[' or ']'.", name)
        elif isinstance(value, str) and len(value) > 500:
            yield SchemaError("Metadata values can be at most 500 characters long.", name)


_CS = "checkout.sessions.create"
_CSP = "checkout.SessionCreateParams"
_CURRENCY = (
    "Three-letter [ISO currency code](https://www.iso.org/iso-4217-currency-codes.html), "
    "in lowercase."
)
_ELEMENTS_ONLY_NOT = "You can't set this parameter if `ui_mode` is `elements`."

RULES: tuple[Rule, ...] = (
    Rule(_CS, ("line_items",), _CSP,
         "The parameter is required for `payment` and `subscription` mode.",
         _line_items_required),
    Rule(_CS, ("line_items",), _CSP,
         "For `payment` mode, there is a maximum of 100 line items",
         _line_item_limits),
    Rule(_CS, ("line_items",), _CSP,
         "For `subscription` mode, there is a maximum of 20 line items with recurring Prices "
         "and 20 line items with one-time Prices.",
         _line_item_limits),
    Rule(_CS, ("mode", "line_items"), _CSP,
         "Pass `subscription` if the Checkout Session includes at least one recurring item.",
         _recurring_matches_mode),
    Rule(_CS, ("line_items",), _CSP, "One of `price` or `price_data` is required.",
         _one_required("line_items.[]", ("price", "price_data"))),
    Rule(_CS, ("line_items",), _CSP, "One of `price` or `price_data` is required.",
         _exclusive("line_items.[]", ("price", "price_data"))),
    Rule(_CS, ("line_items",), _CSP, "One of `product` or `product_data` is required.",
         _one_required("line_items.[].price_data", ("product", "product_data"))),
    Rule(_CS, ("line_items",), _CSP, "One of `product` or `product_data` is required.",
         _exclusive("line_items.[].price_data", ("product", "product_data"))),
    Rule(_CS, ("line_items",), _CSP,
         "One of `unit_amount` or `unit_amount_decimal` is required.",
         _one_required("line_items.[].price_data", ("unit_amount", "unit_amount_decimal"))),
    Rule(_CS, ("line_items",), _CSP,
         "Only one of `unit_amount` and `unit_amount_decimal` can be set.",
         _exclusive("line_items.[].price_data", ("unit_amount", "unit_amount_decimal"))),
    Rule(_CS, ("line_items",), _CSP,
         "Maximum of three years interval allowed (3 years, 36 months, or 156 weeks).",
         _interval_count("line_items.[].price_data.recurring")),
    Rule(_CS, ("line_items",), _CSP, "You can specify a value up to 999999.",
         _between("line_items.[].adjustable_quantity.maximum", 0, 999999)),
    Rule(_CS, ("line_items",), _CSP,
         "A list of up to 8 URLs of images for this product",
         _max_items("line_items.[].price_data.product_data.images", 8)),
    Rule(_CS, ("optional_items",), _CSP,
         "There is a maximum of 10 optional items allowed on a Checkout Session",
         _max_items("optional_items", 10)),
    Rule(_CS, ("currency",), _CSP,
         "Required in `setup` mode when `allowed_payment_method_types` is not set.",
         _currency_in_setup),
    Rule(_CS, ("expires_at",), _CSP,
         "It can be anywhere from 30 minutes to 24 hours after Checkout Session creation.",
         _expires_at),
    Rule(_CS, ("success_url",), _CSP,
         "This parameter is not allowed if ui_mode is `embedded_page` or `elements`.",
         _not_with_ui_modes("success_url", ("embedded_page", "elements"))),
    Rule(_CS, ("cancel_url",), _CSP,
         "This parameter is not allowed if ui_mode is `embedded_page` or `elements`.",
         _not_with_ui_modes("cancel_url", ("embedded_page", "elements"))),
    Rule(_CS, ("permissions",), _CSP,
         "Can only be set when creating `embedded_page` or `elements` sessions.",
         _only_with_ui_modes("permissions", ("embedded_page", "elements"))),
    *(
        Rule(_CS, (name,), _CSP, _ELEMENTS_ONLY_NOT, _not_with_ui_modes(name, ("elements",)))
        for name in (
            "after_expiration", "custom_fields", "custom_text", "origin_context",
            "submit_type", "payment_method_options.acss_debit",
            "payment_method_options.card.restrictions", "tax_id_collection.required",
        )
    ),
    Rule(_CS, ("branding_settings",), _CSP,
         "This parameter is not allowed if ui_mode is `elements`.",
         _not_with_ui_modes("branding_settings", ("elements",))),
    Rule(_CS, ("optional_items",), _CSP,
         "You can't set this parameter if `ui_mode` is `elements` or `form`.",
         _not_with_ui_modes("optional_items", ("elements", "form"))),
    Rule(_CS, ("customer_creation",), _CSP, "Can only be set in `payment` and `setup` mode.",
         _only_in_modes("customer_creation", ("payment", "setup"))),
    Rule(_CS, ("payment_method_collection",), _CSP,
         "Can only be set in `subscription` mode. Defaults to `always`.",
         _only_in_modes("payment_method_collection", ("subscription",))),
    Rule(_CS, ("saved_payment_method_options",), _CSP,
         "Only available in `payment` and `subscription` mode.",
         _only_in_modes("saved_payment_method_options", ("payment", "subscription"))),
    Rule(_CS, ("submit_type",), _CSP,
         "`submit_type` can only be specified on Checkout Sessions in\n    `payment` or "
         "`subscription` mode.",
         _only_in_modes("submit_type", ("payment", "subscription"))),
    Rule(_CS, ("payment_intent_data",), _CSP,
         "A subset of parameters to be passed to PaymentIntent creation for Checkout "
         "Sessions in `payment` mode.",
         _only_in_modes("payment_intent_data", ("payment",))),
    Rule(_CS, ("subscription_data",), _CSP,
         "A subset of parameters to be passed to subscription creation for Checkout "
         "Sessions in `subscription` mode.",
         _only_in_modes("subscription_data", ("subscription",))),
    Rule(_CS, ("setup_intent_data",), _CSP,
         "A subset of parameters to be passed to SetupIntent creation for Checkout "
         "Sessions in `setup` mode.",
         _only_in_modes("setup_intent_data", ("setup",))),
    Rule(_CS, ("invoice_creation",), _CSP,
         "Generate a post-purchase Invoice for one-time payments.",
         _only_in_modes("invoice_creation", ("payment",))),
    Rule(_CS, ("customer_update",), _CSP, "Can only be provided when `customer` is provided.",
         _requires("customer_update", "customer")),
    Rule(_CS, ("customer", "customer_email"), _CSP,
         "If provided, this value will be used when the Customer object is created.",
         _exclusive("", ("customer", "customer_email"))),
    Rule(_CS, ("custom_fields",), _CSP, "Up to 3 fields are supported.",
         _max_items("custom_fields", 3)),
    Rule(_CS, ("custom_fields",), _CSP, "Up to 200 options allowed.",
         _max_items("custom_fields.[].dropdown.options", 200)),
    Rule(_CS, ("custom_fields",), _CSP,
         "Must be unique to this field, alphanumeric, and up to 200 characters.",
         _max_length("custom_fields.[].key", 200)),
    Rule(_CS, ("shipping_options",), _CSP, "Up to a maximum of 5.",
         _max_items("shipping_options", 5)),
    Rule(_CS, ("discounts",), _CSP, "Currently, only up to one may be specified.",
         _max_items("discounts", 1)),
    Rule(_CS, ("invoice_creation",), _CSP,
         "A list of up to 4 custom fields to be displayed on the invoice.",
         _max_items("invoice_creation.invoice_data.custom_fields", 4)),
    Rule(_CS, ("metadata",), "API limit",
         "https://docs.stripe.com/api/metadata: up to 50 keys, key names up to 40 "
         "characters long (no square brackets), values up to 500 characters long.",
         _metadata_limits),
    Rule(_CS, ("currency",), _CSP, _CURRENCY, _currencies),
    Rule("prices.create", ("currency",), "PriceCreateParams", _CURRENCY, _currencies),
    Rule("prices.create", ("recurring",), "PriceCreateParams",
         "Maximum of three years interval allowed (3 years, 36 months, or 156 weeks).",
         _interval_count("recurring")),
    # Not in PriceCreateParams' docstrings; the SDK says it of a line item's price_data,
    # which has the same two fields, and the API refuses a price with neither or both.
    Rule("prices.create", ("product",), _CSP, "One of `product` or `product_data` is required.",
         _one_required("", ("product", "product_data"))),
    Rule("prices.create", ("product",), _CSP, "One of `product` or `product_data` is required.",
         _exclusive("", ("product", "product_data"))),
    Rule("prices.create", ("unit_amount",), "PriceCreateParams",
         "Only one of `unit_amount` and `unit_amount_decimal` can be set.",
         _exclusive("", ("unit_amount", "unit_amount_decimal"))),
    Rule("prices.create", ("metadata",), "API limit", "https://docs.stripe.com/api/metadata",
         _metadata_limits),
    Rule("prices.list", ("lookup_keys",), "PriceListParams",
         "You can specify up to 10 lookup_keys.", _max_items("lookup_keys", 10)),
    Rule("products.create", ("default_price_data",), "ProductCreateParams", _CURRENCY,
         _currencies),
    Rule("products.create", ("images",), "ProductCreateParams",
         "A list of up to 8 URLs of images for this product", _max_items("images", 8)),
    Rule("products.create", ("metadata",), "API limit",
         "https://docs.stripe.com/api/metadata", _metadata_limits),
    Rule("events.list", ("types",), "EventListParams",
         "You may pass either `type` or `types`, but not both.",
         _exclusive("", ("type", "types"))),
    Rule("events.list", ("types",), "EventListParams", "An array of up to 20 strings",
         _max_items("types", 20)),
    *(
        Rule(endpoint, ("limit",), ENDPOINTS[endpoint],
             "Limit can range between 1 and 100, and the default is 10.",
             _between("limit", 1, 100))
        for endpoint in ENDPOINTS if endpoint.endswith(".list")
    ),
)
"""The documented rules, by endpoint. Where the SDK's wording is weaker than the API's
behaviour (payment_intent_data "for ... `payment` mode", invoice_creation "for one-time
payments", customer_email "used when the Customer object is created"), the rule follows
the API's refusal and the quote is the closest sentence the SDK has."""


def _no_price_knowledge(price: str) -> bool | None:
    return None


def session_mode(params: Mapping[str, Any],
                 recurring_price: Callable[[str], bool | None] = _no_price_knowledge) -> str:
    """The session's mode: ``params["mode"]``, else (``mode`` is optional) ``subscription``
    when an item is known to be recurring and ``payment`` otherwise."""
    mode = params.get("mode")
    if isinstance(mode, str):
        return mode
    probe = Context(params, None, recurring_price)
    if any(_is_recurring(item, probe) for _, item in _items_of(probe)):
        return "subscription"
    return "payment"


def validate(
    endpoint: str | type,
    params: Any,
    *,
    partial: bool = False,
    mode: str | None = None,
    recurring_price: Callable[[str], bool | None] = _no_price_knowledge,
    now: int | None = None,
) -> dict[str, Any]:
    """Check ``params`` (Python values or decoded form strings) against the endpoint's
    schema and rules; return them coerced to their declared types.

    :param partial: judge a fragment (e.g. configured ``session_options``): required
        keys and rules about what must be present are not enforced, everything that
        is present is.
    :param mode: the mode to judge mode-dependent rules by (default: ``params["mode"]``,
        or the mode Stripe infers without one).
    :param recurring_price: tells the item limits whether a price id is recurring;
        return ``None`` when unknown.
    :param now: the request's time, for rules relative to it (``expires_at``); they
        are skipped without it.
    :raises SchemaError: the first problem, naming the parameter.
    """
    try:
        if not isinstance(params, Mapping):
            raise SchemaError("Invalid request: the parameters must be a hash", "")
        wire = _to_wire(dict(params), "")
        if wire is _ABSENT:
            wire = {}
        node = schema_for(endpoint)
        if not isinstance(wire, dict):
            raise SchemaError("Invalid request: the parameters must be a hash", "")
        if partial:
            node = _optional_copy(node)
        coerced = typing.cast("dict[str, Any]", node.check(wire, "", 0))
        name = _endpoint_name(endpoint)
        ctx = Context(coerced, mode or session_mode(coerced, recurring_price), recurring_price,
                      now)
        for rule in _rules_of(name):
            if partial and rule.check in (_line_items_required, _currency_in_setup):
                continue
            for error in rule.check(ctx):
                raise error
        return coerced
    except SchemaError:
        raise
    except RecursionError as exc:
        raise SchemaError("Invalid request: the parameters are nested too deeply", "") from exc


@functools.cache
def _endpoint_name(endpoint: str | type) -> str:
    """The :data:`ENDPOINTS` name of an endpoint given by name, class path or class."""
    if isinstance(endpoint, str) and endpoint in ENDPOINTS:
        return endpoint
    for name, path in ENDPOINTS.items():
        if endpoint == path or endpoint is params_class(path):
            return name
    return ""


@functools.cache
def _rules_of(endpoint: str) -> tuple[Rule, ...]:
    return tuple(rule for rule in RULES if rule.endpoint == endpoint)


@functools.cache
def _optional_copy(node: ObjectNode) -> ObjectNode:
    return ObjectNode(node.name, {
        key: Field(value.node, False) for key, value in node.fields.items()
    }, node.cls)
