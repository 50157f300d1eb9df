"""``mw.billing``'s ledger on its own, on SQLite and PostgreSQL: what an invoice records
from Stripe's object (taxes, discounts, the service period from its lines), the order and
paging of a user's invoices, and that an answer fetched earlier never replaces one fetched
later."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from stripe_checkout_mw.billing.customers import CustomerDirectory
from stripe_checkout_mw.billing.invoices import Invoice, InvoiceLedger
from stripe_checkout_mw.ledger.store import OrderStore


def stripe_invoice(invoice_id: str, customer: str, created: int, **fields: Any) -> dict[str, Any]:
    """An invoice as Stripe's API gives it (the fields the ledger reads)."""
    invoice: dict[str, Any] = {
        "id": invoice_id, "object": "invoice", "customer": customer, "created": created,
        "number": f"ABC-{created % 10000:04d}", "status": "paid",
        "billing_reason": "subscription_cycle", "currency": "eur",
        "amount_due": 1190, "amount_paid": 1190, "amount_remaining": 0, "total": 1190,
        "total_taxes": [{"amount": 190, "tax_behavior": "exclusive"},
                        {"amount": 10, "tax_behavior": "exclusive"}],
        "total_discount_amounts": [{"amount": 100, "discount": "di_1"}],
        "hosted_invoice_url": f"https://invoice.stripe.com/i/{invoice_id}",
        "invoice_pdf": f"https://pay.stripe.com/invoice/{invoice_id}/pdf",
        "status_transitions": {"paid_at": created + 5, "finalized_at": created + 1},
        "parent": {"type": "subscription_details",
                   "subscription_details": {"subscription": "sub_1"}},
        "attempt_count": 1, "next_payment_attempt": None,
        # Stripe's invoice-level period is not the service period.
        "period_start": created - 999, "period_end": created - 999,
        "lines": {"object": "list", "has_more": False, "data": [
            {"id": "il_1", "period": {"start": created, "end": created + 2_592_000}},
            {"id": "il_2", "period": {"start": created - 86400, "end": created}},
        ]},
    }
    invoice.update(fields)
    return invoice


def put(store: OrderStore, ledger: InvoiceLedger, raw: dict[str, Any],
        fetched_at: float) -> Invoice | None:
    invoice = Invoice.from_stripe(raw, raw["lines"]["data"], None, fetched_at)
    with store.transaction() as tx:
        return ledger.store_fetched(tx, invoice, fetched_at)


@pytest.fixture
def ledger(store: OrderStore) -> InvoiceLedger:
    customers = CustomerDirectory(store)
    with store.transaction() as tx:
        customers.record(tx, "ann", "cus_ann")
        customers.record(tx, "ann", "cus_ann_second")
        customers.record(tx, "bob", "cus_bob")
    return InvoiceLedger(store)


def test_an_invoice_records_what_a_billing_history_shows(
        store: OrderStore, ledger: InvoiceLedger) -> None:
    put(store, ledger, stripe_invoice("in_1", "cus_ann", 1_800_000_000), 1.0)
    invoice = ledger.invoice("in_1")
    assert invoice is not None
    assert (invoice.tax, invoice.discounts, invoice.total, invoice.currency) == (
        200, 100, 1190, "eur")
    assert (invoice.period_start, invoice.period_end) == (
        1_800_000_000 - 86400, 1_800_000_000 + 2_592_000)
    assert invoice.paid_at == 1_800_000_005 and invoice.subscription == "sub_1"
    assert invoice.customer_ref == "ann" and invoice.stripe_customer == "cus_ann"
    assert invoice.hosted_invoice_url == "https://invoice.stripe.com/i/in_1"
    manual = stripe_invoice("in_2", "cus_ann", 1_800_000_100, parent=None,
                            billing_reason="manual", total_taxes=[],
                            total_discount_amounts=[], status="open",
                            status_transitions={"paid_at": None})
    put(store, ledger, manual, 1.0)
    stored = ledger.invoice("in_2")
    assert stored is not None
    assert (stored.subscription, stored.tax, stored.discounts, stored.paid_at) == (
        None, 0, 0, None)
    assert ledger.invoice("in_nope") is None
    assert ledger.invoice(42) is None  # type: ignore[arg-type]


def test_a_users_invoices_newest_first_over_all_their_customers_and_paged(
        store: OrderStore, ledger: InvoiceLedger) -> None:
    base = 1_800_000_000
    for i in range(7):
        # Two invoices share each second: the id breaks the tie, on both engines.
        customer = "cus_ann" if i % 2 else "cus_ann_second"
        put(store, ledger, stripe_invoice(f"in_a{i}", customer, base + (i // 2) * 60), 1.0)
    put(store, ledger, stripe_invoice("in_b0", "cus_bob", base + 999), 1.0)
    put(store, ledger, stripe_invoice("in_x0", "cus_stranger", base + 999), 1.0)

    every = [i.id for i in ledger.invoices("ann", limit=100)]
    assert every == ["in_a6", "in_a5", "in_a4", "in_a3", "in_a2", "in_a1", "in_a0"]
    pages, after = [], None
    while True:
        page = ledger.invoices("ann", limit=3, starting_after=after)
        if not page:
            break
        pages.append([i.id for i in page])
        after = page[-1].id
    assert pages == [every[:3], every[3:6], every[6:]]
    assert [i.id for i in ledger.invoices("bob")] == ["in_b0"]
    assert ledger.invoices("nobody") == []
    stranger = ledger.invoice("in_x0")
    assert stranger is not None and stranger.customer_ref is None
    assert ledger.invoices("ann", starting_after="in_unknown") == []
    for bad in (0, 101, True, "5"):
        with pytest.raises(ValueError, match="limit"):
            ledger.invoices("ann", limit=bad)  # type: ignore[arg-type]


def test_an_answer_fetched_earlier_never_replaces_one_fetched_later(
        store: OrderStore, ledger: InvoiceLedger) -> None:
    opened = stripe_invoice("in_1", "cus_ann", 1_800_000_000, status="open", amount_paid=0,
                            amount_remaining=1190, status_transitions={"paid_at": None})
    paid = copy.deepcopy(stripe_invoice("in_1", "cus_ann", 1_800_000_000))
    first = put(store, ledger, paid, fetched_at=20.0)
    assert first is not None and first.status == "paid"
    assert put(store, ledger, opened, fetched_at=10.0) is None
    stored = ledger.invoice("in_1")
    assert stored is not None and (stored.status, stored.amount_paid) == ("paid", 1190)
    voided = stripe_invoice("in_1", "cus_ann", 1_800_000_000, status="void")
    changed = put(store, ledger, voided, fetched_at=30.0)
    assert changed is not None and changed.status == "void"
    again = ledger.invoice("in_1")
    assert again is not None and again.status == "void" and again.customer_ref == "ann"
    assert again == replace(changed, customer_ref="ann")  # every field round-trips
