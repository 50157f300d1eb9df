"""``python -m benchmarks.invoices``: what ``mw.billing.invoices(ref)`` costs.

A billing-history page asks it on every view, so it must answer from the ledger, not from
Stripe, and cost about what the query under it costs. This fills a SQLite ledger with
``--users`` users (one Stripe Customer each) and ``--per-user`` invoices each (1,000,000 in
all by default), then times, in interleaved rounds, per call:

- ``invoices(ref)``: a user's first page (all ten invoices), decoded into ``Invoice`` objects;
- ``invoices(ref, starting_after=...)``: the page after the user's third invoice;
- ``invoice(id)``: one invoice;
- the floor: the first page's join ``SELECT`` on a raw ``sqlite3`` connection kept open,
  rows fetched as tuples.

It prints one row per figure (median and spread over the rounds) and the ratio of the first
page to the floor, with the goal: within 3x. ``--smoke`` runs tiny counts and judges
nothing. ``--json`` prints the rows as JSON instead of a table.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from stripe_checkout_mw.billing.invoices import Invoice, InvoiceLedger
from stripe_checkout_mw.ledger.invoices import COLUMNS, InvoiceRows
from stripe_checkout_mw.ledger.store import open_store

from .common import Row, judge, median, rotations, spread

GOAL_RATIO = 3.0
SECTION = "10"
START = 1_700_000_000
MONTH = 2_592_000


def invoice_of(user: int, n: int) -> Invoice:
    """The ``n``-th monthly invoice of ``user``, as the ledger stores one."""
    created = START + n * MONTH + user
    return Invoice(
        id=f"in_bench{user:07d}{n:03d}", number=f"B{user:07d}-{n + 1:04d}", status="paid",
        billing_reason="subscription_create" if n == 0 else "subscription_cycle",
        amount_due=1500, amount_paid=1500, amount_remaining=0, total=1500, tax=0,
        discounts=0, currency="usd", period_start=created, period_end=created + MONTH,
        hosted_invoice_url=f"https://invoice.stripe.com/i/acct_bench/in_bench{user:07d}{n:03d}",
        invoice_pdf=f"https://pay.stripe.com/invoice/acct_bench/in_bench{user:07d}{n:03d}/pdf",
        paid_at=created + 5, subscription=f"sub_bench{user:07d}",
        stripe_customer=f"cus_bench{user:07d}", customer_ref=None, created=created,
        attempt_count=1, next_payment_attempt=None, updated_at=float(created))


def fill(ledger: InvoiceLedger, users: int, per_user: int) -> None:
    """The customers and their invoices (the ledger's own insert), in batches of a
    thousand users."""
    store, dialect = ledger.store, ledger.store.dialect
    customer_sql = dialect.placeholders(
        "INSERT INTO stripe_checkout_customers (stripe_customer, customer_ref, created_at) "
        "VALUES (?, ?, ?)")
    rows = InvoiceRows(store)
    batch = 1000
    for start in range(0, users, batch):
        with store.transaction(durable=False) as tx:
            for user in range(start, min(users, start + batch)):
                dialect.execute(tx.conn, customer_sql,
                                (f"cus_bench{user:07d}", f"user-{user}", float(START)))
                for n in range(per_user):
                    invoice = invoice_of(user, n)
                    rows.insert(tx, invoice.to_row(float(invoice.created)))


def per_call_us(func: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        func()
    return (time.perf_counter() - started) / calls * 1e6


def measure(users: int, per_user: int, rounds: int, calls: int, smoke: bool) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.db"
        store = open_store(f"sqlite:///{path}")
        try:
            ledger = InvoiceLedger(store)
            filled = time.perf_counter()
            fill(ledger, users, per_user)
            filled = time.perf_counter() - filled
            raw = sqlite3.connect(path, isolation_level=None)
            columns = ", ".join(f"i.{name}" for name in COLUMNS)
            floor_sql = (
                f"SELECT {columns}, c.customer_ref FROM stripe_checkout_invoices i "
                "JOIN stripe_checkout_customers c ON c.stripe_customer = i.stripe_customer "
                "WHERE c.customer_ref = ? ORDER BY i.created DESC, i.invoice_id DESC LIMIT ?")
            user = users // 2
            ref, third = f"user-{user}", invoice_of(user, per_user - 3).id
            page = ledger.invoices(ref, limit=per_user)
            assert [i.id for i in page] == [invoice_of(user, n).id
                                            for n in reversed(range(per_user))]
            assert len(raw.execute(floor_sql, (ref, per_user)).fetchall()) == per_user
            variants: dict[str, Callable[[], object]] = {
                f"invoices(ref), a page of {per_user}": lambda: ledger.invoices(
                    ref, limit=per_user),
                "invoices(ref, starting_after=...)": lambda: ledger.invoices(
                    ref, limit=per_user, starting_after=third),
                "invoice(id)": lambda: ledger.invoice(third),
                "floor: raw sqlite3 SELECT of the page": lambda: raw.execute(
                    floor_sql, (ref, per_user)).fetchall(),
            }
            figures: dict[str, list[float]] = {name: [] for name in variants}
            for _, order in rotations(list(variants), rounds):
                for name in order:
                    figures[name].append(per_call_us(variants[name], calls))
            raw.close()
        finally:
            store.close()
    rows = []
    note = (f"SQLite, {users:,} users, {users * per_user:,} invoices (filled in "
            f"{filled:.0f} s); {rounds} rounds x {calls:,} calls")
    for name, values in figures.items():
        value = median(values)
        rows.append(Row(
            SECTION, name, f"{value:.1f} us", spread(values, lambda v: f"{v:.1f} us"),
            "", "-" if smoke else "info", note if name.startswith("invoices(ref), a") else "",
            {"median_us": value, "values_us": values}))
    floor = median(figures["floor: raw sqlite3 SELECT of the page"])
    page_cost = median(figures[f"invoices(ref), a page of {per_user}"])
    ratio = page_cost / floor
    rows.append(Row(SECTION, "invoices(ref) / floor", f"{ratio:.2f}x",
                    goal=f"<= {GOAL_RATIO:.0f}x",
                    verdict="-" if smoke else judge(ratio <= GOAL_RATIO),
                    data={"ratio": ratio}))
    return rows


def print_table(rows: Sequence[Row]) -> None:
    print("| # | benchmark | median | spread | goal | verdict | note |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row.section} | {row.name} | {row.value} | {row.spread} | {row.goal} | "
              f"{row.verdict} | {row.note} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.invoices",
                                     description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--smoke", action="store_true", help="tiny counts; judge nothing")
    parser.add_argument("--users", type=int, default=None)
    parser.add_argument("--per-user", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    users = args.users or (300 if args.smoke else 100_000)
    rounds, calls = (2, 100) if args.smoke else (15, 5_000)
    rows = measure(users, args.per_user, rounds, calls, args.smoke)
    if args.json:
        payload: list[dict[str, Any]] = [asdict(row) for row in rows]
        print(json.dumps(payload))
    else:
        print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
