"""Webhook deliveries: signatures, exactly-once processing, failures and races.

Payloads are signed with ``stripe.WebhookSignature.generate_signature_header``, exactly as
Stripe signs them; every store test runs on SQLite and, with STRIPE_CHECKOUT_TEST_PG, on
PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import stripe
from conftest import Fulfilments, run_together

from stripe_checkout_mw.errors import HTTPError
from stripe_checkout_mw.ledger.orders import Order
from stripe_checkout_mw.ledger.pipeline import Pipeline
from stripe_checkout_mw.ledger.store import OrderStore, open_store
from stripe_checkout_mw.news.fulfilment import FulfilJob
from stripe_checkout_mw.news.handlers import HandlersJob, WebhookHandlers
from stripe_checkout_mw.news.router import EventRouter
from stripe_checkout_mw.news.webhooks import WebhookReceiver

SECRET = "whsec_test_current_0123456789abcdef"
OLD_SECRET = "whsec_test_previous_fedcba9876543210"
PG_URL = os.environ.get("STRIPE_CHECKOUT_TEST_PG", "")
SESSION_ID = "cs_test_a1webhook"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(store_url: str) -> Iterator[OrderStore]:
    with open_store(store_url) as opened:
        opened.record_open(Order(session_id=SESSION_ID, currency="usd", amount_total=500))
        yield opened


@pytest.fixture
def client() -> stripe.StripeClient:
    # Verifying events makes no request; a closed local port makes sure of it.
    return stripe.StripeClient("sk_test_unused", base_addresses={"api": "http://127.0.0.1:9"})


def receiver_for(
    store: OrderStore,
    client: stripe.StripeClient,
    fulfill: Any = None,
    handlers: WebhookHandlers | None = None,
    secrets: list[str] | None = None,
    lease: float | None = None,
    **options: Any,
) -> WebhookReceiver:
    handlers = handlers or WebhookHandlers()
    if lease is not None:
        options["pipeline"] = Pipeline(
            store, [HandlersJob(handlers, client), FulfilJob(store, fulfill)], lease=lease
        )
    receiver_options = {key: options.pop(key) for key in ("tolerance",) if key in options}
    return WebhookReceiver(
        secrets=[SECRET] if secrets is None else secrets,
        client=client,
        events=EventRouter.build(
            store=store, handlers=handlers, fulfill=fulfill, client=client, **options
        ),
        **receiver_options,
    )


def session(session_id: str = SESSION_ID, **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": session_id,
        "object": "checkout.session",
        "status": "complete",
        "payment_status": "paid",
        "mode": "payment",
        "currency": "usd",
        "amount_subtotal": 500,
        "amount_total": 500,
        "customer_details": {"email": "ada@example.com"},
        "metadata": {},
    }
    values.update(fields)
    return values


def event_body(
    event_type: str = "checkout.session.completed",
    obj: dict[str, Any] | None = None,
    event_id: str | None = None,
) -> bytes:
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "api_version": "2026-10-28.endive",
            "created": int(time.time()),
            "livemode": False,
            "pending_webhooks": 1,
            "type": event_type,
            "data": {"object": obj if obj is not None else session()},
        }
    ).encode()


def sign(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    return str(stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp))


def answer(
    receiver: WebhookReceiver, body: bytes, header: str | None
) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body the receiver's answer becomes."""
    try:
        return 200, dict(receiver.handle(body, header))
    except HTTPError as exc:
        return exc.status, exc.payload()


