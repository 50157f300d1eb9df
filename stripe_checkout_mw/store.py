"""The order ledger and the processed-event log.

One store holds both: a row per Checkout Session this shop created (:class:`Order`) and a row
per webhook event it has handled. Keeping them in one database is what makes fulfilment exactly
once: the webhook claims the event id, moves the order and runs ``fulfill`` in one transaction,
so either all of it is committed or none of it is, and a redelivery finds either a processed
event (and does nothing) or nothing (and does it all).

Pick a store with a URL::

    store = open_store("sqlite:///var/lib/shop/orders.db")    # one host, several processes
    store = open_store("postgresql://shop@db.internal/shop")  # several hosts

``open_store(None)`` reads ``STRIPE_CHECKOUT_STORE`` and otherwise uses
``sqlite:///stripe-checkout-orders.db``: the file ``stripe-checkout-orders.db`` in the current
directory at the time the store is opened (the path is made absolute then, so a later ``chdir``
does not move it). An in-memory SQLite database is refused: it would lose every order on restart.

SQLite runs in WAL mode with a busy timeout; each write transaction starts with
``BEGIN IMMEDIATE`` on a connection of its own, so any number of threads and processes on one
host take turns on the write lock instead of failing. PostgreSQL (psycopg 3, the ``postgres``
extra) gives the same guarantees across hosts through the database itself: the event id is a
primary key and the order row is locked with ``SELECT ... FOR UPDATE``; no in-process lock is
relied on for correctness.

Tables (created on first use; the schema version is kept in ``stripe_checkout_meta``):
``stripe_checkout_orders``, ``stripe_checkout_events``, ``stripe_checkout_meta``. On
PostgreSQL they go in the connection's ``search_path``; choose a schema with the libpq URL
option ``?options=-csearch_path%3Dshop``.
"""

from __future__ import annotations

import abc
import contextlib
import importlib.util
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .orders import Order

if TYPE_CHECKING:
    import psycopg

_Conn = TypeVar("_Conn")

__all__ = [
    "DEFAULT_STORE_URL",
    "SCHEMA_VERSION",
    "STORE_ENV",
    "OrderStore",
    "PostgresStore",
    "SQLiteStore",
    "StoreError",
    "StoreTransaction",
    "open_store",
]

logger = logging.getLogger("stripe_checkout_mw")

#: Bumped whenever the tables change; a store refuses a ledger written by a newer version.
SCHEMA_VERSION = 1
#: The environment variable read when no store URL is given.
STORE_ENV = "STRIPE_CHECKOUT_STORE"
#: Used when neither an argument nor the environment names a store.
DEFAULT_STORE_URL = "sqlite:///stripe-checkout-orders.db"

_ORDER_COLUMNS = (
    "session_id",
    "status",
    "payment_status",
    "mode",
    "currency",
    "amount_subtotal",
    "amount_total",
    "customer_email",
    "client_reference_id",
    "metadata",
    "items",
    "session",
    "fulfilled",
    "created_at",
    "updated_at",
    "fulfilled_at",
)
# Built once from the constant column names above; values always go in as parameters.
_COLUMN_LIST = ", ".join(_ORDER_COLUMNS)
_SELECT_ORDER = f"SELECT {_COLUMN_LIST} FROM stripe_checkout_orders"  # noqa: S608
_INSERT_ORDER = (
    f"INSERT INTO stripe_checkout_orders ({_COLUMN_LIST}) VALUES ({{values}}) "  # noqa: S608
    "ON CONFLICT (session_id) DO NOTHING"
)
_UPDATE_ORDER = (
    "UPDATE stripe_checkout_orders SET "  # noqa: S608
    + ", ".join(f"{column} = {{p}}" for column in _ORDER_COLUMNS[1:])
    + " WHERE session_id = {p}"
)
_SQLITE_INSERT_ORDER = _INSERT_ORDER.format(values=", ".join("?" for _ in _ORDER_COLUMNS))
_SQLITE_UPDATE_ORDER = _UPDATE_ORDER.format(p="?")
_PG_INSERT_ORDER = (
    _INSERT_ORDER.format(values=", ".join("%s" for _ in _ORDER_COLUMNS)) + " RETURNING session_id"
)
_PG_UPDATE_ORDER = _UPDATE_ORDER.format(p="%s")


class StoreError(RuntimeError):
    """The store cannot be used as it is (for example its schema is newer than this code)."""


