"""The order ledger: URLs, round trips, claims, the state machine, on SQLite and PostgreSQL."""

from __future__ import annotations

import importlib.util
import logging
import os
import sqlite3
import threading
import time
from typing import Any

import pytest

from stripe_checkout_mw.ledger.order_state import move_order
from stripe_checkout_mw.ledger.orders import Order
from stripe_checkout_mw.ledger.pipeline import Pipeline
from stripe_checkout_mw.ledger.store import (
    DEFAULT_STORE_URL,
    SCHEMA_VERSION,
    OrderStore,
    PostgresStore,
    SQLiteStore,
    StoreError,
    open_store,
)
from stripe_checkout_mw.news.fulfilment import FulfilJob


def make_order(session_id: str = "cs_test_a1order", **changes: Any) -> Order:
    values: dict[str, Any] = {
        "session_id": session_id,
        "mode": "payment",
        "currency": "usd",
        "amount_subtotal": 1500,
        "amount_total": 1500,
        "customer_email": "ada@example.com",
        "client_reference_id": "cart-42",
        "metadata": {"cart": "42"},
        "items": [
            {"name": "Tee", "quantity": 2, "unit_amount": 500, "currency": "usd", "price": None},
            {
                "name": "Mug",
                "quantity": 1,
                "unit_amount": 500,
                "currency": "usd",
                "price": "price_mug",
            },
        ],
        "payment_status": "unpaid",
        "session": {"id": session_id, "object": "checkout.session", "status": "open"},
        "created_at": 1_700_000_000.5,
        "updated_at": 1_700_000_000.5,
    }
    values.update(changes)
    return Order(**values)


# --- open_store -----------------------------------------------------------------------------


def test_default_store_is_a_file_in_the_current_directory(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRIPE_CHECKOUT_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    with open_store(None) as opened:
        assert DEFAULT_STORE_URL == "sqlite:///stripe-checkout-orders.db"
        assert isinstance(opened, SQLiteStore)
        assert opened.path == os.path.join(str(tmp_path), "stripe-checkout-orders.db")
        # Opening is cheap: nothing is written before the first use.
        assert not os.path.exists(opened.path)
        opened.record_open(make_order())
        assert os.path.exists(opened.path)


def test_store_url_from_the_environment(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_CHECKOUT_STORE", f"sqlite:///{tmp_path}/env.db")
    with open_store(None) as opened:
        assert isinstance(opened, SQLiteStore)
        assert opened.path == f"{tmp_path}/env.db"


def test_relative_sqlite_path_is_fixed_when_opened(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///rel.db") as opened:
        monkeypatch.chdir("/")
        opened.record_open(make_order())
        assert os.path.exists(tmp_path / "rel.db")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("mysql://shop@db/shop", "unsupported URL scheme 'mysql'", id="scheme"),
        pytest.param("orders.db", "must be a URL such as 'sqlite:///", id="bare-path"),
        pytest.param("", "the store URL is empty", id="empty"),
        pytest.param(":memory:", "in-memory SQLite database would lose", id="memory"),
        pytest.param("sqlite://", "in-memory SQLite database would lose", id="sqlite-empty"),
        pytest.param("sqlite:///:memory:", "in-memory SQLite database would lose", id="memory2"),
        pytest.param("sqlite:///file::memory:?cache=shared", "in-memory SQLite", id="memory-uri"),
        pytest.param("sqlite://host/orders.db", "three slashes", id="netloc"),
        pytest.param("sqlite:///orders.db?timeout=3", "no query parameters", id="query"),
        pytest.param(
            "sqlite:////nonexistent-dir-4c1f/orders.db", "does not exist; create it", id="no-dir"
        ),
    ],
)
def test_open_store_errors_say_the_fix(url: str, expected: str) -> None:
    with pytest.raises(ValueError) as info:
        open_store(url)
    message = str(info.value)
    assert message.startswith("store: ")
    assert expected in message


def test_open_store_on_a_directory(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match=r"^store: .* is a directory; name a file"):
        open_store(f"sqlite:///{tmp_path}")


def test_open_store_errors_never_echo_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError) as info:
        open_store("mysql://shop:hunter2@db/shop")
    assert "hunter2" not in str(info.value)

    real_find_spec = importlib.util.find_spec

    def without_psycopg(name: str, *args: Any) -> Any:
        return None if name == "psycopg" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_psycopg)
    with pytest.raises(ValueError) as info:
        open_store("postgresql://shop:hunter2@db/shop")
    message = str(info.value)
    assert message.startswith("store: a PostgreSQL store needs psycopg 3")
    assert "pip install 'psycopg[binary]' psycopg_pool (in a clone: pip install -e " \
           "'.[postgres]')" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("url", [
    "postgresql://shop:hunter%zz2@127.0.0.1:1/shop",  # the driver quotes the bad token
    "postgresql://shop@127.0.0.1:1/shop?password=hunter%zz2",
])
def test_reading_the_schema_version_never_shows_a_password(url: str) -> None:
    pytest.importorskip("psycopg")
    with open_store(url) as opened, pytest.raises(StoreError) as info:
        opened.stored_version()
    assert "hunter" not in str(info.value) and "Error" in str(info.value)


