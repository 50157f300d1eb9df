"""The emulator against Stripe's schema as the installed SDK declares it.

- A probe generated from the schema (a valid request per parameter and per nested
  key, then each mutated at every depth: wrong type, bad enum value, unknown key,
  missing required key) is sent over HTTP; the emulator's accept/reject must agree
  with :func:`stripe_checkout_mw.schema.validate` on at least 99% of the decidable
  cases, never answer 5xx, and name the parameter in every refusal.
- Every field the SDK's resource classes declare is on the emulator's objects, with
  the declared type; a field or parameter an SDK upgrade adds fails here first.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stripe._encode import _api_encode
from stripe._error_object import ErrorObject

from stripe_checkout_mw import schema
from stripe_checkout_mw.schema import (
    ArrayNode,
    EnumNode,
    MapNode,
    Node,
    ObjectNode,
    ScalarNode,
    SchemaError,
    UnionNode,
)
from stripe_checkout_mw.testing import StripeEmulator
from stripe_checkout_mw.testing.api import ApiError, StripeState
from stripe_checkout_mw.testing.api.checkout_sessions import NOT_ON_THE_SESSION
from stripe_checkout_mw.testing.api.routes import ROUTES
from stripe_checkout_mw.testing.api.shapes import declared, problems
from stripe_checkout_mw.testing.api.validation import ENDPOINTS
from stripe_checkout_mw.testing.forms import FormError, decode_form

CREATE = "checkout.sessions.create"
_ONE_TIME = {"currency": "usd", "unit_amount": 500, "product_data": {"name": "Tee"}}
_RECURRING = {**_ONE_TIME, "recurring": {"interval": "month"}}
BASES: dict[str, dict[str, Any]] = {
    "payment": {"mode": "payment", "success_url": "https://shop.example/ok",
                "line_items": [{"price_data": _ONE_TIME, "quantity": 1}]},
    "subscription": {"mode": "subscription", "success_url": "https://shop.example/ok",
                     "line_items": [{"price_data": _RECURRING, "quantity": 1}]},
    "setup": {"mode": "setup", "success_url": "https://shop.example/ok", "currency": "usd"},
}
_PREFERRED = {"ui_mode": "hosted_page", "mode": "payment", "interval": "month",
              "type": "custom"}


# --- generating requests from the schema -------------------------------------------------


def _option(node: Node, value: Any) -> Node:
    """The branch of a union that ``value`` was sampled from."""
    if not isinstance(node, UnionNode):
        return node
    wanted: tuple[type, ...] = (ScalarNode, EnumNode)
    if isinstance(value, dict):
        wanted = (ObjectNode, MapNode)
    elif isinstance(value, list):
        wanted = (ArrayNode,)
    return next((o for o in node.options if isinstance(o, wanted)), node.options[0])


def _scalar(node: ScalarNode, key: str, now: int) -> Any:
    if node.type is bool:
        return True
    if node.type is int:
        if key == "expires_at":
            return now + 3600
        return 7 if key.endswith("_days") else 1
    if node.type is float:
        return 1.5
    if node.type is Decimal:
        return "1.5"
    if key.endswith("url") or key.endswith("_urls"):
        return "https://shop.example/x"
    if key == "currency":
        return "usd"
    if "email" in key:
        return "buyer@example.com"
    return "sample"


def _sample(node: Node, key: str, now: int, depth: int = 0) -> Any:
    if isinstance(node, UnionNode):
        shaped = [o for o in node.options if not (isinstance(o, EnumNode) and
                                                  o.values == ("",))]
        return _sample((shaped or list(node.options))[0], key, now, depth)
    if isinstance(node, EnumNode):
        values = [v for v in node.values if v != ""]
        return _PREFERRED.get(key) if _PREFERRED.get(key) in values else values[0]
    if isinstance(node, ScalarNode):
        return _scalar(node, key, now)
    if isinstance(node, ArrayNode):
        return [_sample(node.item, key, now, depth + 1)]
    if isinstance(node, MapNode):
        return {"k": _sample(node.value, key, now, depth + 1)}
    if isinstance(node, ObjectNode):
        return {name: _sample(f.node, name, now, depth + 1)
                for name, f in node.fields.items() if f.required}
    return "sample"


def _variants(node: Node, key: str, now: int, depth: int) -> Iterator[Any]:
    """A minimal valid value, then one per optional key (recursively, to ``depth``)."""
    base = _sample(node, key, now)
    yield base
    target = _option(node, base)
    if isinstance(target, ArrayNode) and depth:
        for inner in _variants(target.item, key, now, depth):
            yield [inner]
    if isinstance(target, ObjectNode) and depth and isinstance(base, dict):
        for name, f in target.fields.items():
            if f.required:
                continue
            for inner in _variants(f.node, name, now, depth - 1):
                yield {**base, name: inner}


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*path, i))


def _replace(tree: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(tree) if isinstance(tree, dict) else list(tree)
    copy[path[0]] = _replace(tree[path[0]], path[1:], new)  # type: ignore[index]
    return copy


def _delete(tree: Any, path: tuple[Any, ...]) -> Any:
    if len(path) == 1:
        copy = dict(tree)
        del copy[path[0]]
        return copy
    copy = dict(tree) if isinstance(tree, dict) else list(tree)
    copy[path[0]] = _delete(tree[path[0]], path[1:])  # type: ignore[index]
    return copy


def _mutations(params: dict[str, Any],
               under: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each path of ``params`` (only those under the key ``under``, if given) mutated."""
    for path, value in _paths(params):
        if not path or (under is not None and path[0] != under):
            continue
        if isinstance(value, dict):
            yield "unknown key", _replace(params, path, {**value, "zz_not_a_param": "x"})
            yield "wrong type", _replace(params, path, "not-a-hash")
            if value:
                yield "missing key", _delete(params, (*path, next(iter(value))))
        elif isinstance(value, list):
            yield "wrong type", _replace(params, path, "not-an-array")
        elif isinstance(value, bool):
            yield "wrong type", _replace(params, path, "maybe")
        elif isinstance(value, int):
            yield "wrong type", _replace(params, path, "twelve")
        elif isinstance(value, str):
            yield "bad value", _replace(params, path, value + "_not_a_value")
            yield "wrong type", _replace(params, path, {"x": value})
    yield "unknown key", {**params, "zz_not_a_param": "x"}