class StoreTransaction(abc.ABC):
    """One write transaction on the store, obtained from :meth:`OrderStore.transaction`.

    Everything done through it is committed together when the ``with`` block ends normally and
    rolled back if it raises.
    """

    @abc.abstractmethod
    def claim_event(self, event_id: str, event_type: str, session_id: str | None) -> bool:
        """Record ``event_id`` as processed; ``False`` if it already was.

        A concurrent transaction holding the same claim makes this wait until that transaction
        ends: if it committed, this returns ``False``; if it rolled back, this claims it.
        """

    @abc.abstractmethod
    def lock_order(self, session_id: str) -> Order | None:
        """The order, locked against other writers until the transaction ends."""

    @abc.abstractmethod
    def insert_order(self, order: Order) -> bool:
        """Add ``order`` unless its session is already in the ledger; ``True`` if added."""

    @abc.abstractmethod
    def save_order(self, order: Order) -> None:
        """Write every field of an order that :meth:`lock_order` returned."""


class OrderStore(abc.ABC):
    """The ledger interface shared by :class:`SQLiteStore` and :class:`PostgresStore`.

    One store object serves every thread of a process; it opens connections as needed.
    Call :meth:`close` (or use it as a context manager) when done with it.
    """

    #: The store's URL with any password removed; safe to log.
    url: str

    def __init__(self) -> None:
        self._schema_lock = threading.Lock()
        self._schema_ready = False

    @abc.abstractmethod
    def record_open(self, order: Order) -> None:
        """Write a newly created session to the ledger; a second call for the same session id
        changes nothing."""

    @abc.abstractmethod
    def get(self, session_id: str) -> Order | None:
        """The order for ``session_id``, or ``None`` if this ledger never recorded it."""

    @abc.abstractmethod
    def event_processed(self, event_id: str) -> bool:
        """Whether a webhook event with this id has been handled and committed."""

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[StoreTransaction]:
        """A write transaction: ``with store.transaction() as tx: ...``.

        Keep it short: on SQLite it holds the database's single write lock until it ends.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release every connection the store holds. Safe to call twice."""

    def ensure_schema(self) -> None:
        """Create the tables if needed and check the schema version.

        Called on first use; call it yourself to fail early (a deploy check, for instance).
        """
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                self._create_schema()
                self._schema_ready = True

    @abc.abstractmethod
    def _create_schema(self) -> None: ...

    def __enter__(self) -> OrderStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


def open_store(url: str | None) -> OrderStore:
    """Open the store a URL names (see the module docstring for the forms it takes).

    ``None`` means the ``STRIPE_CHECKOUT_STORE`` environment variable, else
    :data:`DEFAULT_STORE_URL`. Cheap: it checks the URL and, for SQLite, that the file can be
    written, but creates tables only on first use.

    :raises ValueError: with a message starting ``"store: "`` that says how to fix the URL.
    """
    if url is None:
        url = os.environ.get(STORE_ENV, "").strip() or DEFAULT_STORE_URL
    if not isinstance(url, str) or not url.strip():
        raise ValueError(
            f"store: the store URL is empty; pass e.g. store='{DEFAULT_STORE_URL}' or set "
            f"{STORE_ENV}"
        )
    url = url.strip()
    if url == ":memory:":
        url = "sqlite://"
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower() if sep else ""
    if scheme == "sqlite":
        return SQLiteStore(_sqlite_path(url))
    if scheme in ("postgresql", "postgres"):
        if importlib.util.find_spec("psycopg") is None:
            raise ValueError(
                "store: a PostgreSQL store needs psycopg 3; install it with "
                "pip install 'stripe-checkout-mw[postgres]'"
            )
        return PostgresStore(url)
    if not sep:
        # Never echo the value: a mistyped URL may still carry a password.
        raise ValueError(
            "store: the store must be a URL such as 'sqlite:///path/to/orders.db' or "
            "'postgresql://user@host/dbname'"
        )
    raise ValueError(
        f"store: unsupported URL scheme {scheme!r}; use 'sqlite:///path/to/orders.db' or "
        "'postgresql://user@host/dbname'"
    )


