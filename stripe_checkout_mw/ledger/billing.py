"""The billing tables: ``stripe_checkout_customers`` and ``stripe_checkout_subscriptions``.

The statements behind :class:`~stripe_checkout_mw.billing.customers.CustomerDirectory` and
:class:`~stripe_checkout_mw.billing.subscriptions.SubscriptionLedger`, which decide what to
store; these classes only read and write rows. Each statement is written once, when the
object is made, with the store's placeholders; records and price lists go in and out as
plain JSON data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from .store import Ledger, StoreTransaction

__all__ = ["CustomerRows", "LockedSubscription", "SubscriptionRows"]


class CustomerRows:
    """Reads and writes of the ref <-> Stripe Customer map."""

    def __init__(self, store: Ledger) -> None:
        self.store = store
        q = store.dialect.placeholders
        self._sql_by_ref = q(
            "SELECT stripe_customer FROM stripe_checkout_customers WHERE customer_ref = ? "
            "ORDER BY created_at, stripe_customer LIMIT 1")
        self._sql_ref = q(
            "SELECT customer_ref FROM stripe_checkout_customers WHERE stripe_customer = ?")
        self._sql_insert = q(
            "INSERT INTO stripe_checkout_customers (stripe_customer, customer_ref, created_at) "
            "VALUES (?, ?, ?) ON CONFLICT (stripe_customer) DO NOTHING")
        self._sql_attach = q(
            "UPDATE stripe_checkout_subscriptions SET customer_ref = ? "
            "WHERE stripe_customer = ? AND customer_ref IS NULL")

    def first_customer_of(self, ref: str) -> str | None:
        """The Stripe Customer first recorded for ``ref`` (a read), or ``None``."""
        rows = self.store._read(self._sql_by_ref, (ref,))
        return str(rows[0][0]) if rows else None

    def ref_of(self, tx: StoreTransaction, stripe_customer: str) -> str | None:
        """The ref of ``stripe_customer`` as the transaction sees it, or ``None``."""
        row = self.store.dialect.fetchone(tx.conn, self._sql_ref, (stripe_customer,))
        return str(row[0]) if row else None

    def insert(self, tx: StoreTransaction, stripe_customer: str, ref: str, at: float) -> None:
        """Map ``stripe_customer`` to ``ref`` unless it is mapped already."""
        self.store.dialect.execute(tx.conn, self._sql_insert, (stripe_customer, ref, at))

    def give_ref_to_subscriptions(self, tx: StoreTransaction, stripe_customer: str,
                                  ref: str) -> None:
        """Set ``ref`` on the customer's subscriptions stored without one."""
        self.store.dialect.execute(tx.conn, self._sql_attach, (ref, stripe_customer))


class LockedSubscription(NamedTuple):
    """A subscription row read under its row lock."""

    record: dict[str, Any]
    revision: int
    fetched_at: float


class SubscriptionRows:
    """Reads and writes of the subscriptions table.

    :param statuses: the statuses that give access, for :meth:`active_prices` and
        :meth:`has_active` (bound as values, so the SQL is the same text on every call).
    """

    def __init__(self, store: Ledger, statuses: Iterable[str]) -> None:
        self.store = store
        self._status_params = tuple(sorted(statuses))
        q = store.dialect.placeholders
        marks = ", ".join("?" for _ in self._status_params)
        self._sql_for_ref = q(
            "SELECT record, customer_ref FROM stripe_checkout_subscriptions WHERE customer_ref = ? "
            "ORDER BY created DESC, subscription_id DESC")
        self._sql_active = q(
            "SELECT prices FROM stripe_checkout_subscriptions WHERE customer_ref = ? "
            "AND status IN (<marks>)".replace("<marks>", marks))
        self._sql_any_active = q(
            "SELECT 1 FROM stripe_checkout_subscriptions WHERE customer_ref = ? "
            "AND status IN (<marks>) LIMIT 1".replace("<marks>", marks))
        lock = ("SELECT record, revision, fetched_at FROM stripe_checkout_subscriptions "
                "WHERE subscription_id = ?")
        self._sql_lock = q(lock + store.dialect.lock_suffix)
        self._sql_insert = q(
            "INSERT INTO stripe_checkout_subscriptions (subscription_id, stripe_customer, "
            "customer_ref, status, record, prices, revision, fetched_at, created, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (subscription_id) DO NOTHING")
        self._sql_update = q(
            "UPDATE stripe_checkout_subscriptions SET stripe_customer = ?, customer_ref = ?, "
            "status = ?, record = ?, prices = ?, revision = ?, fetched_at = ?, updated_at = ? "
            "WHERE subscription_id = ?")
        self._sql_unowned = q(
            "SELECT record FROM stripe_checkout_subscriptions WHERE customer_ref IS NULL "
            "ORDER BY created DESC")

    # -- reads -------------------------------------------------------------------------

    def records_of(self, ref: str) -> list[tuple[dict[str, Any], str | None]]:
        """Each subscription record of ``ref`` with its stored ref, newest first."""
        from_json = self.store.dialect.from_json
        return [(from_json(record), owner)
                for record, owner in self.store._read(self._sql_for_ref, (ref,))]

    def has_active(self, ref: str) -> bool:
        """Whether ``ref`` has a subscription in one of the statuses (one indexed read)."""
        return bool(self.store._read(self._sql_any_active, (ref, *self._status_params)))

    def active_prices(self, ref: str) -> list[list[str]]:
        """The price names of each subscription of ``ref`` in one of the statuses."""
        from_json = self.store.dialect.from_json
        return [list(from_json(prices)) for (prices,) in
                self.store._read(self._sql_active, (ref, *self._status_params))]

    def unowned_records(self) -> list[dict[str, Any]]:
        """The records of subscriptions stored without a ref, newest first."""
        from_json = self.store.dialect.from_json
        return [from_json(row[0]) for row in self.store._read(self._sql_unowned, ())]

    # -- in a transaction --------------------------------------------------------------

    def lock(self, tx: StoreTransaction, subscription_id: str) -> LockedSubscription | None:
        """The subscription's row, locked until ``tx`` ends, or ``None`` if not stored."""
        row = self.store.dialect.fetchone(tx.conn, self._sql_lock, (subscription_id,))
        return None if row is None else self._locked(row)

    def insert(self, tx: StoreTransaction, subscription_id: str, stripe_customer: str,
               ref: str | None, status: str, record: dict[str, Any], prices: Sequence[str],
               *, fetched_at: float, created: float, at: float) -> bool:
        """Store a subscription at revision 1; ``False`` if a concurrent transaction
        stored it first."""
        to_json = self.store.dialect.to_json
        return self.store.dialect.rowcount(tx.conn, self._sql_insert, (
            subscription_id, stripe_customer, ref, status, to_json(record), to_json(prices), 1,
            fetched_at, created, at)) == 1

    def update(self, tx: StoreTransaction, subscription_id: str, stripe_customer: str,
               ref: str | None, status: str, record: dict[str, Any], prices: Sequence[str],
               *, revision: int, fetched_at: float, at: float) -> None:
        """Write a subscription that :meth:`lock` returned."""
        to_json = self.store.dialect.to_json
        self.store.dialect.execute(tx.conn, self._sql_update, (
            stripe_customer, ref, status, to_json(record), to_json(prices), revision,
            fetched_at, at, subscription_id))

    def _locked(self, row: Sequence[Any]) -> LockedSubscription:
        return LockedSubscription(dict(self.store.dialect.from_json(row[0])), int(row[1]),
                                  float(row[2]))
