"""The success page's status lookup, and real signed deliveries from the emulator.

Stripe is the offline emulator (``stripe_checkout_mw.testing``) on 127.0.0.1, driven through
the real ``stripe`` SDK; store tests run on SQLite and, with STRIPE_CHECKOUT_TEST_PG, on
PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import stripe
from conftest import Fulfilments, run_together
from werkzeug.serving import make_server

from stripe_checkout_mw.errors import HTTPError
from stripe_checkout_mw.ledger.orders import Order
from stripe_checkout_mw.ledger.pipeline import Pipeline
from stripe_checkout_mw.ledger.store import OrderStore, open_store
from stripe_checkout_mw.news.fulfilment import FulfilJob
from stripe_checkout_mw.news.handlers import WebhookHandlers
from stripe_checkout_mw.news.router import EventRouter
from stripe_checkout_mw.news.status import OrderStatus
from stripe_checkout_mw.news.webhooks import WebhookReceiver
from stripe_checkout_mw.testing import StripeEmulator

PG_URL = os.environ.get("STRIPE_CHECKOUT_TEST_PG", "")
ITEMS = [{"name": "Tee", "quantity": 1, "unit_amount": 500, "currency": "usd", "price": None}]


@pytest.fixture
def emu() -> Iterator[StripeEmulator]:
    with StripeEmulator() as emulator:
        yield emulator


@pytest.fixture
def client(emu: StripeEmulator) -> Iterator[stripe.StripeClient]:
    # One shared HTTP session, closed here, so that lookups from many threads leave no socket.
    with requests.Session() as session:
        yield stripe.StripeClient(
            emu.secret_key,
            base_addresses={"api": emu.api_base},
            http_client=stripe.RequestsClient(session=session, timeout=10),
        )


def create_order(client: stripe.StripeClient, store: OrderStore | None) -> str:
    """A session created at the emulator and, unless ``store`` is None, in the ledger."""
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": "usd",
                        "unit_amount": 500,
                        "product_data": {"name": "Tee"},
                    },
                    "quantity": 1,
                }
            ],
            "success_url": "https://shop.test/s",
            "cancel_url": "https://shop.test/c",
            "client_reference_id": "cart-7",
            "metadata": {"internal": "do-not-show"},
        }
    )
    if store is not None:
        store.record_open(Order.from_session(session, items=ITEMS))
    return str(session.id)


def retrievals(emu: StripeEmulator, session_id: str) -> int:
    return sum(
        1
        for r in emu.requests
        if r.method == "GET" and r.path == f"/v1/checkout/sessions/{session_id}"
    )


def look(lookup: OrderStatus, session_id: str) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body the lookup's answer becomes."""
    try:
        return 200, dict(lookup.lookup(session_id))
    except HTTPError as exc:
        return exc.status, exc.payload()


def hook(receiver: WebhookReceiver, body: bytes, header: str | None) -> tuple[int, dict[str, Any]]:
    try:
        return 200, dict(receiver.handle(body, header))
    except HTTPError as exc:
        return exc.status, exc.payload()


def status_for(store: OrderStore, client: stripe.StripeClient, fulfill: Any = None) -> OrderStatus:
    return OrderStatus(store=store, client=client, fulfill=fulfill, min_refresh_interval=0)


# --- ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "session_id",
    [
        pytest.param("", id="empty"),
        pytest.param("cs_test_", id="prefix-only"),
        pytest.param("pi_123", id="other-object"),
        pytest.param("cs_prod_abc", id="bad-mode"),
        pytest.param("cs_test_abc/../x", id="path"),
        pytest.param("cs_test_abc\n", id="newline"),
        pytest.param("cs_test_é", id="non-ascii"),
        pytest.param("cs_test_" + "a" * 241, id="too-long"),
    ],
)
def test_malformed_ids_are_400(
    store: OrderStore, client: stripe.StripeClient, emu: StripeEmulator, session_id: str
) -> None:
    status, body = look(status_for(store, client), session_id)
    assert status == 400
    assert body == {
        "error": {
            "type": "invalid_request_error",
            "message": "session_id must be a Checkout Session id (cs_test_... or cs_live_...)",
            "param": "session_id",
        }
    }
    assert emu.requests == []


