"""The ``check`` command against the emulator: one line per check, exit 0 or 1."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from stripe_checkout_mw.__main__ import main
from stripe_checkout_mw.testing import StripeEmulator

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


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
    status, lines, out = check(capsys, "--catalog", str(catalog))
    assert status == 0, out
    assert set(lines) == {"secret key", "redirect URLs", "webhook secret", "stripe", "catalog",
                          "catalog prices", "store"}
    assert all(line.startswith("ok  ") for line in lines.values()), out
    assert "all 1 exist and are active" in lines["catalog prices"]
    assert out.splitlines()[-1].startswith("ready: 7 ok, 0 warnings, 0 failed")
    assert stripe_emulator.secret_key not in out
    assert stripe_emulator.webhook_secret not in out
    assert (tmp_path / "orders.db").exists()


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
        pytest.param("STRIPE_API_BASE", "127.0.0.1:12111", "stripe", "not an absolute URL",
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


def test_the_pyramid_example_ini(capsys: pytest.CaptureFixture[str]) -> None:
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
    assert out.startswith("FAIL  configuration: requre_email: not a stripe-checkout-mw option")
    assert out.count("\n") == 1


def test_check_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["check", "--help"])
    assert exited.value.code == 0
    assert "--catalog" in capsys.readouterr().out
