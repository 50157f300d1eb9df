"""What SQLite and PostgreSQL do differently, for the one SQL store in :mod:`.store`.

A dialect is a few attributes (the placeholder, the row-lock suffix) and the methods
that really differ: how a connection is made, kept and checked, how a transaction begins and
commits (durably or not), how JSON goes in and out, and which type names the tables declared
in :mod:`.schema` take. The SQL itself is the ledger's.

Both dialects close a connection that raised a database error instead of reusing it, and
turn the error into :class:`StoreError` after logging it once with the redacted store and the
error class.
"""

from __future__ import annotations

import abc
import contextlib
import json
import logging
import os
import select
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from ..observe.metrics import NO_METRICS, Recorder
from . import schema

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

__all__ = ["Dialect", "PostgresDialect", "SQLiteDialect", "StoreError", "redact_url"]

logger = logging.getLogger("stripe_checkout_mw")

#: Seconds a PostgreSQL caller waits on the pool before asking the server directly why not.
POOL_GRACE = 0.25
#: Seconds a PostgreSQL connection failure is answered from memory, without a new attempt.
FAILURE_MEMORY = 1.0
#: Seconds a read may trust that an idle SQLite connection's file is still the one at its
#: path; a write transaction always looks (and its commit looks again).
READ_FILE_CHECK = 1.0

# Serialises CREATE TABLE IF NOT EXISTS across hosts starting at once; any constant will do.
_PG_SCHEMA_LOCK = 0x5C3C_0001


class StoreError(RuntimeError):
    """The store cannot be used right now (the database failed, its file was replaced, its
    schema is newer than this code, or the store was closed)."""


