"""The invoice table: ``stripe_checkout_invoices``.

The statements behind :class:`~stripe_checkout_mw.billing.invoices.InvoiceLedger`, which
decides what to store; this class only reads and writes rows. An invoice is stored under its
Stripe Customer; a user's invoices are found through the customers table (a join), so an
invoice stored before its customer's user was known is listed as soon as it is.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .store import Ledger, StoreTransaction

__all__ = ["InvoiceRows", "LockedInvoice"]


class LockedInvoice(NamedTuple):
    """An invoice row read under its row lock."""

    record: dict[str, Any]
    fetched_at: float


class InvoiceRows:
    """Reads and writes of the invoices table."""

    def __init__(self, store: Ledger) -> None:
        self.store = store
        q = store.dialect.placeholders
        of_ref = (
            "SELECT i.record, c.customer_ref FROM stripe_checkout_invoices i "
            "JOIN stripe_checkout_customers c ON c.stripe_customer = i.stripe_customer "
            "WHERE c.customer_ref = ? ")
        newest_first = "ORDER BY i.created DESC, i.invoice_id DESC LIMIT ?"
        self._sql_first_page = q(of_ref + newest_first)
        self._sql_next_page = q(
            of_ref + "AND (i.created < ? OR (i.created = ? AND i.invoice_id < ?)) "
            + newest_first)
        self._sql_one = q(
            "SELECT i.record, c.customer_ref FROM stripe_checkout_invoices i "
            "LEFT JOIN stripe_checkout_customers c ON c.stripe_customer = i.stripe_customer "
            "WHERE i.invoice_id = ?")
        self._sql_created = q(
            "SELECT created FROM stripe_checkout_invoices WHERE invoice_id = ?")
        lock = "SELECT record, fetched_at FROM stripe_checkout_invoices WHERE invoice_id = ?"
        self._sql_lock = q(lock + store.dialect.lock_suffix)
        self._sql_insert = q(
            "INSERT INTO stripe_checkout_invoices (invoice_id, stripe_customer, "
            "subscription_id, status, created, record, fetched_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (invoice_id) DO NOTHING")
        self._sql_update = q(
            "UPDATE stripe_checkout_invoices SET stripe_customer = ?, subscription_id = ?, "
            "status = ?, created = ?, record = ?, fetched_at = ?, updated_at = ? "
            "WHERE invoice_id = ?")

    # -- reads -------------------------------------------------------------------------

    def page_of(self, ref: str, limit: int, after: str | None
                ) -> list[tuple[dict[str, Any], str | None]]:
        """Up to ``limit`` invoice records of ``ref`` with their ref, newest first; after
        the invoice ``after`` (of any user: its position only) when given. An ``after``
        that is not stored gives no rows."""
        if after is None:
            rows = self.store._read(self._sql_first_page, (ref, limit))
        else:
            found = self.store._read(self._sql_created, (after,))
            if not found:
                return []
            created = int(found[0][0])
            rows = self.store._read(self._sql_next_page,
                                    (ref, created, created, after, limit))
        from_json = self.store.dialect.from_json
        return [(dict(from_json(record)), owner) for record, owner in rows]

    def one(self, invoice_id: str) -> tuple[dict[str, Any], str | None] | None:
        """The record of ``invoice_id`` and its customer's ref (``None`` if unknown)."""
        rows = self.store._read(self._sql_one, (invoice_id,))
        if not rows:
            return None
        record, owner = rows[0]
        return dict(self.store.dialect.from_json(record)), owner

    # -- in a transaction --------------------------------------------------------------

    def lock(self, tx: StoreTransaction, invoice_id: str) -> LockedInvoice | None:
        """The invoice's row, locked until ``tx`` ends, or ``None`` if not stored."""
        row = self.store.dialect.fetchone(tx.conn, self._sql_lock, (invoice_id,))
        if row is None:
            return None
        return LockedInvoice(dict(self.store.dialect.from_json(row[0])), float(row[1]))

    def insert(self, tx: StoreTransaction, invoice_id: str, stripe_customer: str,
               subscription_id: str | None, status: str, created: int,
               record: dict[str, Any], *, fetched_at: float, at: float) -> bool:
        """Store an invoice; ``False`` if a concurrent transaction stored it first."""
        return self.store.dialect.rowcount(tx.conn, self._sql_insert, (
            invoice_id, stripe_customer, subscription_id, status, created,
            self.store.dialect.to_json(record), fetched_at, at)) == 1

    def update(self, tx: StoreTransaction, invoice_id: str, stripe_customer: str,
               subscription_id: str | None, status: str, created: int,
               record: dict[str, Any], *, fetched_at: float, at: float) -> None:
        """Write an invoice that :meth:`lock` returned."""
        self.store.dialect.execute(tx.conn, self._sql_update, (
            stripe_customer, subscription_id, status, created,
            self.store.dialect.to_json(record), fetched_at, at, invoice_id))
