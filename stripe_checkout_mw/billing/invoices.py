"""The invoice ledger: every invoice of the shop's customers, as Stripe last said it is.

Stripe sends invoice news in no particular order and more than once, and an event's payload
is what the invoice was when the event was made. So, as for subscriptions, the payload
decides nothing: every ``invoice.*`` event makes its applier
(:mod:`stripe_checkout_mw.news.invoices`) re-fetch the invoice and store what Stripe says
*now* (:meth:`InvoiceLedger.store_fetched`) with the time the fetch began; a row is only
replaced by a fetch that began later.

The app's billing-history page reads the ledger alone (no Stripe call)::

    page = mw.billing.invoices("user-42", limit=20)            # newest first
    more = mw.billing.invoices("user-42", limit=20, starting_after=page[-1].id)
    invoice = mw.billing.invoice("in_...")                     # or None
    if invoice is not None and invoice.customer_ref == "user-42": ...

Money is in the currency's minor unit, as Stripe gives it; times are Unix seconds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ..ledger.invoices import InvoiceRows
from ..ledger.store import SqlStore, StoreTransaction
from ..stripe_api.plain import id_of

__all__ = ["DEFAULT_PAGE", "MAX_PAGE", "Invoice", "InvoiceLedger"]

#: Invoices per page by default, and at most (a page is one indexed read).
DEFAULT_PAGE = 20
MAX_PAGE = 100


@dataclass(frozen=True)
class Invoice:
    """An invoice as the ledger stores it (Stripe's values at the last fetch).

    ``tax`` is the sum of ``total_taxes[].amount`` and ``discounts`` the sum of
    ``total_discount_amounts[].amount``. ``period_start``/``period_end`` are the service
    period: the earliest start and latest end of the invoice's lines (not Stripe's
    invoice-level ``period_start``/``period_end``). ``hosted_invoice_url`` (where the
    customer pays or authenticates) and ``invoice_pdf`` are ``None`` until it is finalized.
    ``subscription`` is ``None`` for a manual invoice. ``customer_ref`` is the app's user
    id, when the customer is known. ``amount_refunded`` is how much of its payment was
    refunded (the charge's cumulative amount; 0 for none). ``hook_attempt`` is the hook's
    attempt number (1 on the first call of a hook; 0 outside a hook).
    """

    id: str
    number: str | None
    status: str
    billing_reason: str | None
    amount_due: int
    amount_paid: int
    amount_remaining: int
    total: int
    tax: int
    discounts: int
    currency: str
    period_start: int | None
    period_end: int | None
    hosted_invoice_url: str | None
    invoice_pdf: str | None
    paid_at: int | None
    subscription: str | None
    stripe_customer: str
    customer_ref: str | None
    created: int
    attempt_count: int
    next_payment_attempt: int | None
    updated_at: float
    amount_refunded: int = 0
    hook_attempt: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Invoice:
        return cls(**data)

    def to_row(self, fetched_at: float) -> dict[str, Any]:
        """The ledger row of this invoice (see :mod:`stripe_checkout_mw.ledger.invoices`)."""
        row = {name: getattr(self, name) for name in _STORED}
        row.update(invoice_id=self.id, subscription_id=self.subscription,
                   fetched_at=fetched_at)
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any], customer_ref: str | None) -> Invoice:
        """The invoice of a ledger row. A billing-history page builds a page of these on
        every view, so the frozen dataclass's ``__init__`` (a checked ``setattr`` per field)
        is skipped: the row's values are the fields as :meth:`to_row` wrote them."""
        invoice = object.__new__(cls)
        values = {name: row[name] for name in _STORED}
        values.update(id=row["invoice_id"], subscription=row["subscription_id"],
                      customer_ref=customer_ref, hook_attempt=0)
        invoice.__dict__.update(values)
        return invoice

    @classmethod
    def from_stripe(cls, invoice: Mapping[str, Any], lines: Sequence[Mapping[str, Any]],
                    customer_ref: str | None, at: float) -> Invoice:
        """The ledger's view of a Stripe Invoice object (a plain dict) and all its lines."""
        starts, ends = [], []
        for line in lines:
            period = line.get("period")
            if isinstance(period, Mapping):
                if _int(period.get("start")) is not None:
                    starts.append(int(period["start"]))
                if _int(period.get("end")) is not None:
                    ends.append(int(period["end"]))
        transitions = invoice.get("status_transitions")
        paid_at = (_int(transitions.get("paid_at")) if isinstance(transitions, Mapping)
                   else None)
        return cls(
            id=str(invoice["id"]),
            number=_text(invoice.get("number")),
            status=str(invoice.get("status") or "draft"),
            billing_reason=_text(invoice.get("billing_reason")),
            amount_due=_int(invoice.get("amount_due")) or 0,
            amount_paid=_int(invoice.get("amount_paid")) or 0,
            amount_remaining=_int(invoice.get("amount_remaining")) or 0,
            total=_int(invoice.get("total")) or 0,
            tax=_sum_amounts(invoice.get("total_taxes")),
            discounts=_sum_amounts(invoice.get("total_discount_amounts")),
            currency=str(invoice.get("currency") or ""),
            period_start=min(starts) if starts else None,
            period_end=max(ends) if ends else None,
            hosted_invoice_url=_text(invoice.get("hosted_invoice_url")),
            invoice_pdf=_text(invoice.get("invoice_pdf")),
            paid_at=paid_at,
            subscription=subscription_of(invoice),
            stripe_customer=id_of(invoice.get("customer")) or "",
            customer_ref=customer_ref,
            created=_int(invoice.get("created")) or int(at),
            attempt_count=_int(invoice.get("attempt_count")) or 0,
            next_payment_attempt=_int(invoice.get("next_payment_attempt")),
            updated_at=at,
        )


#: The fields stored in a column of their own name (``id`` and ``subscription`` are
#: ``invoice_id`` and ``subscription_id``; ``customer_ref`` comes from the customers table).
_STORED = tuple(f.name for f in fields(Invoice)
                if f.name not in ("id", "subscription", "customer_ref", "hook_attempt"))


def subscription_of(invoice: Mapping[str, Any]) -> str | None:
    """The subscription an invoice bills (``parent.subscription_details.subscription``)."""
    parent = invoice.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, Mapping) else None
    found = id_of(details.get("subscription")) if isinstance(details, Mapping) else None
    return found if found and found.startswith("sub_") else None


