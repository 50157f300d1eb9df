"""The full sync (``mw.sync(full=True)``): adopting an account's sessions, customers and
subscriptions from Stripe's lists, through the emulator and the ledger (SQLite and
PostgreSQL), and the operator's customer links."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pytest
from conftest import REFUND_CATALOG, plain_app

from stripe_checkout_mw import CheckoutMiddleware
from stripe_checkout_mw.billing.customers import LinkRefused
from stripe_checkout_mw.ledger.orders import Order
from stripe_checkout_mw.ledger.reports import LedgerReports
from stripe_checkout_mw.marker import MARKER_KEY
from stripe_checkout_mw.news import backfill as backfill_module
from stripe_checkout_mw.news.backfill import EVENT_PREFIX
from stripe_checkout_mw.testing import StripeEmulator


@pytest.fixture
def emu() -> Iterator[StripeEmulator]:
    with StripeEmulator(hosted_page_webhook_wait=0) as emulator:
        yield emulator


@dataclass
class Account:
    """An emulator account and a shop adopting it, with an empty ledger."""

    emu: StripeEmulator
    mw: CheckoutMiddleware
    fulfilled: list[Order] = field(default_factory=list)
    changed: list[Any] = field(default_factory=list)
    one_off: str = ""
    monthly: str = ""
    fail_changed: bool = False

    def subscription_changed(self, subscription: Any) -> None:
        if self.fail_changed:
            raise RuntimeError("the app is down")
        self.changed.append(subscription)

    @property
    def marker(self) -> str:
        marker = self.mw.shop.settings.marker
        assert marker is not None
        return marker.value

    def sell(self, ref: str | None, *, subscription: bool = False,
             customer: str | None = None, marked: bool = True) -> dict[str, Any]:
        """A paid session of this shop (made at Stripe, as the shop would have), no webhook."""
        params: dict[str, Any] = {
            "mode": "subscription" if subscription else "payment",
            "line_items": [{"price": self.monthly if subscription else self.one_off,
                            "quantity": 1}],
            "success_url": "https://shop.example.com/thanks",
            "metadata": {MARKER_KEY: self.marker} if marked else {},
        }
        if ref is not None:
            params["client_reference_id"] = ref
        if customer is not None:
            params["customer"] = customer
        elif not subscription:
            params["customer_creation"] = "always"
        session = self.emu.client().v1.checkout.sessions.create(params=params)  # type: ignore[arg-type]
        return self.emu.pay(session.id, wait=False)

    def reports(self) -> LedgerReports:
        assert self.mw.store is not None
        return LedgerReports(self.mw.store)

    def ledger_counts(self) -> Counter[str]:
        return Counter(row.status for row in self.reports().recent_orders(
            created_since=0, status=None, email=None, limit=100_000))

    def backfill_claims(self) -> list[str]:
        return [row.event_id for row in self.reports().recent_events(
            event_type=None, failing=False, limit=100_000)
            if row.event_id.startswith(EVENT_PREFIX)]


@pytest.fixture
def account(emu: StripeEmulator, store_url: str) -> Iterator[Account]:
    holder: list[Account] = []
    mw = CheckoutMiddleware(
        plain_app, secret_key=emu.secret_key, stripe_api_base=emu.api_base,
        domain_url="https://shop.example.com", price_lookup=REFUND_CATALOG,
        store=store_url, fulfill=lambda order: holder[0].fulfilled.append(order),
        subscription_changed=lambda sub: holder[0].subscription_changed(sub))
    acc = Account(emu, mw)
    holder.append(acc)
    acc.one_off = str(emu.add_price(2000, product_name="Tee")["id"])
    acc.monthly = str(emu.add_price(900, recurring={"interval": "month"},
                                    product_name="Club")["id"])
    reconciler = mw.shop.reconciler
    assert reconciler is not None
    reconciler.page_interval = 0.0  # the emulator has no rate limit; the pacing is tested below
    yield acc
    mw.close()


def test_a_backfill_adopts_marked_sessions_their_customers_and_subscriptions(
    account: Account,
) -> None:
    paid = account.sell("user-1")
    sub_session = account.sell("user-2", subscription=True)
    account.sell("user-3", marked=False)  # another integration's: not adopted
    canceled = account.sell("user-4", subscription=True)
    account.emu.cancel_subscription(canceled["subscription"], wait=False)

    report = account.mw.sync(full=True)
    assert report.ok, report.failures
    assert report.backfill["checkout_sessions"].as_dict() == {
        "listed": 4, "ours": 3, "new": 3, "resumed_after": None}
    assert account.ledger_counts() == {"paid": 3}
    assert account.fulfilled == [] and report.not_fulfilled == 3
    # Every call paced, counted and guarded, the appliers' too: two pages per list (the
    # oldest, then forward), three sessions' line items, two subscriptions.
    assert report.stripe_calls == 2 + 2 + 3 + 2
    store = account.mw.store
    assert store is not None
    order = store.get(paid["id"])
    assert order is not None and order.fulfilled and order.items[0]["unit_amount"] == 2000
    customers = account.mw.customers
    assert customers is not None and account.mw.subscriptions is not None
    assert customers.stripe_id("user-1") == paid["customer"]
    assert customers.stripe_id("user-3") is None
    assert [s.status for s in account.mw.subscriptions.for_customer("user-2")] == ["active"]
    assert [s.id for s in account.mw.subscriptions.for_customer("user-4")] == [
        canceled["subscription"]]
    assert account.mw.subscriptions.for_customer("user-4")[0].status == "canceled"
    assert sub_session["subscription"] in {s.id for s in account.changed}

    # A redelivered completed event, and a second full sync, change nothing.
    again = account.mw.sync(full=True)
    assert again.ok and sum(c.new for c in again.backfill.values()) == 0
    assert account.fulfilled == [] and account.ledger_counts() == {"paid": 3}


def test_orders_from_fulfil_after_on_are_fulfilled_once_older_ones_never(
    account: Account,
) -> None:
    old = account.sell("user-1")
    cut_off = datetime.fromtimestamp(time.time() + 1, timezone.utc)
    account.emu.advance_clock(5, wait=False)
    new = account.sell("user-2")

    report = account.mw.sync(full=True, fulfil_after=cut_off)
    assert report.ok, report.failures
    assert [order.session_id for order in account.fulfilled] == [new["id"]]
    assert report.not_fulfilled == 1
    store = account.mw.store
    assert store is not None
    assert store.get(old["id"]).fulfilled  # type: ignore[union-attr]
    # The real event of the old order, delivered late, fulfils nothing either.
    events = account.mw.shop.events
    assert events is not None
    event = next(e for e in account.emu.events
                 if e["type"] == "checkout.session.completed"
                 and e["data"]["object"]["id"] == old["id"])
    outcome = events.apply(event)
    assert not outcome.duplicate and outcome.ran == []
    assert [order.session_id for order in account.fulfilled] == [new["id"]]
    with pytest.raises(ValueError, match="full"):
        account.mw.sync(fulfil_after=cut_off)


def test_an_interrupted_backfill_continues_where_it_stopped(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = [account.sell(f"user-{i}") for i in range(7)]
    # Pages of 3, and Stripe failing (every retry) for the line items after 4 sessions.
    monkeypatch.setattr(backfill_module, "PAGE", 3)
    broken = fail_after(account, monkeypatch, applied=4, path="/v1/checkout/sessions/")
    first = account.mw.sync(full=True)
    assert not first.ok and "checkout_sessions: APIError" in first.failures[0]
    assert first.backfill["checkout_sessions"].new == 4 and broken == [True]
    second = account.mw.sync(full=True)
    assert second.ok, second.failures
    count = second.backfill["checkout_sessions"]
    assert count.resumed_after == sessions[3]["id"] and count.new == 3
    assert account.ledger_counts() == {"paid": 7} and account.fulfilled == []
    assert sorted(account.backfill_claims()) == sorted(EVENT_PREFIX + s["id"] for s in sessions)


def fail_after(account: Account, monkeypatch: pytest.MonkeyPatch, *, applied: int,
               path: str) -> list[bool]:
    """Make Stripe answer 500 to every attempt of the next call to ``path`` once the
    backfill has applied ``applied`` objects; the list says whether it did."""
    original = backfill_module.Backfill._apply
    done: list[int] = [0]
    broken: list[bool] = []

    def counting(self: backfill_module.Backfill, step: Any, obj: dict[str, Any]) -> Any:
        outcome = original(self, step, obj)
        done[0] += 1
        if done[0] == applied:
            retries = account.mw.shop.settings.max_network_retries
            account.emu.fail_next(500, times=retries + 1, path=path)
            broken.append(True)
        return outcome

    monkeypatch.setattr(backfill_module.Backfill, "_apply", counting)
    return broken


def test_a_failing_hook_is_listed_and_retried_and_the_backfill_goes_on(
    account: Account,
) -> None:
    first, second = (account.sell(f"user-{i}", subscription=True) for i in range(2))
    account.fail_changed = True
    report = account.mw.sync(full=True)
    where = [f.split(":")[0] for f in report.failures]
    assert where[:2] == [f"backfill checkout_sessions {first['id']}",
                         f"backfill checkout_sessions {second['id']}"]
    assert sorted(where[2:]) == sorted(  # tried again by the jobs step
        [f"jobs of {first['id']}", f"jobs of {second['id']}"])
    assert "subscription_changed job failed (RuntimeError)" in report.failures[0]
    assert account.ledger_counts() == {"paid": 2}
    account.fail_changed = False
    retry = account.mw.sync(full=True)
    assert retry.ok, retry.failures
    assert sorted(s.id for s in account.changed) == sorted(
        [first["subscription"], second["subscription"]])


def test_link_show_and_unlink_an_existing_customer(account: Account) -> None:
    customers = account.mw.customers
    assert customers is not None
    first = account.emu.client().v1.customers.create(params={"email": "a@example.com"})
    second = account.emu.client().v1.customers.create(params={"email": "b@example.com"})
    assert customers.link("user-1", first.id) is True
    assert customers.link("user-1", first.id) is False  # already linked: no Stripe call
    with pytest.raises(LinkRefused, match="another user"):
        customers.link("user-2", first.id)
    with pytest.raises(LinkRefused, match="does not exist"):
        customers.link("user-2", "cus_nobody")
    with pytest.raises(ValueError, match="cus_"):
        customers.link("user-2", "sub_123")
    assert customers.link("user-1", second.id) is True
    assert customers.show("user-1") == [first.id, second.id]
    assert customers.stripe_id("user-1") == first.id
    assert customers.unlink("user-1") == 2
    assert customers.show("user-1") == [] and customers.stripe_id("user-1") is None
    assert customers.link("user-2", first.id) is True


def test_a_linked_customers_subscriptions_are_adopted(account: Account) -> None:
    # A subscription sold elsewhere (no marker) to a customer the operator links.
    sold = account.sell(None, subscription=True, marked=False)
    customers = account.mw.customers
    assert customers is not None and account.mw.subscriptions is not None
    customers.link("user-9", sold["customer"])
    report = account.mw.sync(full=True)
    assert report.ok, report.failures
    assert report.backfill["checkout_sessions"].ours == 0
    assert report.backfill["subscriptions"].new == 1
    assert [s.id for s in account.mw.subscriptions.for_customer("user-9")] == [
        sold["subscription"]]


@pytest.mark.slow
def test_adopting_an_account_of_300_customers_200_subscriptions_500_sessions(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The acceptance account: interrupted once, resumed; every object recorded once, no
    ``fulfill``, and a second run changes nothing."""
    emu = account.emu
    first_buys = [account.sell(f"user-{i}", subscription=i < 200) for i in range(300)]
    customer_of = {f"user-{i}": s["customer"] for i, s in enumerate(first_buys)}
    repeat_buys = [account.sell(f"user-{i}", customer=customer_of[f"user-{i}"])
                   for i in range(200)]
    subscriptions = [s["subscription"] for s in first_buys[:200]]
    for sub_id in subscriptions[::4]:
        emu.cancel_subscription(sub_id, wait=False)
    sessions = {s["id"] for s in first_buys + repeat_buys}
    assert len(sessions) == 500 and len(set(customer_of.values())) == 300

    broken = fail_after(account, monkeypatch, applied=250, path="/v1/checkout/sessions/")
    started = time.monotonic()
    first = account.mw.sync(full=True)
    assert not first.ok and broken == [True] and first.backfill["checkout_sessions"].new == 250
    second = account.mw.sync(full=True)
    elapsed = time.monotonic() - started
    assert second.ok, second.failures
    assert second.backfill["checkout_sessions"].new == 250
    assert second.backfill["subscriptions"].as_dict() == {
        "listed": 200, "ours": 0, "new": 0, "resumed_after": None}  # all stored by step 1

    assert account.ledger_counts() == {"paid": 500} and account.fulfilled == []
    assert first.not_fulfilled + second.not_fulfilled == 500
    assert sorted(account.backfill_claims()) == sorted(EVENT_PREFIX + s for s in sessions)
    customers, subs = account.mw.customers, account.mw.subscriptions
    assert customers is not None and subs is not None
    assert {ref: customers.show(ref) for ref in customer_of} == {
        ref: [cus] for ref, cus in customer_of.items()}
    stored = [sub for ref in customer_of for sub in subs.for_customer(ref)]
    assert sorted(sub.id for sub in stored) == sorted(subscriptions)
    assert Counter(sub.status for sub in stored) == {"active": 150, "canceled": 50}
    assert Counter(sub.id for sub in account.changed) == dict.fromkeys(subscriptions, 1)

    before = account.ledger_counts(), account.backfill_claims(), len(account.changed)
    again = account.mw.sync(full=True)
    assert again.ok and sum(c.new for c in again.backfill.values()) == 0
    assert (account.ledger_counts(), account.backfill_claims(), len(account.changed)) == before
    assert again.stripe_calls == 5 + 5 + 2 + 2  # the lists' pages only, both ways
    print(f"\nacceptance backfill: {first.stripe_calls + second.stripe_calls} Stripe calls "
          f"in {elapsed:.1f}s unpaced; second run {again.stripe_calls} calls")
