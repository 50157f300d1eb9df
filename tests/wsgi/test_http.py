"""Body reading, parsing and origin helpers of the owned paths."""

from __future__ import annotations

import io
from typing import Any

import pytest

from stripe_checkout_mw.errors import HTTPError
from stripe_checkout_mw.urls import origin_of
from stripe_checkout_mw.wsgi.http import (
    own_origin,
    parse_form_order,
    parse_json_object,
    read_body,
    request_origin,
)


class CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def environ_with(body: bytes, **extra: Any) -> dict[str, Any]:
    return {"wsgi.input": CountingStream(body), **extra}


def test_body_over_the_limit_is_refused_unread() -> None:
    environ = environ_with(b"x" * 5000, CONTENT_LENGTH="5000")
    with pytest.raises(HTTPError) as caught:
        read_body(environ, 1024)
    assert caught.value.status == 413
    assert environ["wsgi.input"].bytes_read == 0


def test_body_within_the_limit_is_read_exactly() -> None:
    environ = environ_with(b"abcdef", CONTENT_LENGTH="3")
    assert read_body(environ, 1024) == b"abc"


def test_chunked_body_is_bounded() -> None:
    environ = environ_with(b"x" * 5000, **{"wsgi.input_terminated": True})
    with pytest.raises(HTTPError) as caught:
        read_body(environ, 1024)
    assert caught.value.status == 413
    assert environ["wsgi.input"].bytes_read == 1025


def test_body_without_length_is_empty() -> None:
    assert read_body(environ_with(b"ignored"), 1024) == b""


@pytest.mark.parametrize(
    "body",
    [b"{", b"[1]", b'"x"', b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000],
    ids=["truncated", "array", "string", "not-utf8", "deep"],
)
def test_bad_json_is_a_400(body: bytes) -> None:
    with pytest.raises(HTTPError) as caught:
        parse_json_object(body)
    assert caught.value.status == 400


def test_form_pairs_prices_and_quantities() -> None:
    order = parse_form_order(b"price=tee&quantity=2&price=mug&quantity=1&customer_email=a%40b.co")
    assert order == {
        "customer_email": "a@b.co",
        "line_items": [{"price": "tee", "quantity": 2}, {"price": "mug", "quantity": 1}],
    }


def test_form_without_quantities_buys_one_each() -> None:
    assert parse_form_order(b"price=tee")["line_items"] == [{"price": "tee", "quantity": 1}]


def test_form_keeps_non_numbers_for_the_validator() -> None:
    items = parse_form_order(b"price=tee&quantity=%C2%B2")["line_items"]
    assert items == [{"price": "tee", "quantity": "²"}]


def test_form_rejects_mismatched_quantities_and_repeats() -> None:
    with pytest.raises(HTTPError):
        parse_form_order(b"price=tee&price=mug&quantity=1")
    with pytest.raises(HTTPError):
        parse_form_order(b"price=tee&customer_email=a&customer_email=b")


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://Shop.Example.com/cart?x=1", "https://shop.example.com"),
        ("https://shop.example.com:443/", "https://shop.example.com"),
        ("http://shop.example.com:8000", "http://shop.example.com:8000"),
        ("http://[::1]:8000/x", "http://[::1]:8000"),
        ("https://user@evil.example@shop.example.com/", None),
        ("https://shop.example.com@evil.example/", None),
        ("https://user:pw@shop.example.com", None),
        ("https://shop.example.com:99999/", None),
        ("https://shop.example.com:443x/", None),
        ("https://shop example.com/", None),
        ("https://shop.example.com\\@evil.example/", None),
        ("ftp://shop.example.com/", None),
        ("javascript://shop.example.com/", None),
        ("/relative", None),
        ("null", None),
    ],
)
def test_origin_of(url: str, origin: str | None) -> None:
    assert origin_of(url) == origin


@pytest.mark.parametrize(
    "header",
    ["https://shop.example.com/", "https://shop.example.com/cart", "https://shop.example.com?x",
     "https://shop.example.com#x", "https://u@shop.example.com", "https://shop.example.com:x"],
)
def test_an_origin_header_is_scheme_host_and_port_only(header: str) -> None:
    assert origin_of(header, bare=True) is None
    assert request_origin({"HTTP_ORIGIN": header}) == "null"
    assert origin_of("https://shop.example.com:8443", bare=True) == "https://shop.example.com:8443"


def test_own_origin_and_request_origin() -> None:
    environ = {"HTTP_HOST": "localhost:8000", "wsgi.url_scheme": "http"}
    assert own_origin(environ) == "http://localhost:8000"
    assert own_origin({"SERVER_NAME": "shop", "SERVER_PORT": "443",
                       "wsgi.url_scheme": "https"}) == "https://shop"
    assert request_origin({"HTTP_ORIGIN": "null"}) == "null"
    assert request_origin({"HTTP_REFERER": "https://a.example/x"}) == "https://a.example"
    assert request_origin({}) is None
