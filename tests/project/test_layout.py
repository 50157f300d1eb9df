"""The suite's layout: tests mirror the package, and the long suites stay out of the quick loop.

Each folder under ``tests/`` names a part of ``stripe_checkout_mw`` (a subpackage or a
module), or is one of conftest's ``SUITE_FOLDERS``; no test file sits at the top, so a new
suite's place says what it tests.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from conftest import SUITE_FOLDERS, TESTS

PACKAGE = TESTS.parent / "stripe_checkout_mw"


def test_every_test_file_lives_in_a_folder() -> None:
    assert sorted(p.name for p in TESTS.glob("test_*.py")) == []
    assert list(TESTS.glob("*/test_*.py")) != []


def test_each_folder_names_a_package_part_or_a_suite() -> None:
    strays = []
    for folder in sorted(p for p in TESTS.rglob("*") if p.is_dir()):
        parts = folder.relative_to(TESTS).parts
        if "__pycache__" in parts or parts[0] in SUITE_FOLDERS:
            continue
        part = PACKAGE.joinpath(*parts)
        if not (part.is_dir() and (part / "__init__.py").is_file()) and not (
            part.with_suffix(".py").is_file()
        ):
            strays.append("/".join(parts))
    assert strays == [], f"no such package part: {strays}"


def test_no_test_module_imports_one_from_another_folder() -> None:
    # A test module's folder is on the path only when that folder is collected, so
    # ``pytest tests/cli`` alone would fail on a helper from tests/project: share those
    # through tests/conftest.py, importable from every folder.
    strays = []
    for path in sorted(TESTS.rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            strays += [f"{path.relative_to(TESTS)}: {name}" for name in names
                       if name.startswith("test_")
                       and not (path.parent / f"{name.split('.')[0]}.py").is_file()]
    assert strays == [], "share helpers through tests/conftest.py instead"


def collected(*args: str) -> list[str]:
    """The test ids ``pytest --collect-only`` selects with ``args``."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=TESTS.parent, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode in (0, 5), done.stdout + done.stderr  # 5: nothing selected
    return [line for line in done.stdout.splitlines() if "::" in line]


@pytest.mark.slow  # two pytest runs of their own
def test_the_quick_loop_leaves_out_every_long_suite_and_each_has_its_marker() -> None:
    long_suites = {name: marks for name, marks in SUITE_FOLDERS.items() if marks}
    quick = collected("-m", "not slow")
    assert quick and not [test for test in quick if test.split("/")[1] in long_suites]
    named = {mark for marks in long_suites.values() for mark in marks if mark != "slow"}
    unmarked = collected("-m", f"not ({' or '.join(sorted(named))})",
                         *(f"tests/{name}" for name in long_suites))
    assert unmarked == []
