"""WSGI conformance (issue 7, suite 5).

1. Every owned path (checkout, webhook, status) under ``wsgiref.validate`` on both sides:
   the server side checks what the middleware answers (status line, header types, no
   ``Content-Type`` on a 204, a closed iterable...), the app side checks that the app is
   still called correctly. ``tests/checkout/test_checkout.py`` does this for the checkout path's
   happy and error rows; this adds the webhook and status paths and the 303/405/413 rows.
2. A shop wrapped by the middleware served by werkzeug's threaded server, waitress and
   gunicorn (a subprocess, two worker processes sharing the SQLite ledger), each on a
   free port on 127.0.0.1: pass-through requests, a JSON checkout, a form checkout, a
   payment whose webhook the server receives, and the status the success page reads.
   waitress and gunicorn are skipped only when not importable (CI installs them, and a
   skip fails CI).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode
from wsgiref.validate import validator

import pytest
import webtest
from conftest import waitress_serving
from werkzeug.serving import make_server

from stripe_checkout_mw import Catalog, CheckoutMiddleware
from stripe_checkout_mw.testing import StripeEmulator, sign_payload

CATALOG = {"tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"},
           "mug": {"name": "Mug", "unit_amount": 800, "currency": "usd"}}
ONE_TEE = {"line_items": [{"price": "tee", "quantity": 1}]}
CHECKOUT, WEBHOOK, STATUS = "/create-checkout-session", "/stripe-webhook", "/checkout-session"
STARTUP_SECONDS = 30

# The shop, written once: imported here and, as a file, by gunicorn's worker processes.
SHOP_SOURCE = textwrap.dedent('''
    import os

    from stripe_checkout_mw import Catalog, CheckoutMiddleware

    CATALOG = {"tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"},
               "mug": {"name": "Mug", "unit_amount": 800, "currency": "usd"}}


    def shop(environ, start_response):
        """Answers every path with what it received, so pass-through can be checked."""
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(size) if size else b""
        text = "shop %s %s %d %s" % (environ["REQUEST_METHOD"], environ["PATH_INFO"],
                                     len(body), environ.get("QUERY_STRING", ""))
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Shop", "yes")])
        return [text.encode()]


    def create_app():
        return CheckoutMiddleware(
            shop,
            secret_key=os.environ["STRIPE_SECRET_KEY"],
            stripe_api_base=os.environ["STRIPE_API_BASE"],
            domain_url="https://shop.example.com",
            price_lookup=Catalog(CATALOG),
            webhook_secret=os.environ["STRIPE_WEBHOOK_SECRET"],
            store=os.environ["STRIPE_CHECKOUT_STORE"],
            timeout=10.0,
        )
''')
_namespace: dict[str, Any] = {}
exec(compile(SHOP_SOURCE, "shop_source", "exec"), _namespace)  # our own text, above
shop: Callable[..., Any] = _namespace["shop"]


# --- 1. wsgiref.validate on every owned path ------------------------------------------------


@pytest.fixture
def validated(stripe_emulator: StripeEmulator, tmp_path: Path) -> Iterator[webtest.TestApp]:
    mw = CheckoutMiddleware(
        validator(shop),
        secret_key=stripe_emulator.secret_key,
        stripe_api_base=stripe_emulator.api_base,
        domain_url="https://shop.example.com",
        price_lookup=Catalog(CATALOG),
        webhook_secret=stripe_emulator.webhook_secret,
        store=f"sqlite:///{tmp_path}/orders.db",
        allowed_origins=["https://front.example"],
    )
    try:
        yield webtest.TestApp(validator(mw))
    finally:
        mw.close()


def test_the_webhook_path_under_wsgiref_validate(
    validated: webtest.TestApp, stripe_emulator: StripeEmulator
) -> None:
    session_id = validated.post_json(CHECKOUT, ONE_TEE).json["sessionId"]
    stripe_emulator.pay(session_id)
    event = next(e for e in stripe_emulator.events if e["type"] == "checkout.session.completed")
    body = json.dumps(event).encode()

    def deliver(header: str | None, status: int, payload: bytes = body) -> webtest.TestResponse:
        headers = {"Stripe-Signature": header} if header is not None else {}
        return validated.post(WEBHOOK, payload, headers=headers,
                              content_type="application/json", status=status)

    secret = stripe_emulator.webhook_secret
    assert deliver(sign_payload(body, secret), 200).json == {"received": True}
    assert deliver(sign_payload(body, secret), 200).json["duplicate"] is True
    deliver(None, 400)
    deliver(sign_payload(body, "whsec_other"), 400)
    deliver(sign_payload(b"x", secret), 400, b"x")
    assert validated.get(WEBHOOK, status=405).headers["Allow"] == "POST"
    validated.request(WEBHOOK, method="OPTIONS", status=405)
    big = validated.post(WEBHOOK, b"{" * (1024 * 1024 + 1), content_type="application/json",
                         headers={"Stripe-Signature": "t=1,v1=00"}, status=413)
    assert set(big.json["error"]) == {"type", "message", "param"}


def test_the_status_path_under_wsgiref_validate(
    validated: webtest.TestApp, stripe_emulator: StripeEmulator
) -> None:
    session_id = validated.post_json(CHECKOUT, ONE_TEE).json["sessionId"]
    assert validated.get(STATUS, {"session_id": session_id}).json["status"] == "open"
    head = validated.head(f"{STATUS}?session_id={session_id}")
    assert head.status_int == 200 and head.headers["Content-Type"] == "application/json"
    validated.get(STATUS, status=400)
    validated.get(STATUS, {"session_id": "cs_test_unknown"}, status=404)
    validated.get(STATUS, {"session_id": "not-an-id"}, status=400)
    validated.get(f"{STATUS}?session_id=a&session_id=b", status=400)
    assert validated.post(STATUS, status=405).headers["Allow"] == "GET, HEAD, OPTIONS"
    preflight = validated.options(STATUS, headers={"Origin": "https://front.example",
                                                   "Access-Control-Request-Method": "GET"})
    assert preflight.status_int == 204 and preflight.body == b""
    assert "Content-Type" not in preflight.headers


def test_checkout_path_redirect_method_and_size_rows_under_wsgiref_validate(
    validated: webtest.TestApp,
) -> None:
    redirect = validated.post(CHECKOUT, {"price": "tee", "quantity": "2"}, status=303)
    assert redirect.headers["Location"].startswith("http://127.0.0.1:")
    assert validated.get(CHECKOUT, status=405).headers["Allow"] == "POST, OPTIONS"
    validated.post(CHECKOUT, b"{" * 70_000, content_type="application/json", status=413)
    validated.post(CHECKOUT, b"price=tee", content_type="text/csv", status=415)
    validated.options(CHECKOUT, status=204)


def test_pass_through_under_wsgiref_validate(validated: webtest.TestApp) -> None:
    answer = validated.post("/anything?x=1", b"12345", content_type="text/plain")
    assert answer.text == "shop POST /anything 5 x=1"
    assert answer.headers["X-Shop"] == "yes"


# --- 2. real servers ------------------------------------------------------------------------


def call(base: str, method: str, path: str, body: bytes | None = None,
         content_type: str | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body,
                     headers={"Content-Type": content_type} if content_type else {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def exercise(base: str, emu: StripeEmulator) -> None:
    """The same conversation with any server: pass-through, checkouts, payment, status."""
    status, headers, body = call(base, "GET", "/?q=1")
    assert (status, body, headers.get("X-Shop")) == (200, b"shop GET / 0 q=1", "yes")
    status, _, body = call(base, "POST", "/upload", b"x" * 100_000, "application/octet-stream")
    assert (status, body) == (200, b"shop POST /upload 100000 ")
    status, _, body = call(base, "POST", CHECKOUT + "/", b"{}", "application/json")
    assert (status, body) == (200, b"shop POST /create-checkout-session/ 2 ")

    status, _, body = call(base, "POST", CHECKOUT, json.dumps(ONE_TEE).encode(),
                           "application/json")
    assert status == 200, body
    created = json.loads(body)
    session = emu.session(created["sessionId"])
    assert (created["url"], session["amount_total"]) == (session["url"], 2000)

    status, headers, _ = call(base, "POST", CHECKOUT, urlencode({"price": "mug"}).encode(),
                              "application/x-www-form-urlencoded")
    assert status == 303
    assert headers["Location"] == emu.sessions[-1]["url"]

    emu.webhook_url = f"{base}{WEBHOOK}"
    emu.pay(created["sessionId"])
    assert [d.status for d in emu.deliveries] == [200]
    status, _, body = call(base, "GET", f"{STATUS}?session_id={created['sessionId']}")
    view = json.loads(body)
    assert (status, view["status"], view["fulfilled"]) == (200, "paid", True)


@pytest.fixture
def shop_env(stripe_emulator: StripeEmulator, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "STRIPE_SECRET_KEY": stripe_emulator.secret_key,
        "STRIPE_API_BASE": stripe_emulator.api_base,
        "STRIPE_WEBHOOK_SECRET": stripe_emulator.webhook_secret,
        "STRIPE_CHECKOUT_STORE": f"sqlite:///{tmp_path}/orders.db",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@contextmanager
def built() -> Iterator[CheckoutMiddleware]:
    mw = _namespace["create_app"]()
    try:
        yield mw
    finally:
        mw.close()


def test_werkzeug_threaded_server(shop_env: dict[str, str], stripe_emulator: StripeEmulator
                                  ) -> None:
    with built() as mw:
        server = make_server("127.0.0.1", 0, mw, threaded=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        try:
            exercise(f"http://127.0.0.1:{server.port}", stripe_emulator)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
    assert not thread.is_alive()


def test_waitress(shop_env: dict[str, str], stripe_emulator: StripeEmulator) -> None:
    pytest.importorskip("waitress.server")
    with built() as mw, waitress_serving(mw, threads=4) as base:
        exercise(base, stripe_emulator)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_gunicorn(shop_env: dict[str, str], stripe_emulator: StripeEmulator,
                  tmp_path: Path) -> None:
    pytest.importorskip("gunicorn")
    (tmp_path / "gunicorn_shop.py").write_text(SHOP_SOURCE, encoding="utf-8")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "gunicorn.log"
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
               "--workers", "2", "--worker-class", "gthread", "--threads", "2",
               "--graceful-timeout", "5", "--chdir", str(tmp_path), "--error-logfile", "-",
               "gunicorn_shop:create_app()"]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, **shop_env}, cwd=tmp_path)
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while True:
                assert process.poll() is None, log.read_text(errors="replace")
                try:
                    if call(base, "GET", "/")[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "gunicorn did not start in time"
                time.sleep(0.1)
            exercise(base, stripe_emulator)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
    assert "Traceback" not in log.read_text(errors="replace")
    assert stripe_emulator.secret_key not in log.read_text(errors="replace")
