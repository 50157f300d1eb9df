"""Checkout on the shop's own page: ``ui_mode`` ``embedded_page`` and ``elements``.

The middleware's side, through WebTest and the real SDK against the emulator: what
the create sends and answers per mode, the page's configuration path, form posts,
and every configuration mistake refused at construction with the option's name.
The browser's side is in tests/browser/test_browser.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable
from wsgiref.validate import validator

import pytest
import requests
import webtest
from conftest import Fulfilments

from stripe_checkout_mw import Catalog, CheckoutMiddleware
from stripe_checkout_mw.marker import MARKER_KEY, shop_marker
from stripe_checkout_mw.serving import BackgroundServer
from stripe_checkout_mw.testing import StripeEmulator

DOMAIN = "https://shop.example.com"
ONE_TEE = {"line_items": [{"price": "tee", "quantity": 1}]}
CATALOG = {"tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"}}
PK = "pk_test_shop"


def shop(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the shop"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "WEB_APP_URL",
                 "STRIPE_WEBHOOK_SECRET", "STRIPE_CHECKOUT_STORE"):
        monkeypatch.delenv(name, raising=False)


Build = Callable[..., webtest.TestApp]


@pytest.fixture
def build(stripe_emulator: StripeEmulator) -> Iterator[Build]:
    made: list[CheckoutMiddleware] = []

    def make(**options: Any) -> webtest.TestApp:
        settings: dict[str, Any] = {
            "secret_key": stripe_emulator.secret_key,
            "stripe_api_base": stripe_emulator.api_base,
            "domain_url": DOMAIN,
            "price_lookup": Catalog(CATALOG),
            "publishable_key": PK,
        }
        settings.update(options)
        middleware = CheckoutMiddleware(validator(shop), **settings)
        made.append(middleware)
        return webtest.TestApp(validator(middleware))

    yield make
    for middleware in made:
        middleware.close()


def sent_create(emu: StripeEmulator) -> dict[str, Any]:
    (create,) = [r for r in emu.requests
                 if r.method == "POST" and r.path == "/v1/checkout/sessions"]
    return create.params


@pytest.mark.parametrize("ui_mode", ["embedded_page", "elements"])
def test_embedded_modes_answer_the_client_secret(
        build: Build, stripe_emulator: StripeEmulator, ui_mode: str) -> None:
    app = build(ui_mode=ui_mode)
    answer = app.post_json("/create-checkout-session", ONE_TEE)
    session = stripe_emulator.session(answer.json["sessionId"])
    assert answer.json == {"sessionId": session["id"], "clientSecret": session["client_secret"]}
    sent = sent_create(stripe_emulator)
    assert sent["ui_mode"] == ui_mode
    assert sent["return_url"] == f"{DOMAIN}/return?session_id={{CHECKOUT_SESSION_ID}}"
    assert "success_url" not in sent and "cancel_url" not in sent
    assert "redirect_on_completion" not in sent  # Stripe's default, "always"
    # The shop's marker comes from where its customers return, here the return_url.
    assert sent["metadata"][MARKER_KEY] == shop_marker(sent["return_url"])


def test_hosted_page_stays_the_default(build: Build, stripe_emulator: StripeEmulator) -> None:
    answer = build().post_json("/create-checkout-session", ONE_TEE)
    assert set(answer.json) == {"sessionId", "url"}
    sent = sent_create(stripe_emulator)
    assert "ui_mode" not in sent and "return_url" not in sent
    assert sent["success_url"].startswith(DOMAIN)


@pytest.mark.parametrize("redirect", ["always", "if_required", "never"])
def test_redirect_on_completion_is_sent(build: Build, stripe_emulator: StripeEmulator,
                                        redirect: str) -> None:
    app = build(ui_mode="embedded_page", redirect_on_completion=redirect)
    answer = app.post_json("/create-checkout-session", ONE_TEE)
    sent = sent_create(stripe_emulator)
    assert sent["redirect_on_completion"] == redirect
    # "never" sends nobody back, so it needs (and sends) no return_url.
    assert ("return_url" in sent) == (redirect != "never")
    assert stripe_emulator.session(answer.json["sessionId"])["redirect_on_completion"] == (
        redirect)


def test_configured_return_url_is_sent(build: Build, stripe_emulator: StripeEmulator) -> None:
    url = "https://shop.example.com/thanks/{CHECKOUT_SESSION_ID}"
    build(ui_mode="elements", return_url=url).post_json("/create-checkout-session", ONE_TEE)
    assert sent_create(stripe_emulator)["return_url"] == url


@pytest.mark.parametrize("ui_mode", ["embedded_page", "elements"])
def test_a_form_post_needs_javascript(build: Build, stripe_emulator: StripeEmulator,
                                      ui_mode: str) -> None:
    app = build(ui_mode=ui_mode)
    answer = app.post("/create-checkout-session", {"price": "tee", "quantity": "1"},
                      status=400)
    assert answer.json["error"]["type"] == "invalid_request_error"
    assert "needs JavaScript" in answer.json["error"]["message"]
    assert stripe_emulator.requests == []  # nothing was created


@pytest.mark.parametrize(("ui_mode", "key"), [("embedded_page", PK), ("hosted_page", None)])
def test_config_path_tells_the_page_the_key_and_mode(
        build: Build, ui_mode: str, key: str | None) -> None:
    app = build(ui_mode=ui_mode, publishable_key=key)
    answer = app.get("/create-checkout-session/config")
    assert answer.json == {"publishableKey": key, "uiMode": ui_mode}
    assert answer.content_type == "application/json"
    assert app.post("/create-checkout-session/config", status=405).headers["Allow"] == (
        "GET, HEAD, OPTIONS")


def test_publishable_key_comes_from_the_environment(
        build: Build, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_PUBLISHABLE_KEY", "pk_test_from_env")
    app = build(ui_mode="elements", publishable_key=None)
    assert app.get("/create-checkout-session/config").json["publishableKey"] == (
        "pk_test_from_env")


def test_embedded_order_is_fulfilled_from_the_webhook_and_shown_by_the_status_path(
        stripe_emulator: StripeEmulator, tmp_path: Path) -> None:
    fulfilments = Fulfilments()
    middleware = CheckoutMiddleware(
        shop, secret_key=stripe_emulator.secret_key, stripe_api_base=stripe_emulator.api_base,
        domain_url=DOMAIN, price_lookup=Catalog(CATALOG), ui_mode="embedded_page",
        publishable_key=PK, webhook_secret=stripe_emulator.webhook_secret,
        store=f"sqlite:///{tmp_path / 'orders.db'}", fulfill=fulfilments)
    server = BackgroundServer(middleware, port=0).start()
    url = server.url
    try:
        stripe_emulator.set_webhook_url(f"{url}/stripe-webhook")
        created = requests.post(f"{url}/create-checkout-session", json=ONE_TEE, timeout=10)
        session_id = created.json()["sessionId"]
        status = f"{url}/checkout-session?session_id={session_id}"
        assert requests.get(status, timeout=10).json()["fulfilled"] is False
        stripe_emulator.pay(session_id)
        order = requests.get(status, timeout=10).json()
    finally:
        server.stop()
        middleware.close()
    assert order["fulfilled"] is True and order["status"] == "paid"
    assert [o.session_id for o in fulfilments.orders] == [session_id]


# -- configuration mistakes ----------------------------------------------------------


def construct(**options: Any) -> CheckoutMiddleware:
    base: dict[str, Any] = {"secret_key": "sk_test_123", "domain_url": DOMAIN,
                            "price_lookup": Catalog(CATALOG), "publishable_key": PK}
    base.update(options)
    return CheckoutMiddleware(shop, **base)


@pytest.mark.parametrize(
    ("options", "option", "words"),
    [
        pytest.param({"ui_mode": "form"}, "ui_mode", "not supported", id="form"),
        pytest.param({"ui_mode": "embedded"}, "ui_mode", "'embedded_page'", id="old-embedded"),
        pytest.param({"ui_mode": "custom"}, "ui_mode", "'elements'", id="old-custom"),
        pytest.param({"ui_mode": "hosted"}, "ui_mode", "'hosted_page'", id="old-hosted"),
        pytest.param({"ui_mode": 3}, "ui_mode", "expected a string", id="not-a-string"),
        pytest.param({"ui_mode": "elements", "publishable_key": None}, "publishable_key",
                     "STRIPE_PUBLISHABLE_KEY", id="pk-missing"),
        pytest.param({"publishable_key": "sk_test_123"}, "publishable_key", "secret key",
                     id="pk-is-secret"),
        pytest.param({"publishable_key": "pk_test_"}, "publishable_key",
                     "not a publishable key", id="pk-empty"),
        pytest.param({"publishable_key": "pub_123"}, "publishable_key",
                     "not a publishable key", id="pk-shape"),
        pytest.param({"publishable_key": "pk_live_123"}, "publishable_key", "mode",
                     id="pk-live-with-test-secret"),
        pytest.param({"secret_key": "sk_live_123", "publishable_key": "pk_test_1"},
                     "publishable_key", "mode", id="pk-test-with-live-secret"),
        pytest.param({"ui_mode": "embedded_page", "return_url": "/return?s={CHECKOUT_SESSION_ID}"},
                     "return_url", "absolute", id="return-relative"),
        pytest.param({"ui_mode": "elements", "return_url": "https://shop.example.com/r",
                      "webhook_secret": "whsec_1", "store": "sqlite:///:memory:"},
                     "return_url", "{CHECKOUT_SESSION_ID}", id="return-without-id"),
        pytest.param({"ui_mode": "embedded_page", "success_url": f"{DOMAIN}/ok"},
                     "success_url", "return_url", id="success-in-embedded"),
        pytest.param({"ui_mode": "elements", "cancel_url": f"{DOMAIN}/no"},
                     "cancel_url", "return_url", id="cancel-in-elements"),
        pytest.param({"return_url": f"{DOMAIN}/r"}, "return_url", "embedded_page",
                     id="return-on-hosted"),
        pytest.param({"redirect_on_completion": "if_required"}, "redirect_on_completion",
                     "embedded_page", id="redirect-on-hosted"),
        pytest.param({"ui_mode": "elements", "redirect_on_completion": "never"},
                     "redirect_on_completion", "embedded_page", id="redirect-on-elements"),
        pytest.param({"ui_mode": "embedded_page", "redirect_on_completion": "sometimes"},
                     "redirect_on_completion", "'if_required'", id="redirect-unknown"),
        pytest.param({"ui_mode": "embedded_page", "redirect_on_completion": "never",
                      "return_url": f"{DOMAIN}/r?id={{CHECKOUT_SESSION_ID}}"},
                     "return_url", "never", id="return-with-never"),
        pytest.param({"ui_mode": "embedded_page", "domain_url": None}, "domain_url",
                     "return_url", id="no-domain"),
        pytest.param({"session_options": {"return_url": f"{DOMAIN}/r"}}, "session_options",
                     "return_url", id="return-in-session-options"),
        pytest.param({"session_options": {"ui_mode": "elements"}}, "session_options",
                     "ui_mode", id="ui-mode-in-session-options"),
        pytest.param({"ui_mode": "elements", "session_options": {"submit_type": "pay"}},
                     "session_options", "submit_type is not allowed when ui_mode is elements",
                     id="submit-type-in-elements"),
        pytest.param({"session_options": {
                         "permissions": {"update_shipping_details": "server_only"}}},
                     "session_options",
                     "permissions can only be set when ui_mode is embedded_page or elements",
                     id="permissions-on-hosted"),
    ],
)
def test_bad_configuration_names_the_option(options: dict[str, Any], option: str,
                                            words: str) -> None:
    with pytest.raises((ValueError, TypeError)) as caught:
        construct(**options)
    message = str(caught.value)
    assert message.startswith(f"{option}:"), message
    assert words in message


def test_return_url_without_session_id_is_fine_without_a_return_page() -> None:
    middleware = construct(ui_mode="elements", return_url="https://shop.example.com/thanks")
    assert middleware.settings.return_url == "https://shop.example.com/thanks"
    assert middleware.status is None


def test_live_pair_is_accepted() -> None:
    middleware = construct(secret_key="sk_live_123", domain_url="https://shop.example.com",
                           ui_mode="embedded_page", publishable_key="pk_live_456")
    assert middleware.settings.publishable_key == "pk_live_456"
    assert middleware.settings.success_url is None and middleware.settings.cancel_url is None
    assert middleware.settings.return_address == middleware.settings.return_url


def test_without_any_return_url_the_marker_still_tells_shops_apart() -> None:
    one = construct(ui_mode="embedded_page", redirect_on_completion="never")
    other = construct(ui_mode="embedded_page", redirect_on_completion="never", path="/buy")
    assert one.settings.return_url is None
    assert one.checkout.marker != other.checkout.marker


def test_the_ini_filter_takes_the_same_options(tmp_path: Path) -> None:
    from stripe_checkout_mw.wsgi.paste import filter_app_factory

    catalog = tmp_path / "catalog.json"
    catalog.write_text('{"tee": {"name": "T", "unit_amount": 100, "currency": "usd"}}',
                       encoding="utf-8")
    middleware = filter_app_factory(
        shop, {"here": str(tmp_path)}, catalog="catalog.json", secret_key="sk_test_1",
        domain_url=DOMAIN, ui_mode="embedded_page", redirect_on_completion="if_required",
        publishable_key=PK, return_url=f"{DOMAIN}/back?id={{CHECKOUT_SESSION_ID}}")
    settings = middleware.settings
    assert (settings.ui_mode, settings.redirect_on_completion, settings.publishable_key) == (
        "embedded_page", "if_required", PK)
    assert settings.return_url == f"{DOMAIN}/back?id={{CHECKOUT_SESSION_ID}}"
    with pytest.raises(ValueError, match=r"^ui_mode: 'custom' is Stripe's old name"):
        filter_app_factory(shop, {"here": str(tmp_path)}, catalog="catalog.json",
                           secret_key="sk_test_1", domain_url=DOMAIN, ui_mode="custom")
    blank = filter_app_factory(shop, {"here": str(tmp_path)}, catalog="catalog.json",
                               secret_key="sk_test_1", domain_url=DOMAIN, ui_mode="")
    assert blank.settings.ui_mode == "hosted_page"  # an empty .ini value is the default


def test_session_options_refused_in_elements_are_fine_elsewhere() -> None:
    for ui_mode in ("hosted_page", "embedded_page"):
        assert construct(ui_mode=ui_mode, session_options={"submit_type": "pay"})
    assert construct(ui_mode="elements", session_options={"permissions": {
        "update_shipping_details": "server_only"}})
