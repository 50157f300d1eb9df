"""Section 6: webhook deliveries per second, on SQLite and on PostgreSQL.

The path: a ``checkout.session.completed`` event for an order in the ledger, signed the
way Stripe signs it, POSTed through the fully configured middleware (in-process WSGI
call): signature check, event claim, order update to paid, a no-op ``fulfill``, commit,
JSON answer. The floor, on the same database: ``construct_event`` on the same payload
and header, then one ``INSERT ... ON CONFLICT DO NOTHING`` and a commit on a kept-open
connection (what any correct receiver must at least do). The middleware has no
``on(...)`` handler, so it builds no ``stripe.Event``; a third side, the same path with a
handler for the event, does (as the floor's ``construct_event`` does). Rounds alternate
floor and path on fresh events, then floor and the path with a handler. Then every event
is delivered again: duplicates per second.

Section 8, the same path on a large ledger: one store already holding ``ledger_rows``
(1,000,000) processed events, paid and fulfilled orders and done jobs, bulk-loaded with one
``INSERT ... SELECT`` each (a recursive CTE on SQLite, ``generate_series`` on PostgreSQL),
against an empty store, rounds alternating; the ratio is paired per round.

On PostgreSQL the tables go in a schema of their own (``search_path``), dropped at the
end, so the benchmark never touches other tables in the database.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from .common import (
    Row,
    Sizes,
    base_environ,
    fmt_rate,
    fmt_ratio,
    fully_configured,
    judge,
    median,
    pg_url,
    rotations,
    spread,
    trivial_app,
)

_SECRET = "whsec_benchmarks"


def _session(session_id: str) -> dict[str, Any]:
    """A paid Checkout Session shaped like Stripe's (its usual fields, abridged)."""
    return {
        "id": session_id, "object": "checkout.session", "amount_subtotal": 2000,
        "amount_total": 2000, "cancel_url": "http://127.0.0.1:8000/cancel",
        "client_reference_id": None, "created": int(time.time()), "currency": "usd",
        "customer": None, "customer_creation": "if_required",
        "customer_details": {"address": None, "email": "jenny@example.com", "name": "Jenny",
                             "phone": None, "tax_exempt": "none", "tax_ids": []},
        "customer_email": None, "expires_at": int(time.time()) + 86400, "livemode": False,
        "locale": None, "metadata": {}, "mode": "payment",
        "payment_intent": "pi_" + uuid.uuid4().hex[:24], "payment_method_types": ["card"],
        "payment_status": "paid", "status": "complete", "submit_type": None,
        "subscription": None, "success_url": "http://127.0.0.1:8000/success",
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted_page", "url": None,
    }


def _event(session: dict[str, Any]) -> bytes:
    return json.dumps({
        "id": "evt_" + uuid.uuid4().hex, "object": "event", "api_version": "2026-10-28.endive",
        "created": int(time.time()), "data": {"object": session}, "livemode": False,
        "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
        "type": "checkout.session.completed",
    }).encode()


def _signed(payload: bytes) -> tuple[bytes, str]:
    import stripe

    return payload, stripe.WebhookSignature.generate_signature_header(
        payload.decode(), _SECRET)


def _deliver(mw: Any, body: bytes, header: str) -> bytes:
    env = base_environ(mw.settings.webhook_path, "POST")
    env["CONTENT_TYPE"] = "application/json"
    env["CONTENT_LENGTH"] = str(len(body))
    env["HTTP_STRIPE_SIGNATURE"] = header
    env["wsgi.input"] = io.BytesIO(body)
    status: list[str] = []
    answer = b"".join(mw(env, lambda s, h, e=None: status.append(s)))
    if not status or not status[0].startswith("200"):
        raise RuntimeError(f"webhook answered {status[:1]} {answer[:200]!r}")
    return answer


