"""Profile one hot path under cProfile, to see where a missed goal's time goes.

    python -m benchmarks.profile ledger            # SQLiteStore.record_open (checkout)
    python -m benchmarks.profile webhook-sqlite    # the webhook path on SQLite
    python -m benchmarks.profile webhook-pg        # the webhook path on PostgreSQL
    python -m benchmarks.profile checkout          # a checkout through the middleware

Prints the per-call time without the profiler, then the top functions by own time.
``ledger`` also times the same INSERT on one kept-open connection, the lower bound a
connection-reusing store would reach. Everything runs on ``127.0.0.1`` and a temporary
directory; ``webhook-pg`` uses a throw-away schema in STRIPE_CHECKOUT_TEST_PG.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import io
import json
import pstats
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any, Callable

from .common import fully_configured, median, pg_url, quantile, trivial_app


def _timed(label: str, calls: list[Callable[[], Any]]) -> None:
    """Run the calls once plainly (timings) and once more under cProfile."""
    half = len(calls) // 2
    latencies = []
    for call in calls[:half]:
        t0 = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - t0) * 1e3)
    print(f"{label}: median {median(latencies):.3f} ms, p95 {quantile(latencies, 0.95):.3f} ms"
          f" ({half} calls, no profiler)")
    profiler = cProfile.Profile()
    profiler.enable()
    for call in calls[half:]:
        call()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
    print(out.getvalue())


def _orders(n: int) -> list[Any]:
    from stripe_checkout_mw.ledger.orders import Order

    from .webhooks import _session

    return [
        Order.from_session({**_session("cs_test_" + uuid.uuid4().hex), "status": "open",
                            "payment_status": "unpaid"},
                           items=[{"name": "T-shirt", "quantity": 1, "unit_amount": 2000,
                                   "currency": "usd", "price": None}])
        for _ in range(n)
    ]


def ledger(tmpdir: str, n: int) -> None:
    from stripe_checkout_mw.ledger.store import SQLiteStore

    path = f"{tmpdir}/orders.db"
    store = SQLiteStore(path)
    for order in _orders(50):  # warm-up, schema
        store.record_open(order)
    _timed("SQLiteStore.record_open",
           [functools.partial(store.record_open, order) for order in _orders(2 * n)])

    # The floor: the same statement on one connection kept open between transactions,
    # not waiting for the disk, like record_open.
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA synchronous=NORMAL")

    def insert(order: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(store._sql_insert_order, store.order_values(order))
        conn.execute("COMMIT")

    latencies = []
    for order in _orders(n):
        t0 = time.perf_counter()
        insert(order)
        latencies.append((time.perf_counter() - t0) * 1e3)
    print(f"same INSERT, one kept-open connection: median {median(latencies):.3f} ms, "
          f"p95 {quantile(latencies, 0.95):.3f} ms")
    conn.close()


@contextlib.contextmanager
def _store_url(kind: str, tmpdir: str) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmpdir}/webhooks.db"
        return
    from .webhooks import _pg_schema

    url, why = pg_url()
    if url is None:
        raise SystemExit(f"webhook-pg: {why}")
    with _pg_schema(url) as schema_url:
        yield schema_url


def webhook(kind: str, tmpdir: str, n: int) -> None:
    from .webhooks import _SECRET, _deliver, _event, _session, _signed

    with _store_url(kind, tmpdir) as url:
        mw = fully_configured(trivial_app, tmpdir, store=url, webhook_secret=_SECRET,
                              fulfill=lambda order: None)
        calls: list[Callable[[], Any]] = []
        for order in _orders(2 * n + 50):
            mw.store.record_open(order)
            body, header = _signed(_event(_session(order.session_id)))
            calls.append(functools.partial(_deliver, mw, body, header))
        for call in calls[:50]:
            call()
        _timed(f"webhook path ({kind})", calls[50:])
        mw.close()


def checkout(tmpdir: str, n: int) -> None:
    from stripe_checkout_mw.testing import StripeEmulator

    from .checkout_worker import ORDER, _call_wsgi

    body = json.dumps(ORDER).encode()
    with StripeEmulator() as emu:
        mw = fully_configured(trivial_app, tmpdir, secret_key=emu.secret_key,
                              api_base=emu.api_base, webhook_secret=emu.webhook_secret)
        for _ in range(20):
            _call_wsgi(mw, body)
        _timed("checkout through the middleware (emulator in this process)",
               [lambda: _call_wsgi(mw, body)] * (2 * n))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=["ledger", "webhook-sqlite", "webhook-pg",
                                           "checkout"])
    parser.add_argument("-n", type=int, default=300, help="calls per half (default 300)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="scmw-profile-") as tmpdir:
        if args.target == "ledger":
            ledger(tmpdir, args.n)
        elif args.target == "checkout":
            checkout(tmpdir, args.n)
        else:
            webhook(args.target.split("-")[1].replace("pg", "postgres"), tmpdir, args.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