def test_sessions_this_shop_did_not_create_are_404(
    store: OrderStore, client: stripe.StripeClient, emu: StripeEmulator
) -> None:
    elsewhere = create_order(client, store=None)
    emu.pay(elsewhere)
    lookup = status_for(store, client, Fulfilments())
    for session_id in (elsewhere, "cs_test_a1" + "x" * 56):
        status, body = look(lookup, session_id)
        assert status == 404
        assert body["error"] == {
            "type": "invalid_request_error",
            "message": "no such checkout session in this shop",
            "param": "session_id",
        }
    assert retrievals(emu, elsewhere) == 0


# --- 5. the lookup --------------------------------------------------------------------------


def test_open_order_is_shown_from_the_ledger_and_stripe(
    store: OrderStore, client: stripe.StripeClient, emu: StripeEmulator
) -> None:
    session_id = create_order(client, store)
    fulfilments = Fulfilments()
    status, body = look(status_for(store, client, fulfilments), session_id)
    assert status == 200
    assert body == {
        "session_id": session_id,
        "status": "open",
        "payment_status": "unpaid",
        "amount_total": 500,
        "currency": "usd",
        "customer_email": None,
        "items": [{"name": "Tee", "quantity": 1, "unit_amount": 500}],
        "fulfilled": False,
    }
    assert retrievals(emu, session_id) == 1
    assert fulfilments.orders == []


def test_paid_before_the_webhook_is_fulfilled_once_by_the_lookup(
    store: OrderStore, client: stripe.StripeClient, emu: StripeEmulator
) -> None:
    session_id = create_order(client, store)
    emu.pay(session_id, email="ada@example.com")  # no webhook URL: the page comes first
    fulfilments = Fulfilments()
    lookup = status_for(store, client, fulfilments)

    status, body = look(lookup, session_id)
    assert status == 200
    assert (body["status"], body["payment_status"], body["fulfilled"]) == ("paid", "paid", True)
    assert body["customer_email"] == "ada@example.com"
    assert set(body) == {
        "session_id",
        "status",
        "payment_status",
        "amount_total",
        "currency",
        "customer_email",
        "items",
        "fulfilled",
    }
    assert "do-not-show" not in json.dumps(body) and "cart-7" not in json.dumps(body)
    assert [o.session_id for o in fulfilments.orders] == [session_id]
    assert fulfilments.orders[0].client_reference_id == "cart-7"

    # Paid is final: no more questions to Stripe, no second fulfilment.
    assert look(lookup, session_id) == (200, body)
    assert retrievals(emu, session_id) == 1
    assert len(fulfilments.orders) == 1

    # The webhook arriving later finds the order done.
    completed = next(e for e in emu.events if e["type"] == "checkout.session.completed")
    payload = json.dumps(completed)
    receiver = WebhookReceiver(
        secrets=[emu.webhook_secret],
        client=client,
        events=EventRouter.build(
            store=store, handlers=WebhookHandlers(), fulfill=fulfilments, client=client
        ),
    )
    header = stripe.WebhookSignature.generate_signature_header(payload, emu.webhook_secret)
    assert hook(receiver, payload.encode(), header) == (200, {"received": True})
    assert len(fulfilments.orders) == 1


def test_delayed_payment_then_settled(
    store: OrderStore, client: stripe.StripeClient, emu: StripeEmulator
) -> None:
    session_id = create_order(client, store)
    fulfilments = Fulfilments()
    lookup = status_for(store, client, fulfilments)
    emu.pay(session_id, delayed=True)
    status, body = look(lookup, session_id)
    assert (status, body["status"], body["fulfilled"]) == (200, "awaiting_payment", False)
    emu.pay(session_id, async_payment="succeeded")
    status, body = look(lookup, session_id)
    assert (status, body["status"], body["fulfilled"]) == (200, "paid", True)
    assert len(fulfilments.orders) == 1