def deliver(receiver: WebhookReceiver, body: bytes, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    return answer(receiver, body, sign(body, **kwargs))


# --- 2. signatures --------------------------------------------------------------------------


def _bad_deliveries() -> list[Any]:
    body = event_body(event_id="evt_bad")
    return [
        pytest.param(body, None, "missing Stripe-Signature header", id="missing-header"),
        pytest.param(body, "", "missing Stripe-Signature header", id="empty-header"),
        pytest.param(body, "garbage", "malformed Stripe-Signature header", id="malformed"),
        pytest.param(body, "t=abc,v1=00", "malformed Stripe-Signature header", id="bad-timestamp"),
        pytest.param(body, f"t={int(time.time())}", "malformed", id="no-v1"),
        pytest.param(
            body.replace(b'"livemode": false', b'"livemode": true'),
            sign(body),
            "no signature in Stripe-Signature matches",
            id="tampered-body",
        ),
        pytest.param(body, sign(body, "whsec_wrong"), "matches the webhook", id="wrong-secret"),
        pytest.param(
            body,
            sign(body, timestamp=int(time.time()) - 301),
            "older than the 300 s tolerance",
            id="stale",
        ),
        # Signed when the test runs: a signature made at collection ages past the tolerance
        # in a long suite.
        pytest.param(b"not json", lambda: sign(b"not json"), "is not a JSON Stripe event",
                     id="not-json"),
        pytest.param(b"[1, 2]", lambda: sign(b"[1, 2]"), "is not a JSON Stripe event",
                     id="json-list"),
        pytest.param(
            b'{"object": "event"}', lambda: sign(b'{"object": "event"}'), "with an id",
            id="no-id"
        ),
        pytest.param(b"\xff\xfe", "t=1,v1=00", "not UTF-8", id="not-utf8"),
    ]


@pytest.mark.parametrize(("body", "header", "message"), _bad_deliveries())
def test_bad_deliveries_are_400_and_leave_no_trace(
    store: OrderStore,
    client: stripe.StripeClient,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    header: str | Callable[[], str] | None,
    message: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="stripe_checkout_mw")
    fulfilments = Fulfilments()
    handlers = WebhookHandlers()
    ran: list[object] = []
    handlers.on("*")(ran.append)
    receiver = receiver_for(store, client, fulfilments, handlers)
    if callable(header):
        header = header()

    status, payload = answer(receiver, body, header)

    assert status == 400
    error = payload["error"]
    assert isinstance(error, dict)
    assert error["type"] == "invalid_request_error"
    assert error["param"] is None
    assert message in str(error["message"])
    assert SECRET not in json.dumps(payload) and SECRET not in caplog.text
    assert not store.event_processed("evt_bad")
    assert ran == [] and fulfilments.orders == []
    order = store.get(SESSION_ID)
    assert order is not None and order.status == "open"


@pytest.mark.parametrize("with_handler", [True, False], ids=["handler", "no-handler"])
@pytest.mark.parametrize("shape", [
    {"object": "v2.core.event"},  # a thin event notification, not a snapshot
    {},  # no "object" at all
    {"object": "customer"},
], ids=["thin-event", "no-object", "not-an-event"])
def test_a_signed_body_that_is_not_a_snapshot_event_is_400(
    store: OrderStore, client: stripe.StripeClient, with_handler: bool, shape: dict[str, str]
) -> None:
    # The SDK's Event is only built when a handler needs it; the SDK still judges every body
    # that is not plainly a snapshot event, handlers or not.
    handlers = WebhookHandlers()
    ran: list[object] = []
    if with_handler:
        handlers.on("*")(ran.append)
    fulfilments = Fulfilments()
    receiver = receiver_for(store, client, fulfilments, handlers)
    body = json.dumps({"id": "evt_bad", "type": "checkout.session.completed",
                       "data": {"object": session()}, **shape}).encode()

    status, payload = deliver(receiver, body)

    assert status == 400
    assert "not a Stripe snapshot event" in str(payload["error"]["message"])
    assert not store.event_processed("evt_bad")
    assert ran == [] and fulfilments.orders == []
    order = store.get(SESSION_ID)
    assert order is not None and order.status == "open"


def test_rotated_secrets_are_all_accepted(store: OrderStore, client: stripe.StripeClient) -> None:
    fulfilments = Fulfilments()
    receiver = receiver_for(store, client, fulfilments, secrets=[SECRET, OLD_SECRET])
    old = event_body("payment_intent.created", {"id": "pi_1"})
    new = event_body("payment_intent.created", {"id": "pi_2"})
    assert deliver(receiver, old, secret=OLD_SECRET) == (200, {"received": True})
    assert deliver(receiver, new, secret=SECRET) == (200, {"received": True})

    # While Stripe rolls a secret it signs with both; one matching v1 is enough.
    both = event_body("payment_intent.created", {"id": "pi_3"})
    header = sign(both, OLD_SECRET) + "," + sign(both, SECRET).split(",")[1]
    only_new = receiver_for(store, client, secrets=[SECRET])
    assert answer(only_new, both, header) == (200, {"received": True})


def test_receiver_needs_a_secret_and_a_tolerance(
    store: OrderStore, client: stripe.StripeClient
) -> None:
    with pytest.raises(ValueError, match="at least one webhook signing secret"):
        receiver_for(store, client, secrets=[])
    with pytest.raises(ValueError, match="non-empty string"):
        receiver_for(store, client, secrets=[SECRET, " "])
    with pytest.raises(ValueError, match="tolerance must be a positive"):
        receiver_for(store, client, tolerance=0)
    receiver = WebhookReceiver(
        secrets=SECRET,
        client=client,
        events=EventRouter.build(store=store, handlers=WebhookHandlers(), fulfill=None,
                                 client=client),
    )
    assert SECRET not in repr(receiver)


# --- 2 and 3. processing once ---------------------------------------------------------------


def test_paid_completion_fulfils_once_and_duplicates_run_nothing(
    store: OrderStore, client: stripe.StripeClient
) -> None:
    fulfilments = Fulfilments()
    handlers = WebhookHandlers()
    seen: list[stripe.Event] = []
    handlers.on("checkout.session.completed")(seen.append)
    receiver = receiver_for(store, client, fulfilments, handlers)
    body = event_body(event_id="evt_once")

    assert deliver(receiver, body) == (200, {"received": True})
    assert deliver(receiver, body) == (200, {"received": True, "duplicate": True})

    assert len(fulfilments.orders) == 1
    fulfilled = fulfilments.orders[0]
    assert fulfilled.session_id == SESSION_ID and fulfilled.status == "paid"
    assert fulfilled.session is not None and fulfilled.session["payment_status"] == "paid"
    assert [event.id for event in seen] == ["evt_once"]
    assert seen[0].data.object["id"] == SESSION_ID
    order = store.get(SESSION_ID)
    assert order is not None
    assert (order.status, order.fulfilled, order.customer_email) == (
        "paid",
        True,
        "ada@example.com",
    )
    assert store.event_processed("evt_once")


@pytest.mark.parametrize(
    ("events", "status", "fulfilled"),
    [
        pytest.param(
            [("checkout.session.completed", {"payment_status": "no_payment_required"})],
            "paid",
            1,
            id="no-payment-required",
        ),
        pytest.param(
            [("checkout.session.completed", {"payment_status": "unpaid"})],
            "awaiting_payment",
            0,
            id="delayed-method",
        ),
        pytest.param(
            [
                ("checkout.session.completed", {"payment_status": "unpaid"}),
                ("checkout.session.async_payment_succeeded", {}),
            ],
            "paid",
            1,
            id="async-succeeded",
        ),
        pytest.param(
            [
                ("checkout.session.completed", {"payment_status": "unpaid"}),
                ("checkout.session.async_payment_failed", {"payment_status": "unpaid"}),
            ],
            "payment_failed",
            0,
            id="async-failed",
        ),
        pytest.param(
            [("checkout.session.expired", {"status": "expired", "payment_status": "unpaid"})],
            "expired",
            0,
            id="expired",
        ),
        pytest.param(
            [
                ("checkout.session.completed", {}),
                ("checkout.session.expired", {"status": "expired", "payment_status": "unpaid"}),
            ],
            "paid",
            1,
            id="expired-never-downgrades-paid",
        ),
        pytest.param(
            [
                ("checkout.session.async_payment_succeeded", {}),
                ("checkout.session.completed", {"payment_status": "unpaid"}),
            ],
            "paid",
            1,
            id="out-of-order",
        ),
        pytest.param(
            [
                ("checkout.session.completed", {}),
                ("checkout.session.async_payment_succeeded", {}),
            ],
            "paid",
            1,
            id="two-paid-events-one-fulfilment",
        ),
    ],
)
def test_event_effects_on_the_ledger(
    store: OrderStore,
    client: stripe.StripeClient,
    events: list[tuple[str, dict[str, Any]]],
    status: str,
    fulfilled: int,
) -> None:
    fulfilments = Fulfilments()
    receiver = receiver_for(store, client, fulfilments)
    for event_type, fields in events:
        assert deliver(receiver, event_body(event_type, session(**fields))) == (
            200,
            {"received": True},
        )
    order = store.get(SESSION_ID)
    assert order is not None
    assert order.status == status
    assert order.fulfilled == bool(fulfilled)
    assert len(fulfilments.orders) == fulfilled


def test_handlers_registry(store: OrderStore, client: stripe.StripeClient) -> None:
    handlers = WebhookHandlers()
    calls: list[str] = []

    def on_expired(event: stripe.Event) -> None:
        calls.append(f"expired:{event.type}")

    def on_all(event: stripe.Event) -> None:
        calls.append(f"all:{event.type}")

    assert handlers.on("checkout.session.expired")(on_expired) is on_expired
    assert handlers.on("*")(on_all) is on_all
    assert len(handlers) == 2
    with pytest.raises(ValueError, match="non-empty string"):
        handlers.on("")
    with pytest.raises(TypeError, match="callable"):
        handlers.add("x", "not callable")  # type: ignore[arg-type]

    receiver = receiver_for(store, client, handlers=handlers)
    deliver(receiver, event_body("checkout.session.expired", session(status="expired")))
    deliver(receiver, event_body("customer.created", {"id": "cus_1", "object": "customer"}))
    assert calls == [
        "expired:checkout.session.expired",
        "all:checkout.session.expired",
        "all:customer.created",
    ]


def test_session_created_elsewhere_is_not_fulfilled_by_default(
    store: OrderStore, client: stripe.StripeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stripe_checkout_mw")
    fulfilments = Fulfilments()
    handlers = WebhookHandlers()
    seen: list[stripe.Event] = []
    handlers.on("*")(seen.append)
    receiver = receiver_for(store, client, fulfilments, handlers)
    body = event_body(obj=session("cs_test_a1elsewhere"), event_id="evt_elsewhere")

    assert deliver(receiver, body) == (200, {"received": True})
    assert store.get("cs_test_a1elsewhere") is None
    assert fulfilments.orders == []
    assert len(seen) == 1 and store.event_processed("evt_elsewhere")
    assert "cs_test_a1elsewhere is not in this ledger" in caplog.text


def test_adopting_sessions_created_elsewhere(
    store: OrderStore, client: stripe.StripeClient
) -> None:
    fulfilments = Fulfilments()
    receiver = receiver_for(store, client, fulfilments, adopt_unknown_sessions=True)
    obj = session("cs_test_a1adopted", client_reference_id="ref-9", metadata={"a": "b"})
    assert deliver(receiver, event_body(obj=obj)) == (200, {"received": True})
    order = store.get("cs_test_a1adopted")
    assert order is not None
    assert (order.status, order.fulfilled, order.client_reference_id) == ("paid", True, "ref-9")
    assert order.metadata == {"a": "b"}
    assert [o.session_id for o in fulfilments.orders] == ["cs_test_a1adopted"]


# --- 4. failures ----------------------------------------------------------------------------


def test_an_early_redelivery_while_a_job_waits_is_500_and_no_error(
    store: OrderStore, client: stripe.StripeClient, caplog: pytest.LogCaptureFixture
) -> None:
    fulfilments = Fulfilments(fail=True)
    handlers = WebhookHandlers()
    pipeline = Pipeline(store, [HandlersJob(handlers, client), FulfilJob(store, fulfilments)],
                        retry_base=60.0)
    receiver = receiver_for(store, client, fulfilments, handlers, pipeline=pipeline)
    body = event_body(event_id="evt_early")
    assert deliver(receiver, body)[0] == 500  # the failure itself, logged once
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="stripe_checkout_mw")
    for _ in range(5):  # redeliveries (or dashboard resends) before the job is due
        assert deliver(receiver, body)[0] == 500  # so Stripe comes back
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    waiting = [r.getMessage() for r in caplog.records if "evt_early" in r.getMessage()]
    assert len(waiting) == 5 and all("waits for a job's retry" in m for m in waiting)
    assert SECRET not in caplog.text and fulfilments.orders == []


@pytest.mark.parametrize("failing", ["fulfill", "handler"])
def test_a_failed_side_effect_is_retried_by_the_redelivery_once(
    store: OrderStore,
    client: stripe.StripeClient,
    caplog: pytest.LogCaptureFixture,
    failing: str,
) -> None:
    caplog.set_level(logging.INFO, logger="stripe_checkout_mw")
    fulfilments = Fulfilments(fail=failing == "fulfill")
    handlers = WebhookHandlers()
    handler_calls: list[str] = []

    @handlers.on("checkout.session.completed")
    def flaky(event: stripe.Event) -> None:
        handler_calls.append(event.id)
        if failing == "handler" and len(handler_calls) == 1:
            raise RuntimeError("handler is down")

    receiver = receiver_for(store, client, fulfilments, handlers)
    body = event_body(event_id="evt_retry")

    status, payload = deliver(receiver, body)
    assert (status, payload) == (
        500,
        {
            "error": {
                "type": "api_error",
                "message": "webhook handler failed; Stripe will retry",
                "param": None,
            }
        },
    )
    # The payment was committed before anything ran; the side effects are still due.
    assert store.event_processed("evt_retry")
    order = store.get(SESSION_ID)
    assert order is not None and (order.status, order.fulfilled) == ("paid", False)
    assert [job.kind for job in store.pending_jobs(SESSION_ID)] == (
        ["fulfil"] if failing == "fulfill" else ["handlers", "fulfil"]
    )
    assert fulfilments.orders == []
    assert "evt_retry" in caplog.text and "will be retried" in caplog.text
    assert SECRET not in caplog.text

    fulfilments.fail = False
    assert deliver(receiver, body) == (200, {"received": True})
    assert deliver(receiver, body) == (200, {"received": True, "duplicate": True})
    assert len(fulfilments.orders) == 1
    # A fulfil that raised is attempt 1; one that never started gave its number back.
    assert fulfilments.orders[0].fulfilment_attempt == (2 if failing == "fulfill" else 1)
    # A handler that completed is not run again; one that raised is.
    assert handler_calls == ["evt_retry"] * (1 if failing == "fulfill" else 2)
    order = store.get(SESSION_ID)
    assert order is not None and (order.status, order.fulfilled) == ("paid", True)
    assert store.pending_jobs(SESSION_ID) == []


def test_a_redelivery_before_the_retry_time_answers_500_and_runs_nothing(
    store: OrderStore, client: stripe.StripeClient
) -> None:
    fulfilments = Fulfilments(fail=True)
    handlers = WebhookHandlers()
    pipeline = Pipeline(store, [HandlersJob(handlers, client), FulfilJob(store, fulfilments)],
                        retry_base=60.0)
    receiver = receiver_for(store, client, handlers=handlers, pipeline=pipeline)
    body = event_body(event_id="evt_scheduled")
    assert deliver(receiver, body)[0] == 500
    fulfilments.fail = False
    for _ in range(20):  # Stripe's redeliveries (and anyone replaying them) before it is due
        assert deliver(receiver, body)[0] == 500  # not acknowledged: Stripe keeps trying
    assert fulfilments.orders == []  # fulfill was not called again (it would succeed now)
    [job] = store.pending_jobs(SESSION_ID)
    assert job.attempt == 1


def test_store_failure_is_a_500(tmp_path: Path, client: stripe.StripeClient) -> None:
    # A PostgreSQL server that is not there: the event must be retried, not acknowledged.
    with open_store("postgresql://nobody@127.0.0.1:9/none?connect_timeout=2") as down:
        receiver = receiver_for(down, client)
        status, payload = deliver(receiver, event_body())
    assert status == 500
    assert payload["error"]["type"] == "api_error"  # type: ignore[index]


_KILLED_MID_FULFIL = """
import os, sys
import stripe
from stripe_checkout_mw.news.fulfilment import FulfilJob
from stripe_checkout_mw.ledger.pipeline import Pipeline
from stripe_checkout_mw.ledger.store import open_store
from stripe_checkout_mw.news.handlers import WebhookHandlers
from stripe_checkout_mw.news.router import EventRouter
from stripe_checkout_mw.news.webhooks import WebhookReceiver

def fulfill(order):
    assert order.fulfilment_attempt == 1
    os._exit(17)  # the process dies in fulfill(), after the payment was committed

store = open_store(sys.argv[1])
client = stripe.StripeClient("sk_test_unused", base_addresses={"api": "http://127.0.0.1:9"})
receiver = WebhookReceiver(
    secrets=[sys.argv[2]], client=client,
    events=EventRouter.build(
        store=store, handlers=WebhookHandlers(), fulfill=fulfill, client=client,
        pipeline=Pipeline(store, [FulfilJob(store, fulfill)], lease=1)),
)
receiver.handle(sys.stdin.buffer.read(), sys.argv[3])
"""


@pytest.mark.faults
@pytest.mark.slow
def test_a_process_killed_mid_handling_loses_nothing(
    store_url: str, client: stripe.StripeClient
) -> None:
    with open_store(store_url) as opened:
        opened.record_open(Order(session_id=SESSION_ID))
    body = event_body(event_id="evt_killed")
    result = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_FULFIL, store_url, SECRET, sign(body)],
        input=body,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 17, result.stderr.decode()

    fulfilments = Fulfilments()
    with open_store(store_url) as restarted:
        # The payment was committed before fulfill() ran; its outcome never was.
        assert restarted.event_processed("evt_killed")
        receiver = receiver_for(restarted, client, fulfilments, lease=1)
        # While the dead worker's lease lasts nobody else runs the job: retry later.
        status, _ = deliver(receiver, body)
        if status == 500:
            time.sleep(1.1)
            assert deliver(receiver, body) == (200, {"received": True})
        order = restarted.get(SESSION_ID)
    assert order is not None and order.fulfilled
    assert [o.fulfilment_attempt for o in fulfilments.orders] == [2]