def _sqlite_path(url: str) -> str:
    rest = url[len("sqlite://") :]
    memory_hint = (
        "store: an in-memory SQLite database would lose every order on restart; use a file "
        "such as 'sqlite:///stripe-checkout-orders.db'"
    )
    if rest in ("", "/") or ":memory:" in rest or "mode=memory" in rest:
        raise ValueError(memory_hint)
    if not rest.startswith("/"):
        raise ValueError(
            "store: a SQLite URL has three slashes before a relative path and four before an "
            "absolute one: 'sqlite:///orders.db' or 'sqlite:////var/lib/shop/orders.db'"
        )
    if "?" in rest:
        raise ValueError("store: SQLite store URLs take no query parameters")
    path = os.path.abspath(rest[1:])
    if os.path.isdir(path):
        raise ValueError(f"store: {path} is a directory; name a file, e.g. {path}/orders.db")
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise ValueError(
            f"store: the directory {directory} of the SQLite file does not exist; create it "
            f"or choose another path with store='sqlite:///...' or {STORE_ENV}"
        )
    writable = os.access(path, os.W_OK) if os.path.exists(path) else os.access(directory, os.W_OK)
    if not writable:
        raise ValueError(
            f"store: cannot write the SQLite file {path}; give the server's user write access "
            f"to it and its directory, or choose another path with store='sqlite:///...' or "
            f"{STORE_ENV}"
        )
    return path


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _order_values(order: Order, json_value: Callable[[Any], Any]) -> tuple[Any, ...]:
    """An order as the column values of ``_ORDER_COLUMNS``, JSON wrapped for the driver."""
    now = time.time()
    return (
        order.session_id,
        order.status,
        order.payment_status,
        order.mode,
        order.currency,
        order.amount_subtotal,
        order.amount_total,
        order.customer_email,
        order.client_reference_id,
        json_value(order.metadata),
        json_value(order.items),
        None if order.session is None else json_value(order.session),
        order.fulfilled,  # sqlite3 stores a bool as 0/1; PostgreSQL has a boolean column
        order.created_at or now,
        order.updated_at or now,
        order.fulfilled_at,
    )


# --- SQLite ---------------------------------------------------------------------------------

