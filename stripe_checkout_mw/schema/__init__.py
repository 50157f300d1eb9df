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

The package: :mod:`.nodes` (the types and the wire form), :mod:`.sdk` (walking the
SDK), :mod:`.rules` (the table); :func:`validate` puts them together.

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

import functools
import typing
from collections.abc import Callable, Mapping
from typing import Any

from .nodes import (
    ABSENT,
    AnyNode,
    ArrayNode,
    EnumNode,
    Field,
    MapNode,
    Node,
    ObjectNode,
    ScalarNode,
    SchemaError,
    UnionNode,
    to_wire,
)
from .rules import RULES, Context, Rule, no_price_knowledge, session_mode
from .sdk import ENDPOINTS, enum_values, node_at, params_class, schema_for

__all__ = [
    "ENDPOINTS",
    "RULES",
    "AnyNode",
    "ArrayNode",
    "EnumNode",
    "Field",
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


def validate(
    endpoint: str | type,
    params: Any,
    *,
    partial: bool = False,
    mode: str | None = None,
    recurring_price: Callable[[str], bool | None] = no_price_knowledge,
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
        wire = to_wire(dict(params), "")
        if wire is ABSENT:
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
            if partial and rule.presence:
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
