"""``check`` knows the server's threads: it warns when they leave none for webhooks and the
app beside ``max_concurrent_stripe_calls`` (a hanging Stripe would hold them all)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import code_block

from stripe_checkout_mw.__main__ import main
from stripe_checkout_mw.testing import StripeEmulator


@pytest.mark.parametrize(
    ("server", "options", "expected"),
    [("use = egg:waitress#main\n", "max_concurrent_stripe_calls = 4\n", "warn"),
     ("use = egg:waitress#main\n", "", "ok"),  # waitress's 4 threads, the default 3
     ("use = egg:waitress#main\nthreads = 8\n", "max_concurrent_stripe_calls = 6\n", "ok"),
     ("use = egg:waitress#main\nthreads = 2\n", "", "warn")],
)
def test_check_warns_when_the_threads_leave_no_room_beside_the_stripe_calls(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, stripe_emulator: StripeEmulator,
    monkeypatch: pytest.MonkeyPatch, server: str, options: str, expected: str,
) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", stripe_emulator.secret_key)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_emulator.api_base)
    monkeypatch.setenv("WEB_APP_URL", "https://shop.example.com")
    (tmp_path / "catalog.json").write_text(
        json.dumps({"tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"}}),
        encoding="utf-8")
    ini = tmp_path / "shop.ini"
    ini.write_text(
        "[filter:checkout]\nuse = egg:stripe-checkout-mw#checkout\ncatalog = catalog.json\n"
        f"store = sqlite:///{tmp_path}/orders.db\n{options}\n"
        f"[server:main]\n{server}", encoding="utf-8")
    main(["check", "--ini", str(ini)])
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "server threads" in line)
    assert line.startswith(expected), out
    if expected == "warn":
        assert "max_concurrent_stripe_calls" in line


def test_check_takes_the_threads_from_the_command_line(
    capsys: pytest.CaptureFixture[str], stripe_emulator: StripeEmulator,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", stripe_emulator.secret_key)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_emulator.api_base)
    monkeypatch.setenv("WEB_APP_URL", "https://shop.example.com")
    monkeypatch.setenv("STRIPE_CHECKOUT_STORE", f"sqlite:///{tmp_path}/orders.db")
    main(["check", "--threads", "3"])
    out = capsys.readouterr().out
    assert "warn  server threads: 3 threads and up to 3 Stripe calls" in out
    main(["check", "--threads", "8"])
    assert "ok    server threads: 8 threads, up to 3 Stripe calls" in capsys.readouterr().out


def test_the_readmes_server_section_leaves_room_beside_the_stripe_calls(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, stripe_emulator: StripeEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", stripe_emulator.secret_key)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_emulator.api_base)
    monkeypatch.setenv("WEB_APP_URL", "https://shop.example.com")
    (tmp_path / "catalog.json").write_text(
        json.dumps({"tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"}}),
        encoding="utf-8")
    ini = tmp_path / "shop.ini"
    ini.write_text(code_block("[filter:checkout]", "ini").replace("fulfill = myshop:fulfill\n",
                                                                  ""), encoding="utf-8")
    main(["check", "--ini", str(ini)])
    out = capsys.readouterr().out
    assert "ok    server threads: 8 threads, up to 6 Stripe calls at once: 2 left" in out, out