class _Floor:
    """construct_event + one INSERT ... ON CONFLICT DO NOTHING + commit, on a connection
    kept open for a round, on the store's own database.

    The connection is opened at the start of each floor round and closed at its end. It
    must not stay open while the path runs: on SQLite an extra open connection keeps the
    WAL file alive, which spares the store's own open-use-close connections the
    checkpoint and WAL re-creation they pay when they are the only one, and flatters it.
    """

    def __init__(self, kind: str, url: str, path: str | None) -> None:
        import stripe

        self.client = stripe.StripeClient("sk_test_benchmarks")
        self.kind, self.url, self.path = kind, url, path
        self.conn: Any = None
        if kind == "sqlite":
            self.sql = ("INSERT INTO bench_floor_events (event_id, processed_at) VALUES (?, ?) "
                        "ON CONFLICT (event_id) DO NOTHING")
            ddl = ("CREATE TABLE IF NOT EXISTS bench_floor_events "
                   "(event_id TEXT PRIMARY KEY, processed_at REAL NOT NULL)")
        else:
            self.sql = ("INSERT INTO bench_floor_events (event_id, processed_at) "
                        "VALUES (%s, %s) ON CONFLICT (event_id) DO NOTHING")
            ddl = ("CREATE TABLE IF NOT EXISTS bench_floor_events "
                   "(event_id text PRIMARY KEY, processed_at double precision NOT NULL)")
        with self.connected():
            self._execute_ddl(ddl)

    def _execute_ddl(self, ddl: str) -> None:
        self.conn.execute(ddl)
        if self.kind != "sqlite":
            self.conn.commit()

    @contextlib.contextmanager
    def connected(self) -> Iterator[None]:
        if self.kind == "sqlite":
            assert self.path is not None
            self.conn = sqlite3.connect(self.path, isolation_level=None)
        else:
            import psycopg

            self.conn = psycopg.connect(self.url)
        try:
            yield
        finally:
            self.conn.close()
            self.conn = None

    def handle(self, body: bytes, header: str) -> None:
        event = self.client.construct_event(body.decode(), header, _SECRET)
        if self.kind == "sqlite":
            self.conn.execute("BEGIN")
            self.conn.execute(self.sql, (event.id, time.time()))
            self.conn.execute("COMMIT")
        else:
            self.conn.execute(self.sql, (event.id, time.time()))
            self.conn.commit()