_SQLITE_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS stripe_checkout_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS stripe_checkout_orders (
        session_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        payment_status TEXT,
        mode TEXT,
        currency TEXT,
        amount_subtotal INTEGER,
        amount_total INTEGER,
        customer_email TEXT,
        client_reference_id TEXT,
        metadata TEXT NOT NULL,
        items TEXT NOT NULL,
        session TEXT,
        fulfilled INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        fulfilled_at REAL
    )""",
    """CREATE TABLE IF NOT EXISTS stripe_checkout_events (
        event_id TEXT PRIMARY KEY,
        event_type TEXT NOT NULL,
        session_id TEXT,
        processed_at REAL NOT NULL
    )""",
)


class _IdlePool(Generic[_Conn]):
    """Database connections kept open between calls, each lent to one thread at a time.

    Opening a connection per call costs more than the work it does (on SQLite, closing
    the last connection also checkpoints and deletes the WAL). A connection goes back to
    the pool only when ``reusable`` says it is idle and healthy; after a fork the child
    starts with an empty pool, never touching its parent's connections.
    """

    def __init__(
        self,
        connect: Callable[[], _Conn],
        reusable: Callable[[_Conn], bool],
        close: Callable[[_Conn], None],
        max_idle: int,
    ) -> None:
        self._connect = connect
        self._reusable = reusable
        self._close = close
        self.max_idle = max_idle
        self._lock = threading.Lock()
        self._idle: list[_Conn] = []
        self._pid = os.getpid()
        self._closed = False

    @contextlib.contextmanager
    def connection(self) -> Iterator[_Conn]:
        conn = self._acquire()
        try:
            yield conn
        finally:
            self._release(conn)

    def _acquire(self) -> _Conn:
        with self._lock:
            if self._closed:
                raise StoreError("store: this store has been closed")
            if self._pid != os.getpid():
                self._idle, self._pid = [], os.getpid()
            while self._idle:
                conn = self._idle.pop()
                if self._reusable(conn):
                    return conn
                self._close(conn)
        return self._connect()

    def _release(self, conn: _Conn) -> None:
        with self._lock:
            if (
                not self._closed
                and self._pid == os.getpid()
                and len(self._idle) < self.max_idle
                and self._reusable(conn)
            ):
                self._idle.append(conn)
                return
        self._close(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle, self._closed = self._idle, [], True
        for conn in idle:
            self._close(conn)


class SQLiteStore(OrderStore):
    """The ledger in one SQLite file, shared safely by the threads and processes of one host.

    :param path: the database file; created with its tables on first use.
    :param busy_timeout: seconds a writer waits for the write lock before failing. Webhook
        transactions hold that lock while handlers and ``fulfill`` run, which is one reason
        they must be quick.
    """

    def __init__(self, path: str, *, busy_timeout: float = 30.0, max_idle: int = 8) -> None:
        super().__init__()
        self.path = os.path.abspath(path)
        self.url = "sqlite:///" + self.path
        self.busy_timeout = busy_timeout
        self._pool = _IdlePool(
            self._connect, lambda conn: not conn.in_transaction, sqlite3.Connection.close,
            max_idle,
        )

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are begun explicitly, as BEGIN IMMEDIATE, so a
        # writer takes the write lock before it reads anything it will act on. The pool
        # lends a connection to one thread at a time, so it may move between threads.
        return sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )

    def _create_schema(self) -> None:
        with self._pool.connection() as conn:
            self._enable_wal(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SQLITE_SCHEMA:
                    conn.execute(statement)
                _check_version(
                    conn.execute(
                        "SELECT value FROM stripe_checkout_meta WHERE key = 'schema_version'"
                    ).fetchone()
                )
                conn.execute(
                    "INSERT INTO stripe_checkout_meta (key, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT (key) DO NOTHING",
                    (str(SCHEMA_VERSION),),
                )
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # WAL lets readers (the status page) proceed while a webhook holds the write lock;
        # the mode is stored in the file, so every later connection gets it too. Switching
        # modes does not wait on the busy handler, hence the bounded retry while another
        # process is using the file.
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

    def record_open(self, order: Order) -> None:
        with self.transaction() as tx:
            tx.insert_order(order)

    def get(self, session_id: str) -> Order | None:
        self.ensure_schema()
        with self._pool.connection() as conn:
            row = conn.execute(f"{_SELECT_ORDER} WHERE session_id = ?", (session_id,)).fetchone()
        return _sqlite_row_to_order(row) if row else None

    def event_processed(self, event_id: str) -> bool:
        self.ensure_schema()
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT 1 FROM stripe_checkout_events WHERE event_id = ?", (event_id,)
            ).fetchone()
        return row is not None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        self.ensure_schema()
        with self._pool.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SQLiteTransaction(conn)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        self._pool.close()


class _SQLiteTransaction(StoreTransaction):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def claim_event(self, event_id: str, event_type: str, session_id: str | None) -> bool:
        cursor = self._conn.execute(
            "INSERT INTO stripe_checkout_events (event_id, event_type, session_id, processed_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
            (event_id, event_type, session_id, time.time()),
        )
        return cursor.rowcount == 1

    def lock_order(self, session_id: str) -> Order | None:
        # BEGIN IMMEDIATE already holds the database's only write lock: no row lock needed.
        row = self._conn.execute(f"{_SELECT_ORDER} WHERE session_id = ?", (session_id,)).fetchone()
        return _sqlite_row_to_order(row) if row else None

    def insert_order(self, order: Order) -> bool:
        cursor = self._conn.execute(_SQLITE_INSERT_ORDER, _sqlite_values(order))
        return cursor.rowcount == 1

    def save_order(self, order: Order) -> None:
        values = _sqlite_values(order)
        self._conn.execute(_SQLITE_UPDATE_ORDER, (*values[1:], values[0]))


def _sqlite_values(order: Order) -> tuple[Any, ...]:
    return _order_values(order, _dumps)


def _sqlite_row_to_order(row: Sequence[Any]) -> Order:
    values = dict(zip(_ORDER_COLUMNS, row))
    values["metadata"] = json.loads(values["metadata"])
    values["items"] = json.loads(values["items"])
    values["session"] = None if values["session"] is None else json.loads(values["session"])
    values["fulfilled"] = bool(values["fulfilled"])
    return Order(**values)


def _check_version(row: Sequence[Any] | None) -> None:
    if row is not None and int(row[0]) > SCHEMA_VERSION:
        raise StoreError(
            f"store: the ledger's schema version {int(row[0])} is newer than this version of "
            f"stripe-checkout-mw understands ({SCHEMA_VERSION}); upgrade stripe-checkout-mw"
        )


# --- PostgreSQL -----------------------------------------------------------------------------

_PG_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS stripe_checkout_meta (
        key text PRIMARY KEY,
        value text NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS stripe_checkout_orders (
        session_id text PRIMARY KEY,
        status text NOT NULL,
        payment_status text,
        mode text,
        currency text,
        amount_subtotal bigint,
        amount_total bigint,
        customer_email text,
        client_reference_id text,
        metadata jsonb NOT NULL,
        items jsonb NOT NULL,
        session jsonb,
        fulfilled boolean NOT NULL DEFAULT false,
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        fulfilled_at double precision
    )""",
    """CREATE TABLE IF NOT EXISTS stripe_checkout_events (
        event_id text PRIMARY KEY,
        event_type text NOT NULL,
        session_id text,
        processed_at double precision NOT NULL
    )""",
)
# Serialises CREATE TABLE IF NOT EXISTS across hosts starting at once; any constant will do.
_PG_SCHEMA_LOCK = 0x5C3C_0001


