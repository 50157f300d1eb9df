"""Each table of the ledger is declared once for both engines, and an older ledger is
upgraded from the declarations (missing tables and columns added)."""

from __future__ import annotations

import ast
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import stripe_checkout_mw
from stripe_checkout_mw.ledger import schema
from stripe_checkout_mw.ledger import store as store_module
from stripe_checkout_mw.ledger.orders import Order
from stripe_checkout_mw.ledger.store import NewJob, SQLiteStore, open_store

PACKAGE = Path(stripe_checkout_mw.__file__).parent
LEDGER = PACKAGE / "ledger"

def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring nodes of a module, its classes and functions."""
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr)}


def _code_strings(path: Path) -> Iterator[str]:
    """The strings of a module's code, not its docstrings (which may name a statement)."""
    tree = ast.parse(path.read_text())
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docstrings):
            yield node.value


def test_each_create_table_is_written_once() -> None:
    written = {str(path.relative_to(PACKAGE)): sum(
        len(re.findall(r"CREATE\s+TABLE", text, re.IGNORECASE)) for text in _code_strings(path))
        for path in _files(PACKAGE) if path.suffix == ".py"}
    assert {path: count for path, count in written.items() if count} == {"ledger/schema.py": 1}
    names = [declared.name for declared in schema.TABLES]
    assert len(names) == len(set(names)) == 7
    for types in (schema.SQLITE_TYPES, schema.POSTGRES_TYPES):
        creates = [s for s in schema.create_statements(types) if s.startswith("CREATE TABLE")]
        assert [s.split()[5] for s in creates] == names


def _columns(opened: Any, store_url: str) -> dict[str, list[tuple[str, str]]]:
    """Each table's columns and their types as the database reports them."""
    if isinstance(opened, SQLiteStore):
        with closing(sqlite3.connect(opened.path)) as conn:
            return {declared.name: [(str(row[1]), str(row[2])) for row in conn.execute(
                f"PRAGMA table_info({declared.name})")] for declared in schema.TABLES}
    import psycopg

    with psycopg.connect(store_url, autocommit=True) as conn:
        return {declared.name: [(str(name), str(kind)) for name, kind in conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE "
            "table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
            (declared.name,))] for declared in schema.TABLES}


def test_the_tables_made_are_the_declared_ones_on_both_engines(store_url: str) -> None:
    with open_store(store_url) as opened:
        opened.ensure_schema()
        columns = _columns(opened, store_url)
    sqlite = store_url.startswith("sqlite:")
    # The engines' own type names: what the tables had before they were declared once.
    engine_type = ({"text": "TEXT", "integer": "INTEGER", "bigint": "INTEGER", "real": "REAL",
                    "boolean": "INTEGER", "json": "TEXT", "serial": "INTEGER"} if sqlite else
                   {"text": "text", "integer": "integer", "bigint": "bigint",
                    "real": "double precision", "boolean": "boolean", "json": "jsonb",
                    "serial": "bigint"})
    assert columns == {declared.name: [(column.name, engine_type[column.type])
                                       for column in declared.columns]
                       for declared in schema.TABLES}


def _set_version(opened: Any, store_url: str, version: int, drop: str | None = None) -> None:
    if isinstance(opened, SQLiteStore):
        with closing(sqlite3.connect(opened.path)) as conn, conn:
            if drop:
                conn.execute(f"DROP TABLE {drop}")
            conn.execute("UPDATE stripe_checkout_meta SET value = ?", (str(version),))
        return
    import psycopg

    with psycopg.connect(store_url, autocommit=True) as conn:
        if drop:
            conn.execute(f"DROP TABLE {drop}")
        conn.execute("UPDATE stripe_checkout_meta SET value = %s", (str(version),))


def test_a_ledger_of_version_three_is_upgraded_and_keeps_its_orders(store_url: str) -> None:
    with open_store(store_url) as opened:
        opened.record_open(Order(session_id="cs_test_kept", status="open"))
        _set_version(opened, store_url, 3, drop="stripe_checkout_payments")
    with open_store(store_url) as upgraded:
        assert upgraded.stored_version() == "3"
        order = upgraded.get("cs_test_kept")
        assert order is not None and order.status == "open"
        assert upgraded.stored_version() == str(schema.SCHEMA_VERSION)
        assert "stripe_checkout_payments" in _columns(upgraded, store_url)
        assert _columns(upgraded, store_url)["stripe_checkout_payments"]


def test_adding_a_column_is_one_declaration(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_store(store_url) as opened, opened.transaction() as tx:
        tx.enqueue(NewJob("fulfil", "cs_test_a", "cs_test_a"))
    # The one edit a new column takes: its declaration (and the version bump beside it).
    jobs = schema.table("stripe_checkout_jobs")
    grown = replace(jobs, columns=(*jobs.columns, schema.Column("next_attempt_at", "real")))
    monkeypatch.setattr(schema, "TABLES", tuple(
        grown if declared is jobs else declared for declared in schema.TABLES))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)
    with open_store(store_url) as upgraded:
        assert [job.key for job in upgraded.pending_jobs("cs_test_a")] == ["cs_test_a"]
        assert upgraded.stored_version() == str(schema.SCHEMA_VERSION + 1)
        assert _columns(upgraded, store_url)["stripe_checkout_jobs"][-1][0] == "next_attempt_at"
