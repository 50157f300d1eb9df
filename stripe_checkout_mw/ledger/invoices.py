"""The invoice table: ``stripe_checkout_invoices``.

The statements behind :class:`~stripe_checkout_mw.billing.invoices.InvoiceLedger`, which
decides what to store; this class only reads and writes rows, as ``{column: value}`` dicts
of the table's declared columns (:mod:`.schema`). An invoice is stored under its Stripe
Customer; a user's invoices are found through the customers table (a join), so an invoice
stored before its customer's user was known is listed as soon as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .schema import column_names
from .store import Ledger, StoreTransaction

__all__ = ["COLUMNS", "InvoiceRows"]

#: The table's columns, in order: what a row dict holds.
COLUMNS = column_names("stripe_checkout_invoices")
_WRITTEN = tuple(name for name in COLUMNS if name != "invoice_id")


class InvoiceRows:
    """Reads and writes of the invoices table."""

    def __init__(self, store: Ledger) -> None:
        self.store = store
        q = store.dialect.placeholders
        shown = ", ".join(f"i.{name}" for name in COLUMNS)
        of_ref = (
            f"SELECT {shown}, c.customer_ref FROM stripe_checkout_invoices i "  # noqa: S608  # declared names
            "JOIN stripe_checkout_customers c ON c.stripe_customer = i.stripe_customer "
            "WHERE c.customer_ref = ? ")
        newest_first = "ORDER BY i.created DESC, i.invoice_id DESC LIMIT ?"
        self._sql_first_page = q(of_ref + newest_first)
        self._sql_next_page = q(
            of_ref + "AND (i.created < ? OR (i.created = ? AND i.invoice_id < ?)) "
            + newest_first)
        self._sql_one = q(
            f"SELECT {shown}, c.customer_ref FROM stripe_checkout_invoices i "  # noqa: S608  # declared names
            "LEFT JOIN stripe_checkout_customers c ON c.stripe_customer = i.stripe_customer "
            "WHERE i.invoice_id = ?")
        self._sql_created = q(
            "SELECT created FROM stripe_checkout_invoices WHERE invoice_id = ?")
        lock = ("SELECT fetched_at, amount_refunded FROM stripe_checkout_invoices "
                "WHERE invoice_id = ?")
        self._sql_lock = q(lock + store.dialect.lock_suffix)
        self._sql_insert = q(
            f"INSERT INTO stripe_checkout_invoices ({', '.join(COLUMNS)}) "  # noqa: S608  # declared names
            f"VALUES ({', '.join('?' for _ in COLUMNS)}) ON CONFLICT (invoice_id) DO NOTHING")
        self._sql_refunded = q(
            "UPDATE stripe_checkout_invoices SET amount_refunded = ? "
            "WHERE invoice_id = ? AND amount_refunded < ?")
        self._sql_update = q(
            f"UPDATE stripe_checkout_invoices SET "  # noqa: S608  # declared names
            f"{', '.join(f'{name} = ?' for name in _WRITTEN)} WHERE invoice_id = ?")

    # -- reads -------------------------------------------------------------------------

    def page_of(self, ref: str, limit: int, after: str | None
                ) -> list[tuple[dict[str, Any], str | None]]:
        """Up to ``limit`` rows of ``ref``'s invoices with their ref, newest first; after
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
        return [_with_owner(row) for row in rows]

    def one(self, invoice_id: str) -> tuple[dict[str, Any], str | None] | None:
        """The row of ``invoice_id`` and its customer's ref (``None`` if unknown)."""
        rows = self.store._read(self._sql_one, (invoice_id,))
        return _with_owner(rows[0]) if rows else None

    # -- in a transaction --------------------------------------------------------------

    def one_in(self, tx: StoreTransaction, invoice_id: str
               ) -> tuple[dict[str, Any], str | None] | None:
        """As :meth:`one`, read in ``tx`` (which sees its own writes and holds the lock
        :meth:`locked` took)."""
        row = self.store.dialect.fetchone(tx.conn, self._sql_one, (invoice_id,))
        return None if row is None else _with_owner(row)

    def locked(self, tx: StoreTransaction, invoice_id: str) -> tuple[float, int] | None:
        """When the stored answer's fetch began and the refunded amount stored, the row
        locked until ``tx`` ends; ``None`` if the invoice is not stored."""
        row = self.store.dialect.fetchone(tx.conn, self._sql_lock, (invoice_id,))
        return None if row is None else (float(row[0]), int(row[1]))

    def raise_refunded(self, tx: StoreTransaction, invoice_id: str, amount: int) -> bool:
        """Set the invoice's refunded amount to ``amount`` if that is more than stored;
        whether it was (``False`` too for an invoice not stored)."""
        return self.store.dialect.rowcount(
            tx.conn, self._sql_refunded, (amount, invoice_id, amount)) == 1

    def insert(self, tx: StoreTransaction, row: Mapping[str, Any]) -> bool:
        """Store an invoice; ``False`` if a concurrent transaction stored it first."""
        return self.store.dialect.rowcount(
            tx.conn, self._sql_insert, tuple(row[name] for name in COLUMNS)) == 1

    def update(self, tx: StoreTransaction, row: Mapping[str, Any]) -> None:
        """Write an invoice whose row :meth:`locked` locked."""
        self.store.dialect.execute(tx.conn, self._sql_update, (
            *(row[name] for name in _WRITTEN), row["invoice_id"]))


def _with_owner(row: Sequence[Any]) -> tuple[dict[str, Any], str | None]:
    return dict(zip(COLUMNS, row)), row[len(COLUMNS)]
