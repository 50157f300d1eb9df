"""Plan changes from the app (``mw.subscriptions.preview_change``/``change``/
``schedule_change``/``cancel``/``resume``) through the whole middleware.

The middleware runs on a real server on 127.0.0.1 with a store on SQLite and PostgreSQL;
the emulator sells the subscriptions over real HTTP to the real SDK, charges (or declines)
the cards, moves its clock past the period end and delivers its signed events.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_subscriptions import Shop, all_delivered

from stripe_checkout_mw import StripeLookupKeys
from stripe_checkout_mw.billing.changes import ManagedSubscriptions, PaymentNotCompleted
from stripe_checkout_mw.errors import HTTPError
from stripe_checkout_mw.testing import StripeEmulator

DAY = 86400


@pytest.fixture
def emu() -> Iterator[StripeEmulator]:
    with StripeEmulator(hosted_page_webhook_wait=5) as emulator:
        emulator.add_price(2000, lookup_key="pro", recurring={"interval": "month"})
        emulator.add_price(900, lookup_key="basic", recurring={"interval": "month"})
        emulator.add_price(2500, lookup_key="tee")
        # No lookup key: not one of the plans, though Stripe would take it.
        emulator.unoffered = emulator.add_price(4000, recurring={"interval": "month"})["id"]  # type: ignore[attr-defined]
        yield emulator


@pytest.fixture
def served(emu: StripeEmulator, store_url: str) -> Iterator[Shop]:
    server = Shop(emu, store_url)
    emu.webhook_url = f"{server.url}/stripe-webhook"
    yield server
    server.close()


def managed(served: Shop) -> ManagedSubscriptions:
    subscriptions = served.middleware.subscriptions
    assert isinstance(subscriptions, ManagedSubscriptions)
    return subscriptions


def plan(served: Shop, user: str) -> list[tuple[str | None, int, str]]:
    return [(item.lookup_key, item.quantity, sub.status)
            for sub in served.subscriptions.for_customer(user) for item in sub.items]


def test_preview_then_change_charges_the_previewed_amount_and_stores_it(
        emu: StripeEmulator, served: Shop) -> None:
    session = served.subscribe(emu, "ann", "basic")
    all_delivered(emu)
    subs = managed(served)
    preview = subs.preview_change("ann", price="pro", quantity=2)
    assert preview.subscription == session["subscription"] and preview.quantity == 2
    assert preview.currency == "usd" and preview.proration_date is not None
    assert preview.amount_due_now > 0
    assert preview.amount_due_now == sum(line.amount for line in preview.lines_now)
    assert all(line.proration for line in preview.lines_now)
    assert preview.next_invoice_total == 2 * 2000
    assert preview.next_invoice_at == emu.subscription(session["subscription"])[
        "items"]["data"][0]["current_period_end"]
    assert plan(served, "ann") == [("basic", 1, "active")]  # a preview changes nothing

    result = subs.change("ann", price="pro", quantity=2,
                         proration_date=preview.proration_date)
    assert result.invoice is not None and result.amount_paid == preview.amount_due_now
    invoice = emu.invoice(result.invoice)
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", preview.amount_due_now)
    # The ledger says what Stripe says as the call returns, before any webhook.
    assert [(i.lookup_key, i.quantity) for i in result.subscription.items] == [("pro", 2)]
    assert plan(served, "ann") == [("pro", 2, "active")]
    assert served.subscriptions.is_active("ann", price="pro")

    def hooked() -> list[list[tuple[str | None, int]]]:
        return [[(i.lookup_key, i.quantity) for i in s.items] for s in served.changes]

    assert hooked()[-1] == [("pro", 2)]  # subscription_changed ran before change returned
    all_delivered(emu)
    for event in emu.events[-12:]:  # Stripe's news again, duplicated: nothing moves
        emu.redeliver(event["id"])
    assert plan(served, "ann") == [("pro", 2, "active")]
    assert hooked().count([("pro", 2)]) == 1  # once, though the webhooks said it again


def test_an_upgrade_whose_payment_fails_keeps_the_old_plan_and_says_why(
        emu: StripeEmulator, served: Shop) -> None:
    session = served.subscribe(emu, "bob", "basic")
    emu.attach_card(session["customer"], "pm_card_chargeCustomerFail")
    all_delivered(emu)
    with pytest.raises(PaymentNotCompleted) as failed:
        managed(served).change("bob", price="pro")
    assert failed.value.status == 402 and "plan is unchanged" in failed.value.message
    assert failed.value.hosted_invoice_url
    assert failed.value.subscription is not None
    assert [i.lookup_key for i in failed.value.subscription.items] == ["basic"]
    assert plan(served, "bob") == [("basic", 1, "active")]
    assert served.subscriptions.is_active("bob", price="basic")
    assert not served.subscriptions.is_active("bob", price="pro")
    stripe_sub = emu.subscription(session["subscription"])
    assert stripe_sub["pending_update"] is not None
    all_delivered(emu)
    assert plan(served, "bob") == [("basic", 1, "active")]
    assert failed.value.payload()["error"]["hosted_invoice_url"] == \
        failed.value.hosted_invoice_url

    # Paid on the invoice's page, the parked change applies and the ledger follows.
    assert failed.value.invoice is not None
    emu.pay_invoice(failed.value.invoice, card="pm_card_visa")
    all_delivered(emu)
    assert plan(served, "bob") == [("pro", 1, "active")]


def test_a_downgrade_at_the_period_end_takes_effect_when_the_clock_passes_it(
        emu: StripeEmulator, served: Shop) -> None:
    session = served.subscribe(emu, "cat", "pro")
    all_delivered(emu)
    subs = managed(served)
    scheduled = subs.schedule_change("cat", price="basic")
    end = emu.subscription(session["subscription"])["items"]["data"][0]["current_period_end"]
    assert scheduled.at == end and scheduled.price == price_id_of(emu, "basic")
    assert plan(served, "cat") == [("pro", 1, "active")]
    with pytest.raises(HTTPError) as twice:
        subs.schedule_change("cat", price="basic")
    assert twice.value.status == 409
    with pytest.raises(HTTPError) as cancel:
        subs.cancel("cat")
    assert cancel.value.status == 409 and "scheduled" in cancel.value.message

    past_period_end(emu, session["subscription"])
    all_delivered(emu)
    assert plan(served, "cat") == [("basic", 1, "active")]
    renewal = emu.invoice(emu.subscription(session["subscription"])["latest_invoice"])
    assert (renewal["billing_reason"], renewal["total"]) == ("subscription_cycle", 900)


def test_a_scheduled_downgrade_can_be_called_off(emu: StripeEmulator, served: Shop) -> None:
    session = served.subscribe(emu, "dan", "pro")
    all_delivered(emu)
    subs = managed(served)
    scheduled = subs.schedule_change("dan", price="basic")
    # The ledger knows at once (the app's account page shows it), and after the change is
    # called off, that none is due.
    assert [s.schedule for s in served.subscriptions.for_customer("dan")] == [
        scheduled.schedule]
    subs.cancel_scheduled_change("dan")
    assert emu.subscription(session["subscription"])["schedule"] is None
    assert [s.schedule for s in served.subscriptions.for_customer("dan")] == [None]
    with pytest.raises(HTTPError) as nothing:
        subs.cancel_scheduled_change("dan")
    assert nothing.value.status == 404
    past_period_end(emu, session["subscription"])
    all_delivered(emu)
    assert plan(served, "dan") == [("pro", 1, "active")]


def test_cancel_at_the_period_end_and_resume(emu: StripeEmulator, served: Shop) -> None:
    session = served.subscribe(emu, "eve", "pro")
    all_delivered(emu)
    subs = managed(served)
    cancelled = subs.cancel("eve")
    assert cancelled.cancel_at_period_end and cancelled.status == "active"
    assert emu.subscription(session["subscription"])["cancel_at_period_end"] is True
    resumed = subs.resume("eve")
    assert resumed.cancel_at_period_end is False
    assert subs.resume("eve").cancel_at_period_end is False  # a second click: no change
    ended = subs.cancel("eve", at_period_end=False)
    assert ended.status == "canceled" and not served.subscriptions.is_active("eve")
    with pytest.raises(HTTPError) as gone:
        subs.resume("eve")
    assert gone.value.status == 404


def test_only_the_users_own_subscription_and_only_offered_prices(
        emu: StripeEmulator, served: Shop) -> None:
    ann = served.subscribe(emu, "ann", "basic")
    served.subscribe(emu, "bob", "basic")
    all_delivered(emu)
    subs = managed(served)
    calls = len(emu.requests)

    def refused(status: int, **kwargs: Any) -> HTTPError:
        with pytest.raises(HTTPError) as caught:
            subs.change(kwargs.pop("user", "bob"), **kwargs)
        assert caught.value.status == status, caught.value.message
        return caught.value

    # Another user's subscription id is unknown to this user: the same 404 as a made-up one.
    assert refused(404, subscription_id=ann["subscription"], price="pro").param \
        == "subscription"
    refused(404, subscription_id="sub_made_up", price="pro")
    refused(404, user="nobody", price="pro")
    refused(401, user="", price="pro")
    assert len(emu.requests) == calls  # refused from the ledger, before any Stripe call
    assert refused(400, price="tee").param == "price"  # a one-time price
    refused(400, price="price_nope")
    refused(400, price=emu.unoffered)  # type: ignore[attr-defined]  # not a plan
    assert refused(400, quantity=0).param == "quantity"
    refused(400, quantity=True)
    refused(400)
    refused(409, price="basic")  # no change at all
    assert plan(served, "bob") == [("basic", 1, "active")]
    assert plan(served, "ann") == [("basic", 1, "active")]


def price_id_of(emu: StripeEmulator, lookup_key: str) -> str:
    (price,) = emu.client().v1.prices.list(params={"lookup_keys": [lookup_key]}).data
    return price.id


def past_period_end(emu: StripeEmulator, subscription_id: str) -> None:
    """Move the emulator's clock (still at the subscription's start) past its period end."""
    sub = emu.subscription(subscription_id)
    end = sub["items"]["data"][0]["current_period_end"]
    emu.advance_clock(end - sub["start_date"] + 3600)


def test_without_a_catalog_of_plans_every_price_is_refused(
        emu: StripeEmulator, store_url: str) -> None:
    server = Shop(emu, store_url)
    emu.webhook_url = f"{server.url}/stripe-webhook"
    try:
        server.subscribe(emu, "fay", "basic")
        all_delivered(emu)
        subs = server.middleware.subscriptions
        assert isinstance(subs, ManagedSubscriptions)
        subs.price_lookup = lambda items, environ: items  # a custom lookup callable
        with pytest.raises(HTTPError) as refused:
            subs.change("fay", price="pro")
        assert refused.value.status == 400
        subs.price_lookup = StripeLookupKeys()
        assert subs.change("fay", quantity=3).subscription.items[0].quantity == 3
    finally:
        server.close()