def _probe_cases(endpoint: str, bases: list[dict[str, Any]],
                 now: int) -> list[tuple[str, dict[str, Any]]]:
    root = schema.schema_for(endpoint)
    cases: list[tuple[str, dict[str, Any]]] = []
    for base in bases:
        cases.append(("valid", base))
        cases.extend(_mutations(base))
    for name, f in root.fields.items():
        for value in _variants(f.node, name, now, depth=3):
            chosen = None
            for base in bases:
                candidate = {**base, name: value}
                try:
                    schema.validate(endpoint, candidate, now=now)
                except SchemaError:
                    continue
                chosen = candidate
                break
            candidate = chosen or {**bases[0], name: value}
            cases.append(("valid", candidate))
            cases.extend(_mutations(candidate, under=name))
    unique: dict[str, tuple[str, dict[str, Any]]] = {}
    for kind, params in cases:
        unique.setdefault(json.dumps(params, sort_keys=True, default=str), (kind, params))
    return list(unique.values())


PROBED = {
    CREATE: ("/v1/checkout/sessions", list(BASES.values())),
    "prices.create": ("/v1/prices", [{"currency": "usd", "unit_amount": 500,
                                      "product_data": {"name": "Tee"}}]),
    "products.create": ("/v1/products", [{"name": "Tee"}]),
    "customers.create": ("/v1/customers", [{"email": "buyer@example.com"}]),
}


