"""The ledger: orders, processed events and the jobs that are due.

One SQL store holds three things: a row per Checkout Session this shop created
(:class:`~stripe_checkout_mw.ledger.orders.Order`), a row per Stripe event it has handled, and a row
per side effect that is due (a :class:`Job`: fulfil this order, run the handlers of that
event). The fulfilment pipeline (:mod:`stripe_checkout_mw.ledger.pipeline`) claims an event, moves
the order and records its jobs in one transaction, and only after that commit runs the jobs,
each under a lease with an attempt number.

Pick a store with a URL::

    store = open_store("sqlite:///var/lib/shop/orders.db")    # one host, several processes
    store = open_store("postgresql://shop@db.internal/shop")  # several hosts

``open_store(None)`` reads ``STRIPE_CHECKOUT_STORE`` and otherwise uses
``sqlite:///stripe-checkout-orders.db``: the file ``stripe-checkout-orders.db`` in the current
directory at the time the store is opened (the path is made absolute then, so a later ``chdir``
does not move it). An in-memory SQLite database is refused: it would lose every order on restart.

The statements are written once, here and in the ledger's other modules, from the declared
columns; the two dialects (:mod:`stripe_checkout_mw.ledger.dialects`) differ only in what really
differs: placeholders, row locking, JSON, type names, how a transaction begins and how
connections are kept.

Durability: every transaction is a fully durable commit unless it is opened with
``durable=False``, which only the checkout's first write of a new session and the bookkeeping
of jobs (a "done" mark, a released lease, pruning) use; the commit that acknowledges a paid
order is always durable. A job's "done" mark is also ``crash_safe``: it survives the database
crashing (SQLite's process, PostgreSQL's server), and is lost only if the machine loses
power before the disk has it. SQLite gets that without waiting for the disk (in WAL mode a
``synchronous=NORMAL`` commit is written to the WAL file before it returns); PostgreSQL has no
such level (``synchronous_commit = off`` keeps the commit in the server's memory for up to
three ``wal_writer_delay``), so there it is a durable commit. Losing a done mark means the
job runs again, numbered; the others cost at most a lease that expires, rows pruned later or
a session that the marker recovers from Stripe (see the README's fulfil contract).

Healing: a connection that raised a database error is closed and never reused; SQLite
refuses to commit when the file it has open is no longer the file at its path; PostgreSQL
connections come from ``psycopg_pool`` with a liveness check that drops connections the server
has closed. Store failures are logged once, naming the redacted store (host, port, database or
the SQLite path) and the error class, and raised as :class:`StoreError`.

Tables (declared once, for both engines, in :mod:`~stripe_checkout_mw.ledger.schema`; created or
upgraded on first use; the schema version is kept in ``stripe_checkout_meta``):
``stripe_checkout_orders``, ``stripe_checkout_events``, ``stripe_checkout_jobs``,
``stripe_checkout_payments`` (:mod:`~stripe_checkout_mw.ledger.payments`),
``stripe_checkout_customers`` and ``stripe_checkout_subscriptions``
(:mod:`~stripe_checkout_mw.ledger.billing`), ``stripe_checkout_meta``. On PostgreSQL they go in
the connection's ``search_path``; choose a schema with the libpq URL option
``?options=-csearch_path%3Dshop``. Every statement on them is the ledger's: the operator's
reads are in :mod:`~stripe_checkout_mw.ledger.reports`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import install_hint
from ..observe.metrics import Recorder
from .dialects import Dialect, PostgresDialect, SQLiteDialect, StoreError, redact_url
from .orders import Order
from .schema import SCHEMA_VERSION, column_names

__all__ = [
    "DEFAULT_STORE_URL",
    "SCHEMA_VERSION",
    "STORE_ENV",
    "Blocked",
    "Job",
    "JobStats",
    "Ledger",
    "NewJob",
    "OrderStore",
    "PostgresStore",
    "SQLiteStore",
    "SqlStore",
    "StoreError",
    "StoreTransaction",
    "open_store",
    "redact_url",
]

logger = logging.getLogger("stripe_checkout_mw")

#: The environment variable read when no store URL is given.
STORE_ENV = "STRIPE_CHECKOUT_STORE"
#: Used when neither an argument nor the environment names a store.
DEFAULT_STORE_URL = "sqlite:///stripe-checkout-orders.db"

ORDER_COLUMNS = column_names("stripe_checkout_orders")
_JSON_ORDER_COLUMNS = ("metadata", "items", "session")
JOB_COLUMNS = ("seq", "kind", "job_key", "subject", "payload", "attempt", "lease_until",
               "retry_at")


@dataclass(frozen=True)
class NewJob:
    """A side effect that became due in a transaction: recorded, then run after the commit.

    :param kind: which runner runs it (``"fulfil"``, ``"handlers"``, ...).
    :param key: unique within its kind; a second job with the same kind and key is the same
        job (so recording it twice changes nothing).
    :param subject: what it is about (a session id): the jobs of one subject run in the order
        they were recorded.
    :param payload: JSON data the runner needs.
    """

    kind: str
    key: str
    subject: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Blocked:
    """Why the first of a subject's pending jobs could not be leased, and until when:
    another worker holds it (``scheduled`` false) or its last attempt failed and its backoff
    runs until ``until`` (``scheduled`` true)."""

    until: float
    scheduled: bool


@dataclass(frozen=True)
class Job:
    """A recorded job as leased to one worker: ``attempt`` is 1 on the first run."""

    seq: int
    kind: str
    key: str
    subject: str
    payload: dict[str, Any]
    attempt: int


@dataclass(frozen=True)
class JobStats:
    """The jobs not yet done, for the metrics and the health path.

    :param due: jobs not done that can run now (not leased, not waiting for their retry
        time), by kind; 0 for a kind whose jobs are all running or waiting.
    :param failed: jobs not done whose last attempt ended without success (it raised, so
        it waits for its retry time or is due again, or its worker stopped and the lease
        ran out), by kind.
    :param oldest_due_age: seconds since the oldest job not done (due, running or waiting)
        was recorded, or ``None``.
    """

    due: dict[str, int]
    failed: dict[str, int]
    oldest_due_age: float | None


class Ledger:
    """The ledger over one SQL database; the dialect supplies what differs between engines.

    Every statement the package runs is a method of the ledger (here, on
    :class:`StoreTransaction`, or in the ledger's other modules): callers name what they
    want and never see a connection.

    One store object serves every thread of a process; it opens connections as needed.
    Call :meth:`close` (or use it as a context manager) when done with it.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        #: The store's URL with any password removed; safe to log.
        self.url = dialect.url
        self._schema_lock = threading.Lock()
        self._schema_ready = False
        # Written once with "?" placeholders; the dialect's own placeholder replaces them.
        # Only constant column and table names are ever formatted in, never a value.
        q = dialect.placeholders
        columns = ", ".join(ORDER_COLUMNS)
        marks = ", ".join("?" for _ in ORDER_COLUMNS)
        assignments = ", ".join(f"{column} = ?" for column in ORDER_COLUMNS[1:])
        select_order = "SELECT <columns> FROM stripe_checkout_orders WHERE session_id = ?".replace(
            "<columns>", columns)
        self._sql_select_order = q(select_order)
        self._sql_lock_order = q(select_order + dialect.lock_suffix)
        self._sql_insert_order = q(
            "INSERT INTO stripe_checkout_orders (<columns>) VALUES (<marks>) "
            "ON CONFLICT (session_id) DO NOTHING".replace("<columns>", columns).replace(
                "<marks>", marks)
        )
        self._sql_update_order = q(
            "UPDATE stripe_checkout_orders SET <assignments> WHERE session_id = ?".replace(
                "<assignments>", assignments)
        )
        self._sql_fulfilled = q(
            "UPDATE stripe_checkout_orders SET fulfilled = ?, fulfilled_at = ?, updated_at = ? "
            "WHERE session_id = ?"
        )
        self._sql_claim = q(
            "INSERT INTO stripe_checkout_events (event_id, event_type, session_id, processed_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
        )
        self._sql_event = q("SELECT 1 FROM stripe_checkout_events WHERE event_id = ?")
        self._sql_enqueue = q(
            "INSERT INTO stripe_checkout_jobs (kind, job_key, subject, payload, attempt, "
            "lease_until, done_at, created_at) VALUES (?, ?, ?, ?, ?, ?, NULL, ?) "
            "ON CONFLICT (kind, job_key) DO NOTHING"
        )
        pending = (
            "SELECT <columns> FROM stripe_checkout_jobs WHERE subject = ? AND done_at IS NULL "
            "ORDER BY seq".replace("<columns>", ", ".join(JOB_COLUMNS))
        )
        self._sql_pending_read = q(pending)
        self._sql_pending = q(pending + dialect.lock_suffix)
        self._sql_lease = q(
            "UPDATE stripe_checkout_jobs SET attempt = attempt + 1, lease_until = ? "
            "WHERE seq = ? AND done_at IS NULL"
        )
        self._sql_finish = q(
            "UPDATE stripe_checkout_jobs SET done_at = ? WHERE seq = ? AND done_at IS NULL"
        )
        self._sql_release = q(
            "UPDATE stripe_checkout_jobs SET lease_until = 0, attempt = attempt - 1 "
            "WHERE seq = ? AND attempt = ? AND done_at IS NULL"
        )
        self._sql_retry_at = q(
            "UPDATE stripe_checkout_jobs SET lease_until = 0, retry_at = ? "
            "WHERE seq = ? AND attempt = ? AND done_at IS NULL"
        )
        # Only a lease still held by this attempt: a released or finished job stays so.
        self._sql_extend = q(
            "UPDATE stripe_checkout_jobs SET lease_until = ? "
            "WHERE seq = ? AND attempt = ? AND done_at IS NULL AND lease_until > 0"
        )
        self._sql_drop = q(
            "UPDATE stripe_checkout_jobs SET done_at = ? WHERE subject = ? AND kind = ? "
            "AND done_at IS NULL AND lease_until <= ?"
        )
        # Due: can run now (not leased, not waiting for its retry). Failed: its last attempt
        # raised (it may be waiting for its retry) or its worker's lease ran out.
        self._sql_job_stats = q(
            "SELECT kind, SUM(CASE WHEN lease_until <= ? AND retry_at <= ? THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN retry_at > ? OR (attempt > 0 AND lease_until <= ?) THEN 1 "
            "ELSE 0 END), MIN(created_at) FROM stripe_checkout_jobs WHERE done_at IS NULL "
            "GROUP BY kind"
        )
        self._sql_prune_events = q(
            "DELETE FROM stripe_checkout_events WHERE event_id IN (SELECT event_id FROM "
            "stripe_checkout_events WHERE processed_at < ? ORDER BY processed_at LIMIT ?)"
        )
        self._sql_due_subjects = q(
            "SELECT DISTINCT subject FROM stripe_checkout_jobs "
            "WHERE done_at IS NULL AND lease_until < ? AND retry_at <= ?"
        )
        self._sql_open_orders = q(
            "SELECT session_id FROM stripe_checkout_orders WHERE status = ? "
            "AND created_at < ? ORDER BY created_at LIMIT ?"
        )
        self._sql_prune_jobs = q(
            "DELETE FROM stripe_checkout_jobs WHERE seq IN (SELECT seq FROM stripe_checkout_jobs "
            "WHERE done_at < ? ORDER BY done_at LIMIT ?)"
        )

    # -- reads ------------------------------------------------------------------------

    def get(self, session_id: str) -> Order | None:
        """The order for ``session_id``, or ``None`` if this ledger never recorded it."""
        self.ensure_schema()
        with self.dialect.connection() as conn:
            row = self.dialect.fetchone(conn, self._sql_select_order, (session_id,))
        return self._row_to_order(row) if row else None

    def event_processed(self, event_id: str) -> bool:
        """Whether a webhook event with this id has been claimed and committed."""
        self.ensure_schema()
        with self.dialect.connection() as conn:
            return self.dialect.fetchone(conn, self._sql_event, (event_id,)) is not None

    def pending_jobs(self, subject: str) -> list[Job]:
        """The jobs of ``subject`` not yet done, in the order they were recorded (a read)."""
        self.ensure_schema()
        with self.dialect.connection() as conn:
            rows = self.dialect.fetchall(conn, self._sql_pending_read, (subject,))
        return [self._row_to_job(row) for row in rows]

    def subjects_with_jobs_due(self, now: float) -> list[str]:
        """The subjects with a job not done, not leased and not waiting for its retry at
        ``now`` (a read)."""
        return [str(row[0]) for row in self._read(self._sql_due_subjects, (now, now))]

    def orders_in_status(self, status: str, created_before: float, limit: int) -> list[str]:
        """The session ids of up to ``limit`` orders in ``status`` created before
        ``created_before``, oldest first (a read)."""
        return [str(row[0]) for row in
                self._read(self._sql_open_orders, (status, created_before, limit))]

    def job_stats(self) -> JobStats:
        """How many jobs are due and failed, by kind, and the oldest one's age (one read of
        the pending jobs' index; the metrics path and the health path ask)."""
        now = time.time()
        rows = self._read(self._sql_job_stats, (now, now, now, now))
        oldest = min((float(row[3]) for row in rows), default=None)
        return JobStats(due={str(row[0]): int(row[1] or 0) for row in rows},
                        failed={str(row[0]): int(row[2] or 0) for row in rows if row[2]},
                        oldest_due_age=None if oldest is None else max(0.0, now - oldest))

    def count_errors_in(self, metrics: Recorder) -> None:
        """Count each failure of this ledger (``ledger_errors``) in ``metrics``."""
        self.dialect.metrics = metrics

    def stored_version(self) -> str | None:
        """The schema version the ledger records, read without creating anything: ``None``
        when there is no ledger yet, ``""`` for tables without a version. For the commands
        that only read, and the deploy check.

        :raises StoreError: the database cannot be read.
        """
        return self.dialect.stored_version()

    def _read(self, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
        """The rows of one read outside a transaction, the schema made first."""
        self.ensure_schema()
        return self.dialect.read(sql, params)

    # -- writes -----------------------------------------------------------------------

    def record_open(self, order: Order) -> None:
        """Write a newly created session to the ledger; a second call for the same session id
        changes nothing.

        Not waiting for an fsync: a session lost in a crash is recognised by its marker and
        recovered from Stripe by the webhook or the status lookup.
        """
        with self.transaction(durable=False) as tx:
            tx.insert_order(order)

    @contextlib.contextmanager
    def transaction(
        self, *, durable: bool = True, crash_safe: bool = False
    ) -> Iterator[StoreTransaction]:
        """A write transaction: ``with store.transaction() as tx: ...``.

        Committed when the block ends normally, rolled back if it raises. ``durable=False``
        commits without waiting for the disk (see the module docstring for who may);
        ``crash_safe`` then keeps it from being lost when the database crashes, which is a
        durable commit on a dialect that has nothing cheaper. Keep it short: on SQLite it
        holds the database's single write lock until it ends.

        :raises StoreError: the database failed (logged once with the store and error class).
        """
        self.ensure_schema()
        dialect = self.dialect
        durable = durable or (crash_safe and not dialect.lazy_commit_survives_crash)
        with dialect.connection() as conn:
            dialect.begin(conn, durable)
            try:
                yield StoreTransaction(self, conn)
            except BaseException:
                dialect.rollback(conn)
                raise
            dialect.commit(conn, durable)

    def prune(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` processed events (and done jobs) older than ``before``.

        One small, non-durable transaction; returns the rows deleted. The pipeline calls it
        now and then after a webhook; a batch left undone is picked up by the next one.
        """
        with self.transaction(durable=False) as tx:
            deleted = self.dialect.rowcount(tx.conn, self._sql_prune_events, (before, limit))
            deleted += self.dialect.rowcount(tx.conn, self._sql_prune_jobs, (before, limit))
        return deleted

    def close(self) -> None:
        """Release every connection the store holds. Safe to call twice."""
        self.dialect.close()

    def ensure_schema(self) -> None:
        """Create or upgrade the tables if needed and check the schema version.

        Called on first use; call it yourself to fail early (a deploy check, for instance).
        """
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                self.dialect.create_schema(SCHEMA_VERSION)
                self._schema_ready = True

    # -- rows -------------------------------------------------------------------------

    def order_values(self, order: Order) -> tuple[Any, ...]:
        """An order as the values of :data:`ORDER_COLUMNS`, JSON wrapped for the driver."""
        now = time.time()
        to_json = self.dialect.to_json
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
            to_json(order.metadata),
            to_json(order.items),
            None if order.session is None else to_json(order.session),
            order.fulfilled,  # sqlite3 stores a bool as 0/1; PostgreSQL has a boolean column
            order.created_at or now,
            order.updated_at or now,
            order.fulfilled_at,
        )

    def _row_to_order(self, row: Sequence[Any]) -> Order:
        values = dict(zip(ORDER_COLUMNS, row))
        for column in _JSON_ORDER_COLUMNS:
            if values[column] is not None:
                values[column] = self.dialect.from_json(values[column])
        values["fulfilled"] = bool(values["fulfilled"])
        return Order(**values)

    def _row_to_job(self, row: Sequence[Any]) -> Job:
        seq, kind, key, subject, payload, attempt, _lease, _retry_at = row
        return Job(int(seq), str(kind), str(key), str(subject),
                   dict(self.dialect.from_json(payload)), int(attempt))

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


#: The names the rest of the package and its users have known the ledger by.
SqlStore = Ledger
OrderStore = Ledger


class StoreTransaction:
    """One write transaction on the store, obtained from :meth:`Ledger.transaction`."""

    def __init__(self, store: Ledger, conn: Any) -> None:
        self.store = store
        self.conn = conn
        self._dialect = store.dialect
        # Rows read (and locked) by claim_event() ahead of the question they answer, until
        # that question is asked or a write makes them stale: order rows by session id, and
        # pending job rows by subject.
        self._locked: dict[str, Sequence[Any] | None] = {}
        self._pending: dict[str, list[Sequence[Any]]] = {}

    def claim_event(self, event_id: str, event_type: str, session_id: str | None, *,
                    jobs_of: str | None = None) -> bool:
        """Record ``event_id`` as processed; ``False`` if it already was.

        A concurrent transaction holding the same claim makes this wait until that transaction
        ends: if it committed, this returns ``False``; if it rolled back, this claims it.

        In the same round trip it locks and reads what the pipeline asks next: the order row
        of ``session_id`` (answered by the next :meth:`lock_order`) and the pending jobs of
        ``jobs_of`` (used by the next :meth:`lease_due`).
        """
        claim = (self.store._sql_claim, (event_id, event_type, session_id, time.time()))
        reads = []
        if session_id is not None:
            reads.append((self.store._sql_lock_order, (session_id,)))
        if jobs_of is not None:
            reads.append((self.store._sql_pending, (jobs_of,)))
        claimed, rows = self._dialect.rowcount_then_fetchall(self.conn, claim, reads)
        if session_id is not None:
            order_rows = rows.pop(0)
            self._locked[session_id] = order_rows[0] if order_rows else None
        if jobs_of is not None:
            self._pending[jobs_of] = rows.pop(0)
        return claimed == 1

    def lock_order(self, session_id: str) -> Order | None:
        """The order, locked against other writers until the transaction ends."""
        if session_id in self._locked:
            row = self._locked.pop(session_id)
        else:
            row = self._dialect.fetchone(self.conn, self.store._sql_lock_order, (session_id,))
        return self.store._row_to_order(row) if row else None

    def insert_order(self, order: Order) -> bool:
        """Add ``order`` unless its session is already in the ledger; ``True`` if added."""
        self._locked.pop(order.session_id, None)
        return self._dialect.rowcount(
            self.conn, self.store._sql_insert_order, self.store.order_values(order)
        ) == 1

    def save_order(self, order: Order) -> None:
        """Write every field of an order that :meth:`lock_order` returned."""
        self._locked.pop(order.session_id, None)
        values = self.store.order_values(order)
        self._dialect.execute(self.conn, self.store._sql_update_order, (*values[1:], values[0]))

    def mark_fulfilled(self, session_id: str, at: float) -> None:
        """Record that the order's fulfilment completed."""
        self._locked.pop(session_id, None)
        self._dialect.execute(self.conn, self.store._sql_fulfilled, (True, at, at, session_id))

    def enqueue(self, job: NewJob) -> None:
        """Record a job as due; a job with the same kind and key already recorded stays as
        it is."""
        self._pending.pop(job.subject, None)
        self._dialect.execute(self.conn, self.store._sql_enqueue, (
            job.kind, job.key, job.subject, self._dialect.to_json(job.payload), 0, 0,
            time.time()))

    def lease_due(self, subject: str, lease_seconds: float, new: Sequence[NewJob] = ()
                  ) -> tuple[Callable[[], list[Job]], Blocked | None]:
        """Record the ``new`` jobs, and lease the subject's pending jobs, in order, up to the
        first one that is not due: held by another worker, or waiting for its retry time.

        Returns ``(leased, blocked)``: ``leased()`` gives the leased jobs with their new
        attempt numbers, and may only be called once the transaction has committed (on
        PostgreSQL the new jobs' rows arrive with the commit); ``blocked`` says why and
        until when a job of the subject is not due (``None``: every pending job was
        leased). A new job is leased as it is recorded, unless a job recorded before it is
        blocked; a new job whose kind and key are already recorded is not recorded again
        (and runs only if that earlier job is due).
        """
        now = time.time()
        rows = self._pending.pop(subject, None)
        if rows is None:
            rows = self._dialect.fetchall(self.conn, self.store._sql_pending, (subject,))
        leased: list[Job] = []
        blocked: Blocked | None = None
        for row in rows:
            if float(row[6]) > now:
                blocked = Blocked(float(row[6]), scheduled=False)
                break
            if float(row[7]) > now:
                blocked = Blocked(float(row[7]), scheduled=True)
                break
            job = self.store._row_to_job(row)
            leased.append(Job(job.seq, job.kind, job.key, job.subject, job.payload,
                              job.attempt + 1))
            self._dialect.execute(self.conn, self.store._sql_lease, (now + lease_seconds,
                                                                     job.seq))
        recorded: list[tuple[NewJob, Callable[[], int | None]]] = []
        for due in new:
            lease = blocked is None and due.subject == subject
            params = (due.kind, due.key, due.subject, self._dialect.to_json(due.payload),
                      1 if lease else 0, now + lease_seconds if lease else 0, now)
            seq = self._dialect.inserted_key(self.conn, self.store._sql_enqueue, params, "seq")
            if lease:
                recorded.append((due, seq))

        def leased_jobs() -> list[Job]:
            jobs = list(leased)
            for due, seq in recorded:
                number = seq()
                if number is not None:
                    jobs.append(Job(number, due.kind, due.key, due.subject, due.payload, 1))
            return jobs

        return leased_jobs, blocked

    def finish(self, job: Job) -> None:
        """Mark a job done."""
        self._dialect.execute(self.conn, self.store._sql_finish, (time.time(), job.seq))

    def drop_pending(self, subject: str, kind: str) -> int:
        """Close the subject's due jobs of ``kind`` that no worker holds, without running
        them (they are no longer due); a job under lease runs on. Returns how many."""
        self._pending.pop(subject, None)
        now = time.time()
        return self._dialect.rowcount(self.conn, self.store._sql_drop, (now, subject, kind, now))

    def release(self, job: Job) -> None:
        """Give up the lease of a job that was leased but never started; its attempt number
        is given back and it is due again at once."""
        self._dialect.execute(self.conn, self.store._sql_release, (job.seq, job.attempt))

    def retry_later(self, job: Job, at: float) -> None:
        """Give up the lease of an attempt that raised: the job is due again at ``at`` (its
        backoff), not before, whoever asks."""
        self._dialect.execute(self.conn, self.store._sql_retry_at, (at, job.seq, job.attempt))

    def extend_lease(self, job: Job, until: float) -> bool:
        """Keep the lease of a job still running (its heartbeat); ``False`` when this attempt
        no longer holds it (finished, released or taken over)."""
        return self._dialect.rowcount(self.conn, self.store._sql_extend,
                                      (until, job.seq, job.attempt)) == 1


class SQLiteStore(Ledger):
    """The ledger in one SQLite file, shared safely by the threads and processes of one host.

    :param path: the database file; created with its tables on first use.
    :param busy_timeout: seconds a writer waits for the write lock before failing.
    :param max_idle: connections kept open between calls.
    :param max_open: connections open at once, lent or idle (a caller beyond it waits).
    """

    def __init__(self, path: str, *, busy_timeout: float = 30.0, max_idle: int = 8,
                 max_open: int = 16) -> None:
        super().__init__(SQLiteDialect(path, busy_timeout=busy_timeout, max_idle=max_idle,
                                       max_open=max_open))
        self.path = self.dialect.path  # type: ignore[attr-defined]


class PostgresStore(Ledger):
    """The ledger in PostgreSQL, for several hosts serving one shop.

    :param url: a libpq URL (``postgresql://user:password@host:5432/dbname?options=...``).
    :param max_size: most connections open at once (a ``psycopg_pool`` pool).
    :param connect_timeout: seconds a connection attempt may take, unless the URL says.
    """

    def __init__(self, url: str, *, max_size: int = 8, connect_timeout: int = 3) -> None:
        super().__init__(PostgresDialect(url, max_size=max_size,
                                         connect_timeout=connect_timeout))


def open_store(url: str | None) -> Ledger:
    """Open the store a URL names (see the module docstring for the forms it takes).

    ``None`` means the ``STRIPE_CHECKOUT_STORE`` environment variable, else
    :data:`DEFAULT_STORE_URL`. Cheap: it checks the URL and, for SQLite, that the file can be
    written, but connects and creates tables only on first use.

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
        for module, package in (("psycopg", "psycopg 3"), ("psycopg_pool", "psycopg_pool")):
            if importlib.util.find_spec(module) is None:
                raise ValueError(f"store: a PostgreSQL store needs {package}: "
                                 + install_hint("postgres", "'psycopg[binary]' psycopg_pool"))
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

