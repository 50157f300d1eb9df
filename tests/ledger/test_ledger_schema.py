"""The ledger owns every table and statement: the package's SQL lives in ``ledger/`` only,
each table is declared once for both engines, and an older ledger is upgraded from the
declarations (missing tables and columns added)."""

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

# What marks a text as SQL: whole statements and clauses in any case, and the keywords a
# statement is built from, in capitals, so that a statement cut into pieces is caught too.
SQL_CLAUSES = re.compile(r"""
    \bselect\s+[\w.*,\s()]+?\s+from\b | \binsert\s+into\b | \bupdate\s+\w+\s+set\b
  | \bdelete\s+from\b | \bon\s+conflict\b | \bpragma\b | \bto_regclass\b | \bpg_advisory
  | \b(create|alter|drop)\s+(temp\w*\s+)?(table|index|unique\s+index|schema|view|trigger)\b
  | \bbegin\s+(immediate|exclusive|deferred|transaction)\b | \bsqlite_master\b
  | \binformation_schema\b | \btruncate\s+table\b | \bvacuum\b
""", re.IGNORECASE | re.VERBOSE)
SQL_KEYWORDS = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|FROM|WHERE|JOIN|RETURNING|VALUES|ORDER BY|GROUP BY|"
    r"LIMIT|FOR UPDATE|COMMIT|ROLLBACK|DISTINCT|COALESCE|EXISTS|NOT NULL|PRIMARY KEY)\b")
#: A request method alone, as the emulator's routes name them, is not SQL.
HTTP_METHODS = {"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"}
TABLE_NAME = re.compile(r"\bstripe_checkout_(" + "|".join(
    declared.name.removeprefix("stripe_checkout_") for declared in schema.TABLES) + r")\b")
#: What only the ledger may touch: a connection, a driver, the ledger's own read helper.
LEDGER_ONLY_ATTRIBUTES = {"dialect", "conn", "_read", "execute", "executemany", "executescript",
                          "fetchone", "fetchall", "rowcount", "cursor", "placeholders"}
DRIVERS = {"sqlite3", "psycopg", "psycopg_pool", "psycopg2", "sqlalchemy"}


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


def sql_outside_the_ledger(root: Path, ledger: Path) -> list[str]:
    """Every place under ``root`` but outside ``ledger`` that holds SQL or reaches past the
    ledger: each string (docstrings too) of every module, every other file's whole text,
    attribute names, and imports of a database driver."""
    found = []
    for path in _files(root):
        if path.is_relative_to(ledger):
            continue
        where = path.relative_to(root.parent)
        if path.suffix != ".py":
            text = path.read_bytes().decode(errors="replace")
            if SQL_CLAUSES.search(text) or TABLE_NAME.search(text):
                found.append(f"{where}: SQL in a data file")
            continue
        tree = ast.parse(path.read_text())
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            line = getattr(node, "lineno", 0)
            if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
                text = (node.value.decode(errors="replace") if isinstance(node.value, bytes)
                        else node.value)
                match = SQL_CLAUSES.search(text) or (
                    text.strip() not in HTTP_METHODS and SQL_KEYWORDS.search(text))
                if not match and id(node) not in docstrings:
                    match = TABLE_NAME.search(text)  # a table named outside prose
                if match:
                    found.append(f"{where}:{line}: {match.group(0)!r} in {text[:60]!r}")
            elif isinstance(node, ast.Attribute) and node.attr in LEDGER_ONLY_ATTRIBUTES:
                found.append(f"{where}:{line}: .{node.attr}")
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""])
                found += [f"{where}:{line}: imports {name}" for name in names
                          if name.split(".")[0] in DRIVERS]
    return found


def test_no_sql_outside_the_ledger_package() -> None:
    assert sql_outside_the_ledger(PACKAGE, LEDGER) == []


def test_the_sql_scan_finds_sql_wherever_it_is_put(tmp_path: Path) -> None:
    # The ledger's own modules, looked at as if they were outside it, are full of findings.
    assert len(sql_outside_the_ledger(PACKAGE, tmp_path)) > 50
    package = tmp_path / "pkg"
    (package / "ledger").mkdir(parents=True)
    (package / "ledger" / "ok.py").write_text('Q = "SELECT 1 FROM stripe_checkout_orders"\n')
    samples = {
        "whole.py": 'Q = "select session_id from t where x = ?"\n',
        "pieces.py": 'Q = "SELECT " + ", ".join(cols) + " FROM t"\n',
        "fstring.py": 'Q = f"UPDATE {table} SET a = 1"\n',
        "lower.py": 'Q = "insert into t (a) values (1)"\n',
        "table.py": 'NAME = "stripe_checkout_jobs"\n',
        "reach.py": "def f(store):\n    return store.dialect\n",
        "driver.py": "import sqlite3\n",
        "ddl.py": 'D = """create table if not exists t (a int)"""\n',
        "data.sql": "CREATE TABLE t (a int);\n",
    }
    for name, text in samples.items():
        (package / name).write_text(text)
    found = sql_outside_the_ledger(package, package / "ledger")
    assert {line.split(":")[0].split("/")[-1] for line in found} == set(samples)
    assert not any("ok.py" in line for line in found)


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
    assert len(names) == len(set(names)) == 8
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