@contextlib.contextmanager
def _pg_schema(url: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards."""
    import psycopg

    schema = f"scmw_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _measure(kind: str, store_url: str, sqlite_path: str | None, tmpdir: str,
             sizes: Sizes) -> list[Row]:
    fulfilled: list[str] = []
    mw = fully_configured(trivial_app, tmpdir, store=store_url, webhook_secret=_SECRET,
                          fulfill=lambda order: fulfilled.append(order.session_id))
    # The same path with an on(...) handler for the event: it also builds the stripe.Event
    # (the floor's construct_event does the same), which the path skips without one.
    handled: list[str] = []
    with_handler = fully_configured(trivial_app, tmpdir, store=store_url,
                                    webhook_secret=_SECRET, fulfill=lambda order: None)
    with_handler.on("checkout.session.completed")(lambda event: handled.append(event.id))
    assert mw.store is not None
    floor = _Floor(kind, store_url, sqlite_path)
    n, rounds = sizes.webhook_events, sizes.webhook_rounds
    try:
        # Every round's orders are in the ledger before timing starts, as they would be
        # (the middleware records each session when it creates it); one batch per side.
        sides = ["floor", "path", "handler"]
        # The floor runs in both pairings (with the path, then with the handler path); +1:
        # a warm-up round.
        batches = {side: _paid_batches(mw, 2 * rounds + 1 if side == "floor" else rounds + 1,
                                       n) for side in sides}
        handlers: dict[str, Callable[[bytes, str], object]] = {
            "floor": floor.handle, "path": functools.partial(_deliver, mw),
            "handler": functools.partial(_deliver, with_handler)}

        def run(side: str, batch: list[tuple[bytes, str]]) -> float:
            """Events per second of one side over one batch."""
            with floor.connected() if side == "floor" else contextlib.nullcontext():
                handle = handlers[side]
                t0 = time.perf_counter()
                for body, header in batch:
                    handle(body, header)
                return len(batch) / (time.perf_counter() - t0)

        for side in sides:
            run(side, batches[side][0])  # warm-up
        # Two pairings, one after the other, so that the handler path's extra writes do not
        # fall between the path's rounds and the floor's: floor and path, then floor and
        # the path with a handler.
        rates: dict[str, list[float]] = {side: [] for side in sides}
        floor_with_handler: list[float] = []
        for r, order in rotations(["floor", "path"], rounds):
            for side in order:
                rates[side].append(run(side, batches[side][r + 1]))
        for r, order in rotations(["floor", "handler"], rounds):
            for side in order:
                rate = run(side, batches[side][r + 1 + (rounds if side == "floor" else 0)])
                (floor_with_handler if side == "floor" else rates[side]).append(rate)
        expected = (rounds + 1) * n
        if len(fulfilled) != expected or len(handled) != expected:
            raise RuntimeError(f"{len(fulfilled)} orders fulfilled and {len(handled)} events "
                               f"handled, expected {expected} of each")
        duplicate_rates = []
        for batch in batches["path"][1:]:
            again = [_signed(body) for body, _ in batch]  # a redelivery is signed afresh
            t0 = time.perf_counter()
            for body, header in again:
                if b'"duplicate":true' not in _deliver(mw, body, header):
                    raise RuntimeError("a redelivered event was not reported as a duplicate")
            duplicate_rates.append(len(again) / (time.perf_counter() - t0))
        if len(fulfilled) != expected:
            raise RuntimeError("a duplicate delivery fulfilled an order again")
    finally:
        mw.close()
        with_handler.close()
    ratios = [f / p for f, p in zip(rates["floor"], rates["path"])]
    handler_ratios = [f / h for f, h in zip(floor_with_handler, rates["handler"])]
    label = "SQLite" if kind == "sqlite" else "PostgreSQL"
    return [
        Row("6", f"{label}: webhook path, events/s", fmt_rate(median(rates["path"])),
            spread(rates["path"], fmt_rate),
            note=f"{rounds} rounds x {n} events, alternating with the floor"),
        Row("6", f"{label}: floor (construct_event + INSERT + commit), events/s",
            fmt_rate(median(rates["floor"])), spread(rates["floor"], fmt_rate)),
        Row("6", f"{label}: path time / floor time", fmt_ratio(median(ratios)),
            spread(ratios, fmt_ratio), "<= 1.5", judge(median(ratios) <= 1.5)),
        Row("6", f"{label}: path with an on(...) handler, time / floor time",
            fmt_ratio(median(handler_ratios)), spread(handler_ratios, fmt_ratio),
            note="the handler gets a stripe.Event, built as the floor's construct_event does"),
        Row("6", f"{label}: duplicates, events/s", fmt_rate(median(duplicate_rates)),
            spread(duplicate_rates, fmt_rate), note="every event delivered again"),
    ]


def _paid_batches(mw: Any, rounds: int, n: int) -> list[list[tuple[bytes, str]]]:
    """``rounds`` batches of ``n`` signed completed events, their orders in the ledger."""
    from stripe_checkout_mw.ledger.orders import Order

    batches = []
    for _ in range(rounds):
        batch = []
        for _ in range(n):
            session = _session("cs_test_" + uuid.uuid4().hex)
            mw.store.record_open(Order.from_session(
                {**session, "status": "open", "payment_status": "unpaid"},
                items=[{"name": "T-shirt", "quantity": 1, "unit_amount": 2000,
                        "currency": "usd", "price": None}]))
            batch.append(_signed(_event(session)))
        batches.append(batch)
    return batches


_SQLITE_BULK = (
    """WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
    INSERT INTO stripe_checkout_orders SELECT 'cs_test_bulk' || i, 'paid', 'paid', 'payment',
        'usd', 2000, 2000, 'jenny@example.com', NULL, '{}',
        '[{"currency":"usd","name":"T-shirt","price":null,"quantity":1,"unit_amount":2000}]',
        NULL, 1, ? - i % 2500000, ? - i % 2500000, ? - i % 2500000 FROM n""",
    """WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
    INSERT INTO stripe_checkout_events SELECT 'evt_bulk' || i, 'checkout.session.completed',
        'cs_test_bulk' || i, ? - i % 2500000 FROM n""",
    """WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
    INSERT INTO stripe_checkout_jobs (kind, job_key, subject, payload, attempt, lease_until,
        done_at, created_at)
    SELECT 'fulfil', 'cs_test_bulk' || i, 'cs_test_bulk' || i, '{}', 1, 0, ? - i % 2500000,
        ? - i % 2500000 FROM n""",
)
_PG_BULK = (
    """INSERT INTO stripe_checkout_orders SELECT 'cs_test_bulk' || i, 'paid', 'paid',
        'payment', 'usd', 2000, 2000, 'jenny@example.com', NULL, '{}'::jsonb,
        '[{"currency":"usd","name":"T-shirt","price":null,"quantity":1,"unit_amount":2000}]',
        NULL, true, %s - mod(i, 2500000), %s - mod(i, 2500000), %s - mod(i, 2500000)
    FROM generate_series(1, %s) AS i""",
    """INSERT INTO stripe_checkout_events SELECT 'evt_bulk' || i,
        'checkout.session.completed', 'cs_test_bulk' || i, %s - mod(i, 2500000)
    FROM generate_series(1, %s) AS i""",
    """INSERT INTO stripe_checkout_jobs (kind, job_key, subject, payload, attempt, lease_until,
        done_at, created_at)
    SELECT 'fulfil', 'cs_test_bulk' || i, 'cs_test_bulk' || i, '{}'::jsonb, 1, 0,
        %s - mod(i, 2500000), %s - mod(i, 2500000) FROM generate_series(1, %s) AS i""",
)


def _bulk_load(kind: str, store_url: str, rows: int) -> float:
    """Fill a fresh ledger with ``rows`` fulfilled orders, their events and done jobs (all
    within the retention, so pruning has nothing to do); returns the seconds it took."""
    from stripe_checkout_mw.ledger.store import open_store

    now = time.time()
    t0 = time.perf_counter()
    with open_store(store_url) as store:
        store.ensure_schema()
        if kind == "sqlite":
            conn = sqlite3.connect(store.path, isolation_level=None)  # type: ignore[attr-defined]
            try:
                conn.execute("BEGIN")
                conn.execute(_SQLITE_BULK[0], (rows, now, now, now))
                conn.execute(_SQLITE_BULK[1], (rows, now))
                conn.execute(_SQLITE_BULK[2], (rows, now, now))
                conn.execute("COMMIT")
                conn.execute("ANALYZE")
            finally:
                conn.close()
        else:
            import psycopg

            with psycopg.connect(store_url) as pg:
                pg.execute(_PG_BULK[0], (now, now, now, rows))
                pg.execute(_PG_BULK[1], (now, rows))
                pg.execute(_PG_BULK[2], (now, now, rows))
                pg.commit()
                pg.autocommit = True
                pg.execute("VACUUM ANALYZE")
    return time.perf_counter() - t0


def _large_measure(kind: str, empty_url: str, large_url: str, tmpdir: str,
                   sizes: Sizes) -> list[Row]:
    load = _bulk_load(kind, large_url, sizes.ledger_rows)
    n, rounds = sizes.webhook_events, sizes.webhook_rounds
    fulfilled: list[str] = []
    mws = {
        side: fully_configured(trivial_app, tmpdir, store=url, webhook_secret=_SECRET,
                               fulfill=lambda order: fulfilled.append(order.session_id))
        for side, url in (("empty", empty_url), ("large", large_url))
    }
    try:
        batches = {side: _paid_batches(mw, rounds + 1, n) for side, mw in mws.items()}

        def run(side: str, batch: list[tuple[bytes, str]]) -> float:
            t0 = time.perf_counter()
            for body, header in batch:
                _deliver(mws[side], body, header)
            return len(batch) / (time.perf_counter() - t0)

        for side in mws:
            run(side, batches[side][0])  # warm-up
        rates: dict[str, list[float]] = {"empty": [], "large": []}
        for r, order in rotations(["empty", "large"], rounds):
            for side in order:
                rates[side].append(run(side, batches[side][r + 1]))
        if len(fulfilled) != 2 * (rounds + 1) * n:
            raise RuntimeError(f"{len(fulfilled)} orders fulfilled")
    finally:
        for mw in mws.values():
            mw.close()
    ratios = [e / g for e, g in zip(rates["empty"], rates["large"])]
    label = "SQLite" if kind == "sqlite" else "PostgreSQL"
    stored = f"{sizes.ledger_rows:,}"
    return [
        Row("8", f"{label}: webhook path, empty store, events/s",
            fmt_rate(median(rates["empty"])), spread(rates["empty"], fmt_rate),
            note=f"{rounds} rounds x {n} events, alternating"),
        Row("8", f"{label}: webhook path, {stored} events + orders + jobs stored, events/s",
            fmt_rate(median(rates["large"])), spread(rates["large"], fmt_rate),
            note=f"bulk-loaded in {load:.1f} s"),
        Row("8", f"{label}: large store time / empty store time", fmt_ratio(median(ratios)),
            spread(ratios, fmt_ratio), "<= 1.2", judge(median(ratios) <= 1.2)),
    ]


def large_ledger(sizes: Sizes, tmpdir: str) -> list[Row]:
    """Section 8 (see the module docstring)."""
    rows = _large_measure("sqlite", f"sqlite:///{tmpdir}/empty.db",
                          f"sqlite:///{tmpdir}/large.db", tmpdir, sizes)
    url, why = pg_url()
    if url is None:
        names = ["webhook path, empty store, events/s",
                 f"webhook path, {sizes.ledger_rows:,} events + orders + jobs stored, events/s",
                 "large store time / empty store time"]
        return rows + [Row("8", f"PostgreSQL: {name}", "n/a", verdict="skipped", note=why)
                       for name in names]
    with _pg_schema(url) as empty_url, _pg_schema(url) as large_url:
        rows += _large_measure("postgres", empty_url, large_url, tmpdir, sizes)
    return rows


def webhooks(sizes: Sizes, tmpdir: str) -> list[Row]:
    """Section 6 (see the module docstring)."""
    path = os.path.join(tmpdir, "webhooks.db")
    rows = _measure("sqlite", f"sqlite:///{path}", path, tmpdir, sizes)
    url, why = pg_url()
    if url is None:
        names = ["webhook path, events/s", "floor (construct_event + INSERT + commit), events/s",
                 "path time / floor time", "path with an on(...) handler, time / floor time",
                 "duplicates, events/s"]
        return rows + [Row("6", f"PostgreSQL: {name}", "n/a", verdict="skipped", note=why)
                       for name in names]
    with _pg_schema(url) as schema_url:
        rows += _measure("postgres", schema_url, None, tmpdir, sizes)
    return rows
