"""The default validator: the seed's order shape, every field typed and bounded."""

from __future__ import annotations

from typing import Any

import pytest

from stripe_checkout_mw import DefaultValidator, ValidationError

ITEM = {"price": "tee", "quantity": 1}


def check(body: dict[str, Any], **options: Any) -> dict[str, Any]:
    return DefaultValidator(**options)(body, {})


def test_a_valid_order_is_cleaned() -> None:
    order = check({"line_items": [{"price": "tee", "quantity": 2}],
                   "customer_email": "ann@example.com"})
    assert order == {"line_items": [{"price": "tee", "quantity": 2}],
                     "customer_email": "ann@example.com"}


def test_seed_body_passes() -> None:
    seed = {
        "line_items": [{"quantity": 1, "price_data": {
            "currency": "aud", "unit_amount": 100,
            "product_data": {"name": "canva test 1", "description": "court canva"}}}],
        "customer_email": "blhxp1@gmail.com",
    }
    assert check(seed, require_email=True)["line_items"][0]["price_data"]["unit_amount"] == 100


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({}, "line_items", id="missing-items"),
        pytest.param({"line_items": []}, "line_items", id="empty-items"),
        pytest.param({"line_items": {"price": "tee"}}, "line_items", id="items-not-list"),
        pytest.param({"line_items": ["tee"]}, "line_items[0]", id="item-not-object"),
        pytest.param({"line_items": [{"price": "tee"}]}, "line_items[0][quantity]",
                     id="no-quantity"),
        pytest.param({"line_items": [{"price": "tee", "quantity": 0}]},
                     "line_items[0][quantity]", id="zero"),
        pytest.param({"line_items": [{"price": "tee", "quantity": -1}]},
                     "line_items[0][quantity]", id="negative"),
        pytest.param({"line_items": [{"price": "tee", "quantity": 1.0}]},
                     "line_items[0][quantity]", id="float"),
        pytest.param({"line_items": [{"price": "tee", "quantity": "1"}]},
                     "line_items[0][quantity]", id="string"),
        pytest.param({"line_items": [{"price": "tee", "quantity": True}]},
                     "line_items[0][quantity]", id="bool"),
        pytest.param({"line_items": [{"price": "tee", "quantity": 1000}]},
                     "line_items[0][quantity]", id="too-many"),
        pytest.param({"line_items": [{"quantity": 1}]}, "line_items[0]", id="neither-price"),
        pytest.param({"line_items": [{"price": "t", "price_data": {}, "quantity": 1}]},
                     "line_items[0]", id="both-prices"),
        pytest.param({"line_items": [{"price": 5, "quantity": 1}]}, "line_items[0][price]",
                     id="price-not-string"),
        pytest.param({"line_items": [{"price_data": "x", "quantity": 1}]},
                     "line_items[0][price_data]", id="price-data-not-object"),
        pytest.param({"line_items": [{**ITEM, "unit_amount": 1}]},
                     "line_items[0][unit_amount]", id="unknown-item-field"),
        pytest.param({"line_items": [ITEM], "success_url": "https://evil.example"},
                     "success_url", id="unknown-top-field"),
        pytest.param({"line_items": [ITEM], "payment_method_types": ["card"]},
                     "payment_method_types", id="removed-param"),
        pytest.param({"line_items": [ITEM] * 101}, "line_items", id="over-100"),
        pytest.param({"line_items": [ITEM], "customer_email": "not-an-email"},
                     "customer_email", id="bad-email"),
        pytest.param({"line_items": [ITEM], "customer_email": "a@b.c\r\nBcc: x@y.z"},
                     "customer_email", id="header-injection"),
        pytest.param({"line_items": [ITEM], "customer_email": 7}, "customer_email",
                     id="email-not-string"),
    ],
)
def test_bad_orders_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check(body)
    assert caught.value.param == param


def test_email_required_when_configured() -> None:
    with pytest.raises(ValidationError) as caught:
        check({"line_items": [ITEM]}, require_email=True)
    assert caught.value.param == "customer_email"
    assert check({"line_items": [ITEM]})["customer_email"] is None


def test_unicode_email_is_accepted() -> None:
    assert check({"line_items": [ITEM], "customer_email": "zoë@exämple.de"})["customer_email"]


def test_limits_are_configurable() -> None:
    assert check({"line_items": [{"price": "tee", "quantity": 5000}]}, max_quantity=5000)
    with pytest.raises(ValidationError):
        check({"line_items": [ITEM] * 21}, max_items=20)
