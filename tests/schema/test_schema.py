"""The schema read from the installed SDK: its shape, its rules, and that nothing but a
SchemaError ever comes out of it."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import re
import typing
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
import typing_extensions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stripe._encode import _api_encode
from stripe._request_options import RequestOptions

from stripe_checkout_mw import schema
from stripe_checkout_mw.schema import (
    ArrayNode,
    EnumNode,
    MapNode,
    ObjectNode,
    SchemaError,
    UnionNode,
    sdk,
)
from stripe_checkout_mw.testing.forms import decode_form

CREATE = "checkout.sessions.create"


def _item(**extra: Any) -> dict[str, Any]:
    data = {"currency": "usd", "unit_amount": 500, "product_data": {"name": "Tee"}}
    data.update(extra)
    return {"price_data": data, "quantity": 1}


def _session(**extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "mode": "payment",
        "success_url": "https://shop.example/ok?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://shop.example/cart",
        "line_items": [_item()],
    }
    params.update(extra)
    return params


def _refusal(params: Any, endpoint: str | type = CREATE, **kwargs: Any) -> SchemaError:
    with pytest.raises(SchemaError) as caught:
        schema.validate(endpoint, params, **kwargs)
    return caught.value


def _wire(params: dict[str, Any]) -> dict[str, Any]:
    """The params as the SDK puts them on the wire and the emulator decodes them."""
    return decode_form(urlencode(list(_api_encode(params))))


# --- the walked schema follows the SDK --------------------------------------------------


def _typeddicts(node: schema.Node, seen: set[int]) -> list[ObjectNode]:
    if id(node) in seen:
        return []
    seen.add(id(node))
    found: list[ObjectNode] = []
    if isinstance(node, ObjectNode):
        found.append(node)
        for f in node.fields.values():
            found += _typeddicts(f.node, seen)
    elif isinstance(node, ArrayNode):
        found += _typeddicts(node.item, seen)
    elif isinstance(node, MapNode):
        found += _typeddicts(node.value, seen)
    elif isinstance(node, UnionNode):
        for option in node.options:
            found += _typeddicts(option, seen)
    return found


@pytest.mark.parametrize("endpoint", sorted(schema.ENDPOINTS))
def test_every_key_and_required_flag_comes_from_the_sdk(endpoint: str) -> None:
    cls = schema.params_class(schema.ENDPOINTS[endpoint])
    root = schema.schema_for(endpoint)
    assert set(root.fields) == set(cls.__annotations__) - set(RequestOptions.__annotations__)
    for obj in _typeddicts(root, set()):
        assert obj.cls is not None
        assert {k for k, f in obj.fields.items() if f.required} == set(
            obj.cls.__required_keys__  # type: ignore[attr-defined]
        ) - set(RequestOptions.__annotations__), obj.name


def test_the_rules_apply_however_the_endpoint_is_named() -> None:
    cls = schema.params_class("checkout.SessionCreateParams")
    for endpoint in (CREATE, "checkout.SessionCreateParams", cls):
        assert _refusal(_session(line_items=None), endpoint).param == "line_items"


def test_the_schema_is_walked_once_and_cached() -> None:
    assert schema.schema_for(CREATE) is schema.schema_for("checkout.SessionCreateParams")
    assert schema.schema_for(CREATE) is schema.schema_for(
        schema.params_class("checkout.SessionCreateParams")
    )


@pytest.mark.parametrize(
    "name",
    ["CustomerCreateParams", "SubscriptionCreateParams", "billing_portal.SessionCreateParams",
     "RefundCreateParams"],
)
def test_other_endpoints_are_one_class_name_away(name: str) -> None:
    root = schema.schema_for(name)
    assert root.fields and "expand" in root.fields
    with pytest.raises(SchemaError) as caught:
        schema.validate(name, {"no_such_parameter_here": "1"})
    assert caught.value.param == "no_such_parameter_here"


def test_enums_are_closed_and_an_empty_literal_still_unsets() -> None:
    locale = schema.node_at(CREATE, ("locale",))
    assert isinstance(locale, EnumNode) and "fr-CA" in locale.values
    assert _refusal(_session(locale="english")).param == "locale"
    assert _refusal(_session(submit_type="buy")).param == "submit_type"
    assert _refusal(_session(billing_address_collection="always")).param == (
        "billing_address_collection"
    )
    # "Literal['']|str": any colour, or '' to unset it; not an enum of one value.
    colour = {"branding_settings": {"background_color": "#ffffff"}}
    assert schema.validate(CREATE, _session(**colour))["branding_settings"]
    assert schema.validate(CREATE, _session(branding_settings={"background_color": ""}))


def test_allowed_countries_is_stripes_list_of_238() -> None:
    countries = schema.node_at(
        CREATE, ("shipping_address_collection", "allowed_countries", "[]")
    )
    assert isinstance(countries, EnumNode)
    assert len(countries.values) == 238
    assert {"US", "DE", "JP", "GB"} <= set(countries.values)
    assert not {"CU", "IR", "KP", "SY", "VI", "AS", "XX"} & set(countries.values)
    error = _refusal(_session(shipping_address_collection={"allowed_countries": ["US", "CU"]}))
    assert error.param == "shipping_address_collection[allowed_countries][1]"


# --- names, types, both input forms ------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "param", "code"),
    [
        pytest.param(_session(line_items=[{"price": 5, "quantity": 1}]), None, None,
                     id="an int price id is a valid string on the wire"),
        pytest.param(_session(line_items=[{"price": {"id": "x"}, "quantity": 1}]),
                     "line_items[0][price]", "parameter_invalid", id="hash for string"),
        pytest.param(_session(line_items=[{"price": "p", "quantity": "two"}]),
                     "line_items[0][quantity]", "parameter_invalid_integer", id="integer"),
        pytest.param(_session(line_items=[{"price": "p", "quantity": True}]),
                     "line_items[0][quantity]", "parameter_invalid_integer", id="bool as int"),
        pytest.param(_session(allow_promotion_codes="yes"), "allow_promotion_codes",
                     "parameter_invalid", id="boolean"),
        pytest.param(_session(line_items="tee"), "line_items", "parameter_invalid",
                     id="array"),
        pytest.param(_session(metadata="x"), "metadata", "parameter_invalid", id="hash"),
        pytest.param(_session(line_items=[_item(recurring={"interval": "fortnight"})]),
                     "line_items[0][price_data][recurring][interval]", "parameter_invalid",
                     id="nested enum"),
        pytest.param(_session(line_items=[_item(product_data={"name": "a", "colour": "red"})]),
                     "line_items[0][price_data][product_data][colour]", "parameter_unknown",
                     id="unknown at depth 4"),
        pytest.param(_session(subscription_data={"trial_days": 3}, mode="subscription"),
                     "subscription_data[trial_days]", "parameter_unknown", id="unknown nested"),
        pytest.param(_session(payment_method_types=["card"]), "payment_method_types",
                     "parameter_unknown", id="removed at this API version"),
        pytest.param(_session(line_items=[{"price_data": {"unit_amount": 1,
                                                          "product": "prod_1"}}]),
                     "line_items[0][price_data][currency]", "parameter_missing",
                     id="required nested"),
        pytest.param(_session(success_url=""), "success_url", "parameter_invalid_empty",
                     id="empty string"),
        pytest.param(_session(expires_at=10**30), "expires_at", "parameter_invalid_integer",
                     id="beyond 64 bits"),
    ],
)
def test_errors_name_the_parameter_as_stripe_does(
    params: dict[str, Any], param: str | None, code: str | None
) -> None:
    for given_params in (params, _wire(params)):
        if param is None:
            schema.validate(CREATE, given_params)
            continue
        error = _refusal(given_params)
        assert (error.param, error.code) == (param, code)


def test_a_form_body_and_a_python_dict_are_judged_alike_and_coerced() -> None:
    params = _session(
        allow_promotion_codes=True,
        expires_at=1_900_000_000,
        metadata={"0": "zero", "order": "42"},
        line_items=[_item(unit_amount_decimal=None), {"price": "price_1", "quantity": 3,
                                                      "adjustable_quantity": {"enabled": False}}],
        shipping_address_collection={"allowed_countries": ["US", "CA"]},
        custom_fields=[{"key": "gift", "label": {"type": "custom", "custom": "Gift?"},
                        "type": "dropdown",
                        "dropdown": {"options": [{"label": "Yes", "value": "y"}]}}],
    )
    wire = _wire(params)
    assert wire["line_items"][1]["quantity"] == "3"  # really the strings of the wire
    coerced = schema.validate(CREATE, wire)
    assert coerced == schema.validate(CREATE, params)
    assert coerced["allow_promotion_codes"] is True
    assert coerced["expires_at"] == 1_900_000_000
    assert coerced["line_items"][1] == {
        "price": "price_1", "quantity": 3, "adjustable_quantity": {"enabled": False}
    }
    assert coerced["metadata"] == {"0": "zero", "order": "42"}


def test_none_and_empty_containers_are_absent_as_the_sdk_sends_them() -> None:
    assert "customer" not in schema.validate(CREATE, _session(customer=None, discounts=[]))
    assert _refusal(_session(line_items=[])).param == "line_items"


# --- the documented cross-field rules ------------------------------------------------------


_SUB_ITEM = _item(recurring={"interval": "month"})
_SUB = _session(mode="subscription", line_items=[_SUB_ITEM])


@pytest.mark.parametrize(
    ("params", "param"),
    [
        pytest.param(_session(line_items=None), "line_items", id="line_items in payment"),
        pytest.param({**_SUB, "line_items": None}, "line_items", id="line_items in sub"),
        pytest.param(_session(line_items=[_item()] * 101), "line_items[100]",
                     id="100 items in payment"),
        pytest.param({**_SUB, "line_items": [_SUB_ITEM] * 21}, "line_items[20]",
                     id="20 recurring"),
        pytest.param({**_SUB, "line_items": [_SUB_ITEM] + [_item()] * 21}, "line_items[21]",
                     id="20 one-time"),
        pytest.param(_session(line_items=[_SUB_ITEM]),
                     "line_items[0][price_data][recurring]", id="recurring in payment"),
        pytest.param(_session(mode="subscription"), "line_items", id="no recurring in sub"),
        pytest.param(_session(line_items=[{"quantity": 1}]), "line_items[0][price]",
                     id="price or price_data"),
        pytest.param(_session(line_items=[{"price": "p", "price_data": _item()["price_data"]}]),
                     "line_items[0][price_data]", id="not both price and price_data"),
        pytest.param(_session(line_items=[{"price_data": {"currency": "usd",
                                                          "unit_amount": 1}}]),
                     "line_items[0][price_data][product]", id="product or product_data"),
        pytest.param(_session(line_items=[_item(unit_amount=None)]),
                     "line_items[0][price_data][unit_amount]", id="an amount"),
        pytest.param(_session(line_items=[_item(unit_amount_decimal="1.5")]),
                     "line_items[0][price_data][unit_amount_decimal]", id="one amount"),
        pytest.param({**_SUB, "line_items": [_item(recurring={"interval": "month",
                                                              "interval_count": 37})]},
                     "line_items[0][price_data][recurring][interval_count]",
                     id="3 years at most"),
        pytest.param(_session(line_items=[{"price": "p", "quantity": 1, "adjustable_quantity":
                                           {"enabled": True, "maximum": 1_000_000}}]),
                     "line_items[0][adjustable_quantity][maximum]", id="999999"),
        pytest.param(_session(ui_mode="embedded_page", return_url="https://x"), "success_url",
                     id="success_url embedded"),
        pytest.param(_session(ui_mode="elements", success_url=None), "cancel_url",
                     id="cancel_url elements"),
        pytest.param(_session(permissions={"update_shipping_details": "server_only"}),
                     "permissions", id="permissions hosted"),
        pytest.param(_session(ui_mode="elements", success_url=None, cancel_url=None,
                              return_url="https://x", submit_type="pay"),
                     "submit_type", id="submit_type elements"),
        pytest.param({**_SUB, "customer_creation": "always"}, "customer_creation",
                     id="customer_creation in sub"),
        pytest.param(_session(payment_method_collection="if_required"),
                     "payment_method_collection", id="payment_method_collection payment"),
        pytest.param({**_SUB, "payment_intent_data": {"description": "x"}},
                     "payment_intent_data", id="payment_intent_data in sub"),
        pytest.param({**_SUB, "invoice_creation": {"enabled": True}}, "invoice_creation",
                     id="invoice_creation in sub"),
        pytest.param(_session(subscription_data={"trial_period_days": 7}),
                     "subscription_data", id="subscription_data in payment"),
        pytest.param({**_SUB, "subscription_data": {"trial_period_days": 0}},
                     "subscription_data[trial_period_days]", id="trial at least 1 day"),
        pytest.param(_session(setup_intent_data={"description": "x"}), "setup_intent_data",
                     id="setup_intent_data in payment"),
        pytest.param({"mode": "setup", "success_url": "https://x"}, "currency",
                     id="currency in setup"),
        pytest.param(_session(customer_update={"name": "auto"}), "customer_update",
                     id="customer_update needs customer"),
        pytest.param(_session(customer="cus_1", customer_email="a@example.com"),
                     "customer_email", id="customer or customer_email"),
        pytest.param(_session(custom_fields=[{"key": f"k{i}", "type": "text", "label": {
            "type": "custom", "custom": "L"}} for i in range(4)]), "custom_fields",
            id="3 custom fields"),
        pytest.param(_session(shipping_options=[{"shipping_rate": "shr_1"}] * 6),
                     "shipping_options", id="5 shipping options"),
        pytest.param(_session(discounts=[{"coupon": "a"}, {"coupon": "b"}]), "discounts",
                     id="one discount"),
        pytest.param(_session(line_items=[_item(currency="US dollars")]),
                     "line_items[0][price_data][currency]", id="currency code"),
        pytest.param(_session(metadata={f"k{i}": "v" for i in range(51)}), "metadata",
                     id="50 metadata keys"),
        pytest.param(_session(metadata={"k" * 41: "v"}), f"metadata[{'k' * 41}]",
                     id="metadata key length"),
        pytest.param(_session(metadata={"k": "v" * 501}), "metadata[k]",
                     id="metadata value length"),
    ],
)
def test_each_documented_rule_refuses_by_name(params: dict[str, Any], param: str) -> None:
    params = {k: v for k, v in params.items() if v is not None}
    assert _refusal(params).param == param
    assert _refusal(_wire(params)).param == param


def test_metadata_keys_cannot_hold_brackets() -> None:
    # Only a Python dict can say this: on the wire the brackets would nest.
    params = _session(line_items=[{"price": "p", "quantity": 1, "metadata": {"a[b]": "v"}}])
    assert _refusal(params).param == "line_items[0][metadata][a[b]]"


@pytest.mark.parametrize(
    "params",
    [
        pytest.param(_session(line_items=[_item()] * 100), id="100 items in payment"),
        pytest.param({**_SUB, "line_items": [_SUB_ITEM] * 20 + [_item()] * 20},
                     id="20 recurring + 20 one-time"),
        pytest.param({**_SUB, "customer": "cus_1", "customer_update": {"name": "auto"}},
                     id="customer_update with customer"),
        pytest.param(_session(customer_creation="always", invoice_creation={"enabled": True},
                              payment_intent_data={"description": "x"}), id="payment-only"),
        pytest.param({**_SUB, "payment_method_collection": "if_required",
                      "subscription_data": {"trial_period_days": 7}}, id="subscription-only"),
        pytest.param({"ui_mode": "embedded_page", "return_url": "https://x",
                      "line_items": [_item()], "mode": "payment"}, id="embedded"),
        pytest.param(_session(ui_mode="hosted_page"), id="hosted_page is the default"),
        pytest.param({"mode": "setup", "currency": "usd", "success_url": "https://x"},
                     id="setup"),
        pytest.param({"success_url": "https://x", "line_items": [_SUB_ITEM]},
                     id="mode is optional"),
        pytest.param({**_SUB, "line_items": [_item(recurring={"interval": "week",
                                                              "interval_count": 156})]},
                     id="156 weeks"),
    ],
)
def test_the_valid_variants_are_accepted(params: dict[str, Any]) -> None:
    schema.validate(CREATE, params)
    schema.validate(CREATE, _wire(params))


def test_item_limits_use_what_the_caller_knows_about_price_ids() -> None:
    items = [{"price": "price_rec", "quantity": 1}] * 21
    params = {**_SUB, "line_items": items}
    schema.validate(CREATE, params)  # price ids alone: undecidable, so not refused
    error = _refusal(params, recurring_price=lambda price: price == "price_rec")
    assert error.param == "line_items[20]"
    error = _refusal(_session(line_items=[{"price": "price_rec", "quantity": 1}]),
                     recurring_price=lambda price: True)
    assert error.param == "line_items[0][price]"


def test_partial_options_are_judged_for_the_mode_given() -> None:
    options = {"invoice_creation": {"enabled": True}}
    assert schema.validate(CREATE, options, partial=True, mode="payment") == options
    error = _refusal(options, partial=True, mode="subscription")
    assert error.param == "invoice_creation" and "subscription" in error.message
    assert _refusal({"subscription_data": {"trial_days": 3}}, partial=True,
                    mode="subscription").param == "subscription_data[trial_days]"


@pytest.mark.parametrize(
    ("endpoint", "params", "param"),
    [
        ("events.list", {"type": "a.b", "types": ["a.b"]}, "types"),
        ("events.list", {"types": [f"t{i}" for i in range(21)]}, "types"),
        ("prices.list", {"lookup_keys": [f"k{i}" for i in range(11)]}, "lookup_keys"),
        ("prices.list", {"limit": 101}, "limit"),
        ("checkout.sessions.list", {"limit": 0}, "limit"),
        ("prices.create", {"currency": "usd", "unit_amount": 1, "product": "p",
                           "recurring": {"interval": "year", "interval_count": 4}},
         "recurring[interval_count]"),
        ("products.create", {"name": "x", "images": ["u"] * 9}, "images"),
        ("prices.create", {"currency": "usd", "unit_amount": 1}, "product"),
        ("prices.create", {"currency": "usd", "unit_amount": 1, "product": "prod_1",
                           "product_data": {"name": "x"}}, "product_data"),
        ("products.create", {"images": ["u"]}, "name"),
    ],
)
def test_rules_of_the_other_endpoints(endpoint: str, params: dict[str, Any], param: str) -> None:
    assert _refusal(params, endpoint).param == param


def _normalised_source(module_name: str) -> str:
    return re.sub(r"\s+", " ", inspect.getsource(importlib.import_module(module_name)))


def test_every_rule_quotes_the_installed_sdk_or_names_the_api_limit() -> None:
    assert schema.RULES
    for rule in schema.RULES:
        assert rule.endpoint in schema.ENDPOINTS
        if rule.source == "API limit":
            assert rule.quote.startswith("https://docs.stripe.com/")
            continue
        module = schema.params_class(rule.source).__module__
        quote = re.sub(r"\s+", " ", rule.quote)
        assert quote in _normalised_source(module), (rule.params, rule.quote)
        for name in rule.params:
            assert name.split(".")[0] in schema.schema_for(rule.endpoint).fields, name


# --- bad input ----------------------------------------------------------------------------

_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.binary(max_size=4) | st.decimals(allow_nan=True) | st.sampled_from(
        ["", "true", "false", "0", "-1", "1.5", "payment", "subscription", "usd", "US",
         "embedded_page", "elements", "month", "price_1", "cus_1", "1e400", "nan"])
)
_KEYS = st.sampled_from(sorted(schema.schema_for(CREATE).fields)) | st.sampled_from(
    ["price_data", "price", "quantity", "product_data", "name", "recurring", "interval",
     "interval_count", "currency", "unit_amount", "0", "1", "metadata", "enabled"]
) | st.text(max_size=6)
_ANY_KEYS = _KEYS | st.integers() | st.none() | st.tuples(st.integers()) | st.booleans()
_TREES = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(_ANY_KEYS, children, max_size=4)
    | st.tuples(children),
    max_leaves=30,
)
_FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow])


def _judge(endpoint: str, params: Any) -> None:
    try:
        out = schema.validate(endpoint, params)
    except SchemaError as exc:
        assert isinstance(exc.param, str) and isinstance(exc.message, str)
        assert exc.code.startswith("parameter_")
    else:
        assert isinstance(out, dict)


@pytest.mark.property
@pytest.mark.slow
@_FUZZ
@given(st.sampled_from(sorted(schema.ENDPOINTS)), st.dictionaries(_ANY_KEYS, _TREES,
                                                                   max_size=6) | _TREES)
def test_arbitrary_input_raises_only_schema_errors(endpoint: str, params: Any) -> None:
    _judge(endpoint, params)


@pytest.mark.property
@pytest.mark.slow
@_FUZZ
@given(st.dictionaries(_KEYS, _TREES, max_size=6), st.sampled_from(
    ["payment", "subscription", "setup", None]))
def test_arbitrary_input_merged_into_a_valid_session_raises_only_schema_errors(
    extra: dict[Any, Any], mode: str | None
) -> None:
    base: dict[Any, Any] = _session() if mode is None else _session(mode=mode)
    base.update(extra)
    _judge(CREATE, base)
    _judge(CREATE, {"line_items": [extra], "mode": mode})
    if isinstance(extra, dict) and all(isinstance(k, str) for k in extra):
        try:
            wire = _wire(extra)
        except Exception:
            return
        _judge(CREATE, wire)


_JUNK = _SCALARS | st.lists(_SCALARS, max_size=2) | st.dictionaries(_ANY_KEYS, _SCALARS,
                                                                    max_size=2)
_WIRE = {bool: st.sampled_from(["true", "false"]) | st.booleans(),
         int: st.integers() | st.integers().map(str),
         float: st.floats() | st.floats().map(str),
         Decimal: st.decimals() | st.decimals().map(str)}
_MADE: dict[tuple[int, int], st.SearchStrategy[Any]] = {}


def _from_schema(node: schema.Node, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values shaped by the schema (mostly), with junk mixed in at every depth."""
    key = (id(node), depth)
    if key in _MADE:
        return _MADE[key]
    shaped: st.SearchStrategy[Any]
    if depth > 5:
        shaped = _JUNK
    elif isinstance(node, ObjectNode):
        fields = node.fields

        def pick(names: list[str]) -> st.SearchStrategy[Any]:
            return st.fixed_dictionaries(
                {name: _from_schema(fields[name].node, depth + 1) for name in names})

        shaped = st.lists(st.sampled_from(sorted(fields)), max_size=4, unique=True).flatmap(pick)
    elif isinstance(node, ArrayNode):
        shaped = st.lists(st.deferred(lambda: _from_schema(node.item, depth + 1)), max_size=3)
    elif isinstance(node, MapNode):
        shaped = st.dictionaries(st.text(max_size=5), st.deferred(
            lambda: _from_schema(node.value, depth + 1)), max_size=3)
    elif isinstance(node, EnumNode):
        shaped = st.sampled_from(node.values)
    elif isinstance(node, UnionNode):
        shaped = st.one_of([_from_schema(option, depth) for option in node.options])
    elif isinstance(node, schema.ScalarNode):
        shaped = _WIRE.get(node.type, st.text(max_size=10))
    else:
        shaped = _JUNK
    made = st.one_of(shaped, shaped, shaped, _JUNK)
    _MADE[key] = made
    return made


