"""The invoices benchmark still runs: ``python -m benchmarks.invoices --smoke``.

Smoke mode uses tiny counts and judges nothing, so this asserts the rows, never a speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_invoices_benchmark_produces_every_row() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.invoices", "--smoke", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    rows = json.loads(done.stdout)
    assert [row["name"] for row in rows] == [
        "invoices(ref), a page of 10", "invoices(ref, starting_after=...)", "invoice(id)",
        "floor: raw sqlite3 SELECT of the page", "invoices(ref) / floor"]
    assert all(row["verdict"] == "-" for row in rows)
    assert all(row["data"]["median_us"] > 0 for row in rows[:4])
    assert rows[4]["data"]["ratio"] > 0
