"""Walking the installed SDK's params ``TypedDict``s into the schema's nodes.

:data:`ENDPOINTS` names the params class of every endpoint the project calls or
emulates; :func:`schema_for` walks one with :func:`typing.get_type_hints` (keys,
``Required``/``NotRequired``, ``Literal`` enums, lists, maps, unions) and caches it.
"""

from __future__ import annotations

import ast
import functools
import importlib
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Union

import typing_extensions

from .nodes import (
    AnyNode,
    ArrayNode,
    EnumNode,
    Field,
    MapNode,
    Node,
    ObjectNode,
    ScalarNode,
    UnionNode,
)

__all__ = ["ENDPOINTS", "enum_values", "node_at", "params_class", "schema_for"]

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