@pytest.mark.property
@pytest.mark.slow
@settings(max_examples=1000, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.sampled_from(sorted(schema.ENDPOINTS)).flatmap(
    lambda endpoint: st.tuples(st.just(endpoint), _from_schema(schema.schema_for(endpoint)))))
def test_schema_shaped_input_raises_only_schema_errors(case: tuple[str, Any]) -> None:
    endpoint, params = case
    _judge(endpoint, params)
    for mode in ("payment", "subscription", "setup"):
        with contextlib.suppress(SchemaError):
            schema.validate(endpoint, params, partial=True, mode=mode, now=1_800_000_000,
                            recurring_price=lambda price: len(price) % 2 == 0)


def _paths_of(node: schema.Node, depth: int = 0,
              seen: frozenset[int] = frozenset()) -> list[list[Any]]:
    """Every path into ``node`` (keys, ``0`` for a list item, ``"k"`` for a map value)."""
    if depth > 6 or id(node) in seen:
        return []
    seen = seen | {id(node)}
    found: list[list[Any]] = []
    options = node.options if isinstance(node, UnionNode) else (node,)
    for option in options:
        if isinstance(option, ObjectNode):
            for name, f in option.fields.items():
                found.append([name])
                found += [[name, *rest] for rest in _paths_of(f.node, depth + 1, seen)]
        elif isinstance(option, ArrayNode):
            found.append([0])
            found += [[0, *rest] for rest in _paths_of(option.item, depth + 1, seen)]
        elif isinstance(option, MapNode):
            found.append(["k"])
            found += [["k", *rest] for rest in _paths_of(option.value, depth + 1, seen)]
    return found