class Dialect(abc.ABC):
    """The engine-specific half of the store."""

    #: The driver's parameter placeholder.
    param: str
    #: Appended to a SELECT that must lock the rows it reads until the transaction ends.
    lock_suffix: str
    #: The redacted URL, safe to log and show.
    url: str
    #: Where errors are said to come from in logs: host, port and database, or the file.
    log_name: str
    #: Whether a non-durable commit survives the database crashing (not the machine losing
    #: power): see the store's ``crash_safe`` transactions.
    lazy_commit_survives_crash: bool
    #: Counts the failures (``ledger_errors``); the middleware gives it its recorder.
    metrics: Recorder = NO_METRICS

    def placeholders(self, sql: str) -> str:
        """``sql`` written with ``?`` placeholders, in this driver's style."""
        return sql if self.param == "?" else sql.replace("?", self.param)

    @abc.abstractmethod
    def connection(self) -> contextlib.AbstractContextManager[Any]:
        """A healthy connection lent to the caller for the ``with`` block."""

    @abc.abstractmethod
    def begin(self, conn: Any, durable: bool) -> None: ...

    @abc.abstractmethod
    def commit(self, conn: Any, durable: bool) -> None: ...

    @abc.abstractmethod
    def rollback(self, conn: Any) -> None:
        """Roll back, best effort: a connection that cannot is closed by :meth:`connection`."""

    @abc.abstractmethod
    def create_schema(self, version: int) -> None:
        """Create the declared tables, or add what an older ledger lacks, and record
        ``version``; refuses a ledger of a newer version."""

    @abc.abstractmethod
    def stored_version(self) -> str | None:
        """The schema version the ledger records, read without creating anything: ``None``
        when there is no ledger yet (no file, or no tables), ``""`` when it has tables but
        no version.

        :raises StoreError: the database cannot be read (the driver's error class and
            message, which never hold a password).
        """

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def to_json(self, value: Any) -> Any: ...

    @abc.abstractmethod
    def from_json(self, value: Any) -> Any: ...

    @abc.abstractmethod
    def execute(self, conn: Any, sql: str, params: Sequence[Any]) -> None: ...

    @abc.abstractmethod
    def rowcount(self, conn: Any, sql: str, params: Sequence[Any]) -> int: ...

    @abc.abstractmethod
    def fetchone(self, conn: Any, sql: str, params: Sequence[Any]) -> Sequence[Any] | None: ...

    @abc.abstractmethod
    def fetchall(self, conn: Any, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]: ...

    def read(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        """The rows of one read outside a transaction, on a connection lent for it."""
        with self.connection() as conn:
            return self.fetchall(conn, sql, params)

    def rowcount_then_fetchall(
        self, conn: Any, write: tuple[str, Sequence[Any]],
        reads: Sequence[tuple[str, Sequence[Any]]],
    ) -> tuple[int, list[list[Sequence[Any]]]]:
        """The rows ``write`` changed and the rows each of ``reads`` returns, run in that
        order (in one round trip where the driver can send them all before waiting)."""
        return (self.rowcount(conn, *write),
                [self.fetchall(conn, sql, params) for sql, params in reads])

    @abc.abstractmethod
    def inserted_key(self, conn: Any, sql: str, params: Sequence[Any],
                     key: str) -> Callable[[], int | None]:
        """Run an ``INSERT ... ON CONFLICT DO NOTHING`` of one row; the function returned
        gives the new row's integer ``key`` column, or ``None`` if nothing was inserted. Call
        it once the transaction has committed: on PostgreSQL the answer comes with the
        commit, so the insert costs no round trip of its own."""

    def failed(self, exc: BaseException, action: str = "a store operation") -> StoreError:
        """Log a database error once, with the store and the error class, and wrap it."""
        detail = _error_detail(exc)
        self.metrics.count("ledger_errors")
        logger.error("store %s: %s failed: %s%s", self.log_name, action, type(exc).__name__,
                     f" ({detail})" if detail else "")
        error = StoreError(f"store {self.log_name}: {type(exc).__name__}")
        error.__cause__ = exc
        return error


def _error_detail(exc: BaseException) -> str:
    """What may be logged of a driver error besides its class: SQLite's fixed messages and
    PostgreSQL's SQLSTATE, never a server message (it can quote row values)."""
    if isinstance(exc, sqlite3.Error):
        return str(exc)[:120]
    sqlstate = getattr(exc, "sqlstate", None)
    return f"SQLSTATE {sqlstate}" if isinstance(sqlstate, str) else ""


def _check_version(row: Sequence[Any] | None, version: int) -> bool:
    """Whether the stored version is older than ``version`` (an upgrade is due); raises when
    it is newer than this code understands."""
    if row is None:
        return True
    stored = int(row[0])
    if stored > version:
        raise StoreError(
            f"store: the ledger's schema version {stored} is newer than this version of "
            f"stripe-checkout-mw understands ({version}); upgrade stripe-checkout-mw"
        )
    return stored < version


_VERSION_SELECT = "SELECT value FROM stripe_checkout_meta WHERE key = 'schema_version'"
_VERSION_UPSERT = ("INSERT INTO stripe_checkout_meta (key, value) VALUES ('schema_version', ?) "
                   "ON CONFLICT (key) DO UPDATE SET value = excluded.value")


def _build_schema(run: Callable[[str, Sequence[Any]], Any],
                  read_version: Callable[[], Sequence[Any] | None],
                  columns_of: Callable[[str], set[str]], types: Mapping[str, str],
                  placeholders: Callable[[str], str], version: int) -> None:
    """Create what is missing of the declared schema and record ``version``, in the caller's
    transaction: every table and index, then (when the stored version is older) every
    column added since, then the version itself."""
    for statement in schema.create_statements(types):
        run(statement, ())
    if not _check_version(read_version(), version):
        return
    for declared in schema.TABLES:
        present = columns_of(declared.name)
        for column in declared.columns:
            if column.name not in present:
                run(declared.add_column(column, types), ())
    run(placeholders(_VERSION_UPSERT), (str(version),))


# --- SQLite ---------------------------------------------------------------------------------

class _SQLiteConnection:
    """A connection, the identity (device, inode) of the file it opened, and whether it holds
    the process's write lock."""

    __slots__ = ("checked_at", "identity", "locked", "raw")

    def __init__(self, raw: sqlite3.Connection, identity: tuple[int, int]) -> None:
        self.raw = raw
        self.identity = identity
        self.locked = False
        #: When (monotonic) the file at the path was last found to be this one.
        self.checked_at = time.monotonic()


class SQLiteDialect(Dialect):
    """SQLite in WAL mode: ``BEGIN IMMEDIATE`` takes the one write lock, so no row locks.

    Connections are kept (closing the last one checkpoints and deletes the WAL, which costs
    more than the work) at most ``max_idle`` at a time, each lent to one thread at a time and
    dropped after a fork. At most ``max_open`` are open at once, lent or idle: SQLite keeps
    the file of a closed connection open while another connection to the same file exists,
    so only a cap on the total bounds the process's open files; a caller finding them all
    lent waits for one (up to ``busy_timeout``). Each new connection creates or upgrades the
    schema, so a file that was deleted and re-created starts with its tables.

    A full disk heals without a restart: after a write failed with ``SQLITE_FULL``, the next
    write transactions first checkpoint the WAL into the database and truncate it (``PRAGMA
    wal_checkpoint(TRUNCATE)``), until one succeeds; the space the WAL held is given back and
    the writes refused meanwhile (answered 500, so Stripe redelivers) are recorded then.

    Before every commit the file the connection has open is compared with the file at the
    path: a deleted, replaced or moved database refuses to commit (an acknowledgement into an
    unlinked file would be lost on restart). A connection lent again is compared too, for a
    read at most every :data:`READ_FILE_CHECK` seconds: the reads that gate every members'
    request (``is_active``, ``has_feature``) cost a few microseconds, and a ``stat`` would be
    a quarter of them; such a read may answer from the replaced file for that second.
    """

    param = "?"
    lock_suffix = ""
    # In WAL mode a synchronous=NORMAL commit is in the WAL file (the OS has it) when it
    # returns; only the OS or the power failing before the next sync loses it.
    lazy_commit_survives_crash = True

    def __init__(self, path: str, *, busy_timeout: float = 30.0, max_idle: int = 8,
                 max_open: int = 16) -> None:
        if not 1 <= max_idle <= max_open:
            raise ValueError("store: SQLite needs 1 <= max_idle <= max_open")
        self.path = os.path.abspath(path)
        self.url = "sqlite:///" + self.path
        self.log_name = self.url
        self.busy_timeout = busy_timeout
        self.max_idle = max_idle
        self.max_open = max_open
        self._version = 0
        # The pool's lock, taken directly on the hot path (a Condition's own ``with`` is a
        # Python-level call), and the condition on it for callers waiting for a connection.
        self._mutex = threading.Lock()
        self._lock = threading.Condition(self._mutex)
        self._waiting = 0  # callers waiting in _acquire: only they need a notify
        self._idle: list[_SQLiteConnection] = []
        self._open = 0  # connections open now, lent or idle (this process's)
        # Set by a write that failed with SQLITE_FULL: checkpoint before the next ones.
        self._disk_was_full = False
        self._pid = os.getpid()
        self._closed = False
        # Writers of this process queue here rather than in SQLite's busy handler, which
        # sleeps a millisecond or more each time it finds the write lock taken.
        self._write_lock = threading.Lock()

    # -- connections ------------------------------------------------------------------

    @contextlib.contextmanager
    def connection(self) -> Iterator[_SQLiteConnection]:
        conn = self._acquire(0.0)
        try:
            yield conn
        except BaseException as exc:
            raise self._after_error(conn, exc)  # noqa: B904  # failed() makes exc the cause
        self._release(conn)

    def read(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        # connection() and fetchall() in one, without a generator: this is the members'
        # path, where each microsecond is a fifth of the query.
        conn = self._acquire(READ_FILE_CHECK)
        try:
            rows: list[Sequence[Any]] = conn.raw.execute(sql, params).fetchall()
        except BaseException as exc:
            raise self._after_error(conn, exc)  # noqa: B904  # failed() makes exc the cause
        self._release(conn)
        return rows

    def _after_error(self, conn: _SQLiteConnection, exc: BaseException) -> BaseException:
        """Drop or keep a lent connection after ``exc``; what the caller raises: a SQLite
        error as the store's (logged once, ``exc`` its cause), anything else as it is."""
        if isinstance(exc, sqlite3.Error):
            if (getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                    or "disk is full" in str(exc)):
                self._disk_was_full = True
            self._discard(conn)
            return self.failed(exc)
        if isinstance(exc, StoreError) or conn.raw.in_transaction:
            self._discard(conn)
        else:
            self._release(conn)
        return exc

    def _acquire(self, trust_for: float) -> _SQLiteConnection:
        """A connection to the file now at the path; an idle one checked within
        ``trust_for`` seconds is lent without looking again."""
        now = time.monotonic()
        deadline = now + self.busy_timeout
        with self._mutex:
            while True:
                if self._closed:
                    raise StoreError("store: this store has been closed")
                if self._pid != os.getpid():
                    self._idle, self._pid, self._open = [], os.getpid(), 0
                    self._write_lock = threading.Lock()  # a parent's thread may have held it
                if self._idle or self._open < self.max_open:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self.failed(StoreError(f"all {self.max_open} connections in use"),
                                      "getting a connection")
                self._waiting += 1
                try:
                    self._lock.wait(left)
                finally:
                    self._waiting -= 1
                now = time.monotonic()  # the trust below counts from a look, not the wait
            idle = self._idle.pop() if self._idle else None
            if idle is None:
                self._open += 1  # this slot is the new connection's
        if idle is not None:
            # A write (trust_for 0) always looks, whatever another thread's look just found.
            if (trust_for and now - idle.checked_at < trust_for) or self._same_file(idle):
                return idle
            logger.warning("store %s: the database file was replaced or removed; reopening",
                           self.log_name)
            self._discard(idle, keep_slot=True)
        try:
            return self._connect()
        except BaseException as exc:
            self._free_slot()
            if isinstance(exc, sqlite3.Error):
                raise self.failed(exc, "opening the database") from exc
            raise

    def _release(self, conn: _SQLiteConnection) -> None:
        with self._mutex:
            if (not self._closed and self._pid == os.getpid()
                    and len(self._idle) < self.max_idle and not conn.raw.in_transaction):
                self._idle.append(conn)
                if self._waiting:
                    self._lock.notify()
                return
        self._discard(conn)

    def _discard(self, conn: _SQLiteConnection, *, keep_slot: bool = False) -> None:
        """Close a connection; its slot goes back unless the caller reuses it."""
        with contextlib.suppress(sqlite3.Error):
            conn.raw.close()
        if not keep_slot:
            self._free_slot()

    def _free_slot(self) -> None:
        with self._lock:
            self._open = max(0, self._open - 1)
            self._lock.notify()

    def _connect(self) -> _SQLiteConnection:
        # isolation_level=None: transactions are begun explicitly, as BEGIN IMMEDIATE, so a
        # writer takes the write lock before it reads anything it will act on. A connection
        # is lent to one thread at a time, so it may move between threads.
        raw = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                              check_same_thread=False)
        try:
            self._enable_wal(raw)
            raw.execute("PRAGMA synchronous=FULL")
            self._create_tables(raw)
            # A file that cannot be written (read-only, immutable) opens read-only, and such a
            # connection would stay read-only after the file is writable again: refuse it.
            raw.execute("BEGIN IMMEDIATE")
            raw.execute("ROLLBACK")
            st = os.stat(self.path)
        except BaseException:
            raw.close()
            raise
        return _SQLiteConnection(raw, (st.st_dev, st.st_ino))

    def _same_file(self, conn: _SQLiteConnection) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        if (st.st_dev, st.st_ino) != conn.identity:
            return False
        conn.checked_at = time.monotonic()
        return True

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # WAL lets readers (the status page) proceed while a webhook holds the write lock;
        # the mode is stored in the file. Switching modes does not wait on the busy handler,
        # hence the bounded retry while another process is using the file.
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                    return
                mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
                continue
            if mode != "wal":
                raise StoreError(
                    f"store: SQLite cannot use WAL mode for {self.path} (journal mode {mode!r}); "
                    "put the file on a local disk, not a network file system"
                )

    def _create_tables(self, conn: sqlite3.Connection) -> None:
        if not self._version:
            return  # create_schema() has not said which version yet
        row = None
        with contextlib.suppress(sqlite3.OperationalError):  # no meta table yet
            row = conn.execute(_VERSION_SELECT).fetchone()
        if not _check_version(row, self._version):
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            _build_schema(
                conn.execute, lambda: conn.execute(_VERSION_SELECT).fetchone(),
                lambda table: {str(info[1]) for info in
                               conn.execute(f"PRAGMA table_info({table})").fetchall()},
                schema.SQLITE_TYPES, self.placeholders, self._version)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def create_schema(self, version: int) -> None:
        self._version = version
        with self.connection():
            pass  # a new connection creates the tables; an idle one already has them

    def stored_version(self) -> str | None:
        if not os.path.exists(self.path):
            return None
        try:
            # Read-only, so that asking never creates the file or a table.
            conn = sqlite3.connect(f"file:{quote(self.path)}?mode=ro", uri=True,
                                   timeout=min(self.busy_timeout, 5.0))
            try:
                row = conn.execute(_VERSION_SELECT).fetchone()
            finally:
                conn.close()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc
        return "" if row is None else str(row[0])

    def close(self) -> None:
        with self._lock:
            idle, self._idle, self._closed = self._idle, [], True
            self._lock.notify_all()
        for conn in idle:
            self._discard(conn)

    # -- transactions -----------------------------------------------------------------

    def begin(self, conn: _SQLiteConnection, durable: bool) -> None:
        if not self._write_lock.acquire(timeout=self.busy_timeout):
            raise StoreError(f"store {self.log_name}: no write lock after {self.busy_timeout} s")
        conn.locked = True
        try:
            if self._disk_was_full:
                self._give_back_wal(conn)
            if not durable:
                # In WAL mode NORMAL skips the fsync at commit; a later FULL commit or a
                # checkpoint makes it durable. Restored at commit or rollback.
                conn.raw.execute("PRAGMA synchronous=NORMAL")
            conn.raw.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._unlock(conn)
            raise

    def commit(self, conn: _SQLiteConnection, durable: bool) -> None:
        try:
            if not self._same_file(conn):
                logger.error(
                    "store %s: the database file %s is no longer the file this connection has "
                    "open (deleted, replaced or moved); the transaction was not committed",
                    self.log_name, self.path,
                )
                self.rollback(conn)
                raise StoreError(f"store {self.log_name}: the database file was replaced")
            conn.raw.execute("COMMIT")
            if not durable:
                conn.raw.execute("PRAGMA synchronous=FULL")
        finally:
            self._unlock(conn)

    def rollback(self, conn: _SQLiteConnection) -> None:
        try:
            if conn.raw.in_transaction:
                conn.raw.execute("ROLLBACK")
            conn.raw.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error:
            pass  # the connection is closed by connection(): it raised
        finally:
            self._unlock(conn)

    def _give_back_wal(self, conn: _SQLiteConnection) -> None:
        """After a full disk: copy the WAL into the database and truncate it, so the space it
        held is free for the writes to come. Under the process's write lock; a checkpoint
        that cannot finish yet (another process reading, the disk still full) is tried again
        by the next write."""
        try:
            busy, _, _ = conn.raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error:
            return  # still full: this write will fail and say so, the next one tries again
        if not busy:
            self._disk_was_full = False
            logger.warning("store %s: the disk had been full; the WAL was checkpointed and "
                           "truncated, writes go on", self.log_name)

    def _unlock(self, conn: _SQLiteConnection) -> None:
        if conn.locked:
            conn.locked = False
            self._write_lock.release()

    # -- statements -------------------------------------------------------------------

    def to_json(self, value: Any) -> Any:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)

    def from_json(self, value: Any) -> Any:
        return json.loads(value)

    def execute(self, conn: _SQLiteConnection, sql: str, params: Sequence[Any]) -> None:
        conn.raw.execute(sql, params)

    def rowcount(self, conn: _SQLiteConnection, sql: str, params: Sequence[Any]) -> int:
        return int(conn.raw.execute(sql, params).rowcount)

    def fetchone(
        self, conn: _SQLiteConnection, sql: str, params: Sequence[Any]
    ) -> Sequence[Any] | None:
        row: Sequence[Any] | None = conn.raw.execute(sql, params).fetchone()
        return row

    def fetchall(
        self, conn: _SQLiteConnection, sql: str, params: Sequence[Any]
    ) -> list[Sequence[Any]]:
        return list(conn.raw.execute(sql, params).fetchall())

    def inserted_key(self, conn: _SQLiteConnection, sql: str, params: Sequence[Any],
                     key: str) -> Callable[[], int | None]:
        # ``key`` is the table's INTEGER PRIMARY KEY, so the row's rowid.
        cursor = conn.raw.execute(sql, params)
        number = cursor.lastrowid if cursor.rowcount == 1 else None
        return lambda: number


