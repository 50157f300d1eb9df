"""The order model and its fulfilment state machine.

An :class:`Order` is one Checkout Session as this shop knows it: what was sold (the items and
amounts as the server priced them when the session was created), who bought it, and where the
payment stands. The ledger (:mod:`stripe_checkout_mw.ledger.store`) keeps one row per order.

Stripe's events (:mod:`stripe_checkout_mw.news.router`, from the webhook or ``sync``) and the
success-page status lookup (:mod:`stripe_checkout_mw.news.status`) learn that an order is paid.
Each moves it with :func:`~stripe_checkout_mw.ledger.order_state.move_order`, which locks the
row and records the fulfilment as a job that runs once the move is committed.

Statuses only move up this ranking, so deliveries arriving out of order cannot undo one
another::

    open < awaiting_payment < payment_failed = expired < paid < partially_refunded < refunded

Once ``paid``, a late ``checkout.session.expired`` or a replayed ``completed`` event never
downgrades an order, and nothing undoes a refund (:mod:`stripe_checkout_mw.news.payments`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from ..stripe_api.plain import to_plain

__all__ = [
    "AWAITING_PAYMENT",
    "EXPIRED",
    "OPEN",
    "PAID",
    "PARTIALLY_REFUNDED",
    "PAYMENT_FAILED",
    "REFUNDED",
    "STATUSES",
    "FulfillFunc",
    "Order",
    "advance",
    "items_from_session",
    "status_for_session",
]

logger = logging.getLogger("stripe_checkout_mw")

OPEN = "open"
AWAITING_PAYMENT = "awaiting_payment"
PAID = "paid"
PAYMENT_FAILED = "payment_failed"
EXPIRED = "expired"
PARTIALLY_REFUNDED = "partially_refunded"
REFUNDED = "refunded"

#: Every status an order can have, mapped to its rank: an order only moves to a higher rank.
#: ``payment_failed`` and ``expired`` share a rank so neither overwrites the other.
STATUSES: dict[str, int] = {
    OPEN: 0,
    AWAITING_PAYMENT: 1,
    PAYMENT_FAILED: 2,
    EXPIRED: 2,
    PAID: 3,
    PARTIALLY_REFUNDED: 4,
    REFUNDED: 5,
}

#: The ``fulfill`` hook: called for a paid order once its payment is committed to the ledger,
#: outside any transaction (see the README's fulfil contract).
FulfillFunc = Callable[["Order"], None]


@dataclass
class Order:
    """One Checkout Session in the ledger.

    :param session_id: the Checkout Session id (``cs_test_...`` / ``cs_live_...``).
    :param status: one of ``open``, ``awaiting_payment``, ``paid``, ``payment_failed``,
        ``expired``, ``partially_refunded``, ``refunded``.
    :param mode: the session mode (``payment``, ``subscription``, ``setup``).
    :param currency: three-letter ISO code in lower case, as Stripe writes it.
    :param amount_subtotal: minor units, before discounts and tax.
    :param amount_total: minor units; updated from Stripe's session when the payment is seen,
        so it is what the customer was actually charged.
    :param customer_email: the email given at creation, or the one the customer typed on
        Stripe's page once the order is paid.
    :param client_reference_id: the shop's own reference, if it set one.
    :param metadata: the session's metadata.
    :param items: what was sold, as the server priced it: dicts with ``name``, ``quantity``,
        ``unit_amount`` (``int`` or ``None``), ``currency`` and ``price`` (a Stripe price id or
        ``None``).
    :param fulfilled: whether the fulfilment step has completed (the ``fulfill`` hook, if one
        is configured, returned without raising and that was recorded).
    :param payment_status: Stripe's ``payment_status`` the last time the order moved:
        ``unpaid``, ``paid`` or ``no_payment_required``.
    :param session: the Stripe Checkout Session as a plain ``dict``: the one returned at
        creation, replaced by the one from the event or retrieval that moved the order.
        For the ``fulfill`` hook (``order.session["payment_intent"]`` and so on); never
        shown to the browser.
    :param created_at: Unix time the ledger row was written.
    :param updated_at: Unix time of the last change.
    :param fulfilled_at: Unix time of the fulfilment, or ``None``.
    :param fulfilment_attempt: in the order ``fulfill`` receives, which call this is: 1 on the
        first, higher only when an earlier call's outcome could not be recorded (it raised,
        its process stopped, or the database failed before marking it done). ``0`` elsewhere;
        not stored in the order's row (the job keeps it).
    """

    session_id: str
    status: str = OPEN
    mode: str | None = None
    currency: str | None = None
    amount_subtotal: int | None = None
    amount_total: int | None = None
    customer_email: str | None = None
    client_reference_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)
    fulfilled: bool = False
    payment_status: str | None = None
    session: dict[str, Any] | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    fulfilled_at: float | None = None
    fulfilment_attempt: int = 0
    #: Minor units refunded so far (:mod:`~stripe_checkout_mw.news.payments`; not an orders column).
    amount_refunded: int = 0
    #: ``None``, ``"disputed"``, ``"won"`` or ``"lost"``: the order's chargeback, if any.
    dispute_status: str | None = None
    #: The PaymentIntent that paid the order, once it is paid.
    payment_intent: str | None = None
    #: In the order a ``refunded`` or ``disputed`` hook receives: which call this is (1 on
    #: the first; higher only when an earlier call's outcome was not recorded). ``0`` elsewhere.
    hook_attempt: int = 0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"order: unknown status {self.status!r}")

    @classmethod
    def from_session(
        cls,
        session: Any,
        *,
        items: list[dict[str, Any]] | None = None,
        status: str | None = None,
    ) -> Order:
        """Build an order from a Stripe Checkout Session (a ``stripe.checkout.Session`` or its
        ``dict`` form).

        The middleware calls this with the session it just created and the items it priced,
        then :meth:`~stripe_checkout_mw.ledger.store.OrderStore.record_open`. Without ``items`` they
        are read from the session's ``line_items`` when it carries them (it does only when
        expanded), else left empty. ``status`` defaults to what the session says
        (:func:`status_for_session`).
        """
        data = to_plain(session)
        session_id = data.get("id")
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("order: the session has no id")
        metadata = data.get("metadata") or {}
        now = time.time()
        return cls(
            session_id=session_id,
            status=status or status_for_session(data) or OPEN,
            mode=_str_or_none(data.get("mode")),
            currency=_str_or_none(data.get("currency")),
            amount_subtotal=_int_or_none(data.get("amount_subtotal")),
            amount_total=_int_or_none(data.get("amount_total")),
            customer_email=_session_email(data),
            client_reference_id=_str_or_none(data.get("client_reference_id")),
            metadata={str(k): str(v) for k, v in dict(metadata).items()},
            items=list(items) if items is not None else items_from_session(data),
            payment_status=_str_or_none(data.get("payment_status")),
            session=data,
            created_at=now,
            updated_at=now,
        )

    def public_view(self) -> dict[str, object]:
        """The small view the success page may show, safe to send to the browser.

        Only these keys, never the Stripe session, metadata or the shop's references:
        ``session_id``, ``status``, ``payment_status``, ``amount_total``, ``currency``,
        ``customer_email``, ``items`` (each ``name``, ``quantity``, ``unit_amount``) and
        ``fulfilled``; ``amount_refunded`` too once something was refunded, and ``dispute``
        (``disputed``, ``won`` or ``lost``) once the payment was disputed.
        """
        view: dict[str, object] = {
            "session_id": self.session_id,
            "status": self.status,
            "payment_status": self.payment_status,
            "amount_total": self.amount_total,
            "currency": self.currency,
            "customer_email": self.customer_email,
            "items": [
                {
                    "name": item.get("name"),
                    "quantity": item.get("quantity"),
                    "unit_amount": item.get("unit_amount"),
                }
                for item in self.items
            ],
            "fulfilled": self.fulfilled,
        }
        if self.amount_refunded:
            view["amount_refunded"] = self.amount_refunded
        if self.dispute_status:
            view["dispute"] = self.dispute_status
        return view


def items_from_session(session: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The items of a session whose ``line_items`` were expanded, else ``[]``."""
    line_items = session.get("line_items")
    data = line_items.get("data") if isinstance(line_items, Mapping) else None
    if not isinstance(data, list):
        return []
    items: list[dict[str, Any]] = []
    for line in data:
        if not isinstance(line, Mapping):
            continue
        price = line.get("price")
        price = price if isinstance(price, Mapping) else {}
        items.append(
            {
                "name": _str_or_none(line.get("description")),
                "quantity": _int_or_none(line.get("quantity")),
                "unit_amount": _int_or_none(price.get("unit_amount")),
                "currency": _str_or_none(line.get("currency") or price.get("currency")),
                "price": _str_or_none(price.get("id")),
            }
        )
    return items