def test_postgres_urls_are_accepted_and_redacted() -> None:
    for scheme in ("postgresql", "postgres"):
        opened = open_store(f"{scheme}://shop:hunter2@127.0.0.1:1/shop")
        try:
            assert isinstance(opened, PostgresStore)
            assert "hunter2" not in repr(opened)
            assert opened.url == f"{scheme}://shop:***@127.0.0.1:1/shop"
        finally:
            opened.close()
    with open_store("postgresql://shop@127.0.0.1:1/shop?password=hunter2&sslmode=require") as q:
        assert q.url == "postgresql://shop@127.0.0.1:1/shop?password=***&sslmode=require"


# --- the ledger -----------------------------------------------------------------------------


def test_record_open_and_get_round_trip(store: OrderStore) -> None:
    order = make_order()
    store.record_open(order)
    assert store.get(order.session_id) == order
    assert store.get("cs_test_unknown") is None


def test_record_open_is_idempotent(store: OrderStore) -> None:
    store.record_open(make_order())
    store.record_open(make_order(amount_total=1, customer_email="mallory@example.com"))
    got = store.get("cs_test_a1order")
    assert got is not None
    assert got.amount_total == 1500
    assert got.customer_email == "ada@example.com"


def test_order_public_view_is_small(store: OrderStore) -> None:
    store.record_open(make_order())
    got = store.get("cs_test_a1order")
    assert got is not None
    assert got.public_view() == {
        "session_id": "cs_test_a1order",
        "status": "open",
        "payment_status": "unpaid",
        "amount_total": 1500,
        "currency": "usd",
        "customer_email": "ada@example.com",
        "items": [
            {"name": "Tee", "quantity": 2, "unit_amount": 500},
            {"name": "Mug", "quantity": 1, "unit_amount": 500},
        ],
        "fulfilled": False,
    }


