"""One option, one row: the keywords, their ``:param`` lines, the README's table, the
``.ini`` keys and the operator's commands all come from ``settings.options.OPTIONS``, and
no module below the WSGI layer imports it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

from stripe_checkout_mw import CheckoutMiddleware
from stripe_checkout_mw.ledger.store import DEFAULT_STORE_URL, STORE_ENV
from stripe_checkout_mw.settings.options import (
    OPTIONS,
    PRICE_OPTIONS,
    markdown_rows,
    param_doc,
)
from stripe_checkout_mw.wsgi.paste import PRICE_KEYS

ROOT = Path(__file__).resolve().parent.parent
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
