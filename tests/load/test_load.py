"""Load and soak (issue 7, suite 3): a real threaded server, 16 clients, the emulator paying
and delivering webhooks, duplicates included.

The middleware wraps a small app on werkzeug's threaded server on 127.0.0.1; the emulator
delivers its signed webhooks to that server. Sixteen client threads mix pass-through
requests, checkouts, payments (``emu.pay``, which waits for its webhook), redeliveries of
events already handled (duplicates) and status lookups, for
``STRIPE_CHECKOUT_SOAK_SECONDS`` (10 s by default; 60 s for the full run).

It asserts: no unexpected status anywhere (clients and webhook deliveries); every paid
session fulfilled exactly once (fulfil calls counted per session id) and marked so in the
ledger, no other session fulfilled; and threads, open file descriptors and traced memory
flat: the load runs in two phases and the second must leave them where the first did.
"""

from __future__ import annotations

import gc
import http.client
import json
import logging
import os
import random
import socket
import sqlite3
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import stripe
import urllib3
from werkzeug.serving import make_server

from stripe_checkout_mw import Catalog, CheckoutMiddleware
from stripe_checkout_mw.ledger.orders import Order
from stripe_checkout_mw.testing import StripeEmulator

SOAK_SECONDS = float(os.environ.get("STRIPE_CHECKOUT_SOAK_SECONDS", "10"))
CLIENTS = 16
CATALOG = Catalog({
    "tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"},
    "mug": {"name": "Mug", "unit_amount": 800, "currency": "usd"},
})
#: Growth allowed between the end of the first phase and the end of the second.
THREAD_SLACK = 2
FD_SLACK = 2
#: Traced bytes: CPython's free lists keep some freed blocks traced where they were first
#: allocated, so a little growth with peak concurrency is noise; a leaked Stripe session,
#: order or HTTP session per request is kilobytes each and over this within seconds (the
#: live-object counts below catch those exactly).
MEMORY_SLACK = 1024 * 1024
MEMORY_PER_SESSION = 256  # the status path's refresh throttle keeps one entry per session
OBJECT_SLACK = 4
#: The store keeps up to this many idle connections for reuse (its default ``max_idle``);
#: SQLite in WAL mode holds three files open per connection (the database, -wal, -shm).
STORE_MAX_IDLE = 8
#: Where the middleware's side of the wire allocates: the package, its HTTP stack, the server.
MIDDLEWARE_SIDE = ("*/stripe_checkout_mw/*", "*/stripe/*", "*/werkzeug/*", "*/requests/*",
                   "*/urllib3/*", "*/sqlite3/*", "*/http/client.py", "*/socketserver.py")


def shop(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the shop:" + str(len(body)).encode()]


class Fulfilments:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, order: Order) -> None:
        with self._lock:
            self.calls[order.session_id] += 1