def test_order_from_session() -> None:
    session = {
        "id": "cs_test_a1from",
        "object": "checkout.session",
        "status": "open",
        "payment_status": "unpaid",
        "mode": "payment",
        "currency": "eur",
        "amount_subtotal": 900,
        "amount_total": 900,
        "customer_email": None,
        "customer_details": None,
        "client_reference_id": "ref-1",
        "metadata": {"k": "v"},
        "line_items": {
            "object": "list",
            "data": [
                {
                    "description": "Cap",
                    "quantity": 3,
                    "currency": "eur",
                    "price": {"id": "price_cap", "unit_amount": 300, "currency": "eur"},
                }
            ],
        },
    }
    order = Order.from_session(session)
    assert order.session_id == "cs_test_a1from"
    assert order.status == "open"
    assert order.items == [
        {"name": "Cap", "quantity": 3, "unit_amount": 300, "currency": "eur", "price": "price_cap"}
    ]
    assert order.metadata == {"k": "v"}
    assert order.client_reference_id == "ref-1"
    assert order.session == session
    priced = [{"name": "Cap", "quantity": 3, "unit_amount": 300, "currency": "eur", "price": None}]
    assert Order.from_session(session, items=priced).items == priced
    assert (
        Order.from_session({**session, "status": "complete", "payment_status": "paid"}).status
        == "paid"
    )
    with pytest.raises(ValueError, match="no id"):
        Order.from_session({"object": "checkout.session"})
    with pytest.raises(ValueError, match="unknown status"):
        make_order(status="shipped")


def test_tables_and_schema_version(store_url: str) -> None:
    with open_store(store_url) as opened:
        opened.ensure_schema()
        if isinstance(opened, SQLiteStore):
            with sqlite3.connect(opened.path) as conn:
                assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                version = conn.execute(
                    "SELECT value FROM stripe_checkout_meta WHERE key = 'schema_version'"
                ).fetchone()[0]
                conn.execute("UPDATE stripe_checkout_meta SET value = '999'")
            conn.close()
        else:
            import psycopg

            with psycopg.connect(store_url, autocommit=True) as pg:
                row = pg.execute(
                    "SELECT value FROM stripe_checkout_meta WHERE key = 'schema_version'"
                ).fetchone()
                assert row is not None
                version = row[0]
                pg.execute("UPDATE stripe_checkout_meta SET value = '999'")
        assert version == str(SCHEMA_VERSION)
    with open_store(store_url) as newer, pytest.raises(StoreError, match="upgrade"):
        newer.get("cs_test_x")


def test_transaction_rolls_back_on_error(store: OrderStore) -> None:
    store.record_open(make_order())
    with pytest.raises(RuntimeError), store.transaction() as tx:
        assert tx.claim_event("evt_1", "checkout.session.completed", "cs_test_a1order")
        order = tx.lock_order("cs_test_a1order")
        assert order is not None
        order.status = "paid"
        tx.save_order(order)
        raise RuntimeError("boom")
    assert not store.event_processed("evt_1")
    got = store.get("cs_test_a1order")
    assert got is not None and got.status == "open"


def test_claim_is_once(store: OrderStore) -> None:
    with store.transaction() as tx:
        assert tx.claim_event("evt_1", "x", None)
    with store.transaction() as tx:
        assert not tx.claim_event("evt_1", "x", None)
    assert store.event_processed("evt_1")
    assert not store.event_processed("evt_2")


def test_a_new_store_object_sees_the_claims(store_url: str) -> None:
    with open_store(store_url) as first, first.transaction() as tx:
        tx.claim_event("evt_restart", "x", None)
    with open_store(store_url) as second, second.transaction() as tx:
        assert not tx.claim_event("evt_restart", "x", None)


def test_concurrent_claims_have_one_winner(store_url: str) -> None:
    # Two store objects stand in for two processes (or hosts) sharing the database.
    stores = [open_store(store_url), open_store(store_url)]
    barrier = threading.Barrier(20)
    wins: list[bool] = []
    lock = threading.Lock()

    def claim(index: int) -> None:
        barrier.wait(timeout=30)
        with stores[index % 2].transaction() as tx:
            won = tx.claim_event("evt_race", "x", None)
            time.sleep(0.005)
        with lock:
            wins.append(won)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(20)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
    finally:
        for opened in stores:
            opened.close()
    assert sorted(wins) == [False] * 19 + [True]


@pytest.mark.postgres
def test_closed_postgres_store_refuses_work(pg_url: str) -> None:
    opened = open_store(pg_url)
    opened.close()
    opened.close()
    with pytest.raises(StoreError, match="closed"):
        opened.get("cs_test_x")


