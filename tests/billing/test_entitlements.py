"""Features per plan, grants, and "only subscriptions this shop sold give access".

The middleware runs on a real threaded server on 127.0.0.1 with a store on SQLite and
PostgreSQL; the emulator sells the subscriptions (through the real SDK over HTTP) and
delivers its signed events to the shop's webhook.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timezone
from typing import Any

import pytest
import stripe
from conftest import ServedShop

from stripe_checkout_mw import CheckoutMiddleware, OptionError, StripeLookupKeys, Subscription
from stripe_checkout_mw.billing.customers import CustomerDirectory
from stripe_checkout_mw.billing.entitlements import expiry_of
from stripe_checkout_mw.billing.subscriptions import SubscriptionLedger
from stripe_checkout_mw.ledger.billing import GrantRows
from stripe_checkout_mw.ledger.schema import SCHEMA_VERSION
from stripe_checkout_mw.ledger.store import open_store
from stripe_checkout_mw.marker import MARKER_KEY, Marker
from stripe_checkout_mw.news.reads import Fetched
from stripe_checkout_mw.news.subscriptions import SubscriptionEvents
from stripe_checkout_mw.settings.options import OPTIONS
from stripe_checkout_mw.testing import StripeEmulator

DAY = 86400
FEATURES = {"pro": ["reports", "api"], "basic": ["reports"]}


def shop(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the shop"]


class Shop(ServedShop):
    """The middleware on a real server, recording each ``subscription_changed``."""

    def __init__(self, emu: StripeEmulator, store: str, **options: Any) -> None:
        self.changes: list[Subscription] = []
        self.lock = threading.Lock()
        options.setdefault("features", FEATURES)
        super().__init__(CheckoutMiddleware(
            shop, secret_key=emu.secret_key, stripe_api_base=emu.api_base,
            domain_url="https://shop.example.com", price_lookup=StripeLookupKeys(),
            webhook_secret=emu.webhook_secret, store=store,
            customer_ref=lambda environ: environ.get("HTTP_X_TEST_USER"),
            subscription_changed=self.changed, **options))

    @property
    def subscriptions(self) -> SubscriptionLedger:
        assert self.middleware.subscriptions is not None
        return self.middleware.subscriptions

    def changed(self, subscription: Subscription) -> None:
        with self.lock:
            self.changes.append(subscription)

    def buy(self, emu: StripeEmulator, user: str, price: str) -> dict[str, Any]:
        response = self.http.post(f"{self.url}/create-checkout-session", json={
            "line_items": [{"price": price, "quantity": 1}]},
            headers={"X-Test-User": user}, timeout=10)
        assert response.status_code == 200, response.text
        return emu.pay(response.json()["sessionId"])


@pytest.fixture
def emu() -> Iterator[StripeEmulator]:
    with StripeEmulator(hosted_page_webhook_wait=5) as emulator:
        emulator.add_price(1500, lookup_key="pro", recurring={"interval": "month"})
        emulator.add_price(900, lookup_key="basic", recurring={"interval": "month"})
        emulator.add_price(2000, lookup_key="tee")
        yield emulator


@pytest.fixture
def served(emu: StripeEmulator, store_url: str) -> Iterator[Shop]:
    server = Shop(emu, store_url)
    emu.webhook_url = f"{server.url}/stripe-webhook"
    yield server
    server.close()


def all_delivered(emu: StripeEmulator) -> None:
    emu.wait_for_deliveries(10)
    assert [d for d in emu.deliveries if d.status != 200] == []


def price_id(emu: StripeEmulator, lookup_key: str) -> str:
    listed = emu.client().v1.prices.list(params={"limit": 100})
    return next(str(p.id) for p in listed.data if p.lookup_key == lookup_key)


def sold_elsewhere(emu: StripeEmulator, customer: str, lookup_key: str) -> dict[str, Any]:
    """A subscription another integration sells to the same Stripe Customer."""
    elsewhere = emu.client().v1.checkout.sessions.create(params={
        "mode": "subscription", "customer": customer,
        "line_items": [{"price": price_id(emu, lookup_key), "quantity": 1}],
        "success_url": "https://elsewhere.example/ok"})
    return emu.pay(elsewhere.id)


# -- only subscriptions this shop sold ------------------------------------------------------


def test_the_checkout_puts_the_shops_marker_on_the_subscription(
    emu: StripeEmulator, served: Shop
) -> None:
    session = served.buy(emu, "ann", "pro")
    all_delivered(emu)
    create = [r for r in emu.requests
              if r.method == "POST" and r.path == "/v1/checkout/sessions"][-1]
    marker = served.middleware.checkout.marker
    assert create.params["subscription_data"]["metadata"] == {MARKER_KEY: marker}
    assert emu.subscription(session["subscription"])["metadata"] == {MARKER_KEY: marker}
    (sub,) = served.subscriptions.for_customer("ann")
    assert sub.sold_here is True and served.subscriptions.is_active("ann")


def test_the_marker_joins_the_subscription_data_the_shop_configures(
    emu: StripeEmulator, store_url: str
) -> None:
    served = Shop(emu, store_url, mode="subscription", session_options={
        "subscription_data": {"trial_period_days": 7, "metadata": {"plan": "launch"}}})
    emu.webhook_url = f"{served.url}/stripe-webhook"
    try:
        session = served.buy(emu, "ann", "pro")
        all_delivered(emu)
        stored = emu.subscription(session["subscription"])
        assert stored["status"] == "trialing"
        assert stored["metadata"] == {"plan": "launch",
                                      MARKER_KEY: served.middleware.checkout.marker}
        assert served.subscriptions.has_feature("ann", "api")
    finally:
        served.close()


def test_a_subscription_another_integration_sold_to_the_same_customer_gives_nothing(
    emu: StripeEmulator, served: Shop
) -> None:
    # bea becomes this shop's customer through a one-time purchase ...
    bought = served.buy(emu, "bea", "tee")
    all_delivered(emu)
    # ... and another integration sells her Stripe Customer a subscription.
    foreign = sold_elsewhere(emu, bought["customer"], "pro")
    all_delivered(emu)
    (sub,) = served.subscriptions.for_customer("bea")
    assert (sub.id, sub.status, sub.customer_ref) == (foreign["subscription"], "active", "bea")
    assert sub.sold_here is False
    assert not served.subscriptions.is_active("bea")
    assert not served.subscriptions.is_active("bea", price="pro")
    assert served.subscriptions.features("bea") == frozenset()
    assert served.changes == []
    # Its renewals and cancellation stay silent too.
    emu.advance_clock(32 * DAY)
    emu.cancel_subscription(foreign["subscription"])
    all_delivered(emu)
    assert served.changes == [] and not served.subscriptions.is_active("bea")


def test_a_configured_entitling_price_counts_without_the_marker(
    emu: StripeEmulator, store_url: str
) -> None:
    served = Shop(emu, store_url, entitling_prices="basic")
    emu.webhook_url = f"{served.url}/stripe-webhook"
    try:
        bought = served.buy(emu, "bea", "tee")
        all_delivered(emu)
        sold_elsewhere(emu, bought["customer"], "pro")
        dashboard = sold_elsewhere(emu, bought["customer"], "basic")
        all_delivered(emu)
        assert served.subscriptions.is_active("bea", price="basic")
        assert not served.subscriptions.is_active("bea", price="pro")
        assert served.subscriptions.features("bea") == {"reports"}
        assert [(s.id, s.status) for s in served.changes] == [
            (dashboard["subscription"], "active")]
    finally:
        served.close()


# -- features per plan ----------------------------------------------------------------------


def test_features_follow_the_plan_through_a_switch_and_a_cancellation(
    emu: StripeEmulator, served: Shop
) -> None:
    session = served.buy(emu, "ann", "basic")
    all_delivered(emu)
    ledger = served.subscriptions
    assert ledger.features("ann") == {"reports"}
    assert ledger.has_feature("ann", "reports") and not ledger.has_feature("ann", "api")
    assert ledger.features("bob") == frozenset() and not ledger.has_feature("bob", "reports")
    emu.advance_clock(32 * DAY)  # a renewal changes nothing
    all_delivered(emu)
    assert ledger.features("ann") == {"reports"}
    emu.cancel_subscription(session["subscription"])
    all_delivered(emu)
    assert ledger.features("ann") == frozenset()
    served.buy(emu, "ann", "pro")
    all_delivered(emu)
    assert ledger.features("ann") == {"reports", "api"}
    strangers: list[Any] = [None, 42, ""]
    assert [ledger.has_feature(ref, "reports") for ref in strangers] == [False] * 3


def test_features_converge_with_events_reversed_and_duplicated(
    emu: StripeEmulator, served: Shop, tmp_path: Any
) -> None:
    served.buy(emu, "ann", "pro")
    bought = served.buy(emu, "bea", "tee")
    session = served.buy(emu, "cy", "basic")
    emu.advance_clock(32 * DAY)
    emu.cancel_subscription(session["subscription"])
    sold_elsewhere(emu, bought["customer"], "pro")
    all_delivered(emu)
    users = ("ann", "bea", "cy")
    expected = {ref: served.subscriptions.features(ref) for ref in users}
    assert expected == {"ann": {"reports", "api"}, "bea": frozenset(), "cy": frozenset()}
    changed = sorted((s.customer_ref or "", s.status) for s in served.changes)

    other = Shop(emu, f"sqlite:///{tmp_path}/other.db")
    emu.webhook_url = f"{other.url}/stripe-webhook"
    try:
        for event in reversed(emu.events):
            emu.redeliver(event["id"])
            emu.redeliver(event["id"])
        all_delivered(emu)
        assert {ref: other.subscriptions.features(ref) for ref in users} == expected
        # The subscription sold elsewhere never called the hook, in either order.
        assert ("ann", "active") in changed and ("cy", "canceled") in changed
        assert not any(s.customer_ref == "bea" for s in [*served.changes, *other.changes])
    finally:
        other.close()


# -- the option -----------------------------------------------------------------------------


@pytest.mark.parametrize("given", [
    pytest.param({"pro": ["reports", "api"], "basic": "reports"}, id="dict"),
    pytest.param('{"pro": ["reports", "api"], "basic": ["reports"]}', id="json"),
    pytest.param("\npro = reports api\nbasic = reports\n", id="lines"),
    pytest.param("pro = reports, api\n\nbasic=reports", id="lines-with-commas"),
])
def test_the_features_option_from_python_and_from_an_ini(given: Any) -> None:
    converted = OPTIONS["features"].convert("features", given)
    assert converted == {"pro": ("reports", "api"), "basic": ("reports",)}


@pytest.mark.parametrize(("given", "says"), [
    pytest.param('{"pro": ', "not a valid JSON object", id="bad-json"),
    pytest.param("pro reports", "is not a line", id="no-equals"),
    pytest.param(["reports"], "give a dict", id="a-list"),
    pytest.param({"pro": [1]}, "give a list of strings", id="not-names"),
])
def test_a_bad_features_option_names_itself(given: Any, says: str) -> None:
    with pytest.raises(OptionError, match="features") as raised:
        OPTIONS["features"].convert("features", given)
    assert says in str(raised.value)


# -- grants ---------------------------------------------------------------------------------


def stripe_subscription(status: str, price: str = "price_pro", **fields: Any) -> dict[str, Any]:
    return {"id": "sub_1", "object": "subscription", "customer": "cus_1", "status": status,
            "created": 1_700_000_000, "cancel_at_period_end": False,
            "items": {"data": [{"price": {"id": price, "lookup_key": "pro"}, "quantity": 1,
                                "current_period_end": 1_800_000_000}]},
            "latest_invoice": None, **fields}


def test_grants_give_a_feature_until_they_end_or_are_revoked(store_url: str) -> None:
    with open_store(store_url) as store:
        ledger = SubscriptionLedger(store, CustomerDirectory(store), features=FEATURES)
        until = datetime.now(timezone.utc).replace(microsecond=0).replace(
            year=datetime.now(timezone.utc).year + 1)
        grant = ledger.grant("ann", "reports", until=until, note="ticket 81")
        assert (grant.customer_ref, grant.feature, grant.expires_at, grant.note) == (
            "ann", "reports", until.timestamp(), "ticket 81")
        assert ledger.has_feature("ann", "reports") and ledger.features("ann") == {"reports"}
        assert not ledger.is_active("ann")  # a grant is a feature, not a subscription
        assert not ledger.has_feature("bob", "reports")
        # Granting again replaces the grant.
        ledger.grant("ann", "reports", until=until.timestamp() + DAY)
        ledger.grant("bob", "api", until=date(until.year, 1, 1))
        assert [(g.customer_ref, g.feature, g.expires_at, g.note) for g in ledger.grants()] == [
            ("ann", "reports", until.timestamp() + DAY, None),
            ("bob", "api", datetime(until.year, 1, 2, tzinfo=timezone.utc).timestamp(), None)]
        assert [g.feature for g in ledger.grants("bob")] == ["api"]
        # An expired grant gives nothing and is not listed.
        GrantRows(store).put("cy", "reports", time.time() - 1, None, time.time() - DAY)
        assert not ledger.has_feature("cy", "reports") and ledger.grants("cy") == []
        assert ledger.revoke("ann", "reports") is True
        assert ledger.revoke("ann", "reports") is False
        assert not ledger.has_feature("ann", "reports")
        assert [g.customer_ref for g in ledger.grants()] == ["bob"]


def test_a_grant_adds_to_the_features_of_a_subscription(store_url: str) -> None:
    with open_store(store_url) as store:
        customers = CustomerDirectory(store)
        ledger = SubscriptionLedger(store, customers, features=FEATURES, marker=Marker("ours"))
        applier = SubscriptionEvents(ledger, stripe.StripeClient("sk_test_unused"))
        with store.transaction() as tx:
            customers.record(tx, "ann", "cus_1")
            applier.apply(tx, "sub_1", {"sub_1": Fetched(stripe_subscription(
                "active", metadata={MARKER_KEY: "ours"}), 1.0)}, "evt_1")
        ledger.grant("ann", "support", until=time.time() + DAY)
        ledger.grant("ann", "api", until=time.time() + DAY)
        assert ledger.features("ann") == {"reports", "api", "support"}
        # Revoking a grant leaves what the subscription gives.
        ledger.revoke("ann", "api")
        assert ledger.features("ann") == {"reports", "api", "support"}


@pytest.mark.parametrize(("args", "error"), [
    pytest.param(("", "reports", time.time() + DAY), ValueError, id="no-user"),
    pytest.param(("ann", " ", time.time() + DAY), ValueError, id="no-feature"),
    pytest.param(("ann", "reports", time.time() - 1), ValueError, id="past"),
    pytest.param(("ann", "reports", "tomorrow"), TypeError, id="not-a-time"),
])
def test_a_bad_grant_is_refused_and_stores_nothing(
    store_url: str, args: tuple[Any, ...], error: type[Exception]
) -> None:
    with open_store(store_url) as store:
        ledger = SubscriptionLedger(store, CustomerDirectory(store))
        ref, feature, until = args
        with pytest.raises(error):
            ledger.grant(ref, feature, until=until)
        assert ledger.grants() == []


def test_a_date_lasts_through_its_end_in_utc() -> None:
    assert expiry_of(date(2027, 1, 31)) == datetime(2027, 2, 1, tzinfo=timezone.utc).timestamp()
    assert expiry_of(datetime(2027, 1, 31, 12)) == datetime(
        2027, 1, 31, 12, tzinfo=timezone.utc).timestamp()
    assert expiry_of(1_900_000_000) == 1_900_000_000.0


# -- recognition in the ledger --------------------------------------------------------------


def test_recognised_once_a_subscription_stays_recognised(store_url: str) -> None:
    with open_store(store_url) as store:
        customers = CustomerDirectory(store)
        ledger = SubscriptionLedger(store, customers, features=FEATURES, marker=Marker("ours"))
        applier = SubscriptionEvents(ledger, stripe.StripeClient("sk_test_unused"))
        with store.transaction() as tx:
            customers.record(tx, "ann", "cus_1")
            other = applier.apply(tx, "sub_1", {"sub_1": Fetched(stripe_subscription(
                "active", metadata={MARKER_KEY: "another-shop"}), 1.0)}, "evt_1")
        assert other == [] and not ledger.is_active("ann")
        with store.transaction() as tx:
            ours = applier.apply(tx, "sub_1", {"sub_1": Fetched(stripe_subscription(
                "active", metadata={MARKER_KEY: "ours"}), 2.0)}, "evt_2")
        assert [job.key for job in ours] == ["sub_1#2"] and ledger.is_active("ann")
        with store.transaction() as tx:
            applier.apply(tx, "sub_1", {"sub_1": Fetched(stripe_subscription(
                "past_due", metadata={}), 3.0)}, "evt_3")
        assert ledger.is_active("ann") and ledger.features("ann") == {"reports", "api"}


def test_an_operators_shop_without_a_marker_accepts_any_shops_marker(store_url: str) -> None:
    with open_store(store_url) as store:
        customers = CustomerDirectory(store)
        ledger = SubscriptionLedger(store, customers)
        applier = SubscriptionEvents(ledger, stripe.StripeClient("sk_test_unused"))
        with store.transaction() as tx:
            customers.record(tx, "ann", "cus_1")
            customers.record(tx, "bob", "cus_2")
            applier.apply(tx, "sub_1", {"sub_1": Fetched(stripe_subscription(
                "active", metadata={MARKER_KEY: "any"}), 1.0)}, "evt_1")
            applier.apply(tx, "sub_2", {"sub_2": Fetched(stripe_subscription(
                "active", id="sub_2", customer="cus_2"), 1.0)}, "evt_2")
        assert ledger.is_active("ann") and not ledger.is_active("bob")


def _drop_sold_here_and_say_version_4(store: Any, store_url: str) -> None:
    if store_url.startswith("sqlite:"):
        import sqlite3
        from contextlib import closing

        with closing(sqlite3.connect(store.path)) as conn, conn:
            conn.execute("ALTER TABLE stripe_checkout_subscriptions DROP COLUMN sold_here")
            conn.execute("DROP TABLE stripe_checkout_grants")
            conn.execute("UPDATE stripe_checkout_meta SET value = '4'")
        return
    import psycopg

    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE stripe_checkout_subscriptions DROP COLUMN sold_here")
        conn.execute("DROP TABLE stripe_checkout_grants")
        conn.execute("UPDATE stripe_checkout_meta SET value = '4'")


def test_subscriptions_a_version_4_ledger_stored_keep_giving_access(store_url: str) -> None:
    with open_store(store_url) as store:
        customers = CustomerDirectory(store)
        ledger = SubscriptionLedger(store, customers, marker=Marker("ours"))
        applier = SubscriptionEvents(ledger, stripe.StripeClient("sk_test_unused"))
        with store.transaction() as tx:
            customers.record(tx, "ann", "cus_1")
            applier.apply(tx, "sub_1", {"sub_1": Fetched(stripe_subscription(
                "active", metadata={MARKER_KEY: "ours"}), 1.0)}, "evt_1")
        _drop_sold_here_and_say_version_4(store, store_url)
    with open_store(store_url) as store:
        ledger = SubscriptionLedger(store, CustomerDirectory(store), marker=Marker("ours"),
                                    features=FEATURES)
        assert ledger.is_active("ann") and ledger.has_feature("ann", "api")
        assert store.stored_version() == str(SCHEMA_VERSION)
        applier = SubscriptionEvents(ledger, stripe.StripeClient("sk_test_unused"))
        # Sold before the marker existed: a later fetch without it keeps the access.
        with store.transaction() as tx:
            applier.apply(tx, "sub_1", {"sub_1": Fetched(stripe_subscription(
                "active", metadata={}), 2.0)}, "evt_2")
        assert ledger.is_active("ann")



def test_the_decoded_price_lists_stay_bounded(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``has_feature`` keeps the stored price lists decoded, at most DECODED_PRICES of them,
    and a list decoded again after the bound gives the same answer."""
    monkeypatch.setattr("stripe_checkout_mw.ledger.billing.DECODED_PRICES", 4)
    with open_store(store_url) as store:
        rows = SubscriptionLedger(store, CustomerDirectory(store))._rows
        seen = [rows._price_names(f'["plan-{n}", "shared"]') for n in range(10)]
        assert len(rows._decoded) <= 4
        assert seen[0] == frozenset({"plan-0", "shared"})
        assert rows._price_names('["plan-0", "shared"]') == seen[0]
