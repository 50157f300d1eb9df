"""How the suite finds its PostgreSQL server: the documented default, or a skip that says how."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEFAULT_PG_URL, postgres_unavailable

ROOT = Path(__file__).resolve().parents[2]


def test_a_dead_address_gives_a_one_line_reason() -> None:
    reason = postgres_unavailable("postgresql://postgres@127.0.0.1:9/test", timeout=1)
    assert reason is not None and "\n" not in reason and "127.0.0.1" in reason


@pytest.mark.postgres
@pytest.mark.slow  # a pytest run of its own over the store suite
def test_the_postgres_tests_run_at_the_default_address_with_no_variable_set(
    tmp_path: Path,
) -> None:
    reason = postgres_unavailable(DEFAULT_PG_URL)
    if reason is not None:
        pytest.skip(f"no PostgreSQL at {DEFAULT_PG_URL}: {reason}")
    # The README's command on a clean machine: no STRIPE_* variable at all.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    answer = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         "--basetemp", str(tmp_path / "basetemp"), "tests/ledger/test_store.py", "-k", "postgres"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert answer.returncode == 0, answer.stdout + answer.stderr
    summary = answer.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary and "deselected" in summary