# --- the state machine ----------------------------------------------------------------------


def settle_order(
    store: OrderStore, session_id: str, status: str, session: Any, fulfill: Any
) -> Order | None:
    """Settle through the pipeline, as the webhook and status paths do."""
    pipeline = Pipeline(store, [FulfilJob(store, fulfill)])
    value = pipeline.process(
        lambda tx: move_order(tx, session_id, status, session), subject=session_id
    ).value
    assert value is None or isinstance(value, Order)
    return value


@pytest.mark.parametrize(
    ("steps", "final"),
    [
        pytest.param(["awaiting_payment", "paid"], "paid", id="delayed-then-paid"),
        pytest.param(["paid", "expired"], "paid", id="never-downgrade-expired"),
        pytest.param(["paid", "awaiting_payment"], "paid", id="never-downgrade-replay"),
        pytest.param(["paid", "payment_failed"], "paid", id="never-downgrade-failed"),
        pytest.param(["awaiting_payment", "payment_failed"], "payment_failed", id="failed"),
        pytest.param(["payment_failed", "awaiting_payment"], "payment_failed", id="out-of-order"),
        pytest.param(["expired"], "expired", id="expired"),
        pytest.param(["expired", "payment_failed"], "expired", id="same-rank-keeps-first"),
    ],
)
def test_settle_order_moves_forward_only(store: OrderStore, steps: list[str], final: str) -> None:
    store.record_open(make_order())
    fulfilled: list[Order] = []
    for step in steps:
        settle_order(store, "cs_test_a1order", step, None, fulfilled.append)
    got = store.get("cs_test_a1order")
    assert got is not None
    assert got.status == final
    assert got.fulfilled == (final == "paid")
    assert len(fulfilled) == (1 if final == "paid" else 0)
    assert [order.fulfilment_attempt for order in fulfilled] == ([1] if final == "paid" else [])


def test_settle_order_refreshes_from_the_session(store: OrderStore) -> None:
    store.record_open(make_order(customer_email=None))
    session = {
        "id": "cs_test_a1order",
        "status": "complete",
        "payment_status": "paid",
        "amount_total": 1350,
        "customer_details": {"email": "buyer@example.com"},
    }
    seen: list[Order] = []
    settle_order(store, "cs_test_a1order", "paid", session, seen.append)
    got = store.get("cs_test_a1order")
    assert got is not None
    assert (got.status, got.payment_status, got.amount_total) == ("paid", "paid", 1350)
    assert got.customer_email == "buyer@example.com"
    assert got.fulfilled and got.fulfilled_at is not None
    assert got.session == session
    assert seen[0].status == "paid" and seen[0].session == session
    # The hook's copy is its own: changing it does not change the ledger.
    seen[0].items.clear()
    again = store.get("cs_test_a1order")
    assert again is not None and len(again.items) == 2


def test_settle_order_unknown_session(store: OrderStore) -> None:
    ran: list[Order] = []
    assert settle_order(store, "cs_test_nope", "paid", None, ran.append) is None
    assert ran == []
    assert store.get("cs_test_nope") is None
    assert store.pending_jobs("cs_test_nope") == []


def test_connections_are_reused_between_calls(store: OrderStore) -> None:
    for n in range(20):
        store.record_open(make_order(f"cs_test_reuse{n}"))
        assert store.get(f"cs_test_reuse{n}") is not None
    if isinstance(store, SQLiteStore):
        opened = 0
        connect = store.dialect._connect  # type: ignore[attr-defined]

        def counting_connect() -> Any:
            nonlocal opened
            opened += 1
            return connect()

        store.dialect._connect = counting_connect  # type: ignore[attr-defined]
        for n in range(20):
            store.record_open(make_order(f"cs_test_again{n}"))
        assert opened == 0
    else:
        stats = store.dialect._pool.get_stats()  # type: ignore[attr-defined]
        assert stats["connections_num"] <= 2
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get("cs_test_reuse0")


