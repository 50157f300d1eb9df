"""The invoices' status events: ``invoice.finalized``, ``invoice.voided`` and
``invoice.marked_uncollectible``, through the whole middleware.

The operator voids, writes off, finalizes and collects invoices with the real ``stripe`` SDK
on the emulator (as the Dashboard would); the emulator delivers its signed events to the
shop's webhook over HTTP, in order or (redelivered) reversed and twice. Each status event
re-fetches its invoice and stores what Stripe says now, and nothing else: no hook, no
subscription refresh; the hooks of the payment events stay as they were.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
import stripe
from test_invoice_events import (  # noqa: F401  # the shared fixtures
    DAY,
    FAILS_LATER,
    Shop,
    all_delivered,
    emu,
    ledger_view,
    renew,
    served,
)

from stripe_checkout_mw.testing import StripeEmulator

STATUS_EVENTS = ("invoice.finalized", "invoice.voided", "invoice.marked_uncollectible")


def failed_renewal(emu: StripeEmulator, served: Shop, ref: str = "ann") -> tuple[str, str]:  # noqa: F811
    """``ref``'s subscription, renewed with a card that declines: (subscription, invoice)."""
    session = served.subscribe(emu, ref)
    sub_id = session["subscription"]
    emu.attach_card(emu.subscription(sub_id)["customer"], FAILS_LATER)
    renew(emu, sub_id)
    all_delivered(emu)
    invoice_id = emu.subscription(sub_id)["latest_invoice"]
    assert emu.invoice(invoice_id)["status"] == "open"
    return sub_id, invoice_id


def calls_since(emu: StripeEmulator, before: int) -> list[str]:  # noqa: F811
    return [f"{r.method} {r.path}" for r in emu.requests[before:]]


def events_of(emu: StripeEmulator, kind: str) -> list[dict[str, Any]]:  # noqa: F811
    return [e for e in emu.events if e["type"] == kind]


def test_a_failed_renewal_voided_by_the_operator_is_void_and_dunning_stops(
        emu: StripeEmulator, served: Shop) -> None:  # noqa: F811
    _, invoice_id = failed_renewal(emu, served)
    (failed,) = served.seen("payment_failed")
    assert (failed.id, failed.attempt_count, failed.status) == (invoice_id, 1, "open")
    assert served.billing.invoice(invoice_id).status == "open"  # type: ignore[union-attr]

    before = len(emu.requests)
    voided = emu.client().v1.invoices.void_invoice(invoice_id)
    assert voided.status == "void"
    all_delivered(emu)
    # One re-fetch of the invoice, and no subscription refreshed.
    assert calls_since(emu, before) == [f"POST /v1/invoices/{invoice_id}/void",
                                        f"GET /v1/invoices/{invoice_id}"]
    stored = served.billing.invoice(invoice_id)
    assert stored is not None and (stored.status, stored.amount_remaining) == ("void", 0)
    newest = served.billing.invoices("ann", limit=1)
    assert [(i.id, i.status) for i in newest] == [(invoice_id, "void")]

    # No retry of a void invoice, so no dunning after the void; no other hook either.
    emu.advance_clock(3 * DAY + 60)
    emu.advance_clock(5 * DAY)
    all_delivered(emu)
    assert [(i.id, i.attempt_count) for i in served.seen("payment_failed")] == [
        (invoice_id, 1)]
    assert invoice_id not in [i.id for i in served.seen("invoice_paid")]
    assert served.seen("action_required") == []

    # The same event again, twice: claimed already, so nothing fetched, nothing changed.
    (event,) = events_of(emu, "invoice.voided")
    before = len(emu.requests)
    emu.redeliver(event["id"])
    emu.redeliver(event["id"])
    all_delivered(emu)
    assert len(emu.requests) == before
    assert [d.status for d in emu.deliveries if d.event_id == event["id"]] == [200] * 3
    assert served.billing.invoice(invoice_id) == stored
    assert len(served.seen("payment_failed")) == 1


