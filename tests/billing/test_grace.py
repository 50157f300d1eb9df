"""The access policy's grace periods: ``past_due_grace_days`` and ``incomplete_grace_days``.

A ``past_due`` or ``incomplete`` subscription gives access for its grace period, counted
from when the ledger first stored that status (``Subscription.status_since``). The shop
runs on a real server with a store on SQLite and PostgreSQL; the emulator sells the
subscriptions through the real SDK and moves its clock to make renewals fail. The ledger's
own clock is moved by reading the same store through a ``SubscriptionLedger`` given a later
``clock``: the app's machine's time is what a grace is measured in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from conftest import ServedShop

from stripe_checkout_mw import CheckoutMiddleware, OptionError, StripeLookupKeys, Subscription
from stripe_checkout_mw.billing.customers import CustomerDirectory
from stripe_checkout_mw.billing.subscriptions import SubscriptionLedger
from stripe_checkout_mw.ledger.schema import SCHEMA_VERSION
from stripe_checkout_mw.ledger.store import SqlStore, open_store
from stripe_checkout_mw.marker import MARKER_KEY, Marker
from stripe_checkout_mw.news.reads import Fetched
from stripe_checkout_mw.news.subscriptions import SubscriptionEvents
from stripe_checkout_mw.settings.options import OPTIONS
from stripe_checkout_mw.testing import StripeEmulator

DAY = 86400
FEATURES = {"pro": ["reports", "api"]}
FAILS_LATER = "pm_card_chargeCustomerFail"


def shop(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the shop"]


class Shop(ServedShop):
    def __init__(self, emu: StripeEmulator, store: str, **options: Any) -> None:
        super().__init__(CheckoutMiddleware(
            shop, secret_key=emu.secret_key, stripe_api_base=emu.api_base,
            domain_url="https://shop.example.com", price_lookup=StripeLookupKeys(),
            webhook_secret=emu.webhook_secret, store=store, features=FEATURES,
            customer_ref=lambda environ: environ.get("HTTP_X_TEST_USER"), **options))
        emu.webhook_url = f"{self.url}/stripe-webhook"

    @property
    def subscriptions(self) -> SubscriptionLedger:
        assert self.middleware.subscriptions is not None
        return self.middleware.subscriptions

    @property
    def store(self) -> SqlStore:
        store = self.middleware.store
        assert isinstance(store, SqlStore)
        return store

    def checkout(self, user: str) -> str:
        response = self.http.post(f"{self.url}/create-checkout-session", json={
            "line_items": [{"price": "pro", "quantity": 1}]},
            headers={"X-Test-User": user}, timeout=10)
        assert response.status_code == 200, response.text
        return str(response.json()["sessionId"])

    def at(self, now: float, **policy: Any) -> SubscriptionLedger:
        """The same ledger read at the time ``now``, with the grace periods ``policy``."""
        return SubscriptionLedger(self.store, CustomerDirectory(self.store),
                                  features=FEATURES, clock=lambda: now, **policy)

    def only(self, ref: str) -> Subscription:
        (subscription,) = self.subscriptions.for_customer(ref)
        return subscription


@pytest.fixture
def emu() -> Iterator[StripeEmulator]:
    with StripeEmulator(hosted_page_webhook_wait=5) as emulator:
        emulator.add_price(1500, lookup_key="pro", recurring={"interval": "month"})
        yield emulator


def all_delivered(emu: StripeEmulator) -> None:
    emu.wait_for_deliveries(10)
    assert [d for d in emu.deliveries if d.status != 200] == []


def latest_invoice(emu: StripeEmulator, subscription_id: str) -> str:
    invoice = emu.subscription(subscription_id)["latest_invoice"]
    return str(invoice["id"] if isinstance(invoice, dict) else invoice)


# -- with Stripe (the emulator) -------------------------------------------------------------


def test_a_failed_renewal_gives_access_for_the_past_due_grace_only(
    emu: StripeEmulator, store_url: str
) -> None:
    served = Shop(emu, store_url, past_due_grace_days=3)
    try:
        session = emu.pay(served.checkout("ann"))
        emu.attach_card(session["customer"], FAILS_LATER)
        all_delivered(emu)
        paying = served.only("ann")
        assert paying.status == "active" and paying.status_since is not None

        emu.advance_clock(32 * DAY)  # the renewal's charge fails
        all_delivered(emu)
        failed = served.only("ann")
        assert failed.status == "past_due"
        since = failed.status_since
        assert since is not None and since >= paying.status_since
        assert served.subscriptions.is_active("ann")
        assert served.subscriptions.features("ann") == {"reports", "api"}
        # Within the three days, and after them.
        inside = served.at(since + 3 * DAY - 60, past_due_grace_days=3)
        after = served.at(since + 3 * DAY + 60, past_due_grace_days=3)
        assert served.at(since + 3 * DAY + 60).is_active("ann")  # the default: 14 days
        assert inside.is_active("ann") and inside.has_feature("ann", "api")
        assert not after.is_active("ann") and not after.is_active("ann", price="pro")
        assert after.features("ann") == frozenset() and not after.has_feature("ann", "api")
        # past_due_is_active=False is a grace of 0, whatever the days say.
        strict = served.at(since, past_due_is_active=False, past_due_grace_days=3)
        assert not strict.is_active("ann") and strict.features("ann") == frozenset()

        emu.advance_clock(3 * DAY)  # Stripe's first retry fails too: the grace runs on
        all_delivered(emu)
        retried = served.only("ann")
        assert (retried.status, retried.status_since) == ("past_due", since)

        emu.pay_invoice(latest_invoice(emu, session["subscription"]),
                        card="4242424242424242")
        all_delivered(emu)
        paid = served.only("ann")
        assert paid.status == "active" and paid.status_since is not None
        assert paid.status_since >= since
        # Active again: no grace ends it.
        assert served.at(since + 30 * DAY).has_feature("ann", "reports")
    finally:
        served.close()


def test_an_incomplete_subscription_gets_the_incomplete_grace(
    emu: StripeEmulator, store_url: str
) -> None:
    served = Shop(emu, store_url, incomplete_grace_days=1)
    try:
        session_id = served.checkout("ann")
        emu.pay(session_id, delayed=True)  # a slow payment method: not paid yet
        all_delivered(emu)
        waiting = served.only("ann")
        assert waiting.status == "incomplete" and waiting.status_since is not None
        assert served.subscriptions.is_active("ann")
        assert served.subscriptions.has_feature("ann", "reports")
        since = waiting.status_since
        assert not served.at(since + DAY + 60, incomplete_grace_days=1).is_active("ann")
        # The default gives an incomplete subscription nothing.
        assert not served.at(since).is_active("ann")
        assert served.at(since).features("ann") == frozenset()

        emu.pay(session_id, async_payment="succeeded")
        all_delivered(emu)
        assert served.only("ann").status == "active"
        assert served.at(since + 30 * DAY).is_active("ann")
    finally:
        served.close()


# -- the ledger on its own ------------------------------------------------------------------


def stripe_subscription(status: str, **fields: Any) -> dict[str, Any]:
    return {"id": "sub_1", "object": "subscription", "customer": "cus_1", "status": status,
            "created": 1_700_000_000, "cancel_at_period_end": False,
            "metadata": {MARKER_KEY: "ours"},
            "items": {"data": [{"price": {"id": "price_pro", "lookup_key": "pro"},
                                "quantity": 1, "current_period_end": 1_800_000_000}]},
            "latest_invoice": None, **fields}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_status_since_moves_only_when_the_status_does(store_url: str) -> None:
    clock = Clock(1_900_000_000.0)
    with open_store(store_url) as store:
        customers = CustomerDirectory(store)
        ledger = SubscriptionLedger(store, customers, marker=Marker("ours"), features=FEATURES,
                                    past_due_grace_days=2, clock=clock)
        applier = SubscriptionEvents(ledger, stripe.StripeClient("sk_test_unused"))

        def store_fetch(status: str, fetched_at: float) -> float | None:
            with store.transaction() as tx:
                applier.apply(tx, "sub_1", {"sub_1": Fetched(
                    stripe_subscription(status), fetched_at)}, f"evt_{fetched_at}")
            (subscription,) = ledger.for_customer("ann")
            return subscription.status_since

        with store.transaction() as tx:
            customers.record(tx, "ann", "cus_1")
        assert store_fetch("active", 1.0) == clock.now
        clock.now += DAY
        failed_at = clock.now
        assert store_fetch("past_due", 2.0) == failed_at
        clock.now += DAY  # a retry's news: the same status, the same since
        assert store_fetch("past_due", 3.0) == failed_at and ledger.is_active("ann")
        # An older answer that commits late changes nothing, the since included.
        assert store_fetch("active", 2.5) == failed_at
        clock.now = failed_at + 2 * DAY + 1
        assert not ledger.is_active("ann") and not ledger.has_feature("ann", "reports")
        assert store_fetch("active", 4.0) == clock.now and ledger.is_active("ann")


def _drop_status_since_and_say_version_5(store: Any, store_url: str) -> None:
    statements = ("ALTER TABLE stripe_checkout_subscriptions DROP COLUMN status_since",
                  "UPDATE stripe_checkout_meta SET value = '5'")
    if store_url.startswith("sqlite:"):
        import sqlite3
        from contextlib import closing

        with closing(sqlite3.connect(store.path)) as conn, conn:
            for statement in statements:
                conn.execute(statement)
        return
    import psycopg

    with psycopg.connect(store_url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def test_rows_a_version_5_ledger_stored_count_from_their_last_store(store_url: str) -> None:
    clock = Clock(1_900_000_000.0)
    with open_store(store_url) as store:
        customers = CustomerDirectory(store)
        ledger = SubscriptionLedger(store, customers, marker=Marker("ours"), clock=clock)
        applier = SubscriptionEvents(ledger, stripe.StripeClient("sk_test_unused"))
        with store.transaction() as tx:
            customers.record(tx, "ann", "cus_1")
            applier.apply(tx, "sub_1", {"sub_1": Fetched(stripe_subscription("past_due"),
                                                         1.0)}, "evt_1")
        _drop_status_since_and_say_version_5(store, store_url)
    stored_at = clock.now
    with open_store(store_url) as store:
        ledger = SubscriptionLedger(store, CustomerDirectory(store), marker=Marker("ours"),
                                    past_due_grace_days=14, clock=clock)
        clock.now = stored_at + 13 * DAY
        assert ledger.is_active("ann")
        assert store.stored_version() == str(SCHEMA_VERSION)
        # The next store of the same status keeps counting from the row's last store.
        applier = SubscriptionEvents(ledger, stripe.StripeClient("sk_test_unused"))
        with store.transaction() as tx:
            applier.apply(tx, "sub_1", {"sub_1": Fetched(stripe_subscription("past_due"),
                                                         2.0)}, "evt_2")
        assert ledger.for_customer("ann")[0].status_since == stored_at
        clock.now = stored_at + 14 * DAY + 1
        assert not ledger.is_active("ann")


# -- the options ----------------------------------------------------------------------------


def test_the_grace_options_from_python_and_from_an_ini() -> None:
    assert (OPTIONS["past_due_grace_days"].default,
            OPTIONS["incomplete_grace_days"].default) == (14, 0)
    assert OPTIONS["past_due_grace_days"].convert("past_due_grace_days", "7") == 7.0
    assert OPTIONS["past_due_grace_days"].convert("past_due_grace_days", 0) == 0.0
    assert OPTIONS["incomplete_grace_days"].convert("incomplete_grace_days", " 0.5 ") == 0.5


@pytest.mark.parametrize(("option", "given", "says"), [
    ("past_due_grace_days", -1, "from 0 to 365"),
    ("past_due_grace_days", 400, "from 0 to 365"),
    ("past_due_grace_days", "two weeks", "not a number of days"),
    ("past_due_grace_days", True, "number of days"),
    ("incomplete_grace_days", 2, "23 hours"),
    ("incomplete_grace_days", float("nan"), "from 0 to 1"),
])
def test_a_bad_grace_names_its_option(option: str, given: Any, says: str) -> None:
    with pytest.raises(OptionError) as raised:
        CheckoutMiddleware(shop, secret_key="sk_test_x", domain_url="https://s.example",
                           price_lookup=StripeLookupKeys(),
                           **{option: given})
    assert option in str(raised.value) and says in str(raised.value)