# --- restarts and races ---------------------------------------------------------------------


def test_a_rebuilt_receiver_on_the_same_store_refuses_duplicates(
    store_url: str, client: stripe.StripeClient
) -> None:
    body = event_body(event_id="evt_restart")
    first = Fulfilments()
    with open_store(store_url) as opened:
        opened.record_open(Order(session_id=SESSION_ID))
        assert deliver(receiver_for(opened, client, first), body) == (200, {"received": True})
    second = Fulfilments()
    with open_store(store_url) as reopened:
        assert deliver(receiver_for(reopened, client, second), body) == (
            200,
            {"received": True, "duplicate": True},
        )
    assert len(first.orders) == 1 and second.orders == []


def test_fifty_concurrent_deliveries_fulfil_once(
    store_url: str, client: stripe.StripeClient
) -> None:
    fulfilments = Fulfilments(delay=0.02)
    handler_runs: list[str] = []
    handlers = WebhookHandlers()
    handlers.on("*")(lambda event: handler_runs.append(event.id))
    body = event_body(event_id="evt_storm")
    header = sign(body)
    # Two stores and receivers stand in for two worker processes sharing the database.
    with open_store(store_url) as one, open_store(store_url) as two:
        one.record_open(Order(session_id=SESSION_ID))
        receivers = [receiver_for(s, client, fulfilments, handlers) for s in (one, two)]
        results = run_together(
            [(lambda r=receivers[i % 2]: answer(r, body, header)) for i in range(50)]
        )
        # A duplicate that finds the job still leased to the first delivery asks for a retry.
        assert {status for status, _ in results} <= {200, 500}
        assert sum(1 for status, p in results if status == 200 and "duplicate" not in p) == 1
        assert answer(receivers[0], body, header) == (200, {"received": True, "duplicate": True})
    assert len(fulfilments.orders) == 1
    assert handler_runs == ["evt_storm"]


