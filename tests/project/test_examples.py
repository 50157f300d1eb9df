"""Each example shop, started the way its README says, takes a paid order end to end.

The shop runs on a real server on 127.0.0.1 (so the emulator can deliver its signed
webhook to it); the browser's side goes through WebTest, or through real HTTP for the
shop served by waitress. Misconfigured examples must exit with one line, no traceback.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import webtest
from conftest import waitress_serving
from paste.deploy import loadapp

from stripe_checkout_mw import CheckoutMiddleware
from stripe_checkout_mw.cli.demo import find_middleware
from stripe_checkout_mw.serving import BackgroundServer
from stripe_checkout_mw.testing import StripeEmulator

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CARD = "4242 4242 4242 4242"
FORM_SHOPS = ("bottle", "pyramid")
ALL_SHOPS = ("bottle", "pyramid", "flask", "wsgi")
FOLDERS = {"bottle": "bottle_shop", "pyramid": "pyramid_shop", "flask": "flask_shop",
           "wsgi": "plain_wsgi"}


def load_example(name: str) -> Any:
    """The example's WSGI app, built as its README says."""
    folder = EXAMPLES / FOLDERS[name]
    if name == "pyramid":
        # README: cd examples/pyramid_shop && PYTHONPATH=. pserve development.ini
        return loadapp("config:development.ini", relative_to=str(folder))
    # README: waitress-serve --call app:create_app (or python app.py)
    spec = importlib.util.spec_from_file_location(f"example_{name}_app", folder / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.create_app()


def close(app: Any) -> None:
    middleware = find_middleware(app)
    if middleware is not None:
        middleware.close()


@pytest.fixture(autouse=True)
def no_threads_left() -> Iterator[None]:
    """Servers, emulators and their workers are all gone when a test ends."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        extra = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not extra


@pytest.fixture
def emulator() -> Iterator[StripeEmulator]:
    with StripeEmulator() as emu:
        yield emu


@pytest.fixture
def shop_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, emulator: StripeEmulator
) -> Iterator[BackgroundServer]:
    """A bound (not yet started) server and the environment the examples read."""
    monkeypatch.syspath_prepend(str(EXAMPLES / "pyramid_shop"))
    server = BackgroundServer()
    monkeypatch.setenv("STRIPE_SECRET_KEY", emulator.secret_key)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", emulator.webhook_secret)
    monkeypatch.setenv("STRIPE_API_BASE", emulator.api_base)
    monkeypatch.setenv("WEB_APP_URL", server.url)
    monkeypatch.setenv("STRIPE_CHECKOUT_STORE", f"sqlite:///{tmp_path / 'orders.db'}")
    monkeypatch.delenv("STRIPE_CHECKOUT_CATALOG", raising=False)
    emulator.webhook_url = f"{server.url}/stripe-webhook"
    yield server
    server.stop()
    close(server.app)


def start_checkout(name: str, browser: webtest.TestApp) -> str:
    """Click Buy on the shop's product page; return the hosted page's URL."""
    page = browser.get("/")
    assert page.status_int == 200
    assert "T-shirt" in page.text and 'id="buy-tee"' in page.text
    if name in FORM_SHOPS:
        form = next(f for f in page.forms.values() if f["price"].value == "tee")
        form["quantity"] = "2"
        form["customer_email"] = "ann@example.com"
        answer = form.submit(status=303)
        return str(answer.headers["Location"])
    if name == "flask":
        item: dict[str, Any] = {"price": "tee", "quantity": 2}
    else:  # the plain WSGI page sends the seed's price_data, taken from its button
        button = page.html.find("button", id="buy-tee")
        item = {"price_data": json.loads(button["data-item"]), "quantity": 2}
    answer = browser.post_json(
        "/create-checkout-session",
        {"line_items": [item], "customer_email": "ann@example.com"},
    )
    assert answer.json["sessionId"] in answer.json["url"]
    return str(answer.json["url"])


@pytest.mark.parametrize("name", ALL_SHOPS)
def test_example_takes_a_paid_order(
    name: str, shop_env: BackgroundServer, emulator: StripeEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO")
    app = shop_env.app = load_example(name)
    assert isinstance(find_middleware(app), CheckoutMiddleware)
    shop_env.start()
    # The browser is on the shop's own site (WEB_APP_URL), so its form posts are same-origin.
    browser = webtest.TestApp(app, extra_environ={"HTTP_HOST": shop_env.url.split("://")[1]})

    pay_url = start_checkout(name, browser)
    assert pay_url.startswith(f"{emulator.api_base}/pay/cs_test_")
    session_id = pay_url.rsplit("/", 1)[1]
    session = emulator.session(session_id)
    assert session["amount_total"] == 4000
    assert session["success_url"] == f"{shop_env.url}/success?session_id={{CHECKOUT_SESSION_ID}}"

    before = browser.get("/checkout-session", {"session_id": session_id}).json
    assert before["fulfilled"] is False

    emulator.pay(session_id)
    assert emulator.deliveries[-1].status == 200

    order = browser.get("/checkout-session", {"session_id": session_id}).json
    assert order["fulfilled"] is True
    assert order["status"] == "paid"
    assert order["items"][0]["name"] == "T-shirt" and order["items"][0]["quantity"] == 2
    assert any(f"fulfilled {session_id}" in r.getMessage() for r in caplog.records)

    success = browser.get("/success", {"session_id": session_id})
    assert "Payment received, order fulfilled" in success.text
    assert "/checkout-session?session_id=" in success.text
    assert "Payment cancelled" in browser.get("/cancel").text


@pytest.mark.parametrize("name", ALL_SHOPS)
def test_requests_the_middleware_does_not_own_reach_the_app(
    name: str, shop_env: BackgroundServer
) -> None:
    app = shop_env.app = load_example(name)
    browser = webtest.TestApp(app)
    assert browser.get("/no-such-page", expect_errors=True).status_int == 404
    assert browser.get("/cancel").status_int == 200


@pytest.mark.parametrize("name", ALL_SHOPS)
def test_product_page_escapes_the_catalog(
    name: str, shop_env: BackgroundServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({
        'x"><i>': {"name": "<script>alert(1)</script>", "description": "Tom & \"Jerry\"",
                    "unit_amount": 100, "currency": "usd"},
    }), encoding="utf-8")
    monkeypatch.setenv("STRIPE_CHECKOUT_CATALOG", str(catalog))
    if name == "pyramid":
        # The .ini names its catalog; load a copy that names this one.
        ini = (EXAMPLES / "pyramid_shop" / "development.ini").read_text(encoding="utf-8")
        copy = tmp_path / "development.ini"
        copy.write_text(ini.replace("%(here)s/../catalog.json", str(catalog)), encoding="utf-8")
        app = loadapp(f"config:{copy}")
    else:
        app = load_example(name)
    shop_env.app = app
    page = webtest.TestApp(app).get("/").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '"><i>' not in page


def test_an_example_serves_under_waitress(
    shop_env: BackgroundServer, emulator: StripeEmulator
) -> None:
    """Any WSGI server works: the Flask shop on waitress, everything over real HTTP."""
    shop_env.stop()  # this test serves on waitress instead
    app = load_example("flask")
    shop_env.app = app
    with waitress_serving(app) as base:
        emulator.webhook_url = f"{base}/stripe-webhook"
        with urllib.request.urlopen(f"{base}/", timeout=10) as answer:
            assert b"Flask shop" in answer.read()
        created = _post(f"{base}/create-checkout-session",
                        json.dumps({"line_items": [{"price": "mug", "quantity": 1}]}).encode(),
                        "application/json")
        pay_url = json.loads(created[2])["url"]
        paid = _post(pay_url, urllib.parse.urlencode(
            {"email": "bo@example.com", "cardnumber": CARD, "action": "pay"}).encode())
        assert paid[0] == 303
        assert paid[1]["Location"].startswith(f"{shop_env.url}/success?session_id=cs_test_")
        session_id = pay_url.rsplit("/", 1)[1]
        with urllib.request.urlopen(f"{base}/checkout-session?session_id={session_id}",
                                    timeout=10) as answer:
            order = json.loads(answer.read())
        assert order["fulfilled"] is True and order["amount_total"] == 1200


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _post(url: str, body: bytes,
          content_type: str = "application/x-www-form-urlencoded") -> tuple[int, Any, bytes]:
    opener = urllib.request.build_opener(_NoRedirects)
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with opener.open(request, timeout=10) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read()


# -- misconfiguration: one line, no traceback --------------------------------------------


def run_example(script: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("STRIPE_", "WEB_APP_URL", "PORT"))}
    environ.update(env)
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          timeout=60, env=environ, cwd=script.parent)


def assert_one_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize("name", ["bottle", "flask", "wsgi"])
def test_a_missing_catalog_is_one_line(name: str, tmp_path: Path) -> None:
    result = run_example(EXAMPLES / FOLDERS[name] / "app.py", STRIPE_SECRET_KEY="sk_test_x",
                         STRIPE_CHECKOUT_CATALOG=str(tmp_path / "none.json"))
    assert_one_line(result, "cannot read catalog", "none.json")


def test_no_secret_key_is_one_line() -> None:
    result = run_example(EXAMPLES / "plain_wsgi" / "app.py")
    assert_one_line(result, "STRIPE_SECRET_KEY")


def test_a_bad_ini_value_is_one_line(tmp_path: Path) -> None:
    ini = (EXAMPLES / "pyramid_shop" / "development.ini").read_text(encoding="utf-8")
    bad = tmp_path / "bad.ini"
    bad.write_text(
        ini.replace("%(here)s/../catalog.json", str(EXAMPLES / "catalog.json"))
        .replace("max_quantity = 10", "max_quantity = ten"),
        encoding="utf-8",
    )
    result = run_example(EXAMPLES / "pyramid_shop" / "serve.py", str(bad),
                         STRIPE_SECRET_KEY="sk_test_x")
    assert_one_line(result, "max_quantity", "'ten' is not a whole number")


def test_a_port_in_use_is_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_example(EXAMPLES / "plain_wsgi" / "app.py", STRIPE_SECRET_KEY="sk_test_x",
                             PORT=str(port))
    assert_one_line(result, f"cannot listen on port {port}", "set PORT")


# -- the shop that pays on its own page (embedded_shop) ----------------------------------


def load_embedded_shop() -> Any:
    spec = importlib.util.spec_from_file_location("example_embedded_shop_app",
                                                  EXAMPLES / "embedded_shop" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("ui_mode", ["hosted_page", "embedded_page", "elements"])
def test_embedded_shop_switches_by_configuration(
    ui_mode: str, shop_env: BackgroundServer, emulator: StripeEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRIPE_CHECKOUT_UI_MODE", ui_mode)
    monkeypatch.setenv("STRIPE_PUBLISHABLE_KEY", emulator.publishable_key)
    monkeypatch.setenv("STRIPE_JS_URL", emulator.stripe_js_url)
    app = shop_env.app = load_embedded_shop().create_app()
    shop_env.start()
    browser = webtest.TestApp(app)

    page = browser.get("/")
    assert page.html.body["data-stripe-js"] == emulator.stripe_js_url
    assert page.html.find("button", id="buy-tee")["data-price"] == "tee"
    config = browser.get("/create-checkout-session/config").json
    assert config == {"publishableKey": emulator.publishable_key, "uiMode": ui_mode}

    created = browser.post_json("/create-checkout-session",
                                {"line_items": [{"price": "tee", "quantity": 1}]}).json
    session = emulator.session(created["sessionId"])
    assert session["ui_mode"] == ui_mode
    if ui_mode == "hosted_page":
        assert created["url"] == session["url"]
        assert session["success_url"] == (
            f"{shop_env.url}/success?session_id={{CHECKOUT_SESSION_ID}}")
    else:
        assert created["clientSecret"] == session["client_secret"]
        assert session["return_url"] == (
            f"{shop_env.url}/return?session_id={{CHECKOUT_SESSION_ID}}")
        browser.post("/create-checkout-session", {"price": "tee"}, status=400)

    emulator.pay(created["sessionId"])
    order = browser.get("/checkout-session", {"session_id": created["sessionId"]}).json
    assert order["fulfilled"] is True
    assert "/checkout-session?session_id=" in browser.get("/return").text


def test_embedded_shop_loads_stripes_own_stripe_js_by_default(
    shop_env: BackgroundServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_PUBLISHABLE_KEY", "pk_test_123")
    monkeypatch.delenv("STRIPE_JS_URL", raising=False)
    app = shop_env.app = load_embedded_shop().create_app()
    page = webtest.TestApp(app).get("/")
    assert page.html.body["data-stripe-js"] == "https://js.stripe.com/dahlia/stripe.js"
    assert "<script src=" not in page.text  # loaded by the page only once it is needed


def test_embedded_shop_without_a_publishable_key_is_one_line() -> None:
    result = run_example(EXAMPLES / "embedded_shop" / "app.py", STRIPE_SECRET_KEY="sk_test_x")
    assert_one_line(result, "publishable_key", "STRIPE_PUBLISHABLE_KEY")


# -- the members' area (members_area): plans, their changes, billing history ------------


def load_members_area() -> Any:
    spec = importlib.util.spec_from_file_location("example_members_area_app",
                                                  EXAMPLES / "members_area" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def members_area(shop_env: BackgroundServer) -> Iterator[tuple[webtest.TestApp, str]]:
    """The members' area served (for its webhooks), and a browser signed in as ``"<i>"``."""
    app = shop_env.app = load_members_area().create_app()
    shop_env.start()
    browser = webtest.TestApp(app, extra_environ={"HTTP_HOST": shop_env.url.split("://")[1]})
    browser.post("/login", {"user": "<i>"}, status=303)
    yield browser, shop_env.url


def test_members_area_offers_only_its_plans_kept_in_stripe(
    members_area: tuple[webtest.TestApp, str], emulator: StripeEmulator
) -> None:
    browser, _ = members_area
    page = browser.get("/")
    assert "<b id=\"user\">&lt;i&gt;</b>" in page.text  # the name is escaped
    assert 'id="subscribe-basic"' in page.text and 'id="subscribe-pro"' in page.text
    def plans() -> dict[str, Any]:
        listed = emulator.client().v1.prices.list(
            params={"lookup_keys": ["members_basic", "members_pro"], "limit": 10}).data
        assert len(listed) == 2
        return {str(price.lookup_key): price for price in listed}

    first = plans()
    assert first["members_basic"].unit_amount == 500
    assert first["members_pro"].recurring is not None
    assert first["members_pro"].recurring.interval == "month"
    # A second start finds the prices instead of making more.
    load_members_area().create_app().close()
    assert {key: price.id for key, price in plans().items()} == {
        key: price.id for key, price in first.items()}


def test_members_area_previews_and_changes_a_plan_from_its_own_pages_only(
    members_area: tuple[webtest.TestApp, str], emulator: StripeEmulator
) -> None:
    browser, origin = members_area
    same_site = {"Origin": origin}
    pay_url = browser.post("/create-checkout-session", {"price": "basic"},
                           headers=same_site, status=303).headers["Location"]
    emulator.pay(pay_url.rsplit("/", 1)[1])
    emulator.wait_for_deliveries(timeout=10)
    account = browser.get("/account")
    assert "Basic</span> x <span class=\"seats\">1</span>: active" in account.text
    assert "subscription_create" in account.html.find(id="invoices").text
    assert browser.get("/reports", status=403).html.find(id="denied") is not None

    # Posts from another site, or that say nowhere, change nothing.
    for headers in ({"Origin": "http://evil.example"}, {"Referer": "http://evil.example/"},
                    {}):
        browser.post("/account/change", {"plan": "pro", "seats": "1"}, headers=headers,
                     status=403)
    refused = browser.post("/account/preview", {"plan": "gold", "seats": "1"},
                           headers=same_site, status=400)
    assert refused.html.find(id="error").text == "Choose one of the plans."

    preview = browser.post("/account/preview", {"plan": "pro", "seats": "2"},
                           headers=same_site)
    assert preview.html.find(id="next-total").text == "30.00 USD"
    confirm = preview.forms[next(k for k, f in preview.forms.items()
                                 if f.action == "/account/change")]
    assert browser.get("/account").text.count("Basic</span>") == 1  # unchanged by a preview
    done = browser.post("/account/change", dict(confirm.submit_fields()),
                        headers=same_site, status=303)
    assert done.headers["Location"] == "/account?notice=changed"
    account = browser.get("/account?notice=changed")
    assert account.html.find(id="notice").text == "Your plan was changed."
    assert "Pro</span> x <span class=\"seats\">2</span>: active" in account.text
    assert "new members" in browser.get("/reports").html.find(id="report").text

    browser.post("/account/cancel", headers=same_site, status=303)
    assert "ends" in browser.get("/account").html.find(id="subscriptions").text
    browser.post("/account/resume", headers=same_site, status=303)
    assert "renews" in browser.get("/account").html.find(id="subscriptions").text
