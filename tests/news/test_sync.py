"""Reconciliation against Stripe's Events API, through a real server, the emulator and the
ledger (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from conftest import Fulfilments, RefundShop, run_together

from stripe_checkout_mw.news.reconcile import SyncReport, parse_since
from stripe_checkout_mw.testing import StripeEmulator


@pytest.fixture
def emu() -> Iterator[StripeEmulator]:
    with StripeEmulator(hosted_page_webhook_wait=0) as emulator:
        yield emulator


@pytest.fixture
def shop(emu: StripeEmulator, store_url: str) -> Iterator[RefundShop]:
    server = RefundShop(emu, store_url)
    yield server
    server.close()


def fulfilled(shop: RefundShop) -> Counter[str]:
    return Counter(order.session_id for order in shop.hooks("fulfill"))


def test_a_paid_order_whose_webhooks_were_all_dropped_is_fulfilled_once_by_sync(
    emu: StripeEmulator, shop: RefundShop
) -> None:
    session_id = shop.buy()
    emu.drop_webhooks(True)
    emu.pay(session_id)
    emu.refund(session_id, amount=700)
    assert emu.deliveries == [] and fulfilled(shop) == Counter()

    report = shop.middleware.sync()
    assert report.ok, report.failures
    assert (report.events_seen, report.events_new) == (4, 4)  # completed + 3 refund events
    assert fulfilled(shop) == {session_id: 1}
    order = shop.order(session_id)
    assert (order.status, order.amount_refunded) == ("partially_refunded", 700)
    assert [o.amount_refunded for o in shop.hooks("refunded")] == [700]

    again = shop.middleware.sync()
    assert (again.events_seen, again.events_new, again.jobs_run, again.orders_settled) == (
        4, 0, 0, 0)
    assert fulfilled(shop) == {session_id: 1}
    assert again.stripe_calls == 2  # one page of events from each list of up to 20 types


def test_sync_after_a_normal_day_changes_nothing(emu: StripeEmulator, shop: RefundShop) -> None:
    paid = [shop.buy() for _ in range(3)]
    for session_id in paid:
        emu.pay(session_id)
    emu.refund(paid[0])
    store = shop.middleware.store
    assert store is not None
    before = {sid: store.get(sid) for sid in paid}
    calls = len(shop.calls)

    report = shop.middleware.sync(since=timedelta(days=1))
    assert report.ok and report.events_new == 0 and report.jobs_run == 0
    assert report.events_seen == 6 and report.orders_settled == 0
    assert {sid: store.get(sid) for sid in paid} == before
    assert len(shop.calls) == calls


def test_two_syncs_at_once_fulfil_once(emu: StripeEmulator, store_url: str) -> None:
    slow = Fulfilments(delay=0.3)
    shops = [RefundShop(emu, store_url, fulfill=slow) for _ in range(2)]  # two "hosts"
    try:
        emu.drop_webhooks(True)
        sessions = [shops[0].buy() for _ in range(3)]
        for session_id in sessions:
            emu.pay(session_id)
        reports: list[SyncReport] = run_together(
            [shop.middleware.sync for shop in shops])
        assert all(report.ok for report in reports), [r.failures for r in reports]
        assert Counter(order.session_id for order in slow.orders) == dict.fromkeys(sessions, 1)
        assert sum(report.events_new for report in reports) >= 3
        for session_id in sessions:
            assert shops[0].order(session_id).fulfilled
    finally:
        for shop in shops:
            shop.close()


def test_an_open_order_past_its_expiry_is_retrieved_and_settled(
    emu: StripeEmulator, shop: RefundShop
) -> None:
    session_id = shop.buy()
    store = shop.middleware.store
    assert store is not None
    long_ago = time.time() - 2 * 86400
    with store.transaction() as tx:
        order = tx.lock_order(session_id)
        assert order is not None and order.session is not None
        tx.save_order(replace(order, created_at=long_ago,
                              session={**order.session, "expires_at": int(long_ago) + 3600}))
    emu.drop_webhooks(True)
    emu.pay(session_id)
    reconciler = shop.middleware.shop.reconciler
    assert reconciler is not None
    report = SyncReport(since=time.time())
    reconciler.settle_stale_orders(report)
    assert (report.orders_checked, report.orders_settled, report.jobs_run) == (1, 1, 1)
    assert report.stripe_calls == 1 and report.ok
    assert fulfilled(shop) == {session_id: 1}
    assert store.get(session_id).status == "paid"  # type: ignore[union-attr]


def test_a_failing_fulfilment_is_a_failure_of_the_sync_and_the_next_one_retries_it(
    emu: StripeEmulator, store_url: str
) -> None:
    failing = Fulfilments(fail=True)
    shop = RefundShop(emu, store_url, fulfill=failing)
    pipeline = shop.middleware.shop.pipeline
    assert pipeline is not None
    pipeline.retry_base = 1.0  # the failed job is not due again within this sync
    try:
        emu.drop_webhooks(True)
        session_id = shop.buy()
        emu.pay(session_id)
        report = shop.middleware.sync()
        assert not report.ok and "fulfil job failed (RuntimeError)" in report.failures[0]
        assert "ann@example.com" not in " ".join(report.lines())
        failing.fail = False
        time.sleep(1.0)  # its backoff: 0.5 to 1 s after the first attempt
        retry = shop.middleware.sync()
        assert retry.ok and retry.jobs_run == 1 and retry.events_new == 0
        assert [order.fulfilment_attempt for order in failing.orders] == [2]
    finally:
        shop.close()


def test_since_is_parsed_and_clamped_to_stripes_thirty_days(shop: RefundShop) -> None:
    assert parse_since("3d") == (timedelta(days=3), False)
    assert parse_since("12h") == (timedelta(hours=12), False)
    assert parse_since("45d") == (timedelta(days=30), True)
    for bad in ("", "3", "d", "-3d", "0d", "3y", "1.5d"):
        with pytest.raises(ValueError, match="--since"):
            parse_since(bad)
    report = shop.middleware.sync(since=timedelta(days=90))
    assert report.clamped and report.lines()[0].startswith("warning:")
    assert report.since == pytest.approx(time.time() - 30 * 86400, abs=60)
    with pytest.raises(ValueError, match="since"):
        shop.middleware.sync(since=timedelta(0))


def test_sync_replays_every_event_type_the_middleware_handles() -> None:
    from stripe_checkout_mw.news.reconcile import HANDLED_EVENTS, MAX_TYPES_PER_LIST
    from stripe_checkout_mw.news.router import PAYMENTS, SUBSCRIPTIONS, event_types

    assert set(HANDLED_EVENTS) >= set(event_types(PAYMENTS)) | set(event_types(SUBSCRIPTIONS))
    assert "checkout.session.completed" in HANDLED_EVENTS
    # Stripe's limit for types[] is 20: sync asks for them in two lists.
    assert len(HANDLED_EVENTS) > MAX_TYPES_PER_LIST == 20
    assert -(-len(HANDLED_EVENTS) // MAX_TYPES_PER_LIST) == 2
