"""A refund of an invoice's payment shows on the invoice: ``mw.billing.invoice(id)
.amount_refunded``.

The middleware runs on a real threaded server on 127.0.0.1 with a store on SQLite and
PostgreSQL; the emulator sells a subscription, renews it, refunds an invoice's charge and
delivers its signed events to the shop's webhook, in order or (redelivered) reversed and
twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ServedShop

from stripe_checkout_mw import CheckoutMiddleware, Order, StripeLookupKeys
from stripe_checkout_mw.billing.invoices import InvoiceLedger
from stripe_checkout_mw.testing import StripeEmulator

DAY = 86400


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the shop"]


class Shop(ServedShop):
    def __init__(self, emu: StripeEmulator, store: str) -> None:
        self.refunded: list[Order] = []
        super().__init__(CheckoutMiddleware(
            app, secret_key=emu.secret_key, stripe_api_base=emu.api_base,
            domain_url="https://shop.example.com", price_lookup=StripeLookupKeys(),
            webhook_secret=emu.webhook_secret, store=store, refunded=self.refunded.append,
            customer_ref=lambda environ: environ.get("HTTP_X_TEST_USER")))
        emu.webhook_url = f"{self.url}/stripe-webhook"

    @property
    def billing(self) -> InvoiceLedger:
        assert self.middleware.billing is not None
        return self.middleware.billing

    def refunded_on(self, invoice_id: str) -> int:
        invoice = self.billing.invoice(invoice_id)
        assert invoice is not None
        return invoice.amount_refunded

    def subscribe(self, emu: StripeEmulator, user: str) -> dict[str, Any]:
        response = self.http.post(f"{self.url}/create-checkout-session", json={
            "line_items": [{"price": "pro", "quantity": 1}]},
            headers={"X-Test-User": user}, timeout=10)
        assert response.status_code == 200, response.text
        return emu.pay(response.json()["sessionId"])


@pytest.fixture
def emu() -> Iterator[StripeEmulator]:
    with StripeEmulator(hosted_page_webhook_wait=5) as emulator:
        emulator.add_price(1500, lookup_key="pro", recurring={"interval": "month"})
        yield emulator


def all_delivered(emu: StripeEmulator) -> None:
    emu.wait_for_deliveries(10)
    assert [d for d in emu.deliveries if d.status != 200] == []


def invoices_of(emu: StripeEmulator, subscription_id: str) -> list[str]:
    """The subscription's invoice ids, oldest first."""
    listed = emu.client().v1.invoices.list(params={"subscription": subscription_id})
    return [str(invoice.id) for invoice in reversed(listed.data)]


def test_a_refund_of_a_renewal_shows_on_its_invoice_and_never_goes_down(
    emu: StripeEmulator, store_url: str, tmp_path: Any
) -> None:
    served = Shop(emu, store_url)
    try:
        session = served.subscribe(emu, "ann")
        emu.advance_clock(32 * DAY)
        all_delivered(emu)
        first, renewal = invoices_of(emu, session["subscription"])
        assert served.refunded_on(renewal) == 0

        emu.refund_invoice(renewal, 400)
        all_delivered(emu)
        assert served.refunded_on(renewal) == 400
        assert served.refunded_on(first) == 0
        (listed, *_) = served.billing.invoices("ann")
        assert (listed.id, listed.amount_refunded) == (renewal, 400)
        emu.refund_invoice(renewal)
        all_delivered(emu)
        assert served.refunded_on(renewal) == 1500
        # A later invoice event stores Stripe's invoice again; the refund stays.
        for event in emu.events:
            if event["type"] == "invoice.paid":
                emu.redeliver(event["id"])
        all_delivered(emu)
        assert served.refunded_on(renewal) == 1500
        assert served.refunded == []  # the order hook is for orders, not invoices
    finally:
        served.close()

    other = Shop(emu, f"sqlite:///{tmp_path}/other.db")
    try:
        for event in reversed(emu.events):
            emu.redeliver(event["id"])
            emu.redeliver(event["id"])
        all_delivered(emu)
        assert other.refunded_on(renewal) == 1500 and other.refunded_on(first) == 0
    finally:
        other.close()


def test_a_refund_of_an_invoice_the_ledger_missed_stores_the_invoice_first(
    emu: StripeEmulator, store_url: str
) -> None:
    served = Shop(emu, store_url)
    try:
        session = served.subscribe(emu, "ann")
        all_delivered(emu)
        emu.drop_webhooks()
        emu.advance_clock(32 * DAY)  # the renewal's events never arrive
        emu.drop_webhooks(False)
        _, renewal = invoices_of(emu, session["subscription"])
        assert served.billing.invoice(renewal) is None
        emu.refund_invoice(renewal, 250)
        all_delivered(emu)
        stored = served.billing.invoice(renewal)
        assert stored is not None
        assert (stored.status, stored.amount_paid, stored.amount_refunded,
                stored.customer_ref) == ("paid", 1500, 250, "ann")
    finally:
        served.close()