def test_expired_session(
    store: OrderStore, client: stripe.StripeClient, emu: StripeEmulator
) -> None:
    session_id = create_order(client, store)
    emu.expire(session_id)
    status, body = look(status_for(store, client), session_id)
    assert (status, body["status"], body["fulfilled"]) == (200, "expired", False)
    assert retrievals(emu, session_id) == 1
    # Expired is settled: the ledger answers alone from now on.
    look(status_for(store, client), session_id)
    assert retrievals(emu, session_id) == 1


def test_stripe_errors_are_502_with_a_safe_message(
    store: OrderStore, client: stripe.StripeClient, emu: StripeEmulator
) -> None:
    session_id = create_order(client, store)
    emu.fail_next(500, method="GET")
    status, body = look(status_for(store, client), session_id)
    assert status == 502
    assert body == {
        "error": {
            "type": "api_error",
            "message": "could not check the payment with the payment provider; try again shortly",
            "param": None,
        }
    }
    assert emu.secret_key not in json.dumps(body)
    order = store.get(session_id)
    assert order is not None and order.status == "open"


def test_stripe_unreachable_is_502(store: OrderStore) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store.record_open(Order(session_id="cs_test_a1unreachable"))
    with requests.Session() as session:
        offline = stripe.StripeClient(
            "sk_test_offline",
            base_addresses={"api": f"http://127.0.0.1:{port}"},
            http_client=stripe.RequestsClient(session=session, timeout=5),
        )
        status, body = look(status_for(store, offline), "cs_test_a1unreachable")
    assert status == 502
    assert "sk_test_offline" not in json.dumps(body)


def test_failed_fulfilment_on_the_lookup_is_retried(
    store: OrderStore, client: stripe.StripeClient, emu: StripeEmulator
) -> None:
    session_id = create_order(client, store)
    emu.pay(session_id)
    fulfilments = Fulfilments(fail=True)
    lookup = status_for(store, client, fulfilments)
    status, body = look(lookup, session_id)
    assert status == 503
    assert body["error"] == {
        "type": "api_error",
        "message": "payment received; the order is still being processed, try again shortly",
        "param": None,
    }
    # The payment is committed first; only the fulfilment is still due.
    order = store.get(session_id)
    assert order is not None and (order.status, order.fulfilled) == ("paid", False)
    fulfilments.fail = False
    time.sleep(0.01)  # the retry is due after its backoff (about a millisecond here)
    status, body = look(lookup, session_id)
    assert (status, body["status"], body["fulfilled"]) == (200, "paid", True)
    assert [o.fulfilment_attempt for o in fulfilments.orders] == [2]
    # Driving the due job needed no second question to Stripe.
    assert retrievals(emu, session_id) == 1


def test_polling_while_a_job_waits_for_its_retry_is_no_error_and_says_when(
    store: OrderStore, client: stripe.StripeClient, emu: StripeEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    session_id = create_order(client, store)
    emu.pay(session_id)
    fulfilments = Fulfilments(fail=True)
    pipeline = Pipeline(store, [FulfilJob(store, fulfilments)], retry_base=40.0)
    lookup = OrderStatus(store=store, client=client, fulfill=fulfilments,
                         min_refresh_interval=0, pipeline=pipeline)
    with pytest.raises(HTTPError):  # the failure itself, logged once
        lookup.lookup(session_id)
    [job] = store.pending_jobs(session_id)
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="stripe_checkout_mw")
    for _ in range(20):  # anyone polling the success page
        with pytest.raises(HTTPError) as caught:
            lookup.lookup(session_id)
        assert caught.value.status == 503
        retry_after = int(dict(caught.value.headers)["Retry-After"])
        # The backoff is 20-40 s, so the answer names the job's due time, not a constant.
        assert 15 <= retry_after <= 40
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert fulfilments.orders == [] and store.pending_jobs(session_id) == [job]


