"""The PasteDeploy filter: .ini strings converted, unknown keys refused, entry points found."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from paste.deploy import loadapp

from stripe_checkout_mw import Catalog, CheckoutMiddleware, ClientPrices, StripeLookupKeys
from stripe_checkout_mw.errors import OptionError
from stripe_checkout_mw.settings.options import OPTIONS, to_bool, to_words
from stripe_checkout_mw.wsgi.paste import PRICE_KEYS, filter_app_factory

CATALOG = {"tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"}}


def app(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the app"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STRIPE_SECRET_KEY", "WEB_APP_URL", "STRIPE_WEBHOOK_SECRET",
                 "STRIPE_CHECKOUT_STORE", "STRIPE_API_BASE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(CATALOG), encoding="utf-8")
    return path


@pytest.fixture
def built() -> Iterator[list[CheckoutMiddleware]]:
    """Middlewares made by a test, their stores closed afterwards."""
    made: list[CheckoutMiddleware] = []
    yield made
    for middleware in made:
        if middleware.store is not None:
            middleware.store.close()


def make(
    catalog: Path, built: list[CheckoutMiddleware], /, **conf: str
) -> CheckoutMiddleware:
    base = {"secret_key": "sk_test_ini", "domain_url": "https://shop.example.com",
            "catalog": str(catalog)}
    base.update(conf)
    middleware = filter_app_factory(app, {"here": str(catalog.parent)}, **base)
    built.append(middleware)
    return middleware


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("Yes", True), ("ON", True), ("1", True), (" t ", True),
     ("false", False), ("no", False), ("Off", False), ("0", False)],
)
def test_booleans_are_words(text: str, expected: bool) -> None:
    assert to_bool("require_email", text) is expected


def test_lists_take_spaces_commas_and_lines() -> None:
    assert to_words("allowed_countries", "GB, US\n  FR") == ("GB", "US", "FR")


def test_strings_are_converted(
    catalog: Path, built: list[CheckoutMiddleware], tmp_path: Path
) -> None:
    middleware = make(
        catalog, built,
        require_email="yes",
        max_quantity="12",
        allowed_countries="GB, US",
        mode="payment",
        timeout="3 20",
        max_network_retries="0",
        max_body="2048",
        allowed_origins="https://a.example https://b.example",
        webhook_secret="whsec_one\n whsec_two",
        store=f"sqlite:///{tmp_path / 'orders.db'}",
        fulfill="builtins:print",
        session_options='{"allow_promotion_codes": true}',
    )
    settings = middleware.settings
    assert settings.validator.require_email is True  # type: ignore[attr-defined]
    assert settings.validator.max_quantity == 12  # type: ignore[attr-defined]
    assert settings.allowed_countries == ("GB", "US")
    assert settings.timeout == (3.0, 20.0)
    assert settings.max_network_retries == 0
    assert settings.max_body == 2048
    assert settings.allowed_origins == {"https://a.example", "https://b.example"}
    assert settings.webhook_secrets == ("whsec_one", "whsec_two")
    assert settings.webhook_path == "/stripe-webhook"
    assert settings.session_options == {"allow_promotion_codes": True}
    assert isinstance(settings.price_lookup, Catalog)


def test_a_single_timeout_is_one_number(catalog: Path, built: list[CheckoutMiddleware]) -> None:
    assert make(catalog, built, timeout="8").settings.timeout == (5.0, 8.0)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("require_email", "sometimes", id="bool"),
        pytest.param("max_quantity", "lots", id="int"),
        pytest.param("timeout", "1 2 3", id="timeout"),
        pytest.param("fulfill", "no_such_module_here:fulfill", id="import"),
        pytest.param("fulfill", "json:no_such_function", id="attribute"),
        pytest.param("fulfill", "json", id="not-a-reference"),
        pytest.param("fulfill", "json:__doc__", id="not-callable"),
        pytest.param("session_options", "{not json", id="json"),
    ],
)
def test_a_bad_value_names_its_key(
    catalog: Path, built: list[CheckoutMiddleware], key: str, value: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{key}: "):
        make(catalog, built, **{key: value})


def test_the_middleware_still_checks_converted_values(
    catalog: Path, built: list[CheckoutMiddleware]
) -> None:
    with pytest.raises(ValueError, match=r"^max_quantity: "):
        make(catalog, built, max_quantity="0")


def test_an_unknown_key_is_an_error_naming_the_nearest_one(
    catalog: Path, built: list[CheckoutMiddleware]
) -> None:
    with pytest.raises(ValueError) as caught:
        make(catalog, built, requre_email="true")
    assert isinstance(caught.value, OptionError)
    assert caught.value.option == "requre_email"
    assert str(caught.value) == ("requre_email: not a stripe-checkout-mw option; "
                                 "did you mean require_email?")


def test_every_middleware_option_has_an_ini_key() -> None:
    parameters = inspect.signature(CheckoutMiddleware.__init__).parameters
    options = set(parameters) - {"self", "app", "client", "misspelt"}
    assert options == set(OPTIONS)
    assert not set(PRICE_KEYS) - {"price_lookup"} & set(OPTIONS)


def test_an_empty_value_means_the_default(catalog: Path, built: list[CheckoutMiddleware]) -> None:
    settings = make(catalog, built, stripe_api_base="", max_quantity="").settings
    assert settings.stripe_api_base is None
    assert settings.validator.max_quantity == 999  # type: ignore[attr-defined]


def test_env_values_are_read_from_the_environment(
    catalog: Path, built: list[CheckoutMiddleware], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOP_API", "http://127.0.0.1:12111")
    settings = make(catalog, built, stripe_api_base="env:SHOP_API",
                    mode="env:UNSET_SHOP_MODE").settings
    assert settings.stripe_api_base == "http://127.0.0.1:12111"
    assert settings.mode is None
    with pytest.raises(ValueError, match=r"^mode: 'env:' needs a variable name"):
        make(catalog, built, mode="env:")


def test_secret_key_and_domain_default_to_the_environment(
    catalog: Path, built: list[CheckoutMiddleware], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_from_env")
    monkeypatch.setenv("WEB_APP_URL", "https://env.example")
    middleware = filter_app_factory(app, {"here": str(catalog.parent)}, catalog="catalog.json")
    built.append(middleware)
    assert middleware.settings.secret_key == "sk_test_from_env"
    assert middleware.settings.cancel_url == "https://env.example/cancel"


def test_catalog_path_is_relative_to_the_ini_folder(
    catalog: Path, built: list[CheckoutMiddleware]
) -> None:
    lookup = make(catalog, built, catalog="catalog.json").settings.price_lookup
    assert isinstance(lookup, Catalog) and len(lookup) == 1


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        pytest.param({"catalog": ""}, r"^catalog: no prices configured", id="no-prices"),
        pytest.param({"catalog": "missing.json"}, r"^catalog: cannot read catalog", id="missing"),
        pytest.param({"price_lookup": "cheapest"}, r"^price_lookup: 'cheapest' is not one of",
                     id="unknown-kind"),
        pytest.param({"price_lookup": "lookup_keys"},
                     "^catalog: does not apply to price_lookup = lookup_keys", id="mixed"),
        pytest.param({"catalog": "", "price_lookup": "client_prices"},
                     "^client_currencies: price_lookup = client_prices needs",
                     id="client-incomplete"),
        pytest.param({"catalog": "", "price_lookup": "catalog"},
                     "^catalog: price_lookup = catalog needs", id="catalog-without-file"),
    ],
)
def test_price_lookup_mistakes(
    catalog: Path, built: list[CheckoutMiddleware], conf: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make(catalog, built, **conf)


def test_a_malformed_catalog_is_reported_under_catalog(
    tmp_path: Path, built: list[CheckoutMiddleware]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match=r"^catalog: catalog .* is not valid JSON"):
        make(bad, built)


def test_lookup_keys_and_client_prices(
    catalog: Path, built: list[CheckoutMiddleware], caplog: pytest.LogCaptureFixture
) -> None:
    lookup = make(catalog, built, catalog="", price_lookup="lookup_keys",
                  lookup_keys_ttl="60").settings.price_lookup
    assert isinstance(lookup, StripeLookupKeys) and lookup.ttl == 60.0
    client = make(catalog, built, catalog="", price_lookup="client_prices",
                  client_currencies="usd, eur", client_max_unit_amount="5000").settings
    assert isinstance(client.price_lookup, ClientPrices)
    assert client.price_lookup.currencies == {"usd", "eur"}
    assert client.price_lookup.max_unit_amount == 5000


def test_a_custom_price_lookup_by_reference(
    catalog: Path, built: list[CheckoutMiddleware]
) -> None:
    settings = make(catalog, built, catalog="", price_lookup="builtins:list").settings
    assert settings.price_lookup is list


def write_ini(tmp_path: Path, filter_lines: str, use: str = "checkout") -> Path:
    (tmp_path / "catalog.json").write_text(json.dumps(CATALOG), encoding="utf-8")
    ini = tmp_path / "site.ini"
    ini.write_text(
        "[pipeline:main]\npipeline = checkout app\n\n"
        f"[filter:checkout]\nuse = egg:stripe-checkout-mw#{use}\n"
        "secret_key = sk_test_ini\ndomain_url = https://shop.example.com\n"
        f"catalog = catalog.json\n{filter_lines}\n"
        "[app:app]\nuse = call:test_paste:app_factory\n",
        encoding="utf-8",
    )
    return ini


def app_factory(global_conf: dict[str, str], **local_conf: str) -> Any:
    return app


@pytest.mark.parametrize("entry_point", ["checkout", "main"])
def test_loadapp_finds_the_entry_point(
    tmp_path: Path, built: list[CheckoutMiddleware], entry_point: str
) -> None:
    ini = write_ini(tmp_path, "require_email = true\n", use=entry_point)
    loaded = loadapp(f"config:{ini}")
    assert isinstance(loaded, CheckoutMiddleware)
    built.append(loaded)
    assert loaded.app is app
    assert loaded.settings.validator.require_email is True  # type: ignore[attr-defined]


def test_loadapp_refuses_a_typo(tmp_path: Path) -> None:
    ini = write_ini(tmp_path, "alowed_countries = GB\n")
    with pytest.raises(ValueError, match=r"^alowed_countries: not a stripe-checkout-mw option"):
        loadapp(f"config:{ini}")


def test_importing_the_filter_does_not_need_pastedeploy() -> None:
    code = "import sys, stripe_checkout_mw.wsgi.paste; print('paste.deploy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "False"


def test_only_price_lookup_is_both_an_option_and_a_price_key() -> None:
    assert set(OPTIONS) & set(PRICE_KEYS) == {"price_lookup"}