@dataclass
class Tally:
    """What the clients did and saw, shared between them."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    ops: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    open_sessions: list[str] = field(default_factory=list)
    paid: set[str] = field(default_factory=set)

    def note(self, op: str, problem: str | None = None) -> None:
        with self.lock:
            self.ops[op] += 1
            if problem is not None:
                self.unexpected.append(f"{op}: {problem}")


def request(port: int, method: str, path: str, body: bytes | None = None,
            content_type: str = "application/json") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": content_type} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def client_loop(seed: int, port: int, emu: StripeEmulator, tally: Tally,
                deadline: float) -> None:
    rng = random.Random(seed)
    mine: list[str] = []
    paid: list[str] = []
    while time.monotonic() < deadline:
        roll = rng.random()
        try:
            if roll < 0.25:
                size = rng.choice([0, 10, 5000])
                method = "POST" if size else "GET"
                status, body = request(port, method, f"/page/{rng.randrange(100)}",
                                       b"x" * size if size else None, "text/plain")
                ok = status == 200 and body == b"the shop:" + str(size).encode()
                tally.note("pass-through", None if ok else f"{status} {body[:120]!r}")
            elif roll < 0.50 or not mine:
                order = {"line_items": [{"price": rng.choice(["tee", "mug"]),
                                         "quantity": rng.randint(1, 3)}]}
                status, body = request(port, "POST", "/create-checkout-session",
                                       json.dumps(order).encode())
                if status == 200:
                    session_id = json.loads(body)["sessionId"]
                    mine.append(session_id)
                    with tally.lock:
                        tally.open_sessions.append(session_id)
                tally.note("checkout", None if status == 200 else f"{status} {body[:120]!r}")
            elif roll < 0.70:
                session_id = mine.pop(rng.randrange(len(mine)))
                session = emu.pay(session_id, timeout=30)
                paid.append(session_id)
                with tally.lock:
                    tally.paid.add(session_id)
                ok = session["payment_status"] == "paid"
                tally.note("pay", None if ok else f"{session_id} {session['payment_status']}")
            elif roll < 0.80 and paid:
                session_id = rng.choice(paid)
                event_id = next(e["id"] for e in emu.events
                                if e["type"] == "checkout.session.completed"
                                and e["data"]["object"]["id"] == session_id)
                emu.redeliver(event_id, timeout=30)
                tally.note("redeliver")
            else:
                session_id = rng.choice(paid or mine)
                status, body = request(port, "GET", f"/checkout-session?session_id={session_id}")
                ok = status == 200 and json.loads(body)["session_id"] == session_id
                tally.note("status", None if ok else f"{status} {body[:120]!r}")
        except Exception as exc:  # reported as an unexpected outcome, with its type
            tally.note("error", f"{type(exc).__name__}: {exc}")


def run_clients(port: int, emu: StripeEmulator, tally: Tally, seconds: float,
                phase: int) -> None:
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=client_loop, args=(phase * 100 + i, port, emu, tally, deadline),
                         name=f"soak-client-{i}")
        for i in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    assert not any(thread.is_alive() for thread in threads), "a client hung"
    emu.wait_for_deliveries(timeout=60)


def open_fds(ledger_dir: Path | None = None) -> tuple[int, int]:
    """Open file descriptors: (on anything else, on the ledger's files)."""
    other = ledger = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the directory listing's own descriptor, closed by now
            continue
        if ledger_dir is not None and target.startswith(str(ledger_dir)):
            ledger += 1
        else:
            other += 1
    return other, ledger


def settle(before: set[threading.Thread] | None = None, timeout: float = 10) -> None:
    """Let finished handler threads go and collect garbage."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        extra = [t for t in threading.enumerate()
                 if before is not None and t not in before and t.is_alive()]
        if not extra:
            break
        time.sleep(0.05)
    gc.collect()


def traced_memory() -> int:
    """Traced bytes held by code on the middleware's side of the wire.

    Allocations are attributed to the line that made them (one frame, which keeps the
    tracing cheap enough for the soak). The emulator keeps every request, session and
    event it saw, by design, so its files are left out; so are the clients'.
    """
    snapshot = tracemalloc.take_snapshot().filter_traces([
        *(tracemalloc.Filter(True, pattern) for pattern in MIDDLEWARE_SIDE),
        tracemalloc.Filter(False, "*/stripe_checkout_mw/testing/*"),
    ])
    return sum(stat.size for stat in snapshot.statistics("filename"))


def live_objects() -> Counter[str]:
    """Live instances of the kinds a leak per request would pile up."""
    gc.collect()
    kinds = (socket.socket, threading.Thread, requests.Session, sqlite3.Connection,
             stripe.StripeObject, Order, urllib3.connectionpool.HTTPConnectionPool)
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        for kind in kinds:
            if isinstance(obj, kind):
                counts[kind.__name__] += 1
    return counts


@contextmanager
def quiet(name: str) -> Iterator[None]:
    # werkzeug logs every request at INFO; thousands of records would be kept in memory.
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@pytest.mark.slow
def test_soak(tmp_path: Path) -> None:
    gc.collect()
    threads_before = set(threading.enumerate())
    fds_before, _ = open_fds()
    ledger_dir = tmp_path / "ledger"
    ledger_dir.mkdir()
    fulfilments = Fulfilments()
    tally = Tally()
    tracemalloc.start(1)
    try:
        with quiet("werkzeug"), StripeEmulator(delivery_timeout=30) as emu:
            mw = CheckoutMiddleware(
                shop,
                secret_key=emu.secret_key,
                stripe_api_base=emu.api_base,
                domain_url="https://shop.example.com",
                price_lookup=CATALOG,
                webhook_secret=emu.webhook_secret,
                store=f"sqlite:///{ledger_dir}/orders.db",
                fulfill=fulfilments,
                timeout=20.0,
                max_concurrent_stripe_calls=CLIENTS,  # a healthy Stripe: no 503 expected
            )
            server = make_server("127.0.0.1", 0, mw, threaded=True)
            serving = threading.Thread(target=server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, name="soak-server")
            serving.start()
            emu.webhook_url = f"http://127.0.0.1:{server.port}/stripe-webhook"
            steady = set(threading.enumerate())  # the emulator's and the server's own
            try:
                run_clients(server.port, emu, tally, SOAK_SECONDS * 0.3, phase=1)
                settle(steady)
                first = (threading.active_count(), open_fds(ledger_dir), traced_memory(),
                         len(tally.open_sessions), live_objects())
                run_clients(server.port, emu, tally, SOAK_SECONDS * 0.7, phase=2)
                settle(steady)
                second = (threading.active_count(), open_fds(ledger_dir), traced_memory(),
                          len(tally.open_sessions), live_objects())
                deliveries = emu.deliveries
                assert mw.store is not None
                ledger = {session_id: mw.store.get(session_id)
                          for session_id in tally.open_sessions}
            finally:
                server.shutdown()
                server.server_close()
                serving.join(timeout=10)
                mw.close()
    finally:
        tracemalloc.stop()

    # Every client request and every webhook delivery got the answer it should.
    assert tally.unexpected == []
    assert all(d.ok for d in deliveries), [d for d in deliveries if not d.ok][:5]
    for op in ("pass-through", "checkout", "pay", "redeliver", "status"):
        assert tally.ops[op] > 0, tally.ops  # the mix really ran
    assert len(deliveries) >= tally.ops["pay"] + tally.ops["redeliver"]

    # Every paid session was fulfilled exactly once; nothing else was.
    assert set(fulfilments.calls) == tally.paid
    assert all(count == 1 for count in fulfilments.calls.values()), fulfilments.calls
    for session_id, order in ledger.items():
        assert order is not None
        paid = session_id in tally.paid
        assert (order.status == "paid", order.fulfilled) == (paid, paid), session_id

    # Flat: the second, longer phase left threads, fds and memory where the first did.
    threads_1, fds_1, memory_1, sessions_1, objects_1 = first
    threads_2, fds_2, memory_2, sessions_2, objects_2 = second
    assert threads_2 <= threads_1 + THREAD_SLACK, (threads_1, threads_2)
    # Sockets, pipes and the rest flat; the ledger's files bounded by the store's pool.
    assert fds_2[0] <= fds_1[0] + FD_SLACK, (fds_1, fds_2)
    assert fds_2[1] <= 3 * STORE_MAX_IDLE, (fds_1, fds_2)
    assert objects_2["Connection"] <= STORE_MAX_IDLE, objects_2
    allowed = MEMORY_SLACK + MEMORY_PER_SESSION * (sessions_2 - sessions_1)
    assert memory_2 - memory_1 <= allowed, (memory_1, memory_2, allowed)
    grown = {kind: (objects_1[kind], n) for kind, n in objects_2.items()
             if kind != "Connection" and n > objects_1[kind] + OBJECT_SLACK}
    assert grown == {}, grown

    # And everything the test started is gone.
    settle(threads_before)
    assert [t.name for t in threading.enumerate() if t not in threads_before] == []
    assert open_fds()[0] <= fds_before + 1  # pytest may have opened a capture file meanwhile
    print(f"soak: {dict(tally.ops)}; memory {memory_1} -> {memory_2} bytes; "
          f"fds {fds_1} -> {fds_2}; threads {threads_1} -> {threads_2}; "
          f"objects {dict(objects_1)} -> {dict(objects_2)}")
