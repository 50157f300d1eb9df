"""``customers link|show|unlink`` and ``sync --full`` from the command line, on a ledger of
each backend and the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from stripe_checkout_mw.cli.main import main
from stripe_checkout_mw.testing import StripeEmulator


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[StripeEmulator]:
    with StripeEmulator(hosted_page_webhook_wait=0) as emulator:
        monkeypatch.setenv("STRIPE_SECRET_KEY", emulator.secret_key)
        monkeypatch.setenv("STRIPE_API_BASE", emulator.api_base)
        yield emulator


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_customers_link_show_unlink(emu: StripeEmulator, store_url: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    customer = emu.client().v1.customers.create(params={"email": "a@example.com"}).id
    ledger = ("--store", store_url)
    assert run(capsys, "customers", "link", "user-1", customer, *ledger)[:2] == (
        0, f"{customer} linked to user-1\n")
    status, out, _ = run(capsys, "customers", "link", "user-1", customer, *ledger)
    assert status == 0 and "already linked" in out
    status, _, err = run(capsys, "customers", "link", "user-2", customer, *ledger)
    assert status == 1 and "linked to another user" in err and "user-1" not in err
    status, _, err = run(capsys, "customers", "link", "user-2", "cus_missing", *ledger)
    assert status == 1 and "does not exist at Stripe" in err
    status, out, _ = run(capsys, "customers", "show", "user-1", "--json", *ledger)
    assert status == 0 and json.loads(out) == {
        "ref": "user-1", "customers": [customer], "subscriptions": []}
    assert run(capsys, "customers", "unlink", "user-1", *ledger)[:2] == (
        0, "1 customer(s) unlinked from user-1\n")
    status, out, _ = run(capsys, "customers", "show", "user-1", *ledger)
    assert (status, out) == (0, "customers: none\n")


def test_sync_full_flags(emu: StripeEmulator, store_url: str,
                         capsys: pytest.CaptureFixture[str]) -> None:
    ledger = ("--store", store_url, "--no-fulfill")
    status, _, err = run(capsys, "sync", "--fulfil-after", "2026-01-01", *ledger)
    assert status == 2 and "--fulfil-after goes with --full" in err
    status, _, err = run(capsys, "sync", "--full", "--fulfil-after", "yesterday", *ledger)
    assert status == 2 and "expected a date" in err
    status, out, err = run(capsys, "sync", "--full", "--fulfil-after", "2026-01-01", *ledger)
    assert status == 0, err
    assert "no marker" in err
    assert "checkout_sessions: 0 listed" in out and "failures: 0" in out
