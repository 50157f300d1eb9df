"""The ledger failing under a real shop: exactly-once fulfilment and no lost order.

A real shop (the middleware on a threaded werkzeug server on 127.0.0.1) takes checkouts and
Stripe's webhooks from the offline emulator, with SQLite and with a throw-away PostgreSQL
cluster this module starts itself (initdb on a free port, run as the ``postgres`` user; the
machine's own server is never touched). Each test breaks something real and then asserts the
promise of the README's fulfil contract:

- every paid order is fulfilled after recovery and redelivery, and none is lost;
- an order whose database failed before its side effect is fulfilled exactly once;
- otherwise ``fulfill`` is called again only with a higher ``order.fulfilment_attempt``;
- checkouts are answered 200 during an outage, and those orders are fulfilled after it.

Faults: a 4 MiB tmpfs filled to the last byte (the full disk); the database file made
immutable with ``chattr +i`` and then writable again (read-only); the SQLite file's directory
deleted while serving; PostgreSQL with ``idle_in_transaction_session_timeout=1s`` and a 1.5 s
``fulfill``; PostgreSQL stopped with ``-m immediate`` under load; PostgreSQL restarted;
Stripe failing the ``line_items`` of a marked session. Where the machine cannot mount a tmpfs
(not root), the full-disk and read-only tests use a store-level fault injector instead (the
commit raises SQLite's own "database or disk is full" / "attempt to write a readonly
database"); each test reports which one ran in its output.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from stripe_checkout_mw import Catalog, CheckoutMiddleware
from stripe_checkout_mw.ledger.dialects import SQLiteDialect
from stripe_checkout_mw.ledger.orders import Order
from stripe_checkout_mw.ledger.store import open_store
from stripe_checkout_mw.testing import StripeEmulator

CATALOG = Catalog({"tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"}})
ONE_TEE = {"line_items": [{"price": "tee", "quantity": 1}]}


def shop_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the shop"]


class Fulfilments:
    """The shop's ``fulfill``: records (session id, attempt) per call; can be slow."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def __call__(self, order: Order) -> None:
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.calls.append((order.session_id, order.fulfilment_attempt))

    def attempts(self) -> dict[str, list[int]]:
        with self._lock:
            per: dict[str, list[int]] = {}
            for session_id, attempt in self.calls:
                per.setdefault(session_id, []).append(attempt)
            return per


@dataclass
class Shop:
    base: str
    mw: CheckoutMiddleware
    emu: StripeEmulator
    fulfilments: Fulfilments
    store_url: str
    paid: list[str] = field(default_factory=list)

    def post(self, path: str, body: Any, timeout: float = 30) -> tuple[int, Any]:
        return _http(self.base, "POST", path, json.dumps(body).encode(), timeout)

    def get(self, path: str, timeout: float = 30) -> tuple[int, Any]:
        return _http(self.base, "GET", path, None, timeout)

    def checkout(self) -> tuple[int, str | None]:
        status, body = self.post("/create-checkout-session", ONE_TEE)
        return status, body.get("sessionId") if status == 200 else None

    def checkouts(self, count: int) -> list[str]:
        made = [self.checkout() for _ in range(count)]
        assert [status for status, _ in made] == [200] * count
        return [session_id for _, session_id in made if session_id]

    def pay(self, session_id: str) -> None:
        self.emu.pay(session_id, timeout=30)
        self.paid.append(session_id)

    def lookup(self, session_id: str) -> int:
        return self.get(f"/checkout-session?session_id={session_id}")[0]

    def redeliver_until_acknowledged(self, within: float = 30.0) -> None:
        """Stripe's retries, compressed: deliver every unacknowledged event again."""
        deadline = time.monotonic() + within
        while True:
            latest: dict[str, int | None] = {}
            for delivery in self.emu.deliveries:
                latest[delivery.event_id] = delivery.status
            pending = [event_id for event_id, status in latest.items() if status != 200]
            if not pending:
                return
            assert time.monotonic() < deadline, f"{len(pending)} events never acknowledged"
            for event_id in pending:
                self.emu.redeliver(event_id, timeout=30)
            time.sleep(0.2)

    def assert_promise(self, *, once: set[str] | None = None) -> None:
        """Paid = fulfilled, none lost; ``once``: fulfilled exactly once; the rest only with
        increasing attempt numbers."""
        attempts = self.fulfilments.attempts()
        assert set(attempts) == set(self.paid), "paid and fulfilled orders differ"
        for session_id, numbers in attempts.items():
            assert numbers == sorted(set(numbers)), f"{session_id}: attempts {numbers}"
            if once is not None and session_id in once:
                assert len(numbers) == 1, f"{session_id} fulfilled {len(numbers)} times"
        with open_store(self.store_url) as ledger:
            for session_id in self.paid:
                order = ledger.get(session_id)
                assert order is not None, f"{session_id} lost from the ledger"
                assert (order.status, order.fulfilled) == ("paid", True)
                assert order.items and order.items[0]["name"] == "T-shirt"
                assert ledger.pending_jobs(session_id) == []


