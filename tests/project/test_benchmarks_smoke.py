"""The benchmark suite still runs: ``python -m benchmarks --smoke`` produces every row.

Smoke mode uses tiny counts and judges no goal, so this asserts the table's shape, never a
speed (timings on shared machines are noise at these counts). It runs the suite in a
subprocess, exactly as documented, bounded well under a minute.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

#: The smoke run takes most of a minute of one core: out of the quick loop, and on one
#: worker (``--dist loadgroup``), which runs it once for every test here.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("benchmarks_smoke")]

ROOT = Path(__file__).resolve().parents[2]
#: A bound against a hung run, not a speed goal: every section at tiny counts takes about a
#: minute on a quiet 2-core machine, and several times that while other suites share it.
SMOKE_TIMEOUT = 300

#: One substring per row the table must have; a new benchmark adds its row here.
EXPECTED_ROWS = [
    ("1", "in-process: bare app, per call"),
    ("1", "in-process: CheckoutMiddleware (fully configured), per call"),
    ("1", "in-process: werkzeug DispatcherMiddleware (3 mounts), per call"),
    ("1", "in-process: middleware added per request"),
    ("1", "in-process: middleware / bare time"),
    ("1", "in-process: dispatcher added per request"),
    ("1", "in-process: dispatcher / bare time"),
    ("1", "in-process: middleware added / dispatcher added"),
    ("2", "waitress: bare app"),
    ("2", "waitress: wrapped app"),
    ("2", "waitress: wrapped / bare requests/s"),
    ("2", "waitress: server CPU per request, bare"),
    ("2", "waitress: bare / wrapped CPU per request"),
    ("2", "waitress: ratio predicted from section 1"),
    ("3", "upload, in-process: traced peak growth"),
    ("3", "download, in-process: traced peak growth"),
    ("3", "upload, waitress, bare app: server peak RSS growth"),
    ("3", "upload, waitress, wrapped: server peak RSS growth"),
    ("3", "download, waitress, bare app: server peak RSS growth"),
    ("3", "download, waitress, wrapped: server peak RSS growth"),
    ("3", "download, waitress, wrapped, outbuf_high_watermark 1 MiB: server peak RSS growth"),
    ("4", "(a) middleware, fully configured: sequential latency"),
    ("4", "(a') middleware, no ledger: sequential latency"),
    ("4", "(b) Flask route, Stripe-sample style: sequential latency"),
    ("4", "(c) bare StripeClient create: sequential latency"),
    ("4", "(a) middleware, fully configured: 8 concurrent clients"),
    ("4", "(a') middleware, no ledger: 8 concurrent clients"),
    ("4", "(b) Flask route, Stripe-sample style: 8 concurrent clients"),
    ("4", "(c) bare StripeClient create: 8 concurrent clients"),
    ("4", "own cost per checkout, (a) - (c)"),
    ("4", "own cost per checkout without the ledger, (a') - (c)"),
    ("4", "latency (a) / (b)"),
    ("4", "throughput (a) / (b)"),
    ("4", "latency (a') / (b), both without a ledger"),
    ("4", "throughput (a') / (b)"),
    ("5", "TCP connections, 10 sequential checkouts"),
    ("5", "TCP connections, 10 checkouts on 8 threads"),
    ("5", "StripeLookupKeys look-ups, 10 checkouts, 3 keys, ttl 300 s"),
    ("5", "StripeLookupKeys look-ups, 10 checkouts, ttl 0.05 s"),
    ("6", "SQLite: webhook path, events/s"),
    ("6", "SQLite: floor (construct_event + INSERT + commit), events/s"),
    ("6", "SQLite: path time / floor time"),
    ("6", "SQLite: path with an on(...) handler, time / floor time"),
    ("6", "SQLite: duplicates, events/s"),
    ("6", "PostgreSQL: webhook path, events/s"),
    ("6", "PostgreSQL: floor (construct_event + INSERT + commit), events/s"),
    ("6", "PostgreSQL: path time / floor time"),
    ("6", "PostgreSQL: path with an on(...) handler, time / floor time"),
    ("6", "PostgreSQL: duplicates, events/s"),
    ("7", "anonymous look-ups (10 random keys each): Stripe calls per 1,000 requests"),
    ("7", "status path hammered: Stripe retrieves"),
    ("7", "Stripe hanging, 8 server threads: pass-through p99 latency"),
    ("7", "Stripe hanging, 8 server threads: webhook p99 latency"),
    ("7", "Stripe hanging, 8 server threads: checkouts answered 503 at once"),
    *[("7", f"healthy Stripe at 300 ms, 8 threads (ceiling 6): {load}")
      for load in ("bursts of 8 ", "bursts of 16 ", "steady 5 ", "steady 10 ")],
    *[("7", f"Stripe hanging, {threads} threads (ceiling {ceiling}): {probe}")
      for threads, ceiling in ((4, 3), (8, 6))
      for probe in ("webhook p99", "status p99", "app GET p99", "pass-through POST p99",
                    "calls that reached Stripe")],
    ("7", "one user, 30 billing portal POSTs: Stripe portal creates"),
    ("7", "fulfill failing, 200 anonymous status GETs: fulfill calls"),
    ("8", "SQLite: webhook path, empty store, events/s"),
    ("8", "SQLite: webhook path, 2,000 events + orders + jobs stored, events/s"),
    ("8", "SQLite: large store time / empty store time"),
    ("8", "PostgreSQL: webhook path, empty store, events/s"),
    ("8", "PostgreSQL: webhook path, 2,000 events + orders + jobs stored, events/s"),
    ("8", "PostgreSQL: large store time / empty store time"),
]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], str]:
    out = tmp_path_factory.mktemp("bench") / "rows.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return json.loads(out.read_text()), result.stdout


def test_every_row_is_produced(smoke_run: tuple[dict[str, object], str]) -> None:
    data, _ = smoke_run
    rows = data["rows"]
    assert isinstance(rows, list)
    names = [(row["section"], row["name"]) for row in rows]
    missing = [
        expected for expected in EXPECTED_ROWS
        if not any(s == expected[0] and expected[1] in n for s, n in names)
    ]
    assert not missing, f"rows missing from the table: {missing}"
    assert len(rows) == len(EXPECTED_ROWS), f"unexpected rows: {names}"
    assert not [row for row in rows if row["verdict"] == "error"]
    assert data["smoke"] is True


def test_table_printed_without_goal_verdicts(smoke_run: tuple[dict[str, object], str]) -> None:
    _, stdout = smoke_run
    assert "| # | benchmark | median | spread | goal | verdict | note |" in stdout
    assert "cores:" in stdout and "python:" in stdout and "packages:" in stdout
    table = [line for line in stdout.splitlines() if line.startswith("| ")][1:]
    assert len(table) == len(EXPECTED_ROWS)
    # Smoke counts are too small to judge a goal: no row may claim one was met or missed.
    assert not [line for line in table if "| met |" in line or "| missed |" in line]


@pytest.mark.parametrize("target", ["ledger", "webhook-sqlite"])
def test_the_profiler_runs(target: str) -> None:
    # python -m benchmarks.profile is how BENCHMARKS.md says to look into a missed goal.
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.profile", target, "-n", "10"],
        cwd=ROOT, capture_output=True, text=True, timeout=SMOKE_TIMEOUT,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "median" in result.stdout and "tottime" in result.stdout
