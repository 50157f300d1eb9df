"""The entitlement benchmark still runs: ``python -m benchmarks.entitlement --smoke``.

Smoke mode uses tiny counts and judges nothing, so this asserts the rows, never a speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_entitlement_benchmark_produces_every_row() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.entitlement", "--smoke", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    rows = json.loads(done.stdout)
    assert [row["name"] for row in rows] == [
        "is_active(ref), a subscriber", "is_active(ref, price=lookup key)",
        "is_active(ref), no subscription", "has_feature(ref, f), from the plan",
        "has_feature(ref, f), from a grant", "has_feature(ref, f), neither",
        "floor: raw sqlite3 SELECT", "is_active(ref) / floor", "has_feature(ref, f) / floor"]
    assert all(row["verdict"] == "-" for row in rows)
    assert all(row["data"]["median_us"] > 0 for row in rows[:7])
