"""Configuration mistakes are raised at construction, naming the option and the fix."""

from __future__ import annotations

import inspect
import logging
from typing import Any

import pytest

from stripe_checkout_mw import Catalog, CheckoutMiddleware, ClientPrices, OptionError
from stripe_checkout_mw.settings.options import OPTIONS

CATALOG = Catalog({"tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"}})


def app(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"app"]


def build(**options: Any) -> CheckoutMiddleware:
    base: dict[str, Any] = {
        "secret_key": "sk_test_123",
        "domain_url": "https://shop.example.com",
        "price_lookup": CATALOG,
    }
    base.update(options)
    return CheckoutMiddleware(app, **base)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STRIPE_SECRET_KEY", "WEB_APP_URL", "STRIPE_WEBHOOK_SECRET",
                 "STRIPE_CHECKOUT_STORE", "STRIPE_API_BASE"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_follow_the_seed() -> None:
    settings = build().settings
    assert settings.success_url == (
        "https://shop.example.com/success?session_id={CHECKOUT_SESSION_ID}"
    )
    assert settings.cancel_url == "https://shop.example.com/cancel"
    assert settings.path == "/create-checkout-session"
    assert settings.timeout == (5.0, 10.0)


def test_secret_key_and_domain_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_env")
    monkeypatch.setenv("WEB_APP_URL", "http://localhost:3000/")
    settings = CheckoutMiddleware(app, price_lookup=CATALOG).settings
    assert settings.secret_key == "sk_test_env"
    assert settings.cancel_url == "http://localhost:3000/cancel"


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        pytest.param({"secret_key": None}, ValueError, "secret_key", id="missing-key"),
        pytest.param({"secret_key": "pk_test_1"}, ValueError, "publishable", id="publishable-key"),
        pytest.param({"domain_url": None}, ValueError, "domain_url", id="missing-domain"),
        pytest.param({"domain_url": "shop.example.com"}, ValueError, "domain_url", id="relative"),
        pytest.param({"success_url": "/success"}, ValueError, "success_url", id="relative-success"),
        pytest.param({"cancel_url": "ftp://x/c"}, ValueError, "cancel_url", id="ftp-cancel"),
        pytest.param({"path": "checkout"}, ValueError, "path", id="path-without-slash"),
        pytest.param({"price_lookup": None}, ValueError, "StripeLookupKeys", id="no-lookup"),
        pytest.param({"price_lookup": 3}, TypeError, "price_lookup", id="lookup-not-callable"),
        pytest.param({"mode": "setup"}, ValueError, "mode", id="setup-mode"),
        pytest.param({"max_body": 10}, ValueError, "max_body", id="tiny-body"),
        pytest.param({"max_network_retries": -1}, ValueError, "max_network_retries", id="retries"),
        pytest.param({"timeout": 0}, ValueError, "timeout", id="zero-timeout"),
        pytest.param({"allowed_origins": ["*"]}, ValueError, "allowed_origins", id="wildcard"),
        pytest.param({"allowed_origins": {"https://a.b": 1}}, TypeError, "allowed_origins",
                     id="origins-dict"),
        pytest.param({"timeout": [3, 10]}, TypeError, r"^timeout: .*\(3, 10\)", id="timeout-list"),
        pytest.param({"timeout": "soon"}, ValueError, "^timeout: 'soon'", id="timeout-word"),
        pytest.param({"require_email": "maybe"}, ValueError, "^require_email: 'maybe'",
                     id="bool-word"),
        pytest.param({"max_quantity": "lots"}, ValueError, "^max_quantity: 'lots'",
                     id="int-word"),
        pytest.param({"max_quantity": 2.5}, TypeError, "^max_quantity: ", id="int-float"),
        pytest.param({"fulfill": "nosuchmod:fulfill"}, ValueError, "^fulfill: cannot import",
                     id="fulfill-import"),
        pytest.param({"fulfill": 3}, TypeError, "^fulfill: ", id="fulfill-not-callable"),
        pytest.param({"allowed_countries": ["gb"]}, ValueError, "allowed_countries", id="country"),
        pytest.param({"session_options": {"success_url": "https://evil.example"}}, ValueError,
                     "session_options", id="reserved-option"),
        pytest.param({"session_options": {"payment_method_types": ["card"]}}, ValueError,
                     "session_options", id="removed-param"),
        pytest.param({"webhook_path": "/hook"}, ValueError, "webhook_secret",
                     id="webhook-path-without-secret"),
        pytest.param({"webhook_secret": "secret"}, ValueError, "whsec_", id="bad-webhook-secret"),
        pytest.param({"validator": "strict"}, ValueError, "^validator: 'strict' is not a "
                     "'module:name'", id="validator-word"),
        pytest.param({"validator": 3}, TypeError, "^validator: ", id="validator"),
    ],
)
def test_bad_configuration_names_the_option(
    options: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words) as caught:
        build(**options)
    assert isinstance(caught.value, OptionError)
    assert str(caught.value) == f"{caught.value.option}: {caught.value.detail}"
    assert caught.value.option in words or caught.value.option in str(options)


def test_unknown_option_names_the_nearest_one() -> None:
    with pytest.raises(TypeError, match="sucess_url") as caught:
        build(sucess_url="https://shop.example.com/ok")
    assert isinstance(caught.value, OptionError) and caught.value.option == "sucess_url"
    with pytest.raises(OptionError) as misspelt:
        CheckoutMiddleware(app, pric_lookup=CATALOG)  # type: ignore[arg-type]
    assert str(misspelt.value) == ("pric_lookup: not a stripe-checkout-mw option; "
                                   "did you mean price_lookup?")
    with pytest.raises(OptionError,
                       match="the options are: action_required, allow_free_orders, "):
        build(xyzzy=1)


