"""``python -m benchmarks.entitlement``: what ``mw.subscriptions.is_active(ref)`` and
``has_feature(ref, feature)`` cost.

An app asks them on every members' request, so they must answer from the ledger, not from
Stripe. This fills a SQLite ledger with ``--users`` users (one subscription each, every
tenth one canceled; every hundredth user also has a grant), then times, in interleaved
rounds, per call:

- ``is_active(ref)`` for a subscriber; ``is_active(ref, price=lookup_key)``; ``is_active``
  for a user with no subscription;
- ``has_feature(ref, feature)`` for a subscriber whose plan gives it, for a user who has it
  by a grant only, and for a user with neither;
- the floor: the subscriptions' indexed ``SELECT`` on a raw ``sqlite3`` connection kept open.

It prints one row per figure (median and spread over the rounds) with the goals: under
20 us per call, and ``has_feature`` within 3x of the floor. ``--smoke`` runs tiny counts
and judges nothing. ``--json`` prints the rows as JSON instead of a table.
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

from stripe_checkout_mw.billing.customers import CustomerDirectory
from stripe_checkout_mw.billing.subscriptions import (
    Subscription,
    SubscriptionItem,
    SubscriptionLedger,
)
from stripe_checkout_mw.ledger.store import open_store

from .common import Row, judge, median, rotations, spread

GOAL_US = 20.0
GOAL_RATIO = 3.0
SECTION = "9"
FEATURES = {"plan-0": ["reports"], "plan-1": ["reports", "api"], "plan-2": ["api"]}


def fill(ledger: SubscriptionLedger, users: int) -> None:
    """``users`` users, each with one subscription (every tenth canceled), in batches."""
    store, dialect = ledger.store, ledger.store.dialect
    now = time.time()
    sql = dialect.placeholders(
        "INSERT INTO stripe_checkout_subscriptions (subscription_id, stripe_customer, "
        "customer_ref, status, record, prices, revision, fetched_at, created, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?)")
    batch = 1000
    for start in range(0, users, batch):
        with store.transaction(durable=False) as tx:
            for n in range(start, min(users, start + batch)):
                status = "canceled" if n % 10 == 9 else "active"
                sub = Subscription(
                    id=f"sub_bench{n:08d}", customer_ref=f"user-{n}",
                    stripe_customer=f"cus_bench{n:08d}", status=status,
                    items=(SubscriptionItem(f"price_{n % 3}", f"plan-{n % 3}", 1,
                                            int(now) + 86400),),
                    current_period_end=int(now) + 86400, cancel_at_period_end=False,
                    cancel_at=None, canceled_at=None, trial_end=None,
                    latest_invoice_status="paid", updated_at=now)
                dialect.execute(tx.conn, sql, (
                    sub.id, sub.stripe_customer, sub.customer_ref, status,
                    dialect.to_json(sub.to_dict()), dialect.to_json(sub.price_names()), now,
                    now, now))
            for n in range(start, min(users, start + batch)):
                if n % 100 == 7:
                    grant = dialect.placeholders(
                        "INSERT INTO stripe_checkout_grants (customer_ref, feature, "
                        "expires_at, note, granted_at) VALUES (?, ?, ?, ?, ?)")
                    dialect.execute(tx.conn, grant, (f"user-{n}", "support", now + 86400,
                                                     None, now))


def per_call_us(func: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        func()
    return (time.perf_counter() - started) / calls * 1e6


def measure(users: int, rounds: int, calls: int, smoke: bool) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.db"
        store = open_store(f"sqlite:///{path}")
        try:
            ledger = SubscriptionLedger(store, CustomerDirectory(store), features=FEATURES)
            fill(ledger, users)
            raw = sqlite3.connect(path, isolation_level=None)
            floor_sql = ("SELECT status, record FROM stripe_checkout_subscriptions "
                         "WHERE customer_ref = ?")
            member, lapsed, comped = "user-4", "nobody", "user-7"
            assert ledger.is_active(member) and ledger.is_active(member, price="plan-1")
            assert not ledger.is_active("user-9") and not ledger.is_active(lapsed)
            assert ledger.has_feature(member, "api") and ledger.has_feature(comped, "support")
            assert not ledger.has_feature(lapsed, "api")
            variants: dict[str, Callable[[], object]] = {
                "is_active(ref), a subscriber": lambda: ledger.is_active(member),
                "is_active(ref, price=lookup key)": lambda: ledger.is_active(
                    member, price="plan-1"),
                "is_active(ref), no subscription": lambda: ledger.is_active(lapsed),
                "has_feature(ref, f), from the plan": lambda: ledger.has_feature(
                    member, "api"),
                "has_feature(ref, f), from a grant": lambda: ledger.has_feature(
                    comped, "support"),
                "has_feature(ref, f), neither": lambda: ledger.has_feature(lapsed, "api"),
                "floor: raw sqlite3 SELECT": lambda: raw.execute(
                    floor_sql, (member,)).fetchall(),
            }
            figures: dict[str, list[float]] = {name: [] for name in variants}
            for _, order in rotations(list(variants), rounds):
                for name in order:
                    figures[name].append(per_call_us(variants[name], calls))
            raw.close()
        finally:
            store.close()
    rows = []
    note = f"SQLite, {users:,} users; {rounds} rounds x {calls:,} calls"
    for name, values in figures.items():
        value = median(values)
        is_floor = name.startswith("floor")
        rows.append(Row(
            SECTION, name, f"{value:.1f} us", spread(values, lambda v: f"{v:.1f} us"),
            "" if is_floor else f"< {GOAL_US:.0f} us",
            "-" if smoke else ("info" if is_floor else judge(value < GOAL_US)),
            note if name.startswith("is_active(ref), a") else "",
            {"median_us": value, "values_us": values}))
    floor = median(figures["floor: raw sqlite3 SELECT"])
    member_cost = median(figures["is_active(ref), a subscriber"])
    rows.append(Row(SECTION, "is_active(ref) / floor", f"{member_cost / floor:.2f}x",
                    verdict="-" if smoke else "info"))
    feature_cost = median(figures["has_feature(ref, f), from the plan"])
    ratio = feature_cost / floor
    rows.append(Row(SECTION, "has_feature(ref, f) / floor", f"{ratio:.2f}x",
                    goal=f"< {GOAL_RATIO:.0f}x",
                    verdict="-" if smoke else judge(ratio < GOAL_RATIO)))
    return rows


def print_table(rows: Sequence[Row]) -> None:
    print("| # | benchmark | median | spread | goal | verdict | note |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row.section} | {row.name} | {row.value} | {row.spread} | {row.goal} | "
              f"{row.verdict} | {row.note} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.entitlement",
                                     description=__doc__.split("\n")[0] if __doc__ else "")
    parser.add_argument("--smoke", action="store_true", help="tiny counts; judge nothing")
    parser.add_argument("--users", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    users = args.users or (500 if args.smoke else 100_000)
    rounds, calls = (2, 200) if args.smoke else (15, 20_000)
    rows = measure(users, rounds, calls, args.smoke)
    if args.json:
        payload: list[dict[str, Any]] = [asdict(row) for row in rows]
        print(json.dumps(payload))
    else:
        print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