def test_an_invoice_marked_uncollectible_is_uncollectible_until_it_is_paid(
        emu: StripeEmulator, served: Shop) -> None:  # noqa: F811
    sub_id, invoice_id = failed_renewal(emu, served)
    client = emu.client()
    client.v1.invoices.mark_uncollectible(invoice_id)
    all_delivered(emu)
    stored = served.billing.invoice(invoice_id)
    assert stored is not None and stored.status == "uncollectible"
    assert stored.next_payment_attempt is None and stored.customer_ref == "ann"
    assert len(served.seen("payment_failed")) == 1
    assert invoice_id not in [i.id for i in served.seen("invoice_paid")]

    # Written off, and then paid after all: invoice_paid fires once, for invoice.paid.
    emu.attach_card(emu.subscription(sub_id)["customer"], "pm_card_visa")
    assert client.v1.invoices.pay(invoice_id).status == "paid"
    all_delivered(emu)
    assert served.billing.invoice(invoice_id).status == "paid"  # type: ignore[union-attr]
    assert [i.id for i in served.seen("invoice_paid")].count(invoice_id) == 1
    assert len(served.seen("payment_failed")) == 1


def test_a_manual_invoice_finalized_and_not_paid_yet_is_listed_open(
        emu: StripeEmulator, served: Shop) -> None:  # noqa: F811
    session = served.subscribe(emu, "ann")
    customer = emu.subscription(session["subscription"])["customer"]
    emu.advance_clock(60)
    draft = emu.invoice_customer(customer, 2500, description="Consulting", draft=True)
    all_delivered(emu)
    assert draft["id"] not in [i.id for i in served.billing.invoices("ann")]

    client = emu.client()
    client.v1.invoices.finalize_invoice(draft["id"])
    all_delivered(emu)
    (listed, first) = served.billing.invoices("ann")
    assert (listed.id, listed.status, listed.billing_reason, listed.subscription) == (
        draft["id"], "open", "manual", None)
    assert listed.number and listed.hosted_invoice_url and listed.amount_remaining == 2500
    assert [i.id for i in served.seen("invoice_paid")] == [first.id]

    client.v1.invoices.pay(draft["id"])
    all_delivered(emu)
    assert served.billing.invoice(draft["id"]).status == "paid"  # type: ignore[union-attr]
    assert Counter(i.id for i in served.seen("invoice_paid")) == {first.id: 1, draft["id"]: 1}
    assert served.seen("payment_failed") == served.seen("action_required") == []


def test_status_events_in_any_order_and_twice_converge_on_what_stripe_says_without_hooks(
        emu: StripeEmulator, served: Shop) -> None:  # noqa: F811
    emu.drop_webhooks(True)  # Stripe keeps it all; the shop hears it reversed, later
    client = emu.client()
    _, written_off = failed_renewal(emu, served, "ann")
    client.v1.invoices.mark_uncollectible(written_off)  # (before the clock moves for bob)
    _, voided = failed_renewal(emu, served, "bob")
    client.v1.invoices.mark_uncollectible(voided)
    client.v1.invoices.void_invoice(voided)
    customers = {"ann": emu.invoice(written_off)["customer"],
                 "bob": emu.invoice(voided)["customer"]}
    manual = emu.invoice_customer(customers["ann"], 700, draft=True)
    client.v1.invoices.finalize_invoice(manual["id"])
    assert emu.deliveries == [] and served.billing.invoices("ann") == []

    emu.drop_webhooks(False)
    for event in reversed(emu.events):
        emu.redeliver(event["id"])
        emu.redeliver(event["id"])
    all_delivered(emu)

    for ref, customer in customers.items():
        stripe_says = client.v1.invoices.list(params={"customer": customer}).data
        assert [(i.id, i.status) for i in served.billing.invoices(ref)] == [
            (i.id, i.status) for i in stripe_says]
    assert [i.status for i in served.billing.invoices("ann")] == [
        "open", "uncollectible", "paid"]
    assert [i.status for i in served.billing.invoices("bob")] == ["void", "paid"]
    # The failures reached the shop after Stripe had written them off: no dunning; only
    # each first invoice's invoice_paid, once.
    paid = Counter(i.id for i in served.seen("invoice_paid"))
    firsts = [served.billing.invoices(ref)[-1].id for ref in ("ann", "bob")]
    assert paid == dict.fromkeys(firsts, 1)
    assert served.seen("payment_failed") == served.seen("action_required") == []
    assert {e["type"] for e in emu.events} >= set(STATUS_EVENTS)