def test_option_error_carries_the_option_as_data() -> None:
    error = OptionError("timeout", "give seconds > 0")
    assert isinstance(error, ValueError)
    assert (error.option, error.detail, str(error)) == (
        "timeout", "give seconds > 0", "timeout: give seconds > 0")


def test_keyword_defaults_are_the_table_defaults() -> None:
    parameters = inspect.signature(CheckoutMiddleware.__init__).parameters
    keywords = {name: p.default for name, p in parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "client"}
    assert keywords == {name: option.default for name, option in OPTIONS.items()}


def test_ini_strings_are_accepted_from_python_too() -> None:
    settings = build(timeout="8", require_email="no", max_quantity="12", max_body="2048",
                     allowed_countries="GB US", allowed_origins="https://a.example",
                     fulfill="builtins:print").settings
    assert settings.timeout == (5.0, 8.0)
    assert settings.validator.require_email is False  # type: ignore[attr-defined]
    assert settings.validator.max_quantity == 12  # type: ignore[attr-defined]
    assert settings.max_body == 2048
    assert settings.allowed_countries == ("GB", "US")
    assert settings.allowed_origins == {"https://a.example"}
    assert settings.fulfill is print
    assert build(timeout=(3, 10)).settings.timeout == (3.0, 10.0)
    assert build(timeout="3 10").settings.timeout == (3.0, 10.0)


def test_an_environment_value_is_named_when_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_API_BASE", "127.0.0.1:12111")
    with pytest.raises(OptionError, match=r"^stripe_api_base: .*\(read from STRIPE_API_BASE\)"):
        build()


def test_stripe_api_base_from_the_environment_is_used_and_announced(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("STRIPE_API_BASE", "http://127.0.0.1:12111/")
    with caplog.at_level(logging.WARNING, logger="stripe_checkout_mw"):
        middleware = build()
    assert middleware.settings.stripe_api_base == "http://127.0.0.1:12111"
    warnings = [r.getMessage() for r in caplog.records if "Not talking to Stripe" in r.getMessage()]
    assert warnings == ["Not talking to Stripe: API requests go to http://127.0.0.1:12111 "
                        "(stripe_api_base or STRIPE_API_BASE)"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="stripe_checkout_mw"):
        monkeypatch.delenv("STRIPE_API_BASE")
        assert build().settings.stripe_api_base is None
    assert "Not talking to Stripe" not in caplog.text


def test_the_middleware_is_a_context_manager(tmp_path: Any) -> None:
    with build(store=f"sqlite:///{tmp_path}/orders.db") as middleware:
        assert isinstance(middleware, CheckoutMiddleware)
        assert middleware.store is not None
        middleware.store.ensure_schema()
        assert middleware.store.get("cs_test_none") is None
    with pytest.raises(Exception, match="closed"):
        middleware.store.get("cs_test_none")


@pytest.mark.parametrize(
    ("mapping", "words"),
    [
        pytest.param({}, "empty", id="empty"),
        pytest.param({"tee": {"name": "T", "unit_amount": 1.5, "currency": "usd"}},
                     "unit_amount", id="float-amount"),
        pytest.param({"tee": {"name": "T", "unit_amount": 100, "currency": "dollars"}},
                     "currency", id="bad-currency"),
        pytest.param({"tee": {"name": "T", "unit_amount": 100}}, "currency", id="missing"),
        pytest.param({"tee": {"price": "prod_1"}}, "price_", id="not-a-price-id"),
        pytest.param({"tee": {"name": "T", "unit_amount": 1, "currency": "usd", "colour": 1}},
                     "colour", id="unknown-field"),
        pytest.param({"tee": {"name": "T", "unit_amount": 1, "currency": "usd",
                              "recurring": {"interval": "fortnight"}}}, "recurring",
                     id="bad-interval"),
    ],
)
def test_bad_catalog_is_refused(mapping: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Catalog(mapping)


def test_catalog_file_errors_name_the_file(tmp_path: Any) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ValueError, match=r"nope\.json"):
        Catalog.from_file(missing)
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        Catalog.from_file(broken)


def test_client_prices_warns_that_the_browser_sets_amounts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="stripe_checkout_mw"):
        ClientPrices(currencies=["aud"], max_unit_amount=10_000)
    assert "browser" in caplog.text
    with pytest.raises(ValueError, match="currencies"):
        ClientPrices(currencies="usd", max_unit_amount=1)
    with pytest.raises(ValueError, match="min_unit_amount"):
        ClientPrices(currencies=["usd"], max_unit_amount=1, min_unit_amount=2)


def test_live_key_with_http_domain_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="stripe_checkout_mw"):
        build(secret_key="sk_live_abc", domain_url="http://shop.example.com")
    assert "plain-http" in caplog.text
    assert "sk_live_abc" not in caplog.text


def test_webhook_secret_turns_on_webhook_and_status_paths(tmp_path: Any) -> None:
    settings = build(webhook_secret=["whsec_old", "whsec_new"],
                     store=f"sqlite:///{tmp_path}/orders.db").settings
    assert settings.webhook_path == "/stripe-webhook"
    assert settings.webhook_secrets == ("whsec_old", "whsec_new")
    assert settings.status_path == "/checkout-session"


def test_checkout_only_configuration_serves_no_webhook_path() -> None:
    settings = build().settings
    assert settings.webhook_path is None
    assert settings.status_path is None


def test_store_from_the_environment_turns_on_the_status_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("STRIPE_CHECKOUT_STORE", f"sqlite:///{tmp_path}/orders.db")
    middleware = build()
    try:
        assert middleware.settings.status_path == "/checkout-session"
        assert middleware.store is not None and middleware.webhooks is None
    finally:
        middleware.close()
