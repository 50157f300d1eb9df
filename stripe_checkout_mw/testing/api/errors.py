"""Stripe's error shape: :class:`ApiError` and constructors for its common codes.

Every refusal of the emulator is an :class:`ApiError`; the HTTP layer renders it as
``{"error": {"type", "code", "param", "message", "doc_url", "request_log_url", ...}}``
with its status, the body the
``stripe`` SDK turns into ``stripe.InvalidRequestError`` and friends. The small
constructors keep the wording and ``code`` of one kind of mistake in one place.
"""

from __future__ import annotations

import time
from typing import Any

from stripe._error_object import ErrorObject

from .shapes import blank

__all__ = ["ApiError", "invalid", "missing", "no_such", "unknown"]

_DOCS = "https://stripe.com/docs/error-codes/"
_LOGS = "https://dashboard.stripe.com/test/logs/"


class ApiError(Exception):
    """An error Stripe would answer with; rendered as ``{"error": {...}}``."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        """``{"error": {...}}`` with every field the SDK's ``ErrorObject`` declares
        (``null`` where it does not apply), ``doc_url`` for the code and, given the
        request's id, the ``request_log_url`` of its dashboard log."""
        error = blank(ErrorObject)
        error.update(type=self.type, message=self.message, param=self.param,
                     code=self.code)
        if self.code is not None:
            error["doc_url"] = _DOCS + self.code.replace("_", "-")
        if request_id is not None:
            error["request_log_url"] = f"{_LOGS}{request_id}?t={int(time.time())}"
        return {"error": error}


def unknown(param: str, extra: str = "") -> ApiError:
    """A parameter the endpoint does not take (``parameter_unknown``)."""
    return ApiError(
        f"Received unknown parameter: {param}{extra}", param=param, code="parameter_unknown"
    )


def missing(param: str) -> ApiError:
    """A required parameter that was not sent (``parameter_missing``)."""
    return ApiError(
        f"Missing required param: {param}.", param=param, code="parameter_missing"
    )


def invalid(message: str, param: str, code: str = "parameter_invalid") -> ApiError:
    """A parameter with a value Stripe refuses (``parameter_invalid`` by default)."""
    return ApiError(message, param=param, code=code)


def no_such(kind: str, ident: str, param: str = "id") -> ApiError:
    """A 404 for an object id that does not exist (``resource_missing``)."""
    return ApiError(
        f"No such {kind}: '{ident}'", status=404, param=param, code="resource_missing"
    )