def _nest(path: list[Any], leaf: Any) -> Any:
    for step in reversed(path):
        leaf = [leaf] if step == 0 else {step: leaf}
    return leaf


_LEAVES: list[Any] = ["x", "", "1", "true", {"k": "v"}, ["x"], {"0": "x"}, 5, True, None,
                      [[]], [None], {"": ""}, 1.5]


@pytest.mark.parametrize("endpoint", sorted(schema.ENDPOINTS))
def test_a_wrong_value_at_every_path_of_the_schema_is_a_schema_error(endpoint: str) -> None:
    paths = _paths_of(schema.schema_for(endpoint))
    assert paths
    for path in paths:
        for leaf in _LEAVES:
            params = _nest(path, leaf)
            _judge(endpoint, params)
            if isinstance(params, dict):
                _judge(endpoint, _wire(params))


def test_deep_nesting_is_a_schema_error() -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = {"a": deep}
    _judge(CREATE, {"metadata": deep})
    listed: Any = "x"
    for _ in range(5000):
        listed = [listed]
    _judge(CREATE, {"line_items": listed})
    assert typing_extensions.is_typeddict(schema.params_class("checkout.SessionCreateParams"))


def _shape(node: schema.Node, seen: frozenset[int] = frozenset()) -> Any:
    if id(node) in seen:
        return "..."
    seen = seen | {id(node)}
    if isinstance(node, ObjectNode):
        return {k: (f.required, _shape(f.node, seen)) for k, f in node.fields.items()}
    if isinstance(node, ArrayNode):
        return ["[]", _shape(node.item, seen)]
    if isinstance(node, MapNode):
        return ["{}", _shape(node.value, seen)]
    if isinstance(node, UnionNode):
        return ["|", *[_shape(o, seen) for o in node.options]]
    if isinstance(node, EnumNode):
        return ["enum", *node.values]
    return [node.kind, getattr(node, "allow_empty", None)]


def test_the_walk_does_not_need_get_type_hints_to_read_pipes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before Python 3.10 get_type_hints cannot evaluate the SDK's "Literal[...]|str"
    strings; the fallback must walk to the same schema."""
    expected = _shape(schema.schema_for(CREATE))

    def cannot(*args: Any, **kwargs: Any) -> Any:
        raise TypeError("unsupported operand type(s) for |: '_LiteralGenericAlias' and 'type'")

    monkeypatch.setattr(typing, "get_type_hints", cannot)
    walked = sdk._Builder().object(schema.params_class("checkout.SessionCreateParams"))
    assert _shape(walked) == expected
