"""One option, one row: the keywords, their ``:param`` lines, the README's table, the
``.ini`` keys and the operator's commands all come from ``settings.options.OPTIONS``, and
no module below the WSGI layer imports it."""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from stripe_checkout_mw import CheckoutMiddleware
from stripe_checkout_mw.cli.check import read_ini
from stripe_checkout_mw.cli.operations import _settings
from stripe_checkout_mw.ledger.store import DEFAULT_STORE_URL, STORE_ENV
from stripe_checkout_mw.settings.options import (
    OPTIONS,
    PRICE_OPTIONS,
    markdown_rows,
    param_doc,
)
from stripe_checkout_mw.settings.rules import load_settings
from stripe_checkout_mw.wsgi.paste import PRICE_KEYS

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "stripe_checkout_mw"


def app(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"app"]


def _params(doc: str) -> dict[str, str]:
    """``:param name: text`` of a docstring, each text on one line."""
    found = re.findall(r":param (\w+): (.*?)(?=\n\s*:param |\n\s*\n|\Z)", doc, re.S)
    return {name: " ".join(text.split()) for name, text in found}


def test_each_keyword_has_the_param_line_of_its_row() -> None:
    documented = _params(inspect.getdoc(CheckoutMiddleware) or "")
    keywords = [name for name, p in inspect.signature(CheckoutMiddleware.__init__).parameters
                .items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert set(keywords) == {*OPTIONS, "client"}
    assert set(documented) == {*OPTIONS, "client", "app"}
    for name in OPTIONS:
        assert documented[name] == param_doc(name), (
            f"CheckoutMiddleware's ':param {name}:' differs from its row; write:\n"
            f":param {name}: {param_doc(name)}")


def test_the_readme_options_table_is_the_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    header = "| option | default | meaning |\n|---|---|---|\n"
    body = readme[readme.index(header) + len(header):].split("\n\n", 1)[0]
    rows = [row for row in body.splitlines() if not row.startswith("| `client` |")]
    expected = markdown_rows()
    assert rows == expected, "the README's options table differs from the options table; " \
        "its rows are:\n" + "\n".join(expected)
    assert len(body.splitlines()) == len(OPTIONS) + 1  # and the client keyword's row


def test_the_store_default_shown_is_the_ledgers() -> None:
    shown = OPTIONS["store"].shown_default
    assert f"`${STORE_ENV}`" in shown and f"`{DEFAULT_STORE_URL}`" in shown
    assert OPTIONS["store"].env == STORE_ENV


def test_the_ini_price_keys_come_from_the_table() -> None:
    assert set(PRICE_KEYS) == set(PRICE_OPTIONS)
    assert all(PRICE_KEYS[key] is PRICE_OPTIONS[key].convert for key in PRICE_KEYS)


def test_an_option_with_an_environment_variable_reads_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'from-env.db'}"
    monkeypatch.setenv(STORE_ENV, url)
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_env")
    settings = load_settings({}, serving=False)
    assert settings.store == url and settings.uses_store
    monkeypatch.delenv(STORE_ENV)
    settings = load_settings({}, serving=False)
    assert settings.store == DEFAULT_STORE_URL and not settings.uses_store
    assert settings.marker is None  # no return address: no session is recognised by marker


@pytest.mark.parametrize("ui_mode", ["hosted_page", "embedded_page", "elements"])
def test_the_commands_get_the_middlewares_settings_from_the_same_ini(
    ui_mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("STRIPE_SECRET_KEY", "WEB_APP_URL", "STRIPE_WEBHOOK_SECRET", STORE_ENV,
                 "STRIPE_API_BASE", "STRIPE_PUBLISHABLE_KEY"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "catalog.json").write_text(json.dumps(
        {"tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"}}))
    ini = tmp_path / "shop.ini"
    ini.write_text(
        "[filter:checkout]\n"
        "secret_key = sk_test_ini\n"
        f"ui_mode = {ui_mode}\n"
        "domain_url = https://shop.example.com\n"
        "publishable_key = pk_test_ini\n"
        "catalog = catalog.json\n"
        f"store = sqlite:///{tmp_path / 'orders.db'}\n"
        "webhook_secret = whsec_ini\n"
        "timeout = 3 7\n"
        "fulfill = builtins:print\n")
    with CheckoutMiddleware(app, **read_ini(ini)) as mw:
        served = mw.settings
        assert mw.webhooks is not None and mw.webhooks.events is mw.shop.events  # one router
    args = argparse.Namespace(ini=str(ini), section="filter:checkout", store=None,
                              fulfill=None)
    command = _settings(args, needs_stripe=True)
    assert command.marker is not None and command.marker == served.marker
    assert command.marker.value == mw.checkout.marker
    same = {"price_lookup": served.price_lookup, "validator": served.validator}
    assert replace(command, **same) == replace(served, **same)


def _imports(path: Path) -> set[str]:
    """The package-relative modules ``path`` imports (``..wsgi.middleware`` -> wsgi...)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            package = path.relative_to(PACKAGE).parts[:-1]
            base = list(package[:len(package) - (node.level - 1)])
            names.add(".".join([*base, node.module or ""]).strip("."))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "stripe_checkout_mw"):
            names.add(node.module.partition(".")[2])  # type: ignore[union-attr]
    return names


def test_nothing_below_the_edge_imports_the_wsgi_layer_or_the_command_line() -> None:
    below = [PACKAGE / "shop.py", *[path for part in ("settings", "checkout", "news",
                                                      "billing", "ledger", "stripe_api")
                                    for path in (PACKAGE / part).glob("*.py")]]
    for path in below:
        edge = {name for name in _imports(path) if name.startswith(("wsgi", "cli"))}
        assert not edge, f"{path.relative_to(ROOT)} imports {sorted(edge)}"
