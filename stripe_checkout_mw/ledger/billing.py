"""The billing tables: ``stripe_checkout_customers``, ``stripe_checkout_subscriptions`` and
``stripe_checkout_grants``.

The statements behind :class:`~stripe_checkout_mw.billing.customers.CustomerDirectory`,
:class:`~stripe_checkout_mw.billing.subscriptions.SubscriptionLedger` and
:class:`~stripe_checkout_mw.billing.entitlements.Entitlements`, which decide what to
store; these classes only read and write rows. Each statement is written once, when the
object is made, with the store's placeholders; records and price lists go in and out as
plain JSON data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from .store import Ledger, StoreTransaction

#: How many distinct stored price lists are kept decoded (see ``SubscriptionRows``).
DECODED_PRICES = 1024

__all__ = ["CustomerRows", "GrantRow", "GrantRows", "LockedSubscription", "SubscriptionRows"]


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
    sold_here: bool
    #: When the ledger first stored the row's status; ``None`` in rows stored before it
    #: was kept.
    status_since: float | None


class SubscriptionRows:
    """Reads and writes of the subscriptions table.

    :param statuses: the statuses that give access, for :meth:`active_prices`,
        :meth:`has_active` and :meth:`entitled`. Only subscriptions ``sold_here`` give
        access.
    :param grace: status -> seconds it gives access from its ``status_since`` (0: none).
        Statuses and cut-off times are bound as values, so the SQL is the same text on
        every call.
    """

    def __init__(self, store: Ledger, statuses: Iterable[str],
                 grace: Mapping[str, float] | None = None) -> None:
        self.store = store
        self._decoded: dict[str, frozenset[str]] = {}
        self._statuses = (True, *sorted(statuses))
        self._grace = sorted((grace or {}).items())
        q = store.dialect.placeholders
        marks = ", ".join("?" for _ in self._statuses[1:])
        # The rows of customer_ref = ? that give access (the ref's index; a user has few).
        gives_access = "customer_ref = ? AND sold_here = ? AND (status IN (<marks>)".replace(
            "<marks>", marks) + "".join(
            " OR (status = ? AND COALESCE(status_since, updated_at) > ?)"
            for _ in self._grace) + ")"
        self._sql_for_ref = q(
            "SELECT record, customer_ref FROM stripe_checkout_subscriptions WHERE customer_ref = ? "
            "ORDER BY created DESC, subscription_id DESC")
        self._sql_active = q(
            "SELECT prices FROM stripe_checkout_subscriptions WHERE <access>".replace(
                "<access>", gives_access))
        self._sql_any_active = q(
            "SELECT 1 FROM stripe_checkout_subscriptions WHERE <access> LIMIT 1".replace(
                "<access>", gives_access))
        # One round trip for everything that entitles a user: the price names of each
        # subscription giving access, and each feature granted until a later time.
        self._sql_entitled = q(
            "SELECT CAST(prices AS TEXT), NULL FROM stripe_checkout_subscriptions "
            "WHERE <access> UNION ALL "
            "SELECT NULL, feature FROM stripe_checkout_grants WHERE customer_ref = ? "
            "AND expires_at > ?".replace("<access>", gives_access))
        lock = ("SELECT record, revision, fetched_at, sold_here, status_since "
                "FROM stripe_checkout_subscriptions "
                "WHERE subscription_id = ?")
        self._sql_lock = q(lock + store.dialect.lock_suffix)
        self._sql_insert = q(
            "INSERT INTO stripe_checkout_subscriptions (subscription_id, stripe_customer, "
            "customer_ref, status, record, prices, revision, fetched_at, created, updated_at, "
            "sold_here, status_since) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (subscription_id) DO NOTHING")
        self._sql_update = q(
            "UPDATE stripe_checkout_subscriptions SET stripe_customer = ?, customer_ref = ?, "
            "status = ?, record = ?, prices = ?, revision = ?, fetched_at = ?, updated_at = ?, "
            "sold_here = ?, status_since = ? WHERE subscription_id = ?")
        self._sql_unowned = q(
            "SELECT record FROM stripe_checkout_subscriptions WHERE customer_ref IS NULL "
            "ORDER BY created DESC")
        self._sql_all = q(
            "SELECT record, customer_ref FROM stripe_checkout_subscriptions "
            "ORDER BY created DESC, subscription_id DESC LIMIT ?")

    # -- reads -------------------------------------------------------------------------

    def records_of(self, ref: str) -> list[tuple[dict[str, Any], str | None]]:
        """Each subscription record of ``ref`` with its stored ref, newest first."""
        from_json = self.store.dialect.from_json
        return [(from_json(record), owner)
                for record, owner in self.store._read(self._sql_for_ref, (ref,))]

    def _access_params(self, ref: str, now: float) -> tuple[Any, ...]:
        params: list[Any] = [ref, *self._statuses]
        for status, seconds in self._grace:
            # A grace of 0 binds a cut-off no time passes, rather than changing the SQL.
            params += [status, now - seconds if seconds > 0 else math.inf]
        return tuple(params)

    def has_active(self, ref: str, now: float) -> bool:
        """Whether ``ref`` has a subscription giving access at ``now`` (one indexed read)."""
        return bool(self.store._read(self._sql_any_active, self._access_params(ref, now)))

    def active_prices(self, ref: str, now: float) -> list[list[str]]:
        """The price names of each subscription of ``ref`` giving access at ``now``."""
        from_json = self.store.dialect.from_json
        return [list(from_json(prices)) for (prices,) in
                self.store._read(self._sql_active, self._access_params(ref, now))]

    def entitled(self, ref: str, now: float) -> tuple[list[frozenset[str]], list[str]]:
        """The price names of each subscription of ``ref`` giving access at ``now``, and
        the features granted to ``ref`` beyond ``now``: one indexed read."""
        prices: list[frozenset[str]] = []
        granted: list[str] = []
        for names, feature in self.store._read(
                self._sql_entitled, (*self._access_params(ref, now), ref, now)):
            if feature is None:
                prices.append(self._price_names(names))
            else:
                granted.append(str(feature))
        return prices, granted

    def _price_names(self, text: str) -> frozenset[str]:
        """The price names stored as ``text``, decoded once: a shop has a few plans, so a
        few texts come back on every members' request (decoding was a tenth of it)."""
        names = self._decoded.get(text)
        if names is None:
            if len(self._decoded) >= DECODED_PRICES:
                self._decoded.clear()  # bounded; a shop with this many plans decodes again
            names = self._decoded[text] = frozenset(map(str, json.loads(text)))
        return names

    def newest_records(self, limit: int) -> list[tuple[dict[str, Any], str | None]]:
        """The newest ``limit`` subscription records with their refs (for the operator)."""
        from_json = self.store.dialect.from_json
        return [(from_json(record), owner)
                for record, owner in self.store._read(self._sql_all, (limit,))]

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
               *, fetched_at: float, created: float, at: float, sold_here: bool) -> bool:
        """Store a subscription at revision 1, in its status since ``at``; ``False`` if a
        concurrent transaction stored it first."""
        to_json = self.store.dialect.to_json
        return self.store.dialect.rowcount(tx.conn, self._sql_insert, (
            subscription_id, stripe_customer, ref, status, to_json(record), to_json(prices), 1,
            fetched_at, created, at, sold_here, at)) == 1

    def update(self, tx: StoreTransaction, subscription_id: str, stripe_customer: str,
               ref: str | None, status: str, record: dict[str, Any], prices: Sequence[str],
               *, revision: int, fetched_at: float, at: float, sold_here: bool,
               status_since: float) -> None:
        """Write a subscription that :meth:`lock` returned, in ``status`` since
        ``status_since``."""
        to_json = self.store.dialect.to_json
        self.store.dialect.execute(tx.conn, self._sql_update, (
            stripe_customer, ref, status, to_json(record), to_json(prices), revision,
            fetched_at, at, sold_here, status_since, subscription_id))

    def _locked(self, row: Sequence[Any]) -> LockedSubscription:
        return LockedSubscription(dict(self.store.dialect.from_json(row[0])), int(row[1]),
                                  float(row[2]), bool(row[3]),
                                  None if row[4] is None else float(row[4]))