def test_different_paid_events_racing_fulfil_once(
    store_url: str, client: stripe.StripeClient
) -> None:
    fulfilments = Fulfilments(delay=0.01)
    bodies = [
        event_body(
            "checkout.session.completed" if i % 2 else "checkout.session.async_payment_succeeded"
        )
        for i in range(10)
    ]
    with open_store(store_url) as opened:
        opened.record_open(Order(session_id=SESSION_ID))
        receiver = receiver_for(opened, client, fulfilments)
        results = run_together([(lambda b=b: deliver(receiver, b)) for b in bodies])
    assert [status for status, _ in results] == [200] * 10
    assert len(fulfilments.orders) == 1


_DELIVER_FROM_A_PROCESS = """
import json, os, sys, time
import stripe
from stripe_checkout_mw.errors import HTTPError
from stripe_checkout_mw.ledger.store import open_store
from stripe_checkout_mw.news.handlers import WebhookHandlers
from stripe_checkout_mw.news.router import EventRouter
from stripe_checkout_mw.news.webhooks import WebhookReceiver

store_url, secret, header, ledger, go, body_file = sys.argv[1:7]

def fulfill(order):
    time.sleep(0.02)
    with open(ledger, "a") as out:
        out.write(order.session_id + "\\n")

with open(body_file, "rb") as source:
    body = source.read()
with open_store(store_url) as store:
    client = stripe.StripeClient("sk_test_unused", base_addresses={"api": "http://127.0.0.1:9"})
    receiver = WebhookReceiver(
        secrets=[secret], client=client,
        events=EventRouter.build(store=store, handlers=WebhookHandlers(), fulfill=fulfill,
                                 client=client),
    )
    deadline = time.monotonic() + 60
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.002)
    try:
        status, payload = 200, receiver.handle(body, header)
    except HTTPError as exc:
        status, payload = exc.status, exc.payload()
print(json.dumps([status, payload]))
"""


