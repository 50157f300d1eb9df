"""The emulator's layout stays small: no module over 400 lines, no function over 60.

The limits keep each concern of ``stripe_checkout_mw.testing`` (route table,
request decoding, object store, pages, controls...) in a part that can be read in
one sitting. A module or function that outgrows them is due for a split by
concern, not for a higher limit. Lengths are measured with :mod:`ast`, so a
function's length runs from its ``def`` (or first decorator) to its last line,
docstring and nested functions included.

It also keeps the emulator independent of the middleware it tests: from the rest
of the package it may import only ``stripe_checkout_mw.schema``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import stripe_checkout_mw.testing

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
ALLOWED_OUTSIDE = {"stripe_checkout_mw.schema"}

ROOT = Path(stripe_checkout_mw.testing.__file__).parent
MODULES = sorted(ROOT.rglob("*.py"))


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT.parent.parent))


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _length(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    assert node.end_lineno is not None
    return node.end_lineno - first + 1


def _package_of(path: Path) -> list[str]:
    """``["stripe_checkout_mw", "testing", ...]`` for the module's package."""
    return list(path.relative_to(ROOT.parent.parent).parent.parts)


def _imported(path: Path, tree: ast.AST) -> Iterator[str]:
    """The absolute names of the package's own modules the module imports."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                package = _package_of(path)
                parts = package[:len(package) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            if node.module is None or base == "stripe_checkout_mw":
                # ``from . import a, b`` imports modules a and b.
                yield from (f"{base}.{alias.name}" for alias in node.names)
            else:
                yield base


def test_the_limits_see_every_module() -> None:
    assert ROOT / "emulator.py" in MODULES
    assert ROOT / "api" / "state.py" in MODULES


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_module_is_over_the_line_limit(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, (
        f"{_name(path)} has {lines} lines; split it by concern "
        f"(limit {MAX_MODULE_LINES})")


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_function_is_over_the_line_limit(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    too_long = {f"{node.name} (line {node.lineno}): {_length(node)} lines"
                for node in _functions(tree) if _length(node) > MAX_FUNCTION_LINES}
    assert not too_long, (
        f"{_name(path)} has functions over {MAX_FUNCTION_LINES} lines: "
        f"{sorted(too_long)}")


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_the_emulator_imports_only_the_schema_from_the_middleware(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    outside = {
        name for name in _imported(path, tree)
        if name.startswith("stripe_checkout_mw")
        and not name.startswith("stripe_checkout_mw.testing")
        and name not in ALLOWED_OUTSIDE
    }
    assert not outside, f"{_name(path)} imports {sorted(outside)}"


def test_the_import_check_resolves_relative_imports() -> None:
    source = ("from ... import schema\nfrom .. import forms\nfrom .errors import ApiError\n"
              "from stripe_checkout_mw import store\n"
              "from stripe_checkout_mw.schema import Node\nimport stripe_checkout_mw.config\n")
    path = ROOT / "api" / "example.py"
    assert set(_imported(path, ast.parse(source))) == {
        "stripe_checkout_mw.schema",
        "stripe_checkout_mw.testing.forms",
        "stripe_checkout_mw.testing.api.errors",
        "stripe_checkout_mw.store",
        "stripe_checkout_mw.config",
    }
