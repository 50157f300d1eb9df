"""What a Checkout Session create request is checked against beyond Stripe's schema.

:func:`~.validation.validate_params` runs the schema from the installed SDK, then
:data:`HINT_RULES` (answers with a hint for values older API versions took) and
:data:`CREATE_RULES` (well-formed URLs and email, a customer id, lengths), and
refuses :data:`REMOVED_CREATE_PARAMS` with the hint that says what replaced them.
"""

from __future__ import annotations

from typing import Any

from .errors import ApiError, invalid
from .params import as_str, as_url
from .rules import ParamRule, RuleContext, plain
from .version import API_VERSION

__all__ = ["CREATE_RULES", "HINT_RULES", "OLD_UI_MODES", "REDIRECTS", "REMOVED_CREATE_PARAMS"]

REMOVED_CREATE_PARAMS = {
    "payment_method_types": (
        f". It can no longer be sent on create at API version {API_VERSION}: "
        "Stripe chooses payment methods dynamically; use "
        "excluded_payment_method_types to narrow them."
    ),
}
"""Parameters older API versions took, with the hint appended to "unknown"."""
OLD_UI_MODES = {"hosted": "hosted_page", "embedded": "embedded_page", "custom": "elements"}
"""The ``ui_mode`` values of older API versions, with the one that replaced each."""


# -- create parameters, one coercer per row of CREATE_RULES -----------------------

def _old_ui_mode(value: Any, param: str, ctx: RuleContext) -> Any:
    if isinstance(value, str) and value in OLD_UI_MODES:
        raise invalid(
            f"Invalid ui_mode: '{value}' is no longer supported at API version "
            f"{API_VERSION}; use '{OLD_UI_MODES[value]}'.",
            param,
        )
    return value


# The create params' docstrings: redirect_on_completion "applies to `ui_mode:
# embedded_page`" and "defaults to `always`" (success_url and cancel_url per ui_mode are
# the schema's rules).
REDIRECTS = ("always", "if_required", "never")


def _return_url(value: Any, param: str, ctx: RuleContext) -> str:
    if ctx.valid.get("ui_mode", "hosted_page") == "hosted_page":
        raise invalid(f"{param} can only be used when ui_mode is `embedded_page`, "
                      "`elements` or `form`.", param)
    return as_url(value, param)


def _redirect_on_completion(value: Any, param: str, ctx: RuleContext) -> str:
    if ctx.valid.get("ui_mode", "hosted_page") != "embedded_page":
        raise invalid(f"{param} can only be used when ui_mode is `embedded_page`.", param)
    redirect = as_str(value, param)
    if redirect not in REDIRECTS:
        raise invalid(f"Invalid {param}: must be one of {', '.join(REDIRECTS)}", param)
    return redirect


def _customer(value: Any, param: str, ctx: RuleContext) -> str:
    customer = as_str(value, param)
    if not customer.startswith("cus_"):
        raise ApiError(f"No such customer: '{customer}'", param=param,
                       code="resource_missing")
    return customer


def _customer_email(value: Any, param: str, ctx: RuleContext) -> str:
    email = as_str(value, param)
    if "@" not in email:
        raise invalid("Invalid email address: " + email, param, "email_invalid")
    return email


def _client_reference_id(value: Any, param: str, ctx: RuleContext) -> str:
    text = as_str(value, param)
    if len(text) > 200:
        raise invalid("client_reference_id can be at most 200 characters.", param)
    return text


HINT_RULES: tuple[ParamRule, ...] = (ParamRule("ui_mode", _old_ui_mode),)
"""Checked before the schema: an old ``ui_mode`` gets the value that replaced it."""

CREATE_RULES: tuple[ParamRule, ...] = (
    ParamRule("success_url", plain(as_url)),
    ParamRule("cancel_url", plain(as_url)),
    ParamRule("return_url", _return_url),
    ParamRule("redirect_on_completion", _redirect_on_completion),
    ParamRule("customer", _customer),
    ParamRule("customer_email", _customer_email),
    ParamRule("client_reference_id", _client_reference_id),
)
"""What Stripe checks beyond its schema (run after it): well-formed URLs and email,
a customer id, the length of ``client_reference_id``."""
