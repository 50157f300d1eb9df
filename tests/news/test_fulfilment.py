"""Orders through the whole middleware: create, pay on the emulator, signed webhook, fulfil.

The middleware runs on a real threaded server on 127.0.0.1 and the emulator delivers
its webhooks to it over HTTP, so this is the path a deployed shop takes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from conftest import ServedShop

from stripe_checkout_mw import Catalog, CheckoutMiddleware, OptionError
from stripe_checkout_mw.ledger.orders import Order
from stripe_checkout_mw.marker import MARKER_KEY, shop_marker
from stripe_checkout_mw.stripe_api.plain import to_plain
from stripe_checkout_mw.testing import StripeEmulator

CATALOG = Catalog({"tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"}})
STATUS_KEYS = {"session_id", "status", "payment_status", "amount_total", "currency",
               "customer_email", "items", "fulfilled"}


def shop(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"shop saw {environ['PATH_INFO']}".encode()]


class Shop(ServedShop):
    """The middleware on a real server, with the fulfilments it performed."""

    def __init__(self, emu: StripeEmulator, store: str, **options: Any) -> None:
        self.fulfilled: Counter[str] = Counter()
        self.orders: list[Order] = []
        self.fail_fulfilment = 0
        super().__init__(CheckoutMiddleware(
            shop, secret_key=emu.secret_key, stripe_api_base=emu.api_base,
            domain_url="https://shop.example.com", price_lookup=CATALOG,
            webhook_secret=emu.webhook_secret, store=store, fulfill=self.fulfill, **options,
        ))

    def fulfill(self, order: Order) -> None:
        if self.fail_fulfilment:
            self.fail_fulfilment -= 1
            raise RuntimeError("warehouse offline")
        self.fulfilled[order.session_id] += 1
        self.orders.append(order)


@pytest.fixture
def emu() -> Iterator[StripeEmulator]:
    with StripeEmulator(hosted_page_webhook_wait=0) as emulator:
        yield emulator


@pytest.fixture
def store(store_url: str) -> str:
    """The store URL the shop runs on: SQLite, and PostgreSQL where it is available."""
    return store_url


@pytest.fixture
def shop_server(emu: StripeEmulator, store: str) -> Iterator[Shop]:
    server = Shop(emu, store)
    emu.webhook_url = f"{server.url}/stripe-webhook"
    yield server
    server.close()


def test_paid_order_is_fulfilled_once_and_shown_to_the_success_page(
    emu: StripeEmulator, shop_server: Shop
) -> None:
    session_id = shop_server.buy(quantity=2)
    store = shop_server.middleware.store
    assert store is not None
    recorded = store.get(session_id)
    assert recorded is not None and recorded.status == "open"
    assert recorded.items[0]["name"] == "T-shirt" and recorded.amount_total == 4000

    before = shop_server.status(session_id)
    assert before["status"] == "open" and before["fulfilled"] is False

    emu.pay(session_id)
    assert shop_server.fulfilled == {session_id: 1}
    order = shop_server.orders[0]
    assert (order.amount_total, order.currency, order.status) == (4000, "usd", "paid")
    assert order.items == [{"name": "T-shirt", "quantity": 2, "unit_amount": 2000,
                            "currency": "usd", "price": None}]

    view = shop_server.status(session_id)
    assert set(view) == STATUS_KEYS
    assert (view["status"], view["payment_status"], view["fulfilled"]) == ("paid", "paid", True)
    assert view["items"] == [{"name": "T-shirt", "quantity": 2, "unit_amount": 2000}]

    event_id = emu.events[0]["id"]
    emu.redeliver(event_id)
    assert emu.deliveries[-1].status == 200
    assert shop_server.fulfilled == {session_id: 1}


def test_failed_fulfilment_is_retried_by_stripe_and_then_done_once(
    emu: StripeEmulator, shop_server: Shop
) -> None:
    shop_server.fail_fulfilment = 1
    session_id = shop_server.buy()
    emu.pay(session_id)
    assert [d.status for d in emu.deliveries] == [500, 200]
    assert shop_server.fulfilled == {session_id: 1}


def test_delayed_payment_then_success(emu: StripeEmulator, shop_server: Shop) -> None:
    session_id = shop_server.buy()
    emu.pay(session_id, delayed=True)
    assert shop_server.status(session_id)["status"] == "awaiting_payment"
    assert not shop_server.fulfilled
    emu.pay(session_id, async_payment="succeeded")
    assert shop_server.status(session_id)["status"] == "paid"
    assert shop_server.fulfilled == {session_id: 1}


def test_delayed_payment_failure_and_expiry(emu: StripeEmulator, shop_server: Shop) -> None:
    seen: list[str] = []
    shop_server.middleware.on("checkout.session.expired")(lambda event: seen.append(event.id))
    failed = shop_server.buy()
    emu.pay(failed, async_payment="failed")
    assert shop_server.status(failed)["status"] == "payment_failed"
    expired = shop_server.buy()
    emu.expire(expired)
    assert shop_server.status(expired)["status"] == "expired"
    assert seen == [e["id"] for e in emu.events if e["type"] == "checkout.session.expired"]
    assert not shop_server.fulfilled


def test_success_page_before_the_webhook_fulfils_once(emu: StripeEmulator, store: str) -> None:
    shop_server = Shop(emu, store)  # emulator delivers nowhere yet: the webhook is "late"
    try:
        session_id = shop_server.buy()
        emu.pay(session_id)
        assert shop_server.status(session_id)["fulfilled"] is True
        emu.webhook_url = f"{shop_server.url}/stripe-webhook"
        emu.redeliver(emu.events[0]["id"])
        assert emu.deliveries[-1].status == 200
        assert shop_server.fulfilled == {session_id: 1}
    finally:
        shop_server.close()


def test_a_restarted_middleware_on_the_same_store_refuses_duplicates(
    emu: StripeEmulator, store: str
) -> None:
    first = Shop(emu, store)
    emu.webhook_url = f"{first.url}/stripe-webhook"
    session_id = first.buy()
    emu.pay(session_id)
    first.close()
    second = Shop(emu, store)
    try:
        emu.webhook_url = f"{second.url}/stripe-webhook"
        emu.redeliver(emu.events[0]["id"])
        assert emu.deliveries[-1].status == 200
        assert first.fulfilled == {session_id: 1} and not second.fulfilled
    finally:
        second.close()


def test_unsigned_and_wrongly_signed_webhooks_are_refused(
    emu: StripeEmulator, shop_server: Shop
) -> None:
    session_id = shop_server.buy()
    http = shop_server.http
    forged = http.post(f"{shop_server.url}/stripe-webhook", data=b'{"id": "evt_1"}',
                       headers={"Stripe-Signature": "t=1,v1=00"}, timeout=10)
    missing = http.post(f"{shop_server.url}/stripe-webhook", data=b"{}", timeout=10)
    wrong_method = http.get(f"{shop_server.url}/stripe-webhook", timeout=10)
    assert (forged.status_code, missing.status_code) == (400, 400)
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"] == "POST"
    assert shop_server.status(session_id)["status"] == "open"


def test_status_path_errors(shop_server: Shop) -> None:
    get = shop_server.http.get
    url = f"{shop_server.url}/checkout-session"
    assert get(url, timeout=10).status_code == 400
    assert get(url, params={"session_id": "../etc"}, timeout=10).status_code == 400
    assert get(url, params={"session_id": "cs_test_unknown123"}, timeout=10).status_code == 404
    assert shop_server.http.post(url, timeout=10).status_code == 405


def test_checkout_only_middleware_passes_the_webhook_path_through(
    emu: StripeEmulator,
) -> None:
    middleware = CheckoutMiddleware(shop, secret_key=emu.secret_key,
                                    stripe_api_base=emu.api_base,
                                    domain_url="https://shop.example.com", price_lookup=CATALOG)
    try:
        assert middleware.store is None
        for path in ("/stripe-webhook", "/checkout-session"):
            environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path}
            body = middleware(environ, lambda status, headers, exc_info=None: None)
            assert list(body) == [f"shop saw {path}".encode()]
    finally:
        middleware.close()


# --- the marker and the options ------------------------------------------------------------


def test_a_marked_session_without_its_row_is_recorded_from_stripe_and_fulfilled(
    emu: StripeEmulator, shop_server: Shop
) -> None:
    session_id = shop_server.buy(quantity=2)
    metadata = emu.session(session_id)["metadata"]
    assert metadata == {MARKER_KEY: shop_marker("https://shop.example.com/success?"
                                                "session_id={CHECKOUT_SESSION_ID}")}
    store = shop_server.middleware.store
    assert store is not None
    with store.transaction() as tx:  # the row lost, as in a restore from an older backup
        store.dialect.execute(tx.conn, store.dialect.placeholders(
            "DELETE FROM stripe_checkout_orders WHERE session_id = ?"), (session_id,))
    emu.pay(session_id)
    assert shop_server.fulfilled == {session_id: 1}
    order = shop_server.orders[0]
    assert order.fulfilment_attempt == 1
    assert [(i["name"], i["quantity"], i["unit_amount"]) for i in order.items] == [
        ("T-shirt", 2, 2000)]
    assert shop_server.status(session_id)["fulfilled"] is True


def test_an_unmarked_session_without_a_row_is_never_fulfilled(
    emu: StripeEmulator, shop_server: Shop
) -> None:
    session = emu.client().v1.checkout.sessions.create(params={
        "mode": "payment", "success_url": "https://elsewhere.example/s",
        "line_items": [{"price_data": {"currency": "usd", "unit_amount": 100,
                                       "product_data": {"name": "Other"}}, "quantity": 1}],
        "metadata": {MARKER_KEY: "0123456789abcdef"},  # another shop's marker
    })
    emu.pay(session.id)
    assert [d.status for d in emu.deliveries] == [200]
    assert shop_server.fulfilled == {}
    assert shop_server.middleware.store is not None
    assert shop_server.middleware.store.get(session.id) is None


@pytest.mark.parametrize(
    ("option", "value"),
    [
        pytest.param("job_lease", 0, id="lease-zero"),
        pytest.param("job_lease", "soon", id="lease-text"),
        pytest.param("job_lease", 86401, id="lease-too-long"),
        pytest.param("event_retention_days", -1, id="retention-negative"),
        pytest.param("event_retention_days", "a month", id="retention-text"),
        pytest.param("event_retention_days", float("nan"), id="retention-nan"),
    ],
)
def test_malformed_lease_and_retention_are_refused_at_construction(
    emu: StripeEmulator, option: str, value: Any
) -> None:
    with pytest.raises(OptionError) as caught:
        CheckoutMiddleware(shop, secret_key=emu.secret_key, domain_url="https://shop.example.com",
                           price_lookup=CATALOG, **{option: value})
    assert caught.value.option == option
    assert str(caught.value).startswith(f"{option}: ")


def test_a_session_is_read_as_the_json_stripe_sent(emu: StripeEmulator) -> None:
    # to_plain takes an object the SDK just returned from the JSON it was built from;
    # that must be the same dict the SDK's own conversion gives, for a created, a retrieved
    # and a listed session (a list's items share the list's response, and are converted).
    client = stripe.StripeClient(emu.secret_key, base_addresses={"api": emu.api_base})
    created = client.v1.checkout.sessions.create(params={
        "mode": "payment", "success_url": "https://shop.example.com/thanks",
        "metadata": {"note": "kept"},
        "line_items": [{"quantity": 2, "price_data": {
            "currency": "usd", "unit_amount": 700, "product_data": {"name": "Mug"}}}],
    })
    retrieved = client.v1.checkout.sessions.retrieve(created.id)
    listed = client.v1.checkout.sessions.list(params={"limit": 1}).data[0]
    for session in (created, retrieved, listed):
        as_dict = to_plain(session)
        assert as_dict == session.to_dict(for_json=True)
        assert as_dict["id"] == created.id and as_dict["metadata"] == {"note": "kept"}
    assert to_plain({"id": "cs_plain"}) == {"id": "cs_plain"}