@dataclass
class Verdict:
    kind: str
    params: dict[str, Any]
    schema_ok: bool
    schema_param: str | None
    status: int
    error: dict[str, Any]


def _post(http: requests.Session, emu: StripeEmulator, path: str,
          params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST ``params`` encoded as the SDK encodes them, on one kept-alive connection."""
    answer = http.post(emu.api_base + path, data=urlencode(list(_api_encode(params))),
                       headers={"Authorization": f"Bearer {emu.secret_key}",
                                "Content-Type": "application/x-www-form-urlencoded"},
                       timeout=30)
    body: dict[str, Any] = answer.json()
    return answer.status_code, body


@pytest.mark.property
@pytest.mark.slow
def test_the_emulator_agrees_with_the_schema_on_a_generated_probe(
    capsys: pytest.CaptureFixture[str],
) -> None:
    verdicts: list[Verdict] = []
    with StripeEmulator() as emu, requests.Session() as http:
        now = int(time.time())
        for endpoint, (path, bases) in PROBED.items():
            for kind, params in _probe_cases(endpoint, bases, now):
                try:
                    schema.validate(endpoint, params, now=now)
                    ok, param = True, None
                except SchemaError as exc:
                    ok, param = False, exc.param
                status, body = _post(http, emu, path, params)
                verdicts.append(Verdict(kind, params, ok, param, status,
                                        body.get("error", {})))
    server_errors = [v for v in verdicts if v.status >= 500]
    assert not server_errors, server_errors[:3]
    refusals = [v for v in verdicts if v.status != 200]
    assert all(v.error.get("param") for v in refusals), [
        v for v in refusals if not v.error.get("param")][:3]
    # Undecidable from the schema alone: an id of an object the emulator does not have,
    # or one a request of the probe already took (a product id, a lookup key).
    stateful = {"resource_missing", "resource_already_exists", "lookup_key_already_exists"}
    decidable = [v for v in verdicts if v.error.get("code") not in stateful]
    agree = [v for v in decidable if v.schema_ok == (v.status == 200)]
    share = len(agree) / len(decidable)
    disagree = [v for v in decidable if v.schema_ok != (v.status == 200)]
    with capsys.disabled():
        print(f"\nschema probe: {len(agree)}/{len(decidable)} decidable cases agree "
              f"({share:.2%}); {len(verdicts) - len(decidable)} undecidable; "
              f"{sum(v.schema_ok for v in decidable)} valid")
    assert len(decidable) > 3000
    assert share >= 0.99, [(v.kind, v.schema_ok, v.schema_param, v.error, v.params)
                           for v in disagree[:5]]
    # Where both refuse, they blame the same parameter.
    both = [v for v in decidable if not v.schema_ok and v.status != 200]
    same = [v for v in both if v.error.get("param") == v.schema_param]
    assert len(same) / len(both) >= 0.95


# --- the objects have every field the SDK declares -------------------------------------


def _json(obj: Any) -> Any:
    return json.loads(json.dumps(obj.to_dict(recursive=True, for_json=True), default=str))


def test_every_object_has_every_field_the_sdk_declares_with_its_type() -> None:
    with StripeEmulator() as emu:
        client = emu.client()
        price = client.v1.prices.create(params={
            "currency": "usd", "unit_amount": 900, "product_data": {"name": "Club"},
            "recurring": {"interval": "month"}, "lookup_key": "club"})
        session = client.v1.checkout.sessions.create(params={
            **BASES["subscription"],
            "line_items": [{"price": price.id, "quantity": 1},
                           {"price_data": _ONE_TIME, "quantity": 2}],
            "custom_fields": [{"key": "gift", "type": "text",
                               "label": {"type": "custom", "custom": "Gift note"}}],
            "consent_collection": {"terms_of_service": "required"},
            "tax_id_collection": {"enabled": True},
            "metadata": {"order": "42"},
        })
        emu.pay(session.id)
        session = client.v1.checkout.sessions.retrieve(session.id)
        items = client.v1.checkout.sessions.line_items.list(session.id)
        product = client.v1.products.retrieve(price.product)  # type: ignore[arg-type]
        events = client.v1.events.list()
        try:
            client.v1.checkout.sessions.retrieve("cs_test_missing")
        except stripe.InvalidRequestError as exc:
            error = exc.json_body["error"] if exc.json_body else {}
    objects = [
        (stripe.checkout.Session, _json(session)),
        (stripe.Price, _json(price)),
        (stripe.Product, _json(product)),
        *[(stripe.LineItem, _json(item)) for item in items.data],
        *[(stripe.Event, _json(event)) for event in events.data],
    ]
    assert len(objects) >= 6
    for cls, data in objects:
        assert problems(cls, data, cls.__name__) == [], cls
    assert set(error) >= {"type", "code", "param", "message", "doc_url", "request_log_url"}
    assert error["doc_url"] == "https://stripe.com/docs/error-codes/resource-missing"
    assert error["request_log_url"].startswith("https://dashboard.stripe.com/test/logs/req_")
    assert problems(ErrorObject, error, "error") == []


def test_the_emulator_serves_every_endpoint_of_the_schema_and_knows_every_parameter() -> None:
    routed = {route.endpoint for route in ROUTES}
    assert routed >= set(schema.ENDPOINTS)
    # An endpoint the middleware does not call is judged by the SDK class it names.
    for endpoint in routed - set(schema.ENDPOINTS):
        assert schema.params_class(str(ENDPOINTS[endpoint].params_class)), endpoint
    # A create parameter an SDK upgrade adds is either a session field (echoed in
    # the session's shape) or has to be placed in NOT_ON_THE_SESSION.
    params = set(schema.schema_for(CREATE).fields)
    assert params - set(declared(stripe.checkout.Session)) == set(NOT_ON_THE_SESSION)


def test_accepted_options_come_back_in_stripes_shapes() -> None:
    options: dict[str, Any] = {
        "invoice_creation": {"enabled": True, "invoice_data": {"description": "Thanks"}},
        "after_expiration": {"recovery": {"enabled": True}},
        "custom_fields": [{"key": "gift", "type": "dropdown",
                           "label": {"type": "custom", "custom": "Gift?"},
                           "dropdown": {"options": [{"label": "Yes", "value": "yes"}]}}],
        "shipping_options": [{"shipping_rate": "shr_123"}],
        "payment_method_options": {"card": {"request_three_d_secure": "any"}},
        "tax_id_collection": {"enabled": True, "required": "if_supported"},
        "custom_text": {"submit": {"message": "Ships tomorrow"}},
        "consent_collection": {"terms_of_service": "required"},
        "customer_creation": "always",
        "locale": "fr",
    }
    with StripeEmulator() as emu:
        session = _json(emu.client().v1.checkout.sessions.create(
            params={**BASES["payment"], **options}))
    assert session["customer_creation"] == "always"
    assert session["locale"] == "fr"
    assert session["invoice_creation"]["enabled"] is True
    assert session["invoice_creation"]["invoice_data"]["description"] == "Thanks"
    assert "footer" in session["invoice_creation"]["invoice_data"]
    assert session["after_expiration"]["recovery"] == {
        "allow_promotion_codes": False, "enabled": True, "expires_at": None, "url": None}
    field = session["custom_fields"][0]
    assert field["dropdown"]["options"] == [{"label": "Yes", "value": "yes"}]
    assert field["optional"] is False and field["text"] is None
    assert session["shipping_options"] == [{"shipping_amount": 0,
                                            "shipping_rate": "shr_123"}]
    assert session["payment_method_options"]["card"]["request_three_d_secure"] == "any"
    assert set(session["payment_method_options"]) == {"card"}
    assert session["tax_id_collection"] == {"enabled": True, "required": "if_supported"}
    assert session["custom_text"]["submit"] == {"message": "Ships tomorrow"}
    assert session["custom_text"]["after_submit"] is None
    assert session["consent_collection"]["terms_of_service"] == "required"
    assert problems(stripe.checkout.Session, session, "session") == []


def test_a_missing_session_is_the_same_param_on_every_endpoint() -> None:
    with StripeEmulator() as emu:
        client = emu.client()
        calls = [
            lambda: client.v1.checkout.sessions.retrieve("cs_test_nope"),
            lambda: client.v1.checkout.sessions.line_items.list("cs_test_nope"),
            lambda: client.v1.checkout.sessions.expire("cs_test_nope"),
        ]
        for call in calls:
            with pytest.raises(stripe.InvalidRequestError) as info:
                call()
            assert info.value.http_status == 404
            assert info.value.code == "resource_missing"
            assert info.value.param == "session"


def test_price_and_product_options_come_back_too() -> None:
    with StripeEmulator() as emu:
        client = emu.client()
        product = client.v1.products.create(params={
            "name": "Mug", "default_price_data": {"currency": "usd", "unit_amount": 300},
            "shippable": True, "unit_label": "mug", "url": "https://shop.example/mug"})
        default = client.v1.prices.retrieve(product.default_price)  # type: ignore[arg-type]
        price = client.v1.prices.create(params={
            "currency": "usd", "unit_amount": 5, "product": product.id,
            "tax_behavior": "exclusive", "transform_quantity": {"divide_by": 2, "round": "up"}})
        product_json, default_json, price_json = _json(product), _json(default), _json(price)
    assert (product_json["shippable"], product_json["unit_label"], product_json["url"]) == (
        True, "mug", "https://shop.example/mug")
    assert (default_json["unit_amount"], default_json["product"]) == (300, product_json["id"])
    assert price_json["tax_behavior"] == "exclusive"
    assert price_json["transform_quantity"] == {"divide_by": 2, "round": "up"}
    for cls, data in ((stripe.Product, product_json), (stripe.Price, default_json),
                      (stripe.Price, price_json)):
        assert problems(cls, data, cls.__name__) == []


# --- arbitrary form bodies --------------------------------------------------------------

_SEGMENTS = st.sampled_from(
    ["line_items", "0", "1", "price_data", "price", "quantity", "currency", "product_data",
     "name", "recurring", "interval", "mode", "metadata", "customer", "ui_mode",
     "payment_method_options", "card", "custom_fields", "type", "", "x[", "]"])
_KEYS = st.lists(_SEGMENTS, min_size=1, max_size=5).map(
    lambda parts: parts[0] + "".join(f"[{p}]" for p in parts[1:]))
_VALUES = st.sampled_from(["", "1", "-1", "true", "usd", "payment", "subscription", "month",
                           "cs_test_x", "price_x", "a" * 300]) | st.text(max_size=6)


@pytest.mark.property
@pytest.mark.slow
@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ROUTES), st.lists(st.tuples(_KEYS, _VALUES), max_size=8))
def test_arbitrary_form_bodies_get_stripe_errors_never_a_crash(
    route: Any, pairs: list[tuple[str, str]]
) -> None:
    state = StripeState(lock=threading.RLock(), api_base="http://127.0.0.1:1",
                        on_event=lambda event: None, clock=lambda: 1_800_000_000)
    path = route.pattern.pattern.replace("([^/]+)", "cs_test_x")
    try:
        params = decode_form(urlencode(pairs))
    except FormError:
        return
    try:
        state.handle(route.method, path, params, idempotency_key=None, request_id="req_1")
    except ApiError as exc:
        body = exc.body("req_1")["error"]
        assert body["message"] and body["type"]
        assert exc.status in (400, 402, 404), exc.status