def test_polling_is_throttled(
    store: OrderStore, client: stripe.StripeClient, emu: StripeEmulator
) -> None:
    session_id = create_order(client, store)
    lookup = OrderStatus(store=store, client=client, fulfill=None, min_refresh_interval=60)
    for _ in range(5):
        assert look(lookup, session_id)[0] == 200
    assert retrievals(emu, session_id) == 1


# --- the success page and the webhook racing ------------------------------------------------


def test_lookup_and_webhook_racing_fulfil_once(
    store_url: str, client: stripe.StripeClient, emu: StripeEmulator
) -> None:
    fulfilments = Fulfilments(delay=0.01)
    with open_store(store_url) as opened:
        session_id = create_order(client, opened)
        emu.pay(session_id)
        completed = next(e for e in emu.events if e["type"] == "checkout.session.completed")
        payload = json.dumps(completed).encode()
        header = stripe.WebhookSignature.generate_signature_header(
            payload.decode(), emu.webhook_secret
        )
        receiver = WebhookReceiver(
            secrets=[emu.webhook_secret],
            client=client,
            events=EventRouter.build(
                store=opened, handlers=WebhookHandlers(), fulfill=fulfilments, client=client
            ),
        )
        lookup = status_for(opened, client, fulfilments)
        jobs = [
            (lambda: hook(receiver, payload, header))
            if i % 2
            else (lambda: look(lookup, session_id))
            for i in range(20)
        ]
        results = run_together(jobs)
        order = opened.get(session_id)
        # Whoever finds the job leased to another asks to be retried (500 / 503).
        assert {status for status, _ in results} <= {200, 500, 503}
        assert look(lookup, session_id)[1]["fulfilled"] is True
    assert order is not None and (order.status, order.fulfilled) == ("paid", True)
    assert len(fulfilments.orders) == 1


# --- real signed deliveries from the emulator -----------------------------------------------


@pytest.fixture
def webhook_server(store: OrderStore, client: stripe.StripeClient) -> Iterator[Any]:
    """A tiny WSGI server on 127.0.0.1 that feeds deliveries to a receiver."""
    fulfilments = Fulfilments()
    holder: dict[str, WebhookReceiver] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        status, payload = hook(holder["receiver"], body, environ.get("HTTP_STRIPE_SIGNATURE"))
        data = json.dumps(payload).encode()
        start_response(
            f"{status} {'OK' if status == 200 else 'Error'}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
        )
        return [data]

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server, holder, fulfilments
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_emulator_deliveries_end_to_end(
    store: OrderStore, client: stripe.StripeClient, emu: StripeEmulator, webhook_server: Any
) -> None:
    server, holder, fulfilments = webhook_server
    handled: list[str] = []
    handlers = WebhookHandlers()
    handlers.on("*")(lambda event: handled.append(event.type))
    holder["receiver"] = WebhookReceiver(
        secrets=["whsec_previous_secret_still_configured", emu.webhook_secret],
        client=client,
        events=EventRouter.build(
            store=store, handlers=handlers, fulfill=fulfilments, client=client
        ),
    )
    emu.set_webhook_url(f"http://127.0.0.1:{server.server_port}/stripe-webhook")

    session_id = create_order(client, store)
    emu.pay(session_id)
    assert [d.status for d in emu.deliveries] == [200]
    order = store.get(session_id)
    assert order is not None and (order.status, order.fulfilled) == ("paid", True)
    assert len(fulfilments.orders) == 1

    event_id = emu.deliveries[0].event_id
    emu.redeliver(event_id)
    assert [d.status for d in emu.deliveries] == [200, 200]
    assert len(fulfilments.orders) == 1
    assert handled == ["checkout.session.completed"]

    # The success page now answers from the ledger without asking Stripe.
    status, body = look(status_for(store, client, fulfilments), session_id)
    assert (status, body["status"], body["fulfilled"]) == (200, "paid", True)
    assert retrievals(emu, session_id) == 0

    other = create_order(client, store)
    emu.expire(other)
    expired = store.get(other)
    assert expired is not None and expired.status == "expired"
    assert handled[-1] == "checkout.session.expired"
