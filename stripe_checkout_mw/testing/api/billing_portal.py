"""Billing portal sessions: ``POST /v1/billing_portal/sessions``.

A session names a customer and a ``return_url``; its ``url`` is the emulator's
stand-in portal page (:mod:`stripe_checkout_mw.testing.portal`), where the customer
cancels at period end, resumes, switches between the shop's recurring prices and
updates their card. Creating one emits ``billing_portal.session.created``.
``flow_data``, ``on_behalf_of`` and ``customer_account`` are refused by name: the
emulator has no deep-linked flows or connected accounts.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .customers import stored_customer
from .errors import invalid, missing
from .events import emit
from .ids import new_id
from .params import as_str, as_url
from .rules import ParamRule, RuleContext, plain

if TYPE_CHECKING:
    from .routes import ApiCall
    from .state import StripeState

__all__ = ["CREATE_RULES", "DEFAULT_CONFIGURATION", "create_session"]

DEFAULT_CONFIGURATION = "bpc_emulator_default"
_UNSUPPORTED = ("flow_data", "on_behalf_of", "customer_account", "after_expiration")


def _configuration(value: Any, param: str, ctx: RuleContext) -> str:
    configuration = as_str(value, param)
    if not configuration.startswith("bpc_"):
        raise invalid(f"No such configuration: '{configuration}'", param,
                      "resource_missing")
    return configuration


CREATE_RULES: tuple[ParamRule, ...] = (
    ParamRule("customer", plain(as_str), exclusive_with=("customer_account",)),
    ParamRule("return_url", plain(as_url)),
    ParamRule("configuration", _configuration),
    ParamRule("locale", plain(as_str)),
)


def create_session(state: StripeState, call: ApiCall) -> dict[str, Any]:
    valid = call.valid
    for name in _UNSUPPORTED:
        if name in call.params:
            raise invalid(f"The emulator does not support {name} on billing portal "
                          "sessions.", name)
    if "customer" not in valid:
        raise missing("customer")
    customer = stored_customer(state, valid["customer"], "customer")
    session_id = new_id("bps_")
    portal: dict[str, Any] = {
        "id": session_id,
        "object": "billing_portal.session",
        "after_expiration": None,
        "configuration": valid.get("configuration", DEFAULT_CONFIGURATION),
        "created": call.now,
        "customer": customer["id"],
        "customer_account": None,
        "flow": None,
        "livemode": False,
        "locale": valid.get("locale"),
        "on_behalf_of": None,
        "return_url": valid.get("return_url"),
        "url": f"{state.api_base}/portal/{session_id}",
    }
    state.billing.portal_sessions[session_id] = portal
    emit(state, "billing_portal.session.created", portal, call.request)
    return copy.deepcopy(portal)
