"""The full sync's cursors and the operator's customer links: their statements.

:class:`BackfillRows` keeps, per step of :mod:`stripe_checkout_mw.news.backfill`, the id of
the last Stripe object it applied (``stripe_checkout_backfill``), so an interrupted backfill
continues after it. :class:`CustomerLinks` is what ``mw.customers.link``/``unlink`` and the
backfill's customer filter read and write in ``stripe_checkout_customers``. Each statement is
written once, with the store's placeholders.
"""

from __future__ import annotations

import time

from .store import Ledger, StoreTransaction

__all__ = ["BackfillRows", "CustomerLinks"]


class BackfillRows:
    """Where each backfill step stopped (the last object id it applied), and what the
    ledger already holds of a listed object."""

    def __init__(self, store: Ledger) -> None:
        self.store = store
        q = store.dialect.placeholders
        self._sql_get = q("SELECT last_id FROM stripe_checkout_backfill WHERE step = ?")
        self._sql_set = q(
            "INSERT INTO stripe_checkout_backfill (step, last_id, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (step) DO UPDATE SET last_id = excluded.last_id, "
            "updated_at = excluded.updated_at")
        self._sql_clear = q("DELETE FROM stripe_checkout_backfill")
        self._sql_subscription_status = q(
            "SELECT status FROM stripe_checkout_subscriptions WHERE subscription_id = ?")

    def get(self, step: str) -> str | None:
        """The last object id ``step`` applied, or ``None`` (not started, or finished)."""
        rows = self.store._read(self._sql_get, (step,))
        return str(rows[0][0]) if rows and rows[0][0] is not None else None

    def set(self, step: str, last_id: str) -> None:
        """Record that ``step`` applied every object up to ``last_id`` (oldest first)."""
        with self.store.transaction(durable=False) as tx:
            self.store.dialect.execute(tx.conn, self._sql_set, (step, last_id, time.time()))

    def subscription_status(self, subscription_id: str) -> str | None:
        """The stored status of a subscription, or ``None`` when it is not stored."""
        rows = self.store._read(self._sql_subscription_status, (subscription_id,))
        return str(rows[0][0]) if rows else None

    def clear(self) -> None:
        """Forget every step's position: the backfill finished, the next one starts over."""
        with self.store.transaction(durable=False) as tx:
            self.store.dialect.execute(tx.conn, self._sql_clear, ())


class CustomerLinks:
    """The operator's edits of the ref <-> Stripe Customer map, and its reads by customer."""

    def __init__(self, store: Ledger) -> None:
        self.store = store
        q = store.dialect.placeholders
        self._sql_owner = q(
            "SELECT customer_ref FROM stripe_checkout_customers WHERE stripe_customer = ?")
        self._sql_of_ref = q(
            "SELECT stripe_customer FROM stripe_checkout_customers WHERE customer_ref = ? "
            "ORDER BY created_at, stripe_customer")
        self._sql_unlink = q("DELETE FROM stripe_checkout_customers WHERE customer_ref = ?")
        self._sql_detach = q(
            "UPDATE stripe_checkout_subscriptions SET customer_ref = NULL "
            "WHERE customer_ref = ?")

    def owner(self, stripe_customer: str) -> str | None:
        """The ref ``stripe_customer`` is linked to (a read), or ``None``."""
        rows = self.store._read(self._sql_owner, (stripe_customer,))
        return str(rows[0][0]) if rows else None

    def owner_in(self, tx: StoreTransaction, stripe_customer: str) -> str | None:
        """The ref of ``stripe_customer`` as ``tx`` sees it, or ``None``."""
        row = self.store.dialect.fetchone(tx.conn, self._sql_owner, (stripe_customer,))
        return str(row[0]) if row else None

    def customers_of(self, ref: str) -> list[str]:
        """Every Stripe Customer linked to ``ref``, the first recorded first."""
        return [str(row[0]) for row in self.store._read(self._sql_of_ref, (ref,))]

    def unlink(self, tx: StoreTransaction, ref: str) -> int:
        """Remove every link of ``ref`` and its ref from their subscriptions; the number
        of links removed."""
        removed = self.store.dialect.rowcount(tx.conn, self._sql_unlink, (ref,))
        self.store.dialect.execute(tx.conn, self._sql_detach, (ref,))
        return removed
