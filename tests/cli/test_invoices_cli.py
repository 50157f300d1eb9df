"""``invoices list USER_REF``: a user's invoices from the ledger, as ``mw.billing`` gives
them, in a table or JSON, paged; on SQLite and PostgreSQL, with the invoices made by the
emulator (a subscription, its renewals, a manual invoice) and delivered to a real shop."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ServedShop

from stripe_checkout_mw import CheckoutMiddleware, StripeLookupKeys
from stripe_checkout_mw.cli.main import main
from stripe_checkout_mw.testing import StripeEmulator

DAY = 86400


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"shop"]


@pytest.fixture
def emu() -> Iterator[StripeEmulator]:
    with StripeEmulator(hosted_page_webhook_wait=5) as emulator:
        emulator.add_price(1500, lookup_key="pro", recurring={"interval": "month"})
        yield emulator


@pytest.fixture
def invoiced(emu: StripeEmulator, store_url: str) -> Iterator[tuple[str, list[str]]]:
    """A ledger where ``ann`` has four invoices; their ids, newest first."""
    served = ServedShop(CheckoutMiddleware(
        app, secret_key=emu.secret_key, stripe_api_base=emu.api_base,
        domain_url="https://shop.example.com", price_lookup=StripeLookupKeys(),
        webhook_secret=emu.webhook_secret, store=store_url,
        customer_ref=lambda environ: environ.get("HTTP_X_TEST_USER")))
    emu.webhook_url = f"{served.url}/stripe-webhook"
    try:
        response = served.http.post(f"{served.url}/create-checkout-session", json={
            "line_items": [{"price": "pro", "quantity": 1}]},
            headers={"X-Test-User": "ann"}, timeout=10)
        session = emu.pay(response.json()["sessionId"])
        sub = emu.subscription(session["subscription"])
        emu.advance_clock(32 * DAY)
        emu.advance_clock(31 * DAY)
        emu.advance_clock(60)  # a minute after the renewal, so the order is certain
        emu.invoice_customer(sub["customer"], 2500, description="Consulting")
        emu.wait_for_deliveries(10)
        assert served.middleware.billing is not None
        ids = [i.id for i in served.middleware.billing.invoices("ann")]
    finally:
        served.close()
    assert len(ids) == 4
    yield store_url, ids


def test_invoices_list_prints_a_users_invoices_newest_first_as_json_and_a_table(
        invoiced: tuple[str, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    store_url, ids = invoiced
    assert main(["invoices", "list", "ann", "--store", store_url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [i["id"] for i in listed] == ids
    assert [i["billing_reason"] for i in listed] == [
        "manual", "subscription_cycle", "subscription_cycle", "subscription_create"]
    assert [i["total"] for i in listed] == [2500, 1500, 1500, 1500]
    assert {i["status"] for i in listed} == {"paid"} and {i["customer_ref"] for i in listed} == {
        "ann"}
    assert all(i["created"].endswith("+00:00") and i["hosted_invoice_url"] for i in listed)

    assert main(["invoices", "list", "ann", "--store", store_url, "--limit", "3"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:5] == ["CREATED", "(UTC)", "INVOICE", "NUMBER", "STATUS"]
    assert [line.split()[2] for line in table[1:4]] == ids[:3]
    assert "25.00 usd" in table[1] and "manual" in table[1]
    assert table[-1] == f"3 invoice(s) (more: --starting-after {ids[2]})"

    assert main(["invoices", "list", "ann", "--store", store_url, "--json",
                 "--starting-after", ids[2]]) == 0
    assert [i["id"] for i in json.loads(capsys.readouterr().out)] == ids[3:]
    assert main(["invoices", "list", "nobody", "--store", store_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_invoices_list_refuses_a_bad_limit_and_reads_no_missing_ledger(
        tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["invoices", "list", "ann", "--limit", "0"])
    assert exited.value.code == 2
    capsys.readouterr()
    missing = f"sqlite:///{tmp_path}/none.db"
    assert main(["invoices", "list", "ann", "--store", missing, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert not (tmp_path / "none.db").exists()