class InvoiceLedger:
    """``mw.billing``: the invoices of the app's users, and the write of what Stripe said."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self._rows = InvoiceRows(store)

    # -- reads -------------------------------------------------------------------------

    def invoices(self, user_ref: str, *, limit: int = DEFAULT_PAGE,
                 starting_after: str | None = None) -> list[Invoice]:
        """The invoices of the app's user ``user_ref``, newest first: at most ``limit``
        (1 to :data:`MAX_PAGE`), after the invoice ``starting_after`` (the last id of the
        previous page) when given. One indexed read of the ledger; no Stripe call.

        :raises ValueError: ``limit`` is out of range.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not (
                1 <= limit <= MAX_PAGE):
            raise ValueError(f"invoices: limit must be an integer from 1 to {MAX_PAGE}")
        if not isinstance(user_ref, str) or (
                starting_after is not None and not isinstance(starting_after, str)):
            return []
        return [Invoice.from_row(row, owner)
                for row, owner in self._rows.page_of(user_ref, limit, starting_after)]

    def invoice(self, invoice_id: str) -> Invoice | None:
        """The invoice ``invoice_id`` from the ledger, or ``None``. Check its
        ``customer_ref`` before showing it to a user."""
        if not isinstance(invoice_id, str):
            return None
        found = self._rows.one(invoice_id)
        if found is None:
            return None
        return Invoice.from_row(*found)

    # -- the applier's write ----------------------------------------------------------

    def store_fetched(self, tx: StoreTransaction, invoice: Invoice,
                      fetched_at: float) -> Invoice | None:
        """Store ``invoice`` as a fetch that began at ``fetched_at`` found it, unless a
        fetch that began later is stored already.

        :returns: the invoice as stored now, or ``None`` when nothing was written (an
            older answer).
        """
        invoice = replace(invoice, updated_at=time.time(), hook_attempt=0)
        stored = self._rows.locked(tx, invoice.id)
        if stored is None:
            if self._rows.insert(tx, invoice.to_row(fetched_at)):
                return invoice
            stored = self._rows.locked(tx, invoice.id)
            assert stored is not None  # inserted by a concurrent transaction, committed
        stored_at, refunded = stored
        if stored_at >= fetched_at:
            return None
        # Stripe's invoice says nothing of refunds: the refund events' amount stays.
        invoice = replace(invoice, amount_refunded=max(refunded, invoice.amount_refunded))
        self._rows.update(tx, invoice.to_row(fetched_at))
        return invoice

    def stored_in(self, tx: StoreTransaction, invoice_id: str) -> Invoice | None:
        """The invoice as the ledger holds it within ``tx`` (after :meth:`store_fetched`,
        whose lock it keeps until ``tx`` ends), or ``None``."""
        found = self._rows.one_in(tx, invoice_id)
        return None if found is None else Invoice.from_row(*found)

    def record_refund(self, tx: StoreTransaction, invoice_id: str, amount_refunded: int) -> bool:
        """Keep ``amount_refunded`` (a charge's cumulative refunded amount) on a stored
        invoice unless a larger one is stored; whether it changed."""
        return self._rows.raise_refunded(tx, invoice_id, amount_refunded)


def _sum_amounts(entries: Any) -> int:
    if not isinstance(entries, list):
        return 0
    return sum(_int(entry.get("amount")) or 0 for entry in entries
               if isinstance(entry, Mapping))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value,
                                                                             bool) else None