def status_for_session(session: Mapping[str, Any]) -> str | None:
    """The ledger status a Checkout Session's own state implies, or ``None`` when it is still
    open (nothing to record).

    ``complete`` with ``payment_status`` ``paid`` or ``no_payment_required`` is paid;
    ``complete`` but ``unpaid`` (a delayed payment method) is awaiting payment.
    """
    state = session.get("status")
    if state == "complete":
        if session.get("payment_status") in ("paid", "no_payment_required"):
            return PAID
        return AWAITING_PAYMENT
    if state == "expired":
        return EXPIRED
    return None


def advance(order: Order, new_status: str, session: Mapping[str, Any] | None, now: float) -> Order:
    """The order at ``new_status``, refreshed from the Stripe session that moved it.

    The caller checks the ranking first (:data:`STATUSES`): statuses only move up.
    """
    if session is None:
        return replace(order, status=new_status, updated_at=now)
    data = dict(session)
    return replace(
        order,
        status=new_status,
        payment_status=_str_or_none(data.get("payment_status")) or order.payment_status,
        amount_subtotal=_first_int(data.get("amount_subtotal"), order.amount_subtotal),
        amount_total=_first_int(data.get("amount_total"), order.amount_total),
        currency=_str_or_none(data.get("currency")) or order.currency,
        customer_email=order.customer_email or _session_email(data),
        session=data,
        updated_at=now,
    )


def _session_email(data: Mapping[str, Any]) -> str | None:
    details = data.get("customer_details")
    if isinstance(details, Mapping) and isinstance(details.get("email"), str):
        return str(details["email"])
    return _str_or_none(data.get("customer_email"))


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _first_int(value: object, fallback: int | None) -> int | None:
    found = _int_or_none(value)
    return found if found is not None else fallback