def _http(base: str, method: str, path: str, body: bytes | None,
          timeout: float) -> tuple[int, Any]:
    host, port = base.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None
    finally:
        conn.close()


@contextlib.contextmanager
def running_shop(store_url: str, fulfilments: Fulfilments, **options: Any) -> Iterator[Shop]:
    """The emulator and a shop on 127.0.0.1 that it delivers webhooks to (once each)."""
    with StripeEmulator(delivery_attempts=1, delivery_timeout=20) as emu:
        settings: dict[str, Any] = {
            "secret_key": emu.secret_key,
            "stripe_api_base": emu.api_base,
            "domain_url": "https://shop.example.com",
            "price_lookup": CATALOG,
            "webhook_secret": emu.webhook_secret,
            "store": store_url,
            "fulfill": fulfilments,
            "job_lease": 1.0,
            "max_network_retries": 0,
        }
        settings.update(options)
        mw = CheckoutMiddleware(shop_app, **settings)
        assert mw.status is not None
        mw.status.min_refresh_interval = 0
        server = make_server("127.0.0.1", 0, mw, threaded=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{server.port}"
        emu.set_webhook_url(f"{base}/stripe-webhook")
        try:
            yield Shop(base, mw, emu, fulfilments, store_url)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
            mw.close()


# --- the small disk -------------------------------------------------------------------------


class SmallDisk:
    """A 4 MiB tmpfs mounted for the test, or (not root) a store-level fault injector."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.path = root / "disk"
        self.path.mkdir()
        self._monkeypatch = monkeypatch
        self._filler = self.path / "filler"
        self._injected: str | None = None
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(self.path)],
            capture_output=True, check=False,
        )
        self.kind = "tmpfs" if mounted.returncode == 0 else "injected"
        if self.kind == "injected":
            self._install_injector()

    def _install_injector(self) -> None:
        commit, begin = SQLiteDialect.commit, SQLiteDialect.begin
        disk = self

        def failing_begin(dialect: SQLiteDialect, conn: Any, durable: bool) -> None:
            if disk._injected == "readonly" and dialect.path.startswith(str(disk.path)):
                raise sqlite3.OperationalError("attempt to write a readonly database")
            begin(dialect, conn, durable)

        def failing_commit(dialect: SQLiteDialect, conn: Any, durable: bool) -> None:
            if disk._injected == "full" and dialect.path.startswith(str(disk.path)):
                raise sqlite3.OperationalError("database or disk is full")
            commit(dialect, conn, durable)

        self._monkeypatch.setattr(SQLiteDialect, "begin", failing_begin)
        self._monkeypatch.setattr(SQLiteDialect, "commit", failing_commit)

    def fill(self) -> None:
        if self.kind == "injected":
            self._injected = "full"
            return
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            for size in (65536, 4096, 512, 1):  # down to the last byte
                with contextlib.suppress(OSError):
                    while os.write(fd, b"\0" * size):
                        pass
        finally:
            os.close(fd)

    def free(self) -> None:
        self._injected = None
        with contextlib.suppress(FileNotFoundError):
            self._filler.unlink()

    def read_only(self, database: Path) -> None:
        if self.kind == "injected":
            self._injected = "readonly"
        else:
            subprocess.run(["chattr", "+i", str(database)], check=True)

    def writable(self, database: Path) -> None:
        self._injected = None
        if self.kind == "tmpfs":
            subprocess.run(["chattr", "-i", str(database)], check=True)

    def unmount(self) -> None:
        if self.kind == "tmpfs":
            subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               request: pytest.FixtureRequest) -> Iterator[SmallDisk]:
    disk = SmallDisk(tmp_path, monkeypatch)
    request.node.add_report_section("call", "fault", f"fault injection: {disk.kind}")
    print(f"fault injection: {disk.kind}")
    try:
        yield disk
    finally:
        for database in disk.path.glob("*.db"):
            subprocess.run(["chattr", "-i", str(database)], check=False, capture_output=True)
        disk.unmount()


def test_sqlite_full_disk_fulfils_each_order_once_after_recovery(small_disk: SmallDisk) -> None:
    store_url = f"sqlite:///{small_disk.path}/orders.db"
    with running_shop(store_url, Fulfilments()) as shop:
        before = shop.checkouts(6)
        small_disk.fill()
        # During the outage: checkouts still answer 200 (their sessions carry the marker)...
        during = shop.checkouts(4)
        for session_id in before + during:
            shop.pay(session_id)
            assert shop.lookup(session_id) in (200, 503)
        called_during = set(shop.fulfilments.attempts())
        # ... and no acknowledgement went out for an order the ledger could not record.
        acknowledged = {d.event_id for d in shop.emu.deliveries if d.status == 200}
        assert len(acknowledged) <= len(called_during)
        small_disk.free()
        shop.redeliver_until_acknowledged()
        for session_id in during:
            assert shop.lookup(session_id) == 200
        shop.assert_promise(once=set(before + during) - called_during)
    if small_disk.kind == "tmpfs":
        assert len(called_during) < len(before + during), "the disk never filled up"


def test_sqlite_made_read_only_heals_without_a_restart(small_disk: SmallDisk,
                                                       tmp_path: Path) -> None:
    database = small_disk.path / "orders.db"
    store_url = f"sqlite:///{database}"
    with open_store(store_url) as ledger:
        ledger.ensure_schema()
    with running_shop(store_url, Fulfilments()) as shop:
        small_disk.read_only(database)
        during = shop.checkouts(8)  # 200: the ledger write fails and is logged
        for session_id in during[:4]:
            shop.pay(session_id)
        assert {d.status for d in shop.emu.deliveries} == {500}
        assert shop.fulfilments.calls == []
        small_disk.writable(database)
        after = shop.checkouts(24)
        assert shop.mw.store is not None
        assert all(shop.mw.store.get(session_id) is not None for session_id in after)
        shop.redeliver_until_acknowledged()
        for session_id in during[4:]:
            shop.pay(session_id)
        shop.assert_promise(once=set(shop.paid))


def test_sqlite_directory_deleted_acknowledges_nothing_and_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stripe_checkout_mw")
    directory = tmp_path / "ledger"
    directory.mkdir()
    store_url = f"sqlite:///{directory}/orders.db"
    with running_shop(store_url, Fulfilments()) as shop:
        orders = shop.checkouts(6)
        shutil.rmtree(directory)
        for session_id in orders:
            shop.pay(session_id)
        assert {d.status for d in shop.emu.deliveries} == {500}
        assert shop.fulfilments.calls == []
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any(f"{directory}/orders.db" in message for message in errors)
        directory.mkdir()  # the operator restores the directory: an empty ledger
        shop.redeliver_until_acknowledged()
        shop.assert_promise(once=set(orders))
    # A restart finds every order, recorded from Stripe after the directory came back.
    with open_store(store_url) as ledger:
        assert all(ledger.get(session_id) is not None for session_id in orders)


def test_line_items_that_cannot_be_fetched_answer_500_and_lose_nothing(
    tmp_path: Path, small_disk: SmallDisk
) -> None:
    store_url = f"sqlite:///{small_disk.path}/orders.db"
    with running_shop(store_url, Fulfilments()) as shop:
        small_disk.fill()
        session_id = shop.checkouts(1)[0]  # not in the ledger: the disk is full
        small_disk.free()
        shop.emu.fail_next(500, path=f"/v1/checkout/sessions/{session_id}/line_items")
        shop.pay(session_id)
        assert [d.status for d in shop.emu.deliveries] == [500]
        assert shop.fulfilments.calls == []
        shop.redeliver_until_acknowledged()
        shop.assert_promise(once={session_id})


# --- a throw-away PostgreSQL cluster --------------------------------------------------------


class Cluster:
    """A PostgreSQL cluster in a temporary directory on a free port, run as ``postgres``."""

    def __init__(self) -> None:
        self.bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                                     check=True).stdout.strip()
        self.root = Path(tempfile.mkdtemp(prefix="scmw-pg-"))
        shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._as_postgres(f"{self.bindir}/initdb", "-D", str(self.data), "-A", "trust",
                          "-U", "postgres", "--no-sync", "-E", "UTF8")

    def _as_postgres(self, *command: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True,
                       capture_output=True, timeout=60)

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
                   "-c max_connections=60")
        self._as_postgres(f"{self.bindir}/pg_ctl", "-D", str(self.data), "-o", options,
                          "-l", str(self.root / "log"), "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", mode, "-w",
                          "-t", "30", "stop")

    def database(self, *settings: str) -> str:
        import psycopg

        name = f"scmw_{uuid.uuid4().hex[:12]}"
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            for setting in settings:
                conn.execute(f'ALTER DATABASE "{name}" SET {setting}')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}?connect_timeout=2"

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if os.geteuid() != 0 or shutil.which("pg_config") is None or shutil.which("runuser") is None:
        pytest.skip("a throw-away PostgreSQL cluster needs root, runuser and pg_config")
    made = Cluster()
    made.start()
    try:
        yield made
    finally:
        made.remove()


@pytest.mark.xdist_group("pg_cluster")  # one worker starts the cluster once
def test_postgres_idle_in_transaction_timeout_and_a_slow_fulfill(cluster: Cluster) -> None:
    store_url = cluster.database("idle_in_transaction_session_timeout = '1s'")
    with running_shop(store_url, Fulfilments(delay=1.5), job_lease=10) as shop:
        orders = shop.checkouts(3)
        payers = [threading.Thread(target=shop.pay, args=(s,)) for s in orders]
        for payer in payers:
            payer.start()
        for payer in payers:
            payer.join(timeout=60)
        assert {d.status for d in shop.emu.deliveries} == {200}
        assert shop.fulfilments.attempts() == {session_id: [1] for session_id in orders}
        shop.assert_promise(once=set(orders))


@pytest.mark.xdist_group("pg_cluster")  # one worker starts the cluster once
def test_postgres_stopped_immediately_under_load(cluster: Cluster) -> None:
    store_url = cluster.database()
    with running_shop(store_url, Fulfilments(delay=0.05)) as shop:
        orders = shop.checkouts(16)
        lock = threading.Lock()

        def pay_some(mine: list[str]) -> None:
            for session_id in mine:
                shop.emu.pay(session_id, timeout=30)
                with lock:
                    shop.paid.append(session_id)

        payers = [threading.Thread(target=pay_some, args=(orders[i::4],)) for i in range(4)]
        for payer in payers:
            payer.start()
        time.sleep(0.4)
        cluster.stop("immediate")
        time.sleep(0.5)
        cluster.start()
        for payer in payers:
            payer.join(timeout=120)
        assert sorted(shop.paid) == sorted(orders)
        shop.redeliver_until_acknowledged()
        shop.assert_promise()


@pytest.mark.xdist_group("pg_cluster")  # one worker starts the cluster once
def test_postgres_restart_first_requests_succeed(cluster: Cluster) -> None:
    store_url = cluster.database()
    with running_shop(store_url, Fulfilments()) as shop:
        orders = shop.checkouts(8)
        # Several pooled connections, all of which the restart kills.
        results: list[int] = []
        lookups = [threading.Thread(target=lambda s=s: results.append(shop.lookup(s)))
                   for s in orders]
        for lookup in lookups:
            lookup.start()
        for lookup in lookups:
            lookup.join(timeout=30)
        assert results == [200] * 8
        cluster.stop("fast")
        cluster.start()
        assert [shop.lookup(session_id) for session_id in orders] == [200] * 8
        for session_id in orders:
            shop.pay(session_id)
        assert [d.status for d in shop.emu.deliveries] == [200] * 8
        shop.assert_promise(once=set(orders))


# --- retention ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_old_events_are_pruned_in_small_batches(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        store_url = f"sqlite:///{tmp_path}/orders.db"
    else:
        store_url = request.getfixturevalue("cluster").database()
    old = time.time() - 31 * 86400
    with open_store(store_url) as ledger:
        with ledger.transaction() as tx:
            for n in range(450):
                tx.claim_event(f"evt_old_{n}", "x", None)
            tx.claim_event("evt_recent", "x", None)
        _age_events(ledger, old, exclude="evt_recent")
    with running_shop(store_url, Fulfilments()) as shop:
        orders = shop.checkouts(3)
        remaining = []
        for session_id in orders:
            shop.pay(session_id)
            remaining.append(_count_events(shop, "evt_old_%"))
        # 200 per batch, one batch per new event while there is more to delete.
        assert remaining[0] >= 450 - 200 - 200
        assert remaining[-1] == 0
        assert shop.mw.store is not None and shop.mw.store.event_processed("evt_recent")
        shop.assert_promise(once=set(orders))


def _age_events(ledger: Any, at: float, *, exclude: str) -> None:
    with ledger.transaction() as tx:
        ledger.dialect.execute(
            tx.conn,
            ledger.dialect.placeholders(
                "UPDATE stripe_checkout_events SET processed_at = ? WHERE event_id <> ?"
            ),
            (at, exclude),
        )


def _count_events(shop: Shop, pattern: str) -> int:
    store = shop.mw.store
    assert store is not None
    with store.dialect.connection() as conn:
        row = store.dialect.fetchone(
            conn,
            store.dialect.placeholders(
                "SELECT count(*) FROM stripe_checkout_events WHERE event_id LIKE ?"
            ),
            (pattern,),
        )
    assert row is not None
    return int(row[0])
