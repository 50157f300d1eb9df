"""The store heals without help and fails fast: a SQLite disk that was full, a bounded
SQLite connection count, and a PostgreSQL server that refuses or never answers (a free port
with nothing listening, and a socket this module listens on and never answers from).

The full disk is a 4 MiB tmpfs this module mounts itself and fills to the last byte with a
file it then deletes (skipped where the machine cannot mount one: not root). Nothing here
touches the machine's PostgreSQL.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stripe_checkout_mw.ledger.orders import Order
from stripe_checkout_mw.ledger.store import SQLiteStore, StoreError, open_store


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (65536, 4096, 512, 1):  # down to the last byte
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)


def _order(number: int) -> Order:
    return Order(session_id=f"cs_test_{number:04d}", status="open",
                 metadata={"note": "x" * 2000}, items=[])


def test_a_disk_that_was_full_heals_on_the_next_writes_and_gives_back_the_wal(
    small_disk: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    store = SQLiteStore(str(small_disk / "orders.db"))
    try:
        for number in range(100):  # a WAL of about 1.7 MiB (each commit adds whole pages)
            store.record_open(_order(number))
        filler = small_disk / "filler"
        _fill(filler)
        refused = []
        for number in range(100, 300):
            try:
                store.record_open(_order(number))
            except StoreError:
                refused.append(number)
        assert refused, "the full disk refused nothing"
        wal = small_disk / "orders.db-wal"
        wal_when_full = wal.stat().st_size
        filler.unlink()  # space returns
        store.record_open(_order(refused[0]))  # the first write after it heals the WAL
        assert wal.stat().st_size < wal_when_full / 10  # checkpointed and truncated
        assert "the disk had been full" in caplog.text
        for number in refused[1:]:  # Stripe's redeliveries of what was refused
            store.record_open(_order(number))
        assert all(store.get(f"cs_test_{n:04d}") is not None for n in range(300))
    finally:
        store.close()


def test_the_sqlite_store_caps_its_open_connections(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "orders.db"), max_idle=2, max_open=3, busy_timeout=5)
    dialect = store.dialect
    store.ensure_schema()
    lent: list[object] = []
    free = threading.Event()
    waited: list[float] = []

    def hold() -> None:
        with dialect.connection() as conn:
            lent.append(conn)
            assert free.wait(10)

    holders = [threading.Thread(target=hold) for _ in range(3)]
    for holder in holders:
        holder.start()
    while len(lent) < 3:
        time.sleep(0.01)

    def fourth() -> None:
        started = time.monotonic()
        assert store.get("cs_test_none") is None
        waited.append(time.monotonic() - started)

    waiter = threading.Thread(target=fourth)
    waiter.start()
    time.sleep(0.3)
    assert waited == [] and dialect._open == 3  # the fourth caller waits for one of three
    free.set()
    for thread in [*holders, waiter]:
        thread.join(10)
    assert waited and waited[0] >= 0.25
    assert dialect._open <= 3 and len(dialect._idle) <= 2
    store.close()


# --- PostgreSQL that cannot be reached: fail fast, say why once ------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a black-holed server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


def _failures(store: Any, count: int) -> tuple[list[str], float]:
    messages = []
    started = time.monotonic()
    for _ in range(count):
        with pytest.raises(StoreError) as caught:
            store.get("cs_test_x")
        messages.append(str(caught.value))
    return messages, time.monotonic() - started


@pytest.mark.skipif(importlib.util.find_spec("psycopg_pool") is None, reason="needs psycopg")
def test_postgres_refusing_connections_fails_fast_and_names_the_cause_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = open_store(f"postgresql://shop@127.0.0.1:{_free_port()}/shop")
    try:
        messages, seconds = _failures(store, 5)
        assert seconds < 2.0  # was ~11 s for the first one
        assert all(m.endswith("cannot connect: connection refused") for m in messages)
        named = [r for r in caplog.records if "cannot connect" in r.getMessage()]
        assert len(named) == 1 and named[0].getMessage().endswith("connection refused")
    finally:
        store.close()


@pytest.mark.skipif(importlib.util.find_spec("psycopg_pool") is None, reason="needs psycopg")
def test_postgres_that_never_answers_times_out_in_seconds_and_says_so(silent_server: int) -> None:
    store = open_store(f"postgresql://shop@127.0.0.1:{silent_server}/shop")
    try:
        messages, seconds = _failures(store, 3)
        assert seconds < 6.0  # connect_timeout (3 s), then answered from memory
        assert all(m.endswith("cannot connect: timeout") for m in messages)
    finally:
        store.close()


@pytest.mark.skipif(importlib.util.find_spec("psycopg_pool") is None, reason="needs psycopg")
def test_a_sync_stops_at_the_first_store_error_and_names_its_cause(
    stripe_emulator: Any,
) -> None:
    from stripe_checkout_mw import Catalog, CheckoutMiddleware

    mw = CheckoutMiddleware(
        lambda environ, start_response: [], secret_key=stripe_emulator.secret_key,
        stripe_api_base=stripe_emulator.api_base, domain_url="http://127.0.0.1",
        price_lookup=Catalog({"tee": {"name": "T", "unit_amount": 100, "currency": "usd"}}),
        store=f"postgresql://shop@127.0.0.1:{_free_port()}/shop")
    try:
        started = time.monotonic()
        report = mw.sync()
        assert time.monotonic() - started < 5.0
    finally:
        mw.shop.close()
    # Listing Stripe's events needs no store; the first step that does fails, and the rest
    # (settling open orders) is not tried.
    assert len(report.failures) == 1, report.failures
    assert report.failures[0].startswith("running due jobs: store postgresql://")
    assert report.failures[0].endswith("cannot connect: connection refused; stopped here")
