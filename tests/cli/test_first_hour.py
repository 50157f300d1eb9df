"""The first hour's small stumbles: ``--version``, a catalog of the wrong shape, an unset
``env:NAME`` in the ``.ini``, and a live key within a test's reach."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import stripe

from stripe_checkout_mw import __version__
from stripe_checkout_mw.__main__ import main
from stripe_checkout_mw.cli.check import read_ini
from stripe_checkout_mw.errors import OptionError
from stripe_checkout_mw.testing.pytest_plugin import refuse_live_keys


def test_version_prints_the_packages_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"stripe-checkout-mw {__version__}"


def test_a_catalog_written_as_a_list_says_which_shape_is_expected(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps([{"name": "T-shirt", "unit_amount": 2000, "currency": "usd"}]))
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_firsthour")
    monkeypatch.setenv("WEB_APP_URL", "https://shop.example.com")
    assert main(["check", "--catalog", str(catalog)]) == 1
    out = capsys.readouterr().out
    assert "empty" not in out
    assert "got a list" in out and "product key" in out and '{"tee": ' in out


def _ini(tmp_path: Path, line: str) -> Path:
    (tmp_path / "catalog.json").write_text(json.dumps(
        {"tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"}}))
    ini = tmp_path / "shop.ini"
    ini.write_text("[filter:checkout]\nsecret_key = sk_test_ini\ncatalog = catalog.json\n"
                   f"{line}\n")
    return ini


def test_env_naming_an_unset_variable_in_another_options_place_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MY_WHSEC", raising=False)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_someone_elses")
    with pytest.raises(OptionError) as refused:
        read_ini(_ini(tmp_path, "webhook_secret = env:MY_WHSEC"))
    assert refused.value.option == "webhook_secret"
    assert "MY_WHSEC is not set" in str(refused.value)
    monkeypatch.setenv("MY_WHSEC", "whsec_mine")
    assert read_ini(_ini(tmp_path, "webhook_secret = env:MY_WHSEC"))["webhook_secret"] == (
        "whsec_mine")


def test_env_naming_the_options_own_unset_variable_falls_back_quietly_or_with_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("STRIPE_API_BASE", raising=False)
    monkeypatch.delenv("SHOP_MAX", raising=False)
    caplog.set_level(logging.WARNING, logger="stripe_checkout_mw")
    options = read_ini(_ini(tmp_path, "stripe_api_base = env:STRIPE_API_BASE"))
    assert "stripe_api_base" not in options and caplog.records == []  # its own default
    options = read_ini(_ini(tmp_path, "max_quantity = env:SHOP_MAX"))
    assert "max_quantity" not in options
    assert [r.getMessage() for r in caplog.records] == [
        "max_quantity = env:SHOP_MAX: the environment variable SHOP_MAX is not set; "
        "max_quantity takes its default"]


@pytest.mark.parametrize("where", ["environment", "stripe.api_key"])
def test_the_emulator_fixture_refuses_a_live_key_within_reach(
    monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    if where == "environment":
        monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_live_" + "x" * 24)
    else:
        monkeypatch.setattr(stripe, "api_key", "rk_live_" + "x" * 24)
    with pytest.raises(pytest.fail.Exception, match="live Stripe key"):
        refuse_live_keys()
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_fine")
    monkeypatch.setattr(stripe, "api_key", None)
    refuse_live_keys()


SHOP_MODULE = '''
def make_app(global_config, **settings):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"shop"]
    return app

def fulfill(order):
    pass
'''


def test_check_ini_loads_the_app_section_as_pserve_would(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    stripe_emulator: Any,
) -> None:
    """``myshop.py`` beside the ``.ini``: ``check`` run from that folder could import it,
    ``pserve`` cannot; ``check`` now says so, and passes once ``PYTHONPATH`` names it."""
    (tmp_path / "firsthour_shop.py").write_text(SHOP_MODULE)
    (tmp_path / "catalog.json").write_text(json.dumps(
        {"tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"}}))
    ini = tmp_path / "shop.ini"
    ini.write_text(
        "[app:shop]\nuse = call:firsthour_shop:make_app\n\n"
        "[filter:checkout]\nuse = egg:stripe-checkout-mw#checkout\n"
        "catalog = %(here)s/catalog.json\ndomain_url = https://shop.example.com\n\n"
        "[pipeline:main]\npipeline = checkout shop\n")
    monkeypatch.setenv("STRIPE_SECRET_KEY", stripe_emulator.secret_key)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_emulator.api_base)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONPATH", raising=False)

    assert main(["check", "--ini", str(ini)]) == 1
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if " app: " in line]
    assert line.startswith("FAIL") and "[app:shop]" in line
    assert "No module named 'firsthour_shop'" in line and "PYTHONPATH" in line
    assert "NOT ready" in out

    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    assert main(["check", "--ini", str(ini)]) == 0
    out = capsys.readouterr().out
    assert "ok    app: [app:shop] loads as pserve loads it" in out