@pytest.mark.faults
@pytest.mark.slow
def test_worker_processes_racing_fulfil_once(store_url: str, tmp_path: Path) -> None:
    with open_store(store_url) as opened:
        opened.record_open(Order(session_id=SESSION_ID))
        opened.ensure_schema()
    body = event_body(event_id="evt_processes")
    ledger, go, body_file = tmp_path / "fulfilled.txt", tmp_path / "go", tmp_path / "body"
    body_file.write_bytes(body)
    command = [sys.executable, "-c", _DELIVER_FROM_A_PROCESS, store_url, SECRET, sign(body)]
    with contextlib.ExitStack() as stack:
        workers = [
            stack.enter_context(
                subprocess.Popen(
                    [*command, str(ledger), str(go), str(body_file)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=REPO,
                    env={**os.environ, "PYTHONPATH": str(REPO)},
                )
            )
            for _ in range(6)
        ]
        time.sleep(0.5)  # let every worker import and open its store before the start signal
        go.touch()
        try:
            outputs = [worker.communicate(timeout=120) for worker in workers]
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
    assert [worker.returncode for worker in workers] == [0] * 6, outputs
    results = [json.loads(out) for out, _ in outputs]
    assert results.count([200, {"received": True}]) == 1
    # The others are duplicates, or asked to retry while the first still held the job.
    assert all(r == [200, {"received": True, "duplicate": True}] or r[0] == 500
               for r in results if r != [200, {"received": True}])
    assert ledger.read_text().splitlines() == [SESSION_ID]
