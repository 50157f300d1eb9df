"""Request decoding: turn the decoded form values of a request into typed values.

Stripe's form encoding carries only strings, nested dicts and lists (see
:func:`stripe_checkout_mw.testing.forms.decode_form`). Each ``as_*`` coercer takes
one decoded value and the parameter's name in Stripe's bracket notation
(``line_items[0][quantity]``, built with :func:`sub`) and returns the typed value or
raises the :class:`~.errors.ApiError` Stripe answers with, naming that parameter.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import invalid, unknown

__all__ = [
    "as_bool",
    "as_currency",
    "as_dict",
    "as_int",
    "as_list",
    "as_metadata",
    "as_str",
    "as_url",
    "check_keys",
    "expand_list",
    "sub",
]



def sub(prefix: str, key: str | int) -> str:
    """The bracketed name of a nested parameter: ``sub("line_items", 0)``."""
    return f"{prefix}[{key}]"


def check_keys(value: dict[str, Any], allowed: frozenset[str], prefix: str | None) -> None:
    """Refuse the first key of ``value`` not in ``allowed``, by its full name."""
    for key in value:
        if key not in allowed:
            raise unknown(sub(prefix, key) if prefix else key)


def as_str(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise invalid(f"Invalid string: {param} must be a string", param)
    return value


def as_dict(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"Invalid hash: {param} must be a hash (dictionary)", param)
    return value


def as_list(value: Any, param: str) -> list[Any]:
    # An empty list is sent as an empty string, which decodes to an empty dict.
    if isinstance(value, dict) and not value:
        return []
    if not isinstance(value, list):
        raise invalid(f"Invalid array: {param} must be an array", param)
    return value


def as_int(value: Any, param: str, minimum: int | None = None) -> int:
    if not isinstance(value, str) or not re.fullmatch(r"-?\d{1,18}", value):
        raise invalid(f"Invalid integer: {value!r}", param, "parameter_invalid_integer")
    number = int(value)
    if minimum is not None and number < minimum:
        raise invalid(
            f"This value must be greater than or equal to {minimum}.",
            param,
            "parameter_invalid_integer",
        )
    return number


def as_bool(value: Any, param: str) -> bool:
    if value in ("true", "false"):
        return bool(value == "true")
    raise invalid(f"Invalid boolean: {value!r}", param)


def as_url(value: Any, param: str) -> str:
    text = as_str(value, param)
    if not re.match(r"^https?://[^/\s]+", text):
        raise invalid(
            f"Not a valid URL: {param} must be an absolute http(s) URL", param, "url_invalid"
        )
    return text


def as_metadata(value: Any, param: str) -> dict[str, str]:
    if value == "":
        return {}
    data = as_dict(value, param)
    if len(data) > 50:
        raise invalid("You can specify up to 50 keys for metadata.", param)
    result: dict[str, str] = {}
    for key, item in data.items():
        if len(key) > 40:
            raise invalid("Metadata keys can be at most 40 characters long.", sub(param, key))
        text = as_str(item, sub(param, key))
        if len(text) > 500:
            raise invalid("Metadata values can be at most 500 characters long.",
                          sub(param, key))
        result[key] = text
    return result


def as_currency(value: Any, param: str) -> str:
    text = as_str(value, param).lower()
    if not re.fullmatch(r"[a-z]{3}", text):
        raise invalid(f"Invalid currency: {value}", param, "invalid_currency")
    return text


def expand_list(params: dict[str, Any]) -> list[str]:
    """The ``expand[]`` paths of a request, checked to be strings."""
    if "expand" not in params:
        return []
    return [as_str(v, sub("expand", i)) for i, v in
            enumerate(as_list(params["expand"], "expand"))]
