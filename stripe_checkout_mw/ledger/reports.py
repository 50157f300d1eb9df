"""The operator's reads of the ledger: the lists and histories behind ``orders`` and ``events``.

Each method is one read outside any transaction and returns plain rows (named tuples) for
the command line to print; filters are bound as values, never formatted into the SQL.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .store import Ledger

__all__ = ["EventRow", "JobRow", "LedgerReports", "OrderRow", "WaitingJob"]


class OrderRow(NamedTuple):
    """An order as ``orders list`` shows it, with its refunds and dispute."""

    session_id: str
    status: str
    amount_total: int | None
    currency: str | None
    customer_email: str | None
    fulfilled: bool
    created_at: float
    amount_refunded: int
    dispute_status: str | None


class EventRow(NamedTuple):
    """A processed Stripe event; for ``events list --failed``, also its unfinished jobs'
    highest attempt number and the time the first of them is due again (0: now)."""

    event_id: str
    event_type: str
    session_id: str | None
    processed_at: float
    attempt: int = 0
    retry_at: float = 0.0


class JobRow(NamedTuple):
    """A job of one order, as ``orders show`` lists it."""

    kind: str
    key: str
    attempt: int
    lease_until: float
    done_at: float | None
    created_at: float
    retry_at: float = 0.0


class WaitingJob(NamedTuple):
    """A job whose last attempt failed and whose retry time has not come."""

    kind: str
    key: str
    subject: str
    attempt: int
    retry_at: float


_ORDERS = (
    "SELECT o.session_id, o.status, o.amount_total, o.currency, o.customer_email, "
    "o.fulfilled, o.created_at, p.amount_refunded, p.dispute_status "
    "FROM stripe_checkout_orders o LEFT JOIN stripe_checkout_payments p "
    "ON p.session_id = o.session_id WHERE o.created_at >= ?"
)
_EVENTS = ("SELECT e.event_id, e.event_type, e.session_id, e.processed_at "
           "FROM stripe_checkout_events e WHERE 1 = 1")
# An event whose jobs ran and did not finish: its handlers, or its order's jobs.
_FAILING_JOBS = ("FROM stripe_checkout_jobs j WHERE j.done_at IS NULL AND j.attempt > 0 "
                 "AND (j.subject = e.session_id OR "
                 "(j.kind = 'handlers' AND j.job_key = e.event_id))")
_FAILING = " AND EXISTS (SELECT 1 " + _FAILING_JOBS + ")"
# Constant text only: the failing event's highest attempt and its jobs' first retry time.
_FAILING_EVENTS = ("SELECT e.event_id, e.event_type, e.session_id, e.processed_at, "
                   "(SELECT MAX(j.attempt) " + _FAILING_JOBS + "), "
                   "(SELECT MIN(j.retry_at) " + _FAILING_JOBS + ") "
                   "FROM stripe_checkout_events e WHERE 1 = 1")


class LedgerReports:
    """The operator's queries over one ledger."""

    def __init__(self, store: Ledger) -> None:
        self.store = store

    def recent_orders(self, *, created_since: float, status: str | None, email: str | None,
                      limit: int) -> list[OrderRow]:
        """Up to ``limit`` orders created since ``created_since``, newest first, of
        ``status`` and of ``email`` (compared case-insensitively) when given."""
        sql, params = _ORDERS, list[Any]([created_since])
        if status:
            sql, params = sql + " AND o.status = ?", [*params, status]
        if email:
            sql, params = sql + " AND lower(o.customer_email) = ?", [*params, email.lower()]
        sql += " ORDER BY o.created_at DESC LIMIT ?"
        rows = self._read(sql, [*params, limit])
        return [OrderRow(str(r[0]), str(r[1]), r[2], r[3], r[4], bool(r[5]), float(r[6]),
                         int(r[7] or 0), r[8]) for r in rows]

    def events_of(self, session_id: str) -> list[EventRow]:
        """The events processed for one order, oldest first."""
        rows = self._read("SELECT event_id, event_type, session_id, processed_at FROM "
                          "stripe_checkout_events WHERE session_id = ? ORDER BY processed_at",
                          [session_id])
        return [EventRow(str(r[0]), str(r[1]), r[2], float(r[3])) for r in rows]

    def jobs_of(self, subject: str) -> list[JobRow]:
        """The jobs of one order (done or not), in the order they were recorded."""
        rows = self._read("SELECT kind, job_key, attempt, lease_until, done_at, created_at, "
                          "retry_at FROM stripe_checkout_jobs WHERE subject = ? ORDER BY seq",
                          [subject])
        return [JobRow(str(r[0]), str(r[1]), int(r[2]), float(r[3]),
                       None if r[4] is None else float(r[4]), float(r[5]), float(r[6]))
                for r in rows]

    def recent_events(self, *, event_type: str | None, failing: bool,
                      limit: int) -> list[EventRow]:
        """Up to ``limit`` processed events, newest first: of ``event_type`` when given, and
        only those with a job that ran and has not finished when ``failing`` (with that
        job's attempt number and next time)."""
        sql, params = (_FAILING_EVENTS if failing else _EVENTS), list[Any]()
        if event_type:
            sql, params = sql + " AND e.event_type = ?", [event_type]
        if failing:
            sql += _FAILING
        sql += " ORDER BY e.processed_at DESC LIMIT ?"
        rows = self._read(sql, [*params, limit])
        if failing:
            return [EventRow(str(r[0]), str(r[1]), r[2], float(r[3]), int(r[4] or 0),
                             float(r[5] or 0.0)) for r in rows]
        return [EventRow(str(r[0]), str(r[1]), r[2], float(r[3])) for r in rows]

    def waiting_jobs(self, now: float, limit: int) -> list[WaitingJob]:
        """Up to ``limit`` jobs that failed and are not due again at ``now``, soonest first."""
        rows = self._read("SELECT kind, job_key, subject, attempt, retry_at FROM "
                          "stripe_checkout_jobs WHERE done_at IS NULL AND retry_at > ? "
                          "ORDER BY retry_at LIMIT ?", [now, limit])
        return [WaitingJob(str(r[0]), str(r[1]), str(r[2]), int(r[3]), float(r[4]))
                for r in rows]

    def _read(self, sql: str, params: list[Any]) -> list[Any]:
        return self.store._read(self.store.dialect.placeholders(sql), params)
