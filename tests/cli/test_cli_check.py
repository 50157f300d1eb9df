"""The ``check`` command against the emulator: one line per check, exit 0 or 1."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from stripe_checkout_mw.__main__ import main
from stripe_checkout_mw.testing import StripeEmulator

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def deployment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stripe_emulator: StripeEmulator
) -> None:
    """A deployment that passes every check; tests break one thing each."""
    monkeypatch.setenv("STRIPE_SECRET_KEY", stripe_emulator.secret_key)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_emulator.api_base)
    monkeypatch.setenv("WEB_APP_URL", "https://shop.example.com")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", stripe_emulator.webhook_secret)
    monkeypatch.setenv("STRIPE_CHECKOUT_STORE", f"sqlite:///{tmp_path / 'orders.db'}")
    monkeypatch.delenv("STRIPE_CHECKOUT_CATALOG", raising=False)


def write_catalog(path: Path, emulator: StripeEmulator, *extra_ids: str) -> Path:
    price = emulator.add_price(unit_amount=900, currency="usd", product_name="Club")
    entries: dict[str, object] = {
        "tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"},
        "club": {"price": price["id"]},
    }
    for i, price_id in enumerate(extra_ids):
        entries[f"extra{i}"] = {"price": price_id}
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, str], str]:
    """Run ``check``; return its exit status, {check name: its line} and the output."""
    status = main(["check", *args])
    out = capsys.readouterr().out
    lines = {}
    for line in out.splitlines()[:-1]:
        name = line[6:].split(":", 1)[0]
        lines[name] = line
    return status, lines, out


def test_a_good_deployment_passes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, stripe_emulator: StripeEmulator
) -> None:
    catalog = write_catalog(tmp_path / "catalog.json", stripe_emulator)
    assert main(["webhook-endpoint", "setup"]) == 0
    capsys.readouterr()
    status, lines, out = check(capsys, "--catalog", str(catalog))
    assert status == 0, out
    assert set(lines) == {"secret key", "redirect URLs", "webhook secret", "marker", "stripe",
                          "webhook endpoint", "catalog", "catalog prices", "store"}
    assert all(line.startswith("ok  ") for line in lines.values()), out
    assert "all 1 exist and are active" in lines["catalog prices"]
    assert out.splitlines()[-1].startswith("ready: 9 ok, 0 warnings, 0 failed")
    assert stripe_emulator.secret_key not in out
    assert stripe_emulator.webhook_secret not in out
    assert "does not exist yet" in lines["store"]
    assert not (tmp_path / "orders.db").exists(), "check must create nothing"


def test_missing_and_archived_prices_fail(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, stripe_emulator: StripeEmulator
) -> None:
    archived = stripe_emulator.add_price(unit_amount=100, active=False)["id"]
    catalog = write_catalog(tmp_path / "catalog.json", stripe_emulator, "price_gone", archived)
    status, lines, out = check(capsys, "--catalog", str(catalog))
    assert status == 1
    assert lines["catalog prices"].startswith("FAIL")
    assert "price_gone does not exist" in lines["catalog prices"]
    assert f"{archived} is archived" in lines["catalog prices"]
    assert out.splitlines()[-1].startswith("NOT ready:")


@pytest.mark.parametrize(
    ("variable", "value", "name", "message"),
    [
        pytest.param("STRIPE_SECRET_KEY", "", "secret key", "not set", id="no-key"),
        pytest.param("STRIPE_SECRET_KEY", "pk_test_abc", "secret key", "publishable key",
                     id="publishable"),
        pytest.param("WEB_APP_URL", "shop.example.com", "redirect URLs",
                     "is not an absolute http(s) URL", id="relative-url"),
        pytest.param("WEB_APP_URL", "", "redirect URLs", "set WEB_APP_URL", id="no-url"),
        pytest.param("STRIPE_WEBHOOK_SECRET", "sk_test_wrong_thing", "webhook secret",
                     "not a webhook signing secret", id="webhook-secret"),
        pytest.param("STRIPE_CHECKOUT_STORE", "mysql://db/shop", "store", "", id="bad-store"),
        pytest.param("STRIPE_API_BASE", "127.0.0.1:12111", "stripe",
                     "is not an absolute http(s) URL; write it in full, e.g. 'https://shop.example.com'"
                     " (read from STRIPE_API_BASE)",
                     id="api-base"),
    ],
)
def test_each_mistake_is_one_failing_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    variable: str, value: str, name: str, message: str,
) -> None:
    monkeypatch.setenv(variable, value)
    status, lines, out = check(capsys)
    assert status == 1, out
    assert lines[name].startswith("FAIL"), out
    assert message in lines[name]
    assert sum(line.startswith("FAIL") for line in lines.values()) == 1, out


def test_a_store_that_cannot_be_written_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, lines, _ = check(capsys, "--store", f"sqlite:///{tmp_path / 'no' / 'such' / 'x.db'}")
    assert status == 1 and lines["store"].startswith("FAIL")


def test_a_key_stripe_refuses(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with StripeEmulator(accept_any_test_key=False) as strict:
        monkeypatch.setenv("STRIPE_API_BASE", strict.api_base)
        monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_not_this_accounts_key")
        status, lines, _ = check(capsys)
    assert status == 1
    assert "Stripe refused the key" in lines["stripe"]


def test_stripe_unreachable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, stripe_emulator: StripeEmulator
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    catalog = write_catalog(tmp_path / "catalog.json", stripe_emulator)
    status, lines, _ = check(capsys, "--stripe-api-base", f"http://127.0.0.1:{port}",
                             "--catalog", str(catalog))
    assert status == 1
    assert lines["stripe"] == f"FAIL  stripe: cannot reach Stripe at http://127.0.0.1:{port}"
    assert lines["catalog prices"].startswith("skip")


def test_a_broken_catalog_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    broken = tmp_path / "catalog.json"
    broken.write_text('{"tee": {"name": "T-shirt"}}', encoding="utf-8")
    status, lines, _ = check(capsys, "--catalog", str(broken))
    assert status == 1
    assert "missing 'unit_amount'" in lines["catalog"]


def test_the_pyramid_example_ini(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As for pserve (`PYTHONPATH=. pserve development.ini`), shop.py must be importable:
    # fulfill = shop:fulfill here, and [app:shop] in the child process check loads it in.
    monkeypatch.syspath_prepend(str(EXAMPLES / "pyramid_shop"))
    monkeypatch.setenv("PYTHONPATH", str(EXAMPLES / "pyramid_shop"))
    status, lines, out = check(capsys, "--ini", str(EXAMPLES / "pyramid_shop" / "development.ini"))
    assert status == 0, out
    assert "3 products" in lines["catalog"]
    assert out.rstrip().endswith("development.ini)")


def test_an_ini_with_a_typo(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ini = tmp_path / "site.ini"
    ini.write_text("[filter:checkout]\nuse = egg:stripe-checkout-mw#checkout\n"
                   "requre_email = true\n", encoding="utf-8")
    status, _, out = check(capsys, "--ini", str(ini))
    assert status == 1
    assert out.startswith("FAIL  configuration: requre_email: not a stripe-checkout-mw option; "
                          "did you mean require_email?\n")
    assert out.count("\n") == 2


def test_check_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["check", "--help"])
    assert exited.value.code == 0
    assert "--catalog" in capsys.readouterr().out


def app_factory(global_conf: dict[str, str], **local_conf: str) -> Any:
    return lambda environ, start_response: []


#: .ini filter sections (after ``use``), each one loadapp accepts or refuses.
INI_CASES = [
    pytest.param("catalog = catalog.json", None, id="catalog"),
    pytest.param("catalog = catalog.json\nrequire_email = yes\ntimeout = 3 10\n"
                 "max_quantity = 12\nallowed_countries = GB, US\nfulfill = builtins:print\n"
                 'session_options = {"locale": "fr"}\nmode = payment', None, id="many"),
    pytest.param("price_lookup = lookup_keys\nlookup_keys_ttl = 30", None, id="lookup-keys"),
    pytest.param("price_lookup = client_prices\nclient_currencies = usd\n"
                 "client_max_unit_amount = 5000", None, id="client-prices"),
    pytest.param("catalog = catalog.json\nrequire_email = maybe", "require_email", id="bool"),
    pytest.param("catalog = catalog.json\ntimeout = [3,10]", "timeout", id="timeout-list"),
    pytest.param("catalog = catalog.json\ntimeout = 0", "timeout", id="timeout-zero"),
    pytest.param("catalog = catalog.json\nmax_quantity = lots", "max_quantity", id="int"),
    pytest.param("catalog = catalog.json\nmax_quantity = 0", "max_quantity", id="int-range"),
    pytest.param("catalog = catalog.json\nmode = setup", "mode", id="mode"),
    pytest.param("catalog = catalog.json\nfulfill = nosuchmod:fulfill", "fulfill", id="import"),
    pytest.param("catalog = catalog.json\nrefunded = builtins:print\ndisputed = builtins:print",
                 None, id="refund-hooks"),
    pytest.param("catalog = catalog.json\nrefunded = json:__doc__", "refunded",
                 id="refunded-not-callable"),
    pytest.param("catalog = catalog.json\nvalidator = json:__doc__", "validator",
                 id="not-callable"),
    pytest.param("catalog = catalog.json\nsecret_key = pk_test_abc", "secret_key",
                 id="publishable"),
    pytest.param("catalog = catalog.json\ndomain_url = shop.example.com", "domain_url",
                 id="relative-domain"),
    pytest.param("catalog = catalog.json\nstripe_api_base = localhost:1", "stripe_api_base",
                 id="api-base"),
    pytest.param("catalog = catalog.json\nwebhook_secret = secret", "webhook_secret",
                 id="webhook-secret"),
    pytest.param("catalog = catalog.json\nwebhook_path = hook", "webhook_path", id="path"),
    pytest.param("catalog = catalog.json\nstatus_path = /create-checkout-session", "path",
                 id="same-paths"),
    pytest.param('catalog = catalog.json\nsession_options = {"mode": "setup"}',
                 "session_options", id="reserved"),
    pytest.param("catalog = catalog.json\nallowed_origins = *", "allowed_origins",
                 id="wildcard"),
    pytest.param("catalog = catalog.json\nallowed_countries = gb", "allowed_countries",
                 id="country"),
    pytest.param("catalog = catalog.json\nstore = mysql://db/shop", "store", id="store"),
    pytest.param("catalog = missing.json", "catalog", id="missing-catalog"),
    pytest.param("", "catalog", id="no-prices"),
    pytest.param("price_lookup = cheapest", "price_lookup", id="lookup-kind"),
    pytest.param("catalog = catalog.json\nlookup_keys_ttl = 5", "lookup_keys_ttl",
                 id="key-of-another-lookup"),
    pytest.param("price_lookup = client_prices\nclient_currencies = usd\n"
                 "client_max_unit_amount = lots", "client_max_unit_amount", id="client-amount"),
    pytest.param("price_lookup = client_prices\nclient_currencies = dollars\n"
                 "client_max_unit_amount = 5000", "price_lookup", id="client-currency"),
    pytest.param("catalog = catalog.json\nrequre_email = true", "requre_email", id="typo"),
    pytest.param("catalog = catalog.json\nstore = sqlite:///orders.db\n"
                 "customer_ref = builtins:repr\nportal_path = /portal\n"
                 "portal_return_url = https://shop.example.com/me\n"
                 "subscription_changed = builtins:print\npast_due_is_active = no", None,
                 id="subscriptions"),
    pytest.param("catalog = catalog.json\ncustomer_ref = nosuchmod:user", "customer_ref",
                 id="customer-ref"),
    pytest.param("catalog = catalog.json\nportal_return_url = account", "portal_return_url",
                 id="portal-return"),
    pytest.param("catalog = catalog.json\npast_due_is_active = sometimes",
                 "past_due_is_active", id="past-due"),
]


@pytest.mark.parametrize(("section", "refused"), INI_CASES)
def test_check_and_loadapp_agree_on_every_ini(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, section: str, refused: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from paste.deploy import loadapp

    # [app:app] names this module: importable by check's pserve-like child process too.
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent))

    (tmp_path / "catalog.json").write_text(
        json.dumps({"tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"}}),
        encoding="utf-8")
    ini = tmp_path / "site.ini"
    ini.write_text("[pipeline:main]\npipeline = checkout app\n\n"
                   f"[filter:checkout]\nuse = egg:stripe-checkout-mw#checkout\n{section}\n\n"
                   "[app:app]\nuse = call:test_cli_check:app_factory\n", encoding="utf-8")
    try:
        loaded = loadapp(f"config:{ini}")
    except ValueError as exc:
        loaded = None
        assert refused is not None, f"loadapp refused a good file: {exc}"
        assert str(exc).startswith(f"{refused}: ")
    else:
        assert refused is None, "loadapp accepted a bad file"
        loaded.close()
    status, lines, out = check(capsys, "--ini", str(ini))
    assert (status == 0) == (loaded is not None), out
    if refused is not None:
        failed = [line for line in lines.values() if line.startswith("FAIL")]
        assert len(failed) == 1 and f"{refused}: " in failed[0], out


def test_check_creates_no_store_in_the_working_folder(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.delenv("STRIPE_CHECKOUT_STORE")  # the webhook secret alone needs the default
    status, lines, out = check(capsys)
    assert status == 0, out
    assert "stripe-checkout-orders.db does not exist yet" in lines["store"]
    assert list(folder.iterdir()) == []


def test_check_reads_a_store_without_changing_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    from stripe_checkout_mw.ledger.store import open_store

    monkeypatch.setenv("STRIPE_CHECKOUT_STORE", store_url)
    status, lines, out = check(capsys)
    assert status == 0, out
    assert "creates it" in lines["store"] or "creates its tables" in lines["store"], out
    with open_store(store_url) as store:  # nothing was created: a first use creates it all
        if store_url.startswith("sqlite"):
            assert not Path(store_url[len("sqlite:///"):]).exists()
        else:
            import psycopg

            with psycopg.connect(store_url) as conn:
                assert conn.execute("SELECT to_regclass('stripe_checkout_meta')"
                                    ).fetchone() == (None,)
        store.ensure_schema()
    status, lines, out = check(capsys)
    assert status == 0, out
    assert "its tables are ready" in lines["store"], out


# --- the marker: shops sharing one test account ----------------------------------------------


@pytest.mark.parametrize("domain", ["http://127.0.0.1:8000", "http://localhost:6543",
                                    "http://[::1]:8000"])
def test_a_test_key_with_the_default_marker_on_a_loopback_address_warns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, domain: str
) -> None:
    monkeypatch.setenv("WEB_APP_URL", domain)
    status, lines, out = check(capsys)
    assert status == 0, out
    assert lines["marker"].startswith("warn"), out
    assert "shop_id" in lines["marker"] and "STRIPE_CHECKOUT_SHOP_ID" in lines["marker"]


def test_a_shop_id_or_a_public_address_needs_no_marker_warning(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, lines, out = check(capsys)  # https://shop.example.com
    assert lines["marker"].startswith("ok") and "derived" in lines["marker"], out
    monkeypatch.setenv("WEB_APP_URL", "http://127.0.0.1:8000")
    monkeypatch.setenv("STRIPE_CHECKOUT_SHOP_ID", "ann-laptop")
    status, lines, out = check(capsys)
    assert status == 0 and lines["marker"].startswith("ok"), out
    assert "'ann-laptop'" in lines["marker"]


def test_a_malformed_shop_id_is_refused_naming_the_option(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_CHECKOUT_SHOP_ID", "ann laptop")
    status, _, out = check(capsys)
    assert status == 1 and "shop_id" in out and "NOT ready" in out
