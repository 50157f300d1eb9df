"""How the suite finds its PostgreSQL server: the documented default, or a skip that says how."""

from __future__ import annotations

import os
import shutil
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


@pytest.mark.slow  # a parallel pytest run of its own
@pytest.mark.parametrize("ci", [True, False], ids=["ci", "developer"])
def test_a_skip_in_a_parallel_worker_fails_the_run_only_in_ci(tmp_path: Path, ci: bool) -> None:
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_one_skip.py").write_text(
        "import pytest\n\n\ndef test_skips():\n    pytest.skip('absent here')\n\n\n"
        "def test_passes():\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "STRIPE_CHECKOUT_NO_SKIPS"}
    if ci:
        env["STRIPE_CHECKOUT_NO_SKIPS"] = "1"
    answer = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
         "--basetemp", str(tmp_path / "basetemp"), "test_one_skip.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert "1 passed, 1 skipped" in answer.stdout, answer.stdout + answer.stderr
    assert answer.returncode == (1 if ci else 0), answer.stdout + answer.stderr
    assert ("SKIPPED IN CI (counts as a failure): test_one_skip.py::test_skips"
            in answer.stdout) == ci


@pytest.mark.slow  # a parallel pytest run of its own
def test_loadgroup_keeps_a_group_on_one_worker(tmp_path: Path) -> None:
    """The README's ``--dist loadgroup`` builds the distributions, the benchmark smoke run,
    Chromium and the throw-away cluster once, on one worker, only while pytest-xdist and
    pytest agree on node ids (they did not at pytest 9.2: pytest-xdist#1386)."""
    (tmp_path / "test_grouped.py").write_text(
        "import os\n\nimport pytest\n\n\n@pytest.mark.xdist_group('one')\n"
        "@pytest.mark.parametrize('n', range(8))\ndef test_grouped(n):\n"
        "    with open(os.environ['WORKERS_SEEN'], 'a') as seen:\n"
        "        seen.write(os.environ['PYTEST_XDIST_WORKER'] + '\\n')\n\n\n"
        "@pytest.mark.parametrize('n', range(8))\ndef test_loose(n):\n    pass\n")
    seen = tmp_path / "seen.txt"
    answer = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "3",
         "--dist", "loadgroup", "--basetemp", str(tmp_path / "basetemp"),
         "test_grouped.py"],
        cwd=tmp_path, env={**os.environ, "WORKERS_SEEN": str(seen)}, capture_output=True,
        text=True, timeout=300)
    assert answer.returncode == 0, answer.stdout + answer.stderr
    workers = seen.read_text().split()
    assert len(workers) == 8 and len(set(workers)) == 1, workers


def test_ci_runs_the_readmes_test_command_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert command.startswith("python3 -m venv .venv") and "-m pytest -n auto " in command
    assert f"\n{command}\n" in readme