# --- PostgreSQL -----------------------------------------------------------------------------

@dataclass
class _PgTransaction:
    """A PostgreSQL transaction under way: its pipeline (as entered, and the object) and the
    cursor shared by the statements whose results are not read."""

    entered: contextlib.AbstractContextManager[Any]
    pipeline: psycopg.Pipeline
    cursor: psycopg.Cursor[Any]


class PostgresDialect(Dialect):
    """PostgreSQL through psycopg 3 and ``psycopg_pool``: row locks with ``FOR UPDATE``.

    The pool is opened on first use (one per process: a forked child opens its own); each
    connection is checked before it is lent: one the server has closed (a restart, an idle
    timeout) is dropped and replaced, so the first request after a restart succeeds. Waiting for a
    connection is bounded by ``connect_timeout``. A non-durable commit is
    ``SET LOCAL synchronous_commit = off``: it does not wait for the WAL flush.

    Fails fast and says why: when the pool has no connection to lend within
    :data:`POOL_GRACE` seconds, one connection is attempted directly (bounded by
    ``connect_timeout``, 3 s by default) to learn the cause, which is logged once (until a
    connection succeeds again) as ``connection refused``, ``timeout``, ``authentication
    failed``, ``unknown host`` or ``role or database does not exist``; for
    :data:`FAILURE_MEMORY` seconds after that, callers get the same :class:`StoreError` at
    once instead of each waiting. With the server down, a request answers 503 in well under
    a second rather than after the pool's full wait.
    """

    param = "%s"
    lock_suffix = " FOR UPDATE"
    # synchronous_commit = off leaves the commit record in the server's WAL buffers until
    # the WAL writer writes it (up to 3 x wal_writer_delay): a server crash loses it.
    lazy_commit_survives_crash = False

    def __init__(self, url: str, *, max_size: int = 8, connect_timeout: int = 3) -> None:
        from psycopg.types.json import Jsonb

        self._jsonb = Jsonb  # imported here: psycopg is an optional dependency
        self._dsn = url
        self.url = redact_url(url)
        self.log_name = _pg_log_name(url)
        self.max_size = max_size
        query = dict(parse_qsl(urlsplit(url).query))
        try:
            self.connect_timeout = float(query.get("connect_timeout", connect_timeout))
        except ValueError:
            self.connect_timeout = float(connect_timeout)
        self._lock = threading.Lock()
        self._pool: psycopg_pool.ConnectionPool[Any] | None = None
        self._inherited: list[Any] = []
        # Per connection in a transaction: its pipeline (see begin()).
        self._transactions: dict[int, _PgTransaction] = {}
        self._pid = os.getpid()
        self._closed = False
        # The last connection failure: its cause, and until when it is answered from memory.
        self._cause = ""
        self._failing_until = 0.0
        # Until when the server is known to accept connections (the pool is only busy).
        self._reachable_until = 0.0
        #: Seconds a caller may wait for a busy pool to lend a connection.
        self.pool_wait = max(self.connect_timeout, 10.0)

    def _get_pool(self) -> psycopg_pool.ConnectionPool[Any]:
        with self._lock:
            if self._closed:
                raise StoreError("store: this store has been closed")
            if self._pool is None or self._pid != os.getpid():
                import psycopg_pool

                if self._pool is not None:
                    # A forked child: the parent's pool and connections are the parent's.
                    # Kept referenced, so that collecting them never closes (and so ends
                    # at the server) a connection the parent is still using.
                    self._inherited.append(self._pool)

                kwargs: dict[str, Any] = {"autocommit": True}
                if "connect_timeout" not in self._dsn:
                    kwargs["connect_timeout"] = int(self.connect_timeout)
                self._pool = psycopg_pool.ConnectionPool(
                    self._dsn, kwargs=kwargs, min_size=1, max_size=self.max_size,
                    open=False, timeout=self.pool_wait,
                    name="stripe-checkout-ledger", num_workers=2,
                )
                self._pool.open(wait=False)
                self._pid = os.getpid()
                _quiet_pool_log()
            return self._pool

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        import psycopg

        pool = self._get_pool()
        conn = self._checked_connection(pool)
        try:
            yield conn
        except psycopg.Error as exc:
            conn.close()  # never lent again: the pool drops closed connections
            pool.putconn(conn)
            raise self.failed(exc) from exc
        except BaseException:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.close()
            pool.putconn(conn)
            raise
        pool.putconn(conn)

    def _checked_connection(
        self, pool: psycopg_pool.ConnectionPool[Any]
    ) -> psycopg.Connection[Any]:
        """A connection from the pool that the server has not closed.

        The check is done here rather than with the pool's ``check`` callback, whose retries
        back off for a second or more per dead connection: after a restart every idle
        connection is dead, and the first request would time out going through them.
        """
        import psycopg
        import psycopg_pool

        if time.monotonic() < self._failing_until:
            raise StoreError(f"store {self.log_name}: cannot connect: {self._cause}")
        deadline = time.monotonic() + self.pool_wait
        grace = True
        while True:
            wait = deadline - time.monotonic()
            try:
                conn: psycopg.Connection[Any] = pool.getconn(
                    timeout=max(0.05, min(wait, POOL_GRACE) if grace else wait))
            except psycopg_pool.PoolTimeout as exc:
                if not grace or wait <= POOL_GRACE:
                    raise self.failed(exc, "getting a connection") from exc
                grace = False
                self._diagnose()  # raises when the server cannot be reached
                continue  # it can: the pool is only busy, wait for it
            except psycopg.Error as exc:
                raise self.failed(exc, "getting a connection") from exc
            if _pg_alive(conn):
                if self._cause:
                    logger.warning("store %s: connected again", self.log_name)
                    self._cause = ""
                return conn
            conn.close()  # the pool drops a closed connection and opens a new one
            pool.putconn(conn)

    def _diagnose(self) -> None:
        """Connect once, directly, to learn why the pool has nothing to lend; raise
        :class:`StoreError` naming the cause (logged once) if the server cannot be reached."""
        import psycopg

        if time.monotonic() < self._reachable_until:
            return  # asked a moment ago: a busy pool, not a missing server
        timeout: dict[str, Any] = {} if "connect_timeout" in self._dsn else {
            "connect_timeout": max(2, int(self.connect_timeout))}
        try:
            psycopg.connect(self._dsn, autocommit=True, **timeout).close()
            self._reachable_until = time.monotonic() + FAILURE_MEMORY
        except psycopg.Error as exc:
            cause = _connect_cause(exc)
            if cause != self._cause:
                logger.error("store %s: cannot connect: %s", self.log_name, cause)
                self._cause = cause
            self._failing_until = time.monotonic() + FAILURE_MEMORY
            raise StoreError(f"store {self.log_name}: cannot connect: {cause}") from None

    def create_schema(self, version: int) -> None:
        with self.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_SCHEMA_LOCK,))
            _build_schema(
                conn.execute, lambda: conn.execute(_VERSION_SELECT).fetchone(),
                lambda table: {str(row[0]) for row in conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = %s", (table,))},
                schema.POSTGRES_TYPES, self.placeholders, version)

    def stored_version(self) -> str | None:
        import psycopg

        timeout: dict[str, Any] = {} if "connect_timeout" in self._dsn else {
            "connect_timeout": int(self.connect_timeout)}
        try:
            opened = psycopg.connect(self._dsn, **timeout)
        except psycopg.Error as exc:
            raise StoreError(f"store {self.log_name}: cannot connect: {_connect_cause(exc)}") \
                from None
        try:
            # A connection of its own, read-only, so that asking never creates anything.
            with opened as conn:
                conn.read_only = True
                table = conn.execute("SELECT to_regclass('stripe_checkout_meta')").fetchone()
                row = None
                if table is not None and table[0] is not None:
                    row = conn.execute(_VERSION_SELECT).fetchone()
                conn.rollback()
        except psycopg.Error as exc:
            # The driver's message may hold a host or a user name; a password it quotes (from
            # a malformed URL) is hidden as the redacted URL hides it.
            raise StoreError(f"{type(exc).__name__}: {_hide_password(str(exc), self._dsn)}") \
                from exc
        if table is None or table[0] is None:
            return None
        return "" if row is None else str(row[0])

    def close(self) -> None:
        with self._lock:
            pool, self._pool, self._closed = self._pool, None, True
        if pool is not None and self._pid == os.getpid():
            pool.close()

    def begin(self, conn: psycopg.Connection[Any], durable: bool) -> None:
        # A transaction runs in psycopg's pipeline mode: statements whose results are not
        # read (the BEGIN, updates, inserts) are sent without waiting and travel with the
        # next one that is read, or with the COMMIT, so a transaction costs a round trip per
        # result it needs, not one per statement; and each statement is still a
        # server-side prepared one (psycopg prepares what a connection runs often). The
        # statements whose results are not read share one cursor (errors still surface at
        # the next result read, or at the commit).
        entered = conn.pipeline()
        held = _PgTransaction(entered, entered.__enter__(), conn.cursor())
        self._transactions[id(conn)] = held
        held.cursor.execute("BEGIN")
        if not durable:
            held.cursor.execute("SET LOCAL synchronous_commit = off")

    def commit(self, conn: psycopg.Connection[Any], durable: bool) -> None:
        held = self._transactions.pop(id(conn))
        held.cursor.execute("COMMIT")
        held.entered.__exit__(None, None, None)  # sends what is queued; raises what failed

    def rollback(self, conn: psycopg.Connection[Any]) -> None:
        import psycopg

        held = self._transactions.pop(id(conn), None)
        if held is None:
            return
        with contextlib.suppress(psycopg.Error):
            held.cursor.execute("ROLLBACK")
        with contextlib.suppress(psycopg.Error):
            held.entered.__exit__(None, None, None)  # leaves pipeline mode even if it raises
        # Had either failed, the connection is closed by connection(): it raised.

    def _result(self, conn: psycopg.Connection[Any], sql: str,
                params: Sequence[Any]) -> psycopg.Cursor[Any]:
        """Run ``sql`` and wait for its result (and those of the statements queued before)."""
        cursor = conn.execute(sql, params)
        held = self._transactions.get(id(conn))
        if held is not None:
            held.pipeline.sync()
        return cursor

    def to_json(self, value: Any) -> Any:
        return self._jsonb(value)

    def from_json(self, value: Any) -> Any:
        return value

    def execute(self, conn: psycopg.Connection[Any], sql: str, params: Sequence[Any]) -> None:
        held = self._transactions.get(id(conn))
        if held is None:
            conn.execute(sql, params)
        else:
            held.cursor.execute(sql, params)  # queued, sent with the next result read

    def rowcount(self, conn: psycopg.Connection[Any], sql: str, params: Sequence[Any]) -> int:
        return self._result(conn, sql, params).rowcount

    def fetchone(
        self, conn: psycopg.Connection[Any], sql: str, params: Sequence[Any]
    ) -> Sequence[Any] | None:
        row: Sequence[Any] | None = self._result(conn, sql, params).fetchone()
        return row

    def fetchall(
        self, conn: psycopg.Connection[Any], sql: str, params: Sequence[Any]
    ) -> list[Sequence[Any]]:
        return list(self._result(conn, sql, params).fetchall())

    def rowcount_then_fetchall(
        self, conn: psycopg.Connection[Any], write: tuple[str, Sequence[Any]],
        reads: Sequence[tuple[str, Sequence[Any]]],
    ) -> tuple[int, list[list[Sequence[Any]]]]:
        # Each statement its own cursor, to hold its result; the last one waits for all.
        statements = [write, *reads]
        cursors = [conn.execute(*statement) for statement in statements[:-1]]
        cursors.append(self._result(conn, *statements[-1]))
        return cursors[0].rowcount, [list(cursor.fetchall()) for cursor in cursors[1:]]

    def inserted_key(self, conn: psycopg.Connection[Any], sql: str, params: Sequence[Any],
                     key: str) -> Callable[[], int | None]:
        cursor = conn.execute(f"{sql} RETURNING {key}", params)  # its own cursor: read later

        def inserted() -> int | None:
            row = cursor.fetchone()
            return None if row is None else int(row[0])

        return inserted


class _OwnPoolFailures(logging.Filter):
    """Drops the pool's own warning per failed connection attempt of the ledger's pool: the
    ledger logs the cause once itself (see :class:`PostgresDialect`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "'stripe-checkout-ledger'" not in str(record.msg) + str(record.args)


_POOL_FILTER = _OwnPoolFailures()


def _quiet_pool_log() -> None:
    pool_logger = logging.getLogger("psycopg.pool")
    if _POOL_FILTER not in pool_logger.filters:
        pool_logger.addFilter(_POOL_FILTER)


def _connect_cause(exc: BaseException) -> str:
    """Why a connection attempt failed, in the few words an operator acts on; from libpq's
    message, whose other parts (host names, user names) are not repeated."""
    text = str(exc).lower()
    for needle, cause in (
        ("refused", "connection refused"),
        ("timeout", "timeout"),
        ("timed out", "timeout"),
        ("authentication failed", "authentication failed"),
        ("no pg_hba.conf entry", "authentication failed"),
        ("password", "authentication failed"),
        ("translate host name", "unknown host"),
        ("name or service not known", "unknown host"),
        ("does not exist", "role or database does not exist"),
        ("too many", "too many connections"),
        ("shutting down", "server shutting down"),
        ("starting up", "server starting up"),
    ):
        if needle in text:
            return cause
    return type(exc).__name__


def _pg_alive(conn: psycopg.Connection[Any]) -> bool:
    """Whether an idle connection is still open at the server's end.

    An idle connection (no LISTEN here) receives nothing from the server unless the server is
    ending it: a shutdown or restart sends an error and closes the stream. So a connection
    whose socket is readable while it sits in the pool is dead; the check is a ``select``
    with no wait, a system call rather than a round trip.
    """
    if conn.closed or conn.broken:
        return False
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    return not readable


def _pg_log_name(url: str) -> str:
    """``postgresql://host:port/dbname``: where a PostgreSQL store is, without user or
    password."""
    try:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        host = parts.hostname or query.get("host") or "localhost"
        port = parts.port or query.get("port") or 5432
        database = parts.path.lstrip("/") or query.get("dbname") or ""
    except ValueError:
        return url.partition("://")[0] + "://***"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}:{port}/{database}"


def _hide_password(text: str, url: str) -> str:
    """``text`` with the password of ``url`` (in its user part or a ``password=`` parameter)
    replaced by ``***``."""
    try:
        parts = urlsplit(url)
        secrets = [parts.password or ""]
        secrets += [value for key, value in parse_qsl(parts.query) if key.lower() == "password"]
    except ValueError:
        return "(the driver's message is not shown: the URL cannot be parsed)"
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def redact_url(url: str) -> str:
    """The URL without its password (in the user part or a ``password=`` parameter), for logs
    and reprs."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            host = parts.hostname or ""
            netloc = f"[{host}]" if ":" in host else host
            if parts.username:
                netloc = f"{parts.username}:***@{netloc}"
            if parts.port:
                netloc = f"{netloc}:{parts.port}"
        query = "&".join(
            "password=***" if pair.split("=", 1)[0].lower() == "password" else pair
            for pair in parts.query.split("&")
        )
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return url.partition("://")[0] + "://***"
