"""Decode Stripe's form encoding into nested dicts and lists.

The Stripe SDKs send every parameter as ``application/x-www-form-urlencoded`` with
literal brackets for nesting, in POST bodies and GET query strings alike::

    line_items[0][price_data][currency]=usd&line_items[0][quantity]=2
    lookup_keys[0]=basic&lookup_keys[1]=pro&active=true
    metadata[order]=42

:func:`decode_form` turns that back into ``{"line_items": [{"price_data": {...},
"quantity": "2"}], ...}``. Values stay the strings that were on the wire (``"2"``,
``"true"``): the emulator coerces them per parameter, the way Stripe does, so a test
reading ``emu.requests[-1].params`` sees exactly what the client sent.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

__all__ = ["FormError", "decode_form"]

_SEGMENT = re.compile(r"\[([^\[\]]*)\]")

# Keys of these dicts are free-form user data, so "0", "1" must not turn them into a list.
_FREE_FORM = frozenset({"metadata"})


class FormError(ValueError):
    """The form data cannot be decoded; ``param`` names the offending key."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def _split_key(key: str) -> list[str]:
    head, bracket, rest = key.partition("[")
    if not bracket:
        return [key]
    rest = "[" + rest
    segments = [head]
    pos = 0
    for match in _SEGMENT.finditer(rest):
        if match.start() != pos:
            raise FormError(f"Invalid parameter name: {key}", key)
        segments.append(match.group(1))
        pos = match.end()
    if pos != len(rest) or not head:
        raise FormError(f"Invalid parameter name: {key}", key)
    return segments


def _insert(root: dict[str, Any], segments: list[str], value: str, key: str) -> None:
    node = root
    for i, segment in enumerate(segments):
        name = segment
        if name == "":
            # "lookup_keys[]=a" appends, as Rack-style encoders expect.
            name = str(len(node))
        last = i == len(segments) - 1
        if last:
            if isinstance(node.get(name), dict):
                raise FormError(f"Invalid parameter: {key} is given as a value and a hash", key)
            node[name] = value
            return
        child = node.setdefault(name, {})
        if not isinstance(child, dict):
            raise FormError(f"Invalid parameter: {key} is given as a value and a hash", key)
        node = child


def _listify(node: Any, parent: str | None) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v, k) for k, v in node.items()}
    if (
        converted
        and parent not in _FREE_FORM
        and all(k.isdigit() for k in converted)
    ):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def decode_form(data: str | bytes) -> dict[str, Any]:
    """Decode one form-encoded string (body or query string) into nested params.

    ``a[b][0]=x`` becomes ``{"a": {"b": ["x"]}}``; a dict whose keys are all indexes
    becomes a list ordered by index (except under ``metadata``). Raises
    :class:`FormError` for a malformed key such as ``a[b``.
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormError("The request body is not valid UTF-8", "") from exc
    root: dict[str, Any] = {}
    for key, value in parse_qsl(data, keep_blank_values=True):
        _insert(root, _split_key(key), value, key)
    return {k: _listify(v, k) for k, v in root.items()}