class PostgresStore(OrderStore):
    """The ledger in PostgreSQL, for several hosts serving one shop.

    Exactly-once holds across hosts because the database enforces it: the event id is a
    primary key (a second claim waits for the first transaction and then finds the row), and
    the order row is locked with ``SELECT ... FOR UPDATE`` while it is moved and fulfilled.

    Connections are opened on demand and up to ``max_idle`` are kept for reuse.

    :param url: a libpq URL (``postgresql://user:password@host:5432/dbname?options=...``).
    :param max_idle: connections kept open between calls.
    :param connect_timeout: seconds to wait for a new connection, unless the URL says.
    """

    def __init__(self, url: str, *, max_idle: int = 8, connect_timeout: int = 10) -> None:
        super().__init__()
        self._dsn = url
        self.url = _redact(url)
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self._pool: _IdlePool[psycopg.Connection[Any]] = _IdlePool(
            self._connect, _pg_reusable, _pg_close, max_idle
        )

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        kwargs: dict[str, Any] = {}
        if "connect_timeout" not in self._dsn:
            kwargs["connect_timeout"] = self.connect_timeout
        return psycopg.connect(self._dsn, autocommit=True, **kwargs)

    def _connection(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        return self._pool.connection()

    def _create_schema(self) -> None:
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_SCHEMA_LOCK,))
            for statement in _PG_SCHEMA:
                conn.execute(statement)
            _check_version(
                conn.execute(
                    "SELECT value FROM stripe_checkout_meta WHERE key = 'schema_version'"
                ).fetchone()
            )
            conn.execute(
                "INSERT INTO stripe_checkout_meta (key, value) VALUES ('schema_version', %s) "
                "ON CONFLICT (key) DO NOTHING",
                (str(SCHEMA_VERSION),),
            )

    def record_open(self, order: Order) -> None:
        with self.transaction() as tx:
            tx.insert_order(order)

    def get(self, session_id: str) -> Order | None:
        self.ensure_schema()
        with self._connection() as conn:
            row = conn.execute(f"{_SELECT_ORDER} WHERE session_id = %s", (session_id,)).fetchone()
        return _pg_row_to_order(row) if row else None

    def event_processed(self, event_id: str) -> bool:
        self.ensure_schema()
        with self._connection() as conn:
            row = conn.execute(
                "SELECT 1 FROM stripe_checkout_events WHERE event_id = %s", (event_id,)
            ).fetchone()
        return row is not None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        self.ensure_schema()
        with self._connection() as conn, conn.transaction():
            yield _PostgresTransaction(conn)

    def close(self) -> None:
        self._pool.close()


def _pg_reusable(conn: psycopg.Connection[Any]) -> bool:
    from psycopg.pq import TransactionStatus

    return (
        not conn.closed
        and not conn.broken
        and conn.info.transaction_status == TransactionStatus.IDLE
    )


def _pg_close(conn: psycopg.Connection[Any]) -> None:
    conn.close()


class _PostgresTransaction(StoreTransaction):
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def claim_event(self, event_id: str, event_type: str, session_id: str | None) -> bool:
        # A concurrent claim of the same id blocks on the primary key until its transaction
        # ends, then this either inserts (it rolled back) or does nothing (it committed).
        row = self._conn.execute(
            "INSERT INTO stripe_checkout_events (event_id, event_type, session_id, processed_at) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            (event_id, event_type, session_id, time.time()),
        ).fetchone()
        return row is not None

    def lock_order(self, session_id: str) -> Order | None:
        row = self._conn.execute(
            f"{_SELECT_ORDER} WHERE session_id = %s FOR UPDATE", (session_id,)
        ).fetchone()
        return _pg_row_to_order(row) if row else None

    def insert_order(self, order: Order) -> bool:
        row = self._conn.execute(_PG_INSERT_ORDER, _pg_values(order)).fetchone()
        return row is not None

    def save_order(self, order: Order) -> None:
        values = _pg_values(order)
        self._conn.execute(_PG_UPDATE_ORDER, (*values[1:], values[0]))


def _pg_values(order: Order) -> tuple[Any, ...]:
    from psycopg.types.json import Jsonb

    return _order_values(order, Jsonb)


def _pg_row_to_order(row: Sequence[Any]) -> Order:
    return Order(**dict(zip(_ORDER_COLUMNS, row)))


def _redact(url: str) -> str:
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