def test_an_earlier_failure_whose_fetch_a_status_event_overtook_still_asks_for_dunning(
        emu: StripeEmulator, served: Shop) -> None:  # noqa: F811
    # invoice.payment_failed's fetch begins first but is answered last; invoice.finalized's,
    # begun later, is stored first and makes no hook due. The failure's hook is then decided
    # by what the ledger holds (open, the first attempt), not lost.
    session = served.subscribe(emu, "ann")
    sub_id = session["subscription"]
    emu.drop_webhooks(True)
    emu.attach_card(emu.subscription(sub_id)["customer"], FAILS_LATER)
    renew(emu, sub_id)
    invoice_id = emu.subscription(sub_id)["latest_invoice"]
    (failure,) = [e for e in events_of(emu, "invoice.payment_failed")
                  if e["data"]["object"]["id"] == invoice_id]
    (finalized,) = [e for e in events_of(emu, "invoice.finalized")
                    if e["data"]["object"]["id"] == invoice_id]
    events = served.middleware.events
    assert events is not None
    emu.fail_next(None, delay=1.0, method="GET", path=f"/v1/invoices/{invoice_id}")
    outcome: list[Any] = []
    late = threading.Thread(target=lambda: outcome.append(events.apply(failure)))
    late.start()
    deadline = time.monotonic() + 5
    while not any(r.path == f"/v1/invoices/{invoice_id}" and r.status is None
                  for r in emu.requests):
        assert time.monotonic() < deadline, "the failure's fetch never began"
        time.sleep(0.01)
    assert events.apply(finalized).ran == []
    assert served.billing.invoice(invoice_id).status == "open"  # type: ignore[union-attr]
    late.join(10)
    assert outcome and not outcome[0].duplicate
    (failed,) = served.seen("payment_failed")
    assert (failed.id, failed.attempt_count) == (invoice_id, 1)


@pytest.mark.parametrize("kind", STATUS_EVENTS)
def test_a_status_event_records_no_hook_even_for_a_paid_invoice(
        emu: StripeEmulator, served: Shop, kind: str) -> None:  # noqa: F811
    # Delivered on its own (invoice.paid held back), a status event of an invoice Stripe
    # has paid stores it paid and makes no hook due: invoice.paid's own delivery does.
    session = served.subscribe(emu, "ann")
    all_delivered(emu)
    (first,) = served.billing.invoices("ann")
    emu.drop_webhooks(True)
    renew(emu, session["subscription"])
    renewal = emu.subscription(session["subscription"])["latest_invoice"]
    assert emu.invoice(renewal)["status"] == "paid"
    payload = {"id": f"evt_{kind}_test", "object": "event", "type": kind,
               "data": {"object": {"id": renewal, "object": "invoice"}}}
    events = served.middleware.events
    assert events is not None
    assert events.apply(payload).ran == []
    assert served.billing.invoice(renewal).status == "paid"  # type: ignore[union-attr]
    assert [i.id for i in served.seen("invoice_paid")] == [first.id]
    (paid,) = [e for e in events_of(emu, "invoice.paid") if e["data"]["object"]["id"] == renewal]
    events.apply(paid)
    assert [i.id for i in served.seen("invoice_paid")] == [first.id, renewal]
    with pytest.raises(stripe.InvalidRequestError):
        emu.client().v1.invoices.void_invoice(renewal)


def test_dunning_still_due_when_the_invoice_is_written_off_is_skipped(
        emu: StripeEmulator, served: Shop) -> None:  # noqa: F811
    """A ``payment_failed`` hook whose mailer was down until after the operator marked the
    invoice uncollectible is skipped, as for a paid or void one: the debt is written off,
    so the customer is not asked to pay it."""
    session = served.subscribe(emu, "ann")
    sub_id = session["subscription"]
    emu.attach_card(emu.subscription(sub_id)["customer"], FAILS_LATER)
    served.raise_next["payment_failed"] = 1000  # every delivery of the failure answers 500
    renew(emu, sub_id)
    emu.wait_for_deliveries(10)
    invoice_id = emu.subscription(sub_id)["latest_invoice"]
    (failure,) = [e for e in events_of(emu, "invoice.payment_failed")
                  if e["data"]["object"]["id"] == invoice_id]
    assert served.seen("payment_failed") == []
    assert {d.status for d in emu.deliveries if d.event_id == failure["id"]} == {500}

    emu.client().v1.invoices.mark_uncollectible(invoice_id)
    emu.wait_for_deliveries(10)
    assert served.billing.invoice(invoice_id).status == "uncollectible"  # type: ignore[union-attr]
    served.raise_next["payment_failed"] = 0  # the mailer is back
    emu.redeliver(failure["id"])
    assert emu.deliveries[-1].event_id == failure["id"] and emu.deliveries[-1].status == 200
    assert served.seen("payment_failed") == []
