"""The emulator's invoice actions, as the operator takes them in the Dashboard or the API:
``finalize``, ``pay``, ``void`` and ``mark_uncollectible``, through the real ``stripe``
SDK over HTTP: Stripe's status transitions, their events (to the emulator's webhook and to
a registered endpoint enabling only those types) and Stripe's refusals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import stripe
from test_emulator_billing import (  # noqa: F401  # the shared fixtures
    DAY,
    SignedReceiver,
    client,
    emu,
    monthly,
    period_end,
    receiver,
)
from test_emulator_invoices import subscribe_with
from test_emulator_webhook_endpoints import endpoint_receiver, receivers  # noqa: F401

from stripe_checkout_mw.testing import StripeEmulator

FAILS_LATER = "pm_card_chargeCustomerFail"


def failed_renewal(emu: StripeEmulator, client: stripe.StripeClient,  # noqa: F811
                   price: dict[str, Any]) -> Any:
    """A subscription whose renewal was declined; (subscription, its open invoice)."""
    sub = subscribe_with(emu, client, price)
    emu.attach_card(sub.customer, FAILS_LATER)
    emu.advance_clock(period_end(sub) - sub.start_date + 60)
    renewed = client.v1.subscriptions.retrieve(sub.id)
    invoice = client.v1.invoices.retrieve(renewed.latest_invoice)
    assert (renewed.status, invoice.status, invoice.attempt_count) == ("past_due", "open", 1)
    return renewed, invoice


def refused(call: Callable[[], Any], status: int = 400) -> stripe.StripeError:
    with pytest.raises(stripe.InvalidRequestError) as info:
        call()
    assert info.value.http_status == status
    error = info.value.json_body["error"] if info.value.json_body else {}
    assert error["type"] == "invalid_request_error" and error["message"]
    return info.value


@pytest.fixture
def only_status_events(client: stripe.StripeClient,  # noqa: F811
                       receivers: list[SignedReceiver]) -> Iterator[SignedReceiver]:  # noqa: F811
    _, hook = endpoint_receiver(client, receivers, enabled_events=[
        "invoice.finalized", "invoice.voided", "invoice.marked_uncollectible"])
    yield hook


def test_void_and_mark_uncollectible_move_an_open_invoice_and_stop_its_retries(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,  # noqa: F811
        monthly: dict[str, Any], only_status_events: SignedReceiver) -> None:  # noqa: F811
    sub, invoice = failed_renewal(emu, client, monthly)
    assert invoice.next_payment_attempt is not None
    written_off = client.v1.invoices.mark_uncollectible(invoice.id)
    assert written_off.status == "uncollectible" and written_off.next_payment_attempt is None
    marked_at = written_off.status_transitions.marked_uncollectible_at
    assert marked_at is not None and marked_at >= invoice.created
    assert written_off.amount_remaining == invoice.amount_remaining
    refused(lambda: client.v1.invoices.mark_uncollectible(invoice.id))
    emu.advance_clock(8 * DAY)  # no retry of an invoice written off
    assert client.v1.invoices.retrieve(invoice.id).attempt_count == 1

    voided = client.v1.invoices.void_invoice(invoice.id)  # an uncollectible one may be
    assert voided.status == "void" and voided.status_transitions.voided_at >= marked_at
    assert client.v1.invoices.retrieve(invoice.id).status == "void"
    emu.wait_for_deliveries()
    (marked,) = receiver.of("invoice.marked_uncollectible")
    (void,) = receiver.of("invoice.voided")
    assert (marked["object"]["id"], marked["object"]["status"]) == (invoice.id,
                                                                    "uncollectible")
    assert (void["object"]["id"], void["object"]["status"]) == (invoice.id, "void")
    assert receiver.types()["invoice.payment_failed"] == 1
    # A registered endpoint gets exactly the types it enables, the new ones included.
    assert only_status_events.types() == {"invoice.finalized": 2,  # first and renewal
                                          "invoice.marked_uncollectible": 1,
                                          "invoice.voided": 1}
    # Each event names the API request that caused it, as Stripe's do.
    (void_call,) = [r for r in emu.requests if r.path == f"/v1/invoices/{invoice.id}/void"]
    (void_event,) = client.v1.events.list(params={"type": "invoice.voided"}).data
    assert void_event.request is not None and void_event.request.id == void_call.request_id

    # Void is final, and a paid invoice cannot be voided or written off.
    for action in (client.v1.invoices.void_invoice, client.v1.invoices.mark_uncollectible,
                   client.v1.invoices.pay, client.v1.invoices.finalize_invoice):
        refused(lambda action=action: action(invoice.id))  # type: ignore[misc]
    first = client.v1.invoices.list(params={"subscription": sub.id}).data[-1]
    assert first.billing_reason == "subscription_create" and first.status == "paid"
    error = refused(lambda: client.v1.invoices.void_invoice(first.id))
    assert error.user_message == (
        "You can only pass in open invoices. This invoice isn't open.")
    assert (error.param, error.code) == (None, None)
    refused(lambda: client.v1.invoices.mark_uncollectible(first.id))
    refused(lambda: client.v1.invoices.pay(first.id))


def test_a_draft_is_finalized_then_paid_and_only_from_the_right_status(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,  # noqa: F811
        monthly: dict[str, Any], only_status_events: SignedReceiver) -> None:  # noqa: F811
    sub = subscribe_with(emu, client, monthly)
    draft = emu.invoice_customer(sub.customer, 2500, description="Consulting", draft=True)
    assert (draft["status"], draft["number"], draft["hosted_invoice_url"]) == (
        "draft", None, None)
    for action in (client.v1.invoices.void_invoice, client.v1.invoices.mark_uncollectible,
                   client.v1.invoices.pay):
        refused(lambda action=action: action(draft["id"]))  # type: ignore[misc]

    finalized = client.v1.invoices.finalize_invoice(draft["id"],
                                                    params={"auto_advance": False})
    assert (finalized.status, finalized.auto_advance) == ("open", False)
    assert finalized.number and finalized.hosted_invoice_url
    assert finalized.status_transitions.finalized_at >= draft["created"]
    error = refused(lambda: client.v1.invoices.finalize_invoice(draft["id"]))
    assert "already finalized" in str(error.user_message)

    paid = client.v1.invoices.pay(draft["id"])
    assert (paid.status, paid.amount_paid, paid.amount_remaining) == ("paid", 2500, 0)
    assert paid.status_transitions.paid_at >= finalized.status_transitions.finalized_at
    payments = client.v1.invoice_payments.list(params={"invoice": paid.id}).data
    assert [p.status for p in payments] == ["paid"]
    emu.wait_for_deliveries()
    ours = [e for e in receiver.events if e.data.object.id == draft["id"]]
    assert [e.type for e in ours] == ["invoice.created", "invoice.finalized", "invoice.paid",
                                      "invoice.payment_succeeded"]
    assert only_status_events.types() == {"invoice.finalized": 2}  # the first invoice, this
    refused(lambda: client.v1.invoices.pay(draft["id"]))  # already paid


def test_pay_charges_the_saved_card_a_decline_is_a_402_and_an_uncollectible_can_be_paid(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,  # noqa: F811
        monthly: dict[str, Any]) -> None:  # noqa: F811
    sub, invoice = failed_renewal(emu, client, monthly)
    with pytest.raises(stripe.CardError) as declined:
        client.v1.invoices.pay(invoice.id)
    assert (declined.value.http_status, declined.value.code) == (402, "card_declined")
    still = client.v1.invoices.retrieve(invoice.id)
    assert (still.status, still.attempt_count) == ("open", 2)
    client.v1.invoices.mark_uncollectible(invoice.id)
    with pytest.raises(stripe.CardError):
        client.v1.invoices.pay(invoice.id)
    assert client.v1.invoices.retrieve(invoice.id).status == "uncollectible"
    emu.wait_for_deliveries()
    assert receiver.types()["invoice.payment_failed"] == 3

    emu.attach_card(sub.customer, "pm_card_visa")
    paid = client.v1.invoices.pay(invoice.id, params={"off_session": True})
    assert paid.status == "paid" and paid.amount_remaining == 0
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    error = refused(lambda: client.v1.invoices.pay(invoice.id, params={
        "paid_out_of_band": True}))
    assert error.param == "paid_out_of_band"


def test_an_unknown_invoice_is_a_404_on_every_action(
        emu: StripeEmulator, client: stripe.StripeClient) -> None:  # noqa: F811
    for action in (client.v1.invoices.void_invoice, client.v1.invoices.mark_uncollectible,
                   client.v1.invoices.pay, client.v1.invoices.finalize_invoice):
        error = refused(lambda action=action: action("in_missing"),  # type: ignore[misc]
                        status=404)
        assert error.code == "resource_missing"
        assert error.user_message == "No such invoice: 'in_missing'"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.invoices.void_invoice("in_missing", params={  # type: ignore[typeddict-unknown-key]
            "reason": "typo"})
    assert unknown.value.param == "reason"
