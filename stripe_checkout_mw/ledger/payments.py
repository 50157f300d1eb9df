"""What happened to an order's payment after it was paid: the ``stripe_checkout_payments`` rows.

One row per paid order (keyed by the session id) holds the PaymentIntent and Charge that paid
it, so a refund or a dispute, which name only those, finds its order without asking Stripe;
the refunds and disputes seen so far (id -> amount and Stripe status, as JSON); the cumulative
``amount_refunded``; and the order's ``dispute_status`` (``disputed``, ``won`` or ``lost``).

The row is first written in the transaction that moves an order to ``paid``
(:func:`record_payment_intent`, from :func:`~stripe_checkout_mw.ledger.order_state.move_order`), and
changed only by :mod:`stripe_checkout_mw.news.payments`, under the order's row lock.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .orders import Order
from .schema import column_names
from .store import Ledger, StoreTransaction

__all__ = ["PAYMENT_COLUMNS", "Payment", "PaymentLedger", "record_payment_intent"]

PAYMENT_COLUMNS = column_names("stripe_checkout_payments")


@dataclass
class Payment:
    """An order's payment as the ledger knows it after ``paid``."""

    session_id: str
    payment_intent: str | None = None
    charge: str | None = None
    amount_refunded: int = 0
    #: ``{refund id: {"amount": int, "status": str, "created": int}}``
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``{dispute id: {"amount": int, "status": str, "reason": str, "created": int}}``
    disputes: dict[str, dict[str, Any]] = field(default_factory=dict)
    dispute_status: str | None = None
    updated_at: float = 0.0

    def attach(self, order: Order) -> Order:
        """``order`` with this payment's refunded amount, dispute and payment intent."""
        return replace(order, amount_refunded=self.amount_refunded,
                       dispute_status=self.dispute_status, payment_intent=self.payment_intent)


def _sql(store: Ledger, text: str) -> str:
    return store.dialect.placeholders(text.replace("<columns>", ", ".join(PAYMENT_COLUMNS)))


def record_payment_intent(tx: StoreTransaction, session_id: str,
                          payment_intent: object) -> None:
    """Remember which PaymentIntent paid the order (in the transaction that marks it paid).

    Writes the row if it is missing; an intent already recorded is kept.
    """
    intent = payment_intent if isinstance(payment_intent, str) and payment_intent else None
    dialect = tx.store.dialect
    dialect.execute(tx.conn, _sql(tx.store,
        "INSERT INTO stripe_checkout_payments (session_id, payment_intent, amount_refunded, "
        "refunds, disputes, updated_at) VALUES (?, ?, 0, ?, ?, ?) "
        "ON CONFLICT (session_id) DO UPDATE SET payment_intent = COALESCE("
        "stripe_checkout_payments.payment_intent, excluded.payment_intent)"),
        (session_id, intent, dialect.to_json({}), dialect.to_json({}), time.time()))


class PaymentLedger:
    """Reads and writes of the payments table over one store."""

    def __init__(self, store: Ledger) -> None:
        self.store = store
        self._select = _sql(store, "SELECT <columns> FROM stripe_checkout_payments "
                                   "WHERE session_id = ?")
        self._by_intent = _sql(store, "SELECT session_id FROM stripe_checkout_payments "
                                      "WHERE payment_intent = ?")
        self._by_charge = _sql(store, "SELECT session_id FROM stripe_checkout_payments "
                                      "WHERE charge = ?")
        self._update = _sql(store,
            "UPDATE stripe_checkout_payments SET payment_intent = ?, charge = ?, "
            "amount_refunded = ?, refunds = ?, disputes = ?, dispute_status = ?, "
            "updated_at = ? WHERE session_id = ?")

    def find_session(self, payment_intent: str | None, charge: str | None) -> str | None:
        """The session a payment intent or a charge paid, if this ledger recorded it (a read)."""
        self.store.ensure_schema()
        dialect = self.store.dialect
        with dialect.connection() as conn:
            for sql, value in ((self._by_intent, payment_intent), (self._by_charge, charge)):
                if value:
                    row = dialect.fetchone(conn, sql, (value,))
                    if row is not None:
                        return str(row[0])
        return None

    def get(self, session_id: str) -> Payment | None:
        """The payment row of an order (a read), or ``None`` before it is paid."""
        self.store.ensure_schema()
        with self.store.dialect.connection() as conn:
            row = self.store.dialect.fetchone(conn, self._select, (session_id,))
        return self._row(row) if row else None

    def attach(self, order: Order) -> Order:
        """``order`` with its refunds and dispute filled in (one read)."""
        payment = self.get(order.session_id)
        return payment.attach(order) if payment is not None else order

    def lock(self, tx: StoreTransaction, session_id: str, payment_intent: str | None) -> Payment:
        """The order's payment row, written first if missing, locked until ``tx`` ends."""
        record_payment_intent(tx, session_id, payment_intent)
        row = tx.store.dialect.fetchone(tx.conn, self._select + tx.store.dialect.lock_suffix,
                                        (session_id,))
        assert row is not None  # written just above, in this transaction
        return self._row(row)

    def save(self, tx: StoreTransaction, payment: Payment) -> None:
        """Write back a payment :meth:`lock` returned."""
        to_json = tx.store.dialect.to_json
        tx.store.dialect.execute(tx.conn, self._update, (
            payment.payment_intent, payment.charge, payment.amount_refunded,
            to_json(payment.refunds), to_json(payment.disputes), payment.dispute_status,
            time.time(), payment.session_id))

    def _row(self, row: Sequence[Any]) -> Payment:
        values: dict[str, Any] = dict(zip(PAYMENT_COLUMNS, row))
        from_json = self.store.dialect.from_json
        for column in ("refunds", "disputes"):
            loaded = from_json(values[column])
            values[column] = dict(loaded) if isinstance(loaded, Mapping) else {}
        values["amount_refunded"] = int(values["amount_refunded"] or 0)
        values["updated_at"] = float(values["updated_at"])
        return Payment(**values)
