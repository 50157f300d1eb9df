"""Requests the middleware does not own reach the app exactly as without it."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any
from wsgiref.validate import validator

import pytest
import webtest

from stripe_checkout_mw import Catalog, CheckoutMiddleware

CATALOG = Catalog({"tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"}})


class Recorder:
    """A WSGI app that remembers what it was called with and streams its answer."""

    def __init__(self) -> None:
        self.environs: list[dict[str, Any]] = []
        self.closed = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.environs.append(environ)
        start_response("201 Created", [("Content-Type", "application/octet-stream"),
                                       ("X-App", "yes")])
        recorder = self

        class Body:
            def __iter__(self) -> Iterator[bytes]:
                yield b"chunk-1;"
                yield b"chunk-2"

            def close(self) -> None:
                recorder.closed += 1

        return Body()


def wrap(app: Any, **options: Any) -> CheckoutMiddleware:
    return CheckoutMiddleware(
        app,
        secret_key="sk_test_passthrough",
        domain_url="https://shop.example.com",
        price_lookup=CATALOG,
        stripe_api_base="http://127.0.0.1:9",  # never reached by these tests
        allowed_origins=["https://other.example"],
        **options,
    )


def test_same_environ_body_unread_response_unwrapped() -> None:
    recorder = Recorder()
    middleware = wrap(recorder)
    stream = io.BytesIO(b"x" * 10_000_000)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/upload", "wsgi.input": stream,
               "CONTENT_LENGTH": "10000000"}
    calls: list[tuple[str, list[tuple[str, str]]]] = []
    result = middleware(environ, lambda status, headers, exc_info=None: calls.append(
        (status, headers)))
    assert recorder.environs[0] is environ
    assert stream.tell() == 0  # the upload was not read by the middleware
    assert calls == [("201 Created", [("Content-Type", "application/octet-stream"),
                                      ("X-App", "yes")])]
    assert b"".join(result) == b"chunk-1;chunk-2"
    assert type(result).__name__ == "Body"  # the app's own iterable, not a wrapper
    result.close()
    assert recorder.closed == 1


def test_passthrough_is_byte_for_byte_through_webtest() -> None:
    recorder = Recorder()
    bare = webtest.TestApp(validator(Recorder()))
    wrapped = webtest.TestApp(validator(wrap(validator(recorder))))
    for path in ["/", "/success", "/create-checkout-session/extra", "/CREATE-CHECKOUT-SESSION"]:
        a = bare.post(path, b"payload", status=201)
        b = wrapped.post(path, b"payload", status=201)
        assert (a.status, a.headerlist, a.body) == (b.status, b.headerlist, b.body)
    assert recorder.closed == 4


def test_owned_path_under_script_name_prefix() -> None:
    recorder = Recorder()
    middleware = wrap(recorder)
    statuses: list[str] = []

    def call(script_name: str, path_info: str) -> None:
        environ = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": script_name, "PATH_INFO": path_info,
                   "wsgi.input": io.BytesIO()}
        middleware(environ, lambda status, headers, exc_info=None: statuses.append(status))

    call("/shop", "/create-checkout-session")  # mounted: still ours
    call("", "/shop/create-checkout-session")  # another path of the app
    assert statuses == ["405 Method Not Allowed", "201 Created"]
    assert [e["PATH_INFO"] for e in recorder.environs] == ["/shop/create-checkout-session"]


def test_app_exceptions_are_not_swallowed() -> None:
    def broken(environ: Any, start_response: Any) -> list[bytes]:
        raise RuntimeError("app bug")

    with pytest.raises(RuntimeError, match="app bug"):
        webtest.TestApp(wrap(broken)).get("/")


def test_non_wsgi_app_is_refused() -> None:
    with pytest.raises(TypeError, match="app"):
        CheckoutMiddleware(None, secret_key="sk_test_1",  # type: ignore[arg-type]
                           domain_url="https://a.example", price_lookup=CATALOG)