class GrantRow(NamedTuple):
    """A feature granted to a user by hand, until ``expires_at`` (Unix seconds)."""

    customer_ref: str
    feature: str
    expires_at: float
    note: str | None
    granted_at: float


class GrantRows:
    """Reads and writes of the grants table (one row per user and feature)."""

    def __init__(self, store: Ledger) -> None:
        self.store = store
        q = store.dialect.placeholders
        self._sql_upsert = q(
            "INSERT INTO stripe_checkout_grants (customer_ref, feature, expires_at, note, "
            "granted_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (customer_ref, feature) DO UPDATE SET expires_at = "
            "excluded.expires_at, note = excluded.note, granted_at = excluded.granted_at")
        self._sql_delete = q(
            "DELETE FROM stripe_checkout_grants WHERE customer_ref = ? AND feature = ?")
        self._sql_of = q(
            "SELECT customer_ref, feature, expires_at, note, granted_at "
            "FROM stripe_checkout_grants WHERE customer_ref = ? "
            "AND expires_at > ? ORDER BY feature")
        self._sql_all = q(
            "SELECT customer_ref, feature, expires_at, note, granted_at "
            "FROM stripe_checkout_grants WHERE expires_at > ? "
            "ORDER BY customer_ref, feature LIMIT ?")

    def put(self, ref: str, feature: str, expires_at: float, note: str | None,
            at: float) -> None:
        """Grant ``feature`` to ``ref`` until ``expires_at``, replacing an earlier grant."""
        with self.store.transaction() as tx:
            self.store.dialect.execute(tx.conn, self._sql_upsert,
                                       (ref, feature, expires_at, note, at))

    def delete(self, ref: str, feature: str) -> bool:
        """Remove the grant of ``feature`` to ``ref``; whether there was one."""
        with self.store.transaction() as tx:
            return self.store.dialect.rowcount(tx.conn, self._sql_delete, (ref, feature)) > 0

    def of(self, ref: str, now: float) -> list[GrantRow]:
        """The grants of ``ref`` that run beyond ``now``, by feature."""
        return [self._row(row) for row in self.store._read(self._sql_of, (ref, now))]

    def current(self, now: float, limit: int) -> list[GrantRow]:
        """Every grant that runs beyond ``now``, by user and feature, at most ``limit``."""
        return [self._row(row) for row in self.store._read(self._sql_all, (now, limit))]

    @staticmethod
    def _row(row: Sequence[Any]) -> GrantRow:
        return GrantRow(str(row[0]), str(row[1]), float(row[2]),
                        None if row[3] is None else str(row[3]), float(row[4]))
