"""Customers: ``/v1/customers`` (create, retrieve, list with ``email``) and
:func:`new_customer`, which Checkout uses when it creates one.

A new customer emits ``customer.created``. The list's ``email`` filter is exact and
case-sensitive, as Stripe's is (search, which is eventually consistent at Stripe,
is not emulated).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .errors import invalid, no_such
from .events import emit
from .ids import new_id
from .lists import filter_created, list_object
from .params import as_metadata, as_str
from .rules import ParamRule, RuleContext, plain

if TYPE_CHECKING:
    from .routes import ApiCall
    from .state import StripeState

__all__ = [
    "CREATE_RULES",
    "create_customer",
    "list_customers",
    "new_customer",
    "retrieve_customer",
    "stored_customer",
]


def _email(value: Any, param: str, ctx: RuleContext) -> str:
    email = as_str(value, param)
    if len(email) > 512:
        raise invalid("email can be at most 512 characters.", param)
    return email


CREATE_RULES: tuple[ParamRule, ...] = (
    ParamRule("email", _email),
    ParamRule("name", plain(as_str)),
    ParamRule("description", plain(as_str)),
    ParamRule("phone", plain(as_str)),
    ParamRule("metadata", plain(as_metadata)),
)


def new_customer(
    state: StripeState,
    *,
    email: str | None,
    name: str | None = None,
    description: str | None = None,
    phone: str | None = None,
    metadata: dict[str, str] | None = None,
    request: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Store a customer (not a copy) and emit ``customer.created``."""
    customer_id = new_id("cus_", 14)
    customer: dict[str, Any] = {
        "id": customer_id,
        "object": "customer",
        "address": None,
        "balance": 0,
        "business_name": None,
        "created": state.now(),
        "currency": None,
        "customer_account": None,
        "default_source": None,
        "delinquent": False,
        "description": description,
        "discount": None,
        "email": email,
        "individual_name": None,
        "invoice_prefix": new_id("", 8).upper(),
        "invoice_settings": {"custom_fields": None, "default_payment_method": None,
                             "footer": None, "rendering_options": None},
        "livemode": False,
        "metadata": metadata or {},
        "name": name,
        "next_invoice_sequence": 1,
        "phone": phone,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }
    state.billing.customers[customer_id] = customer
    emit(state, "customer.created", customer, request)
    return customer


def stored_customer(state: StripeState, customer_id: str, param: str = "id") -> dict[str, Any]:
    """The stored customer (not a copy); a 404 naming ``param`` when there is none."""
    customer = state.billing.customers.get(customer_id)
    if customer is None:
        raise no_such("customer", customer_id, param)
    return customer


def create_customer(state: StripeState, call: ApiCall) -> dict[str, Any]:
    valid = call.valid
    return copy.deepcopy(new_customer(
        state, email=valid.get("email"), name=valid.get("name"),
        description=valid.get("description"), phone=valid.get("phone"),
        metadata=valid.get("metadata"), request=call.request))


def retrieve_customer(state: StripeState, call: ApiCall) -> dict[str, Any]:
    return copy.deepcopy(stored_customer(state, call.ids[0]))


def list_customers(state: StripeState, call: ApiCall) -> dict[str, Any]:
    params = call.params
    customers = list(reversed(state.billing.customers.values()))
    if "email" in params:
        email = as_str(params["email"], "email")
        customers = [c for c in customers if c["email"] == email]
    if "test_clock" in params:
        customers = []  # no customer of the emulator is on a test clock
    return list_object(filter_created(customers, params), "/v1/customers", params)
