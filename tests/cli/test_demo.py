"""The ``demo`` command: a working shop with no Stripe account, stopped cleanly by Ctrl-C."""

from __future__ import annotations

import io
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from stripe_checkout_mw.cli.demo import (
    FRAMEWORKS,
    UI_MODES,
    DemoError,
    DemoShop,
    find_middleware,
)
from stripe_checkout_mw.cli.main import DEMO_FRAMEWORKS, DEMO_UI_MODES, main, run_demo

CARD = "4242 4242 4242 4242"
_SHOP_ENV = ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE", "WEB_APP_URL",
             "STRIPE_CHECKOUT_STORE", "STRIPE_CHECKOUT_CATALOG", "STRIPE_CHECKOUT_EXAMPLES")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _SHOP_ENV:
        monkeypatch.delenv(name, raising=False)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def request(url: str, body: bytes | None = None,
            content_type: str = "application/x-www-form-urlencoded") -> tuple[int, Any, bytes]:
    """One HTTP request on 127.0.0.1, redirects not followed, errors returned."""
    opener = urllib.request.build_opener(_NoRedirects)
    headers = {"Content-Type": content_type} if body is not None else {}
    try:
        with opener.open(urllib.request.Request(url, data=body, headers=headers),
                         timeout=10) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read()


def buy_and_pay(shop_url: str) -> dict[str, Any]:
    """What a customer does on the built-in shop (its form, no JavaScript); the final order."""
    status, _, page = request(shop_url)
    assert status == 200 and b"Demo shop" in page and b'id="buy-mug"' in page
    status, headers, body = request(f"{shop_url}create-checkout-session", urllib.parse.urlencode(
        {"price": "mug", "quantity": "1", "customer_email": ""}).encode())
    assert status == 303, body
    pay_url = headers["Location"]
    status, headers, _ = request(pay_url, urllib.parse.urlencode(
        {"email": "cy@example.com", "cardnumber": CARD, "action": "pay"}).encode())
    assert status == 303
    session_id = pay_url.rsplit("/", 1)[1]
    assert headers["Location"] == f"{shop_url}success?session_id={session_id}"
    deadline = time.monotonic() + 10
    while True:
        status, _, body = request(f"{shop_url}checkout-session?session_id={session_id}")
        answer: dict[str, Any] = json.loads(body)
        if answer.get("fulfilled") or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def read_lines(stream: IO[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


@pytest.fixture
def demo_process() -> Iterator[subprocess.Popen[str]]:
    """``python -m stripe_checkout_mw demo --port 0`` with no Stripe key, killed if left."""
    env = {k: v for k, v in os.environ.items() if k not in _SHOP_ENV}
    process = subprocess.Popen(
        [sys.executable, "-m", "stripe_checkout_mw", "demo", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        process.stderr.close()


def test_the_demo_command_sells_offline_and_stops_on_ctrl_c(
    demo_process: subprocess.Popen[str],
) -> None:
    assert demo_process.stdout is not None and demo_process.stderr is not None
    lines = read_lines(demo_process.stdout)
    banner = []
    url = None
    deadline = time.monotonic() + 30
    while url is None:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail("the demo printed no URL within 30 s")
        banner.append(line)
        found = re.search(r"Open (http://127\.0\.0\.1:\d+/)", line)
        url = found.group(1) if found else None
    assert "NO REAL MONEY MOVES" in "".join(banner)

    order = buy_and_pay(url)
    assert order["fulfilled"] is True
    assert order["amount_total"] == 1200 and order["items"][0]["name"] == "Mug"

    store_dir = re.search(r"Orders are kept in (\S+) until", "".join(banner))
    while store_dir is None:  # the line after the URL
        line = lines.get(timeout=10)
        banner.append(line)
        store_dir = re.search(r"Orders are kept in (\S+) until", line)
    assert Path(store_dir.group(1)).is_dir()

    demo_process.send_signal(signal.SIGINT)
    assert demo_process.wait(timeout=20) == 0
    last = ""
    while "Demo stopped." not in last:
        last = lines.get(timeout=10)
    assert "Traceback" not in demo_process.stderr.read()
    assert not Path(store_dir.group(1)).exists()


@pytest.mark.parametrize("framework", [None, "bottle", "pyramid", "flask", "wsgi"])
def test_demo_shop_in_process_restores_everything(framework: str | None) -> None:
    before = dict(os.environ)
    threads = set(threading.enumerate())
    with DemoShop(framework, port=0) as shop:
        assert shop.mode == "emulator" and shop.emulator is not None
        assert os.environ["STRIPE_API_BASE"] == shop.emulator.api_base
        assert "NO REAL MONEY MOVES" in shop.banner()
        middleware = find_middleware(shop.app)
        assert middleware is not None and middleware.settings.webhook_path == "/stripe-webhook"
        status, _, page = request(shop.url)
        assert status == 200 and b'id="buy-tee"' in page
        store_dir = shop.store_dir
        assert store_dir is not None and store_dir.is_dir()
    assert dict(os.environ) == before
    assert not store_dir.exists()
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not {t.name for t in set(threading.enumerate()) - threads}


def test_a_test_key_uses_stripe_test_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_demo_real_mode")
    with DemoShop(port=0) as shop:
        assert shop.mode == "test" and shop.emulator is None
        port = shop.url.rsplit(":", 1)[1].rstrip("/")
        banner = shop.banner()
        assert "Stripe TEST mode" in banner and "sk_test_demo" not in banner
        assert f"stripe listen --forward-to localhost:{port}/stripe-webhook" in banner
        assert "STRIPE_WEBHOOK_SECRET" in banner
    assert os.environ["STRIPE_SECRET_KEY"] == "sk_test_demo_real_mode"


def test_offline_ignores_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_demo_real_mode")
    with DemoShop(port=0, offline=True) as shop:
        assert shop.mode == "emulator"
    assert os.environ["STRIPE_SECRET_KEY"] == "sk_test_demo_real_mode"


@pytest.mark.parametrize(
    ("key", "message"),
    [("sk_live_abc", "is a live key"), ("rk_live_abc", "is a live key"),
     ("pk_test_abc", "is not a Stripe secret key")],
)
def test_refused_keys_are_one_line(
    monkeypatch: pytest.MonkeyPatch, key: str, message: str
) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", key)
    out, err = io.StringIO(), io.StringIO()
    assert run_demo(DemoShop(port=0), out=out, err=err) == 1
    assert out.getvalue() == ""
    assert err.getvalue().count("\n") == 1 and message in err.getvalue()


def test_a_busy_port_is_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        err = io.StringIO()
        assert run_demo(DemoShop(port=port), out=io.StringIO(), err=err) == 1
    assert err.getvalue() == (
        f"demo: port {port} on 127.0.0.1 is in use; choose another with --port\n"
    )


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_missing_examples_are_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, framework: str
) -> None:
    monkeypatch.setenv("STRIPE_CHECKOUT_EXAMPLES", str(tmp_path))
    err = io.StringIO()
    assert run_demo(DemoShop(framework, port=0), out=io.StringIO(), err=err) == 1
    assert err.getvalue() == (
        f"demo: --framework {framework} runs an example shop from a source checkout and there "
        f"is none at STRIPE_CHECKOUT_EXAMPLES={tmp_path}; run the demo without --framework "
        "for the built-in shop, or get examples/ from "
        "https://github.com/stripe-checkout-mw/stripe-checkout-mw (and point "
        "STRIPE_CHECKOUT_EXAMPLES at it)\n"
    )


def test_the_built_in_shop_needs_no_examples(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STRIPE_CHECKOUT_EXAMPLES", str(tmp_path))
    with DemoShop(port=0) as shop:
        assert "the built-in shop, on the OFFLINE Stripe emulator" in shop.banner()
        order = buy_and_pay(shop.url)
        assert order["fulfilled"] is True and order["status"] == "paid"
        status, _, page = request(f"{shop.url}cancel")
        assert status == 200 and b"Payment cancelled" in page
        status, _, _ = request(f"{shop.url}nothing-here")
        assert status == 404
        status, headers, _ = request(f"{shop.url}success", b"x=1")
        assert status == 405 and headers["Allow"] == "GET, HEAD"


def test_a_refused_shop_configuration_stops_what_was_started(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STRIPE_CHECKOUT_CATALOG", str(tmp_path / "missing.json"))
    threads = set(threading.enumerate())
    with pytest.raises(DemoError, match="cannot read catalog"):
        DemoShop("bottle", port=0).start()
    assert "STRIPE_API_BASE" not in os.environ
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(threading.enumerate()) - threads


def test_demo_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["demo", "--help"])
    assert exited.value.code == 0
    help_text = capsys.readouterr().out
    assert "--framework" in help_text and "--port" in help_text


def test_the_command_line_offers_every_example_shop() -> None:
    assert tuple(FRAMEWORKS) == DEMO_FRAMEWORKS


def test_an_unknown_framework_is_refused() -> None:
    with pytest.raises(DemoError, match="choose one of bottle, pyramid, flask, wsgi, members"):
        DemoShop("django")


@pytest.mark.parametrize("ui_mode", ["embedded_page", "elements"])
def test_ui_mode_runs_the_shop_that_pays_on_its_page(
    monkeypatch: pytest.MonkeyPatch, ui_mode: str
) -> None:
    for name in ("STRIPE_PUBLISHABLE_KEY", "STRIPE_JS_URL", "STRIPE_CHECKOUT_UI_MODE"):
        monkeypatch.delenv(name, raising=False)
    before = dict(os.environ)
    with DemoShop(port=0, ui_mode=ui_mode) as shop:
        assert shop.emulator is not None
        assert f"ui_mode {ui_mode}" in shop.banner()
        assert shop.emulator.stripe_js_url in shop.banner()
        status, _, page = request(shop.url)
        assert status == 200
        assert f'data-stripe-js="{shop.emulator.stripe_js_url}"'.encode() in page
        _, _, config = request(shop.url + "create-checkout-session/config")
        assert json.loads(config) == {"publishableKey": shop.emulator.publishable_key,
                                      "uiMode": ui_mode}
    assert dict(os.environ) == before


def test_ui_mode_with_stripe_needs_the_publishable_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_demo_real_mode")
    monkeypatch.delenv("STRIPE_PUBLISHABLE_KEY", raising=False)
    err = io.StringIO()
    assert run_demo(DemoShop(port=0, ui_mode="elements"), out=io.StringIO(), err=err) == 1
    assert err.getvalue().count("\n") == 1
    assert "publishable_key" in err.getvalue() and "STRIPE_PUBLISHABLE_KEY" in err.getvalue()


def test_ui_mode_is_shown_by_one_shop_only(capsys: pytest.CaptureFixture[str]) -> None:
    err = io.StringIO()
    assert run_demo(DemoShop("flask", port=0, ui_mode="elements"), out=io.StringIO(),
                    err=err) == 1
    assert err.getvalue() == ("demo: --ui-mode elements is shown by examples/embedded_shop; "
                              "drop --framework flask\n")
    with pytest.raises(DemoError, match="--ui-mode 'form': choose one of"):
        DemoShop(ui_mode="form")
    assert DEMO_UI_MODES == UI_MODES
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "--ui-mode" in capsys.readouterr().out


def test_ui_mode_without_examples_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    monkeypatch.setenv("STRIPE_CHECKOUT_EXAMPLES", str(tmp_path))
    err = io.StringIO()
    assert run_demo(DemoShop(port=0, ui_mode="embedded_page"), out=io.StringIO(),
                    err=err) == 1
    assert err.getvalue().count("\n") == 1
    assert "--ui-mode embedded_page runs examples/embedded_shop" in err.getvalue()
