"""The errors every layer may raise: one place, at the bottom of the package.

:class:`HTTPError` is an answer to a browser, raised wherever a request cannot go on
(the checkout, the status path, the portal) and rendered as JSON by the WSGI edge alone.
:class:`OptionError` is a refused configuration value, raised while the shop is built.
Neither imports anything of the package, so the ledger, the checkout and the event
appliers can raise them without climbing up to the layer that shows them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["HTTPError", "OptionError", "OptionTypeError", "install_hint"]


def install_hint(extra: str, packages: str) -> str:
    """How to install an optional extra's ``packages``, in words true while the package is
    not on the package index: ``pip install stripe-checkout-mw[extra]`` finds nothing, so
    the packages are named, with the extra for a clone."""
    return f"pip install {packages} (in a clone: pip install -e '.[{extra}]')"


class HTTPError(Exception):
    """An answer to send instead of the normal one, already safe to show a browser.

    ``message`` is written for the customer or the front-end developer; it must never
    hold a secret, a traceback or a payment provider's internal detail.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.headers = list(headers)

    def payload(self) -> dict[str, Any]:
        """The JSON body: the one error shape of every owned path."""
        return {"error": {"type": self.type, "message": self.message, "param": self.param}}


class OptionError(ValueError):
    """A configuration value the middleware refuses, raised when the app is built.

    :attr option: the option's name (``"timeout"``), as data for tools such as ``check``.
    :attr detail: what is wrong and how to fix it, without the name.
    """

    def __init__(self, option: str, detail: str) -> None:
        super().__init__(f"{option}: {detail}")
        self.option = option
        self.detail = detail


class OptionTypeError(OptionError, TypeError):
    """An option given a Python value of the wrong type, or an option that does not exist."""
