"""The emulator's params check: every route goes through one table-driven validator.

These drive :class:`StripeState` directly (no sockets): the table, not the HTTP
layer, is what is under test here; tests/testing/test_emulator.py covers the same
behaviour through the real SDK.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from stripe_checkout_mw.testing.api import ApiError, StripeState
from stripe_checkout_mw.testing.api.routes import ROUTES
from stripe_checkout_mw.testing.api.validation import ENDPOINTS, validate_params

NOW = 1_800_000_000
BASE = {"mode": "payment", "success_url": "https://shop.test/ok",
        "line_items": [{"price_data": {"currency": "usd", "unit_amount": "500",
                                       "product_data": {"name": "Mug"}},
                        "quantity": "2"}]}


def _state() -> StripeState:
    return StripeState(lock=threading.RLock(), api_base="http://127.0.0.1:1",
                       on_event=lambda event: None, clock=lambda: NOW)


def _refusal(state: StripeState, params: dict[str, Any], method: str = "POST",
             path: str = "/v1/checkout/sessions") -> dict[str, Any]:
    with pytest.raises(ApiError) as info:
        state.handle(method, path, params, idempotency_key=None, request_id="req_1")
    error: dict[str, Any] = info.value.body()["error"]
    return error


def test_every_route_has_an_endpoint_entry_and_every_entry_a_route() -> None:
    routed = [route.endpoint for route in ROUTES]
    assert len(routed) == len(set(routed))
    assert set(routed) == set(ENDPOINTS)


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: route.endpoint)
def test_every_route_refuses_an_unknown_parameter_by_name(route: Any) -> None:
    path = route.pattern.pattern.replace("([^/]+)", "missing_id")
    error = _refusal(_state(), {"no_such_param": "1"}, route.method, path)
    assert error["code"] == "parameter_unknown"
    assert error["param"] == "no_such_param"


def test_a_removed_parameter_is_refused_with_its_hint() -> None:
    error = _refusal(_state(), {**BASE, "payment_method_types": ["card"]})
    assert error["param"] == "payment_method_types"
    assert "excluded_payment_method_types" in error["message"]


def test_the_first_rule_of_the_table_that_fails_is_the_error() -> None:
    state = _state()
    # Stripe's schema first, then the emulator's own rows in their order.
    error = _refusal(state, {**BASE, "ui_mode": "nope", "success_url": "nope"})
    assert error["param"] == "ui_mode"
    error = _refusal(state, {**BASE, "customer": "bad", "success_url": "nope"})
    assert error["param"] == "success_url"


def test_mutually_exclusive_parameters_name_the_second_one() -> None:
    error = _refusal(_state(), {**BASE, "customer": "bad", "customer_email": "a@b.test"})
    assert error["param"] == "customer_email"
    assert error["message"] == ("You may only specify one of these parameters: customer, "
                                "customer_email.")


def test_a_rule_sees_the_values_checked_before_it() -> None:
    error = _refusal(_state(), {**BASE, "subscription_data": {"trial_period_days": "3"}})
    assert error["param"] == "subscription_data"
    assert "only be used in subscription mode" in error["message"]


def test_a_refused_request_creates_nothing() -> None:
    state = _state()
    _refusal(state, {**BASE, "expires_at": str(NOW + 60)})
    assert (state.sessions, state.products, state.prices, state.events) == ({}, {}, {}, [])


def test_the_validator_returns_the_coerced_values_the_handler_uses() -> None:
    valid = validate_params(
        "checkout.sessions.create",
        {**BASE, "allow_promotion_codes": "true", "expires_at": str(NOW + 3600),
         "metadata": {"order": "7"}, "automatic_tax": {"enabled": "true"}},
        now=NOW,
    )
    assert valid["mode"] == "payment"
    assert valid["allow_promotion_codes"] is True
    assert valid["expires_at"] == NOW + 3600
    assert valid["metadata"] == {"order": "7"}
    assert valid["automatic_tax"]["enabled"] is True
    assert valid["line_items"][0]["quantity"] == 2
    assert validate_params("prices.list", {"limit": "3"}, now=NOW) == {"limit": 3}

    state = _state()
    session = state.handle("POST", "/v1/checkout/sessions",
                           {**BASE, "allow_promotion_codes": "true",
                            "expires_at": str(NOW + 3600), "metadata": {"order": "7"}},
                           idempotency_key=None, request_id="req_1").body
    assert session["allow_promotion_codes"] is True
    assert session["expires_at"] == NOW + 3600
    assert session["metadata"] == {"order": "7"}
    assert session["created"] == NOW
    assert session["amount_total"] == 1000