def test_sqlite_refuses_to_commit_into_a_file_no_longer_at_its_path(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "orders.db"
    with open_store(f"sqlite:///{path}") as opened:
        opened.record_open(make_order())
        with pytest.raises(StoreError), opened.transaction() as tx:
            assert tx.claim_event("evt_unlinked", "x", None)
            os.replace(path, tmp_path / "moved.db")  # the file this connection has open
        assert f"the database file {path} is no longer the file" in caplog.text
        # The next call opens the file now at the path: a new ledger, with its tables.
        assert not opened.event_processed("evt_unlinked")


def _move_ledger_away(path: Any, to: Any) -> None:
    """Move the database and its WAL files, as a restore or a cleanup script would."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.replace(f"{path}{suffix}", f"{to}{suffix}")


def test_sqlite_a_write_looks_for_a_replaced_file_every_time(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "orders.db"
    with open_store(f"sqlite:///{path}") as opened:
        opened.record_open(make_order("cs_test_before"))
        _move_ledger_away(path, tmp_path / "moved.db")
        opened.record_open(make_order("cs_test_after"))  # at once: no trust window
        assert "was replaced or removed; reopening" in caplog.text
    with open_store(f"sqlite:///{path}") as now_there:
        assert now_there.get("cs_test_after") is not None
        assert now_there.get("cs_test_before") is None


def test_sqlite_a_read_trusts_its_file_for_at_most_read_file_check_seconds(
    tmp_path: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The members' reads skip the ``stat`` for a short while (they cost microseconds), so
    a replaced file is seen by the first read after that while, not later."""
    monkeypatch.setattr("stripe_checkout_mw.ledger.dialects.READ_FILE_CHECK", 0.3)
    path = tmp_path / "orders.db"
    with open_store(f"sqlite:///{path}") as opened:
        opened.record_open(make_order("cs_test_before"))
        later = time.time() + 60
        assert opened.orders_in_status("open", later, 10) == ["cs_test_before"]
        _move_ledger_away(path, tmp_path / "moved.db")
        time.sleep(0.4)
        assert opened.orders_in_status("open", later, 10) == []  # the new, empty ledger
        assert "was replaced or removed; reopening" in caplog.text


def test_a_connection_that_raised_is_not_reused(store: OrderStore) -> None:
    store.record_open(make_order())
    with pytest.raises(StoreError), store.transaction() as tx:
        tx.claim_event("evt_x", "x", None)
        store.dialect.execute(tx.conn, "SELECT * FROM no_such_table", ())
    if isinstance(store, SQLiteStore):
        assert store.dialect._idle == []  # type: ignore[attr-defined]
    assert store.get("cs_test_a1order") is not None


def test_store_errors_name_the_store_and_the_error_class(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = "postgresql://shop:s3cret@127.0.0.1:9/ledger?connect_timeout=1"
    with open_store(url) as down, pytest.raises(StoreError):
        down.get("cs_test_x")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    # The cause, named once, rather than the pool's timeout after its whole wait.
    assert [m for m in errors if "postgresql://127.0.0.1:9/ledger" in m] == [
        "store postgresql://127.0.0.1:9/ledger: cannot connect: connection refused"]
    assert "s3cret" not in caplog.text and "shop:" not in caplog.text


def test_prune_deletes_at_most_a_batch_of_old_events(store: OrderStore) -> None:
    with store.transaction() as tx:
        for n in range(30):
            tx.claim_event(f"evt_{n}", "x", None)
    cutoff = time.time() + 1  # everything so far is older than this
    assert store.prune(cutoff, 20) == 20
    assert store.prune(cutoff, 20) == 10
    assert store.prune(cutoff, 20) == 0
    assert not store.event_processed("evt_0")
