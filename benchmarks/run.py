"""Run the benchmark suite and print one table (see BENCHMARKS.md for a full run).

    python -m benchmarks                # the full suite, a few minutes
    python -m benchmarks --smoke        # every section with tiny counts, no goals judged
    python -m benchmarks --only 1,4     # some sections
    python -m benchmarks --json out.json

Sections: 1 pass-through in-process, 2 pass-through under waitress, 3 streamed 100 MB
upload/download memory, 4 checkout against the emulator, 5 connections and price
look-ups, 6 webhooks on SQLite and PostgreSQL, 7 anonymous load and a hanging Stripe,
8 webhooks with 1,000,000 events, orders and jobs already stored against an empty store.
Progress goes to stderr, the machine description and the table to stdout. The exit
status is 1 when a section failed to run (a missed goal is a result, not a failure).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict
from importlib import metadata
from typing import Callable

if __package__ in (None, ""):  # python benchmarks/run.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

from benchmarks.common import Row, Sizes, pg_url

Section = Callable[[Sizes, str], list[Row]]
SECTIONS = ("1", "2", "3", "4", "5", "6", "7", "8")
_TITLES = {
    "1": "pass-through, in-process",
    "2": "pass-through under waitress",
    "3": "streamed upload/download memory",
    "4": "checkout against the emulator",
    "5": "connections and price look-ups",
    "6": "webhooks",
    "7": "anonymous load and a hanging Stripe",
    "8": "webhooks on a large ledger",
}


def _section(number: str) -> Section:
    """The section's function, imported only when it runs (each imports what it needs)."""
    module, function = {
        "1": ("passthrough", "in_process"),
        "2": ("passthrough", "under_server"),
        "3": ("passthrough", "streaming"),
        "4": ("checkout", "checkout_speed"),
        "5": ("checkout", "connections_and_lookups"),
        "6": ("webhooks", "webhooks"),
        "7": ("abuse", "abuse"),
        "8": ("webhooks", "large_ledger"),
    }[number]
    section: Section = getattr(importlib.import_module(f"benchmarks.{module}"), function)
    return section


def machine() -> list[str]:
    """The lines that say what the numbers were measured on."""
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    lines = [
        f"cores: {os.cpu_count()} ({platform.machine()}, {platform.system()} "
        f"{platform.release()})",
        f"python: {platform.python_implementation()} {platform.python_version()}",
        "packages: " + ", ".join(
            f"{dist} {version(dist)}"
            for dist in ("stripe-checkout-mw", "stripe", "werkzeug", "waitress", "flask",
                         "requests", "urllib3", "psycopg")
        ),
        f"sqlite: {sqlite3.sqlite_version}",
    ]
    wrk = shutil.which("wrk")
    if wrk:
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout
        lines.append(f"wrk: {out.split()[1] if len(out.split()) > 1 else 'present'}")
    else:
        lines.append("wrk: not installed (section 2 uses the Python load generator)")
    url, why = pg_url()
    if url is None:
        lines.append(f"postgresql: none ({why})")
    else:
        import psycopg

        with psycopg.connect(url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        lines.append(f"postgresql: {row[0] if row else '?'} (STRIPE_CHECKOUT_TEST_PG or default)")
    return lines


def render(rows: Sequence[Row], smoke: bool) -> str:
    """The results as a Markdown table."""
    header = ["#", "benchmark", "median", "spread", "goal", "verdict", "note"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        verdict = row.verdict
        if smoke and verdict in ("met", "missed"):
            verdict = "-"
        cells = [row.section, row.name, row.value, row.spread, row.goal, verdict, row.note]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--smoke", action="store_true",
                        help="tiny counts, every row, no goals judged (CI)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help="comma-separated section numbers (default: all)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    sizes = Sizes.tiny() if args.smoke else Sizes.full()

    # Sections 2 and 4 start subprocesses with `-m benchmarks....`: they need the repo root.
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rows: list[Row] = []
    failed = False
    started = time.perf_counter()
    for number in chosen:
        print(f"[{time.perf_counter() - started:6.1f} s] section {number}: "
              f"{_TITLES[number]} ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix=f"scmw-bench{number}-") as tmpdir:
            try:
                rows += _section(number)(sizes, tmpdir)
            except Exception as exc:
                failed = True
                traceback.print_exc()
                rows.append(Row(number, f"section {number} ({_TITLES[number]})", "error",
                                verdict="error", note=f"{type(exc).__name__}: {exc}"[:200]))
    elapsed = time.perf_counter() - started

    mode = "smoke (tiny counts, goals not judged)" if args.smoke else "full"
    print(f"# stripe-checkout-mw benchmarks: {mode}, {elapsed:.0f} s")
    print()
    for line in machine():
        print(f"- {line}")
    print()
    print(render(rows, args.smoke))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"smoke": args.smoke, "seconds": elapsed,
                       "rows": [asdict(r) for r in rows]}, out, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
