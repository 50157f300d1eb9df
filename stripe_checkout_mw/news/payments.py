"""Refunds and disputes: what happens to a paid order afterwards, from Stripe's events.

:class:`PaymentEvents` applies ``charge.refunded``, ``refund.created/updated/failed`` and
``charge.dispute.created/updated/closed``, which the router (:mod:`stripe_checkout_mw.news.router`)
sends here from a webhook delivery or from reconciliation's replay:

1. **Which order?** The event names a PaymentIntent and a Charge, not a session. The ledger
   maps them back (:mod:`stripe_checkout_mw.ledger.payments`, written when the order was paid); for
   an order the ledger has no payment for (paid before this table existed, or its payment
   event never arrived) Stripe is asked once, ``GET /v1/checkout/sessions?payment_intent=``,
   and the answer is used only for a session in this ledger or carrying this shop's marker.
   A refund of a payment no session made may be of an invoice's payment (a renewal, a
   plan change): Stripe is asked which invoice that payment paid
   (``GET /v1/invoice_payments?payment[payment_intent]=``) and for the charge's cumulative
   refunded amount, which is kept on the invoice in the ledger (stored first if it is
   not yet: ``mw.billing.invoice(id).amount_refunded``), never lowered. Anything else (a
   Payment Link, another integration) changes nothing; its handlers still run, as for
   any event.
2. **What changed**, in the pipeline's transaction with the order row locked: the refunds
   and disputes seen (each Stripe status only moves forward), ``amount_refunded`` (the
   largest cumulative amount seen: a late or repeated event never lowers it) and the order's
   status, ``partially_refunded`` or ``refunded`` (up the ranking only, so a late
   ``checkout.session.completed`` never undoes a refund). A disputed payment keeps its
   refund status; its ``dispute_status`` is ``disputed``, then ``won`` or ``lost``.
3. **Hooks** after the commit, as pipeline jobs of the order: ``refunded(order)`` once per new
   refunded amount, ``disputed(order)`` once per new dispute status, numbered by
   ``order.hook_attempt`` and retried like ``fulfill``. A refund never records a fulfilment,
   and an order refunded in full before its payment was seen is not fulfilled.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Callable

import stripe

from ..ledger.order_state import FULFIL, move_order, order_from_stripe
from ..ledger.orders import (
    PAID,
    PARTIALLY_REFUNDED,
    REFUNDED,
    STATUSES,
    Order,
    status_for_session,
)
from ..ledger.payments import Payment, PaymentLedger
from ..ledger.pipeline import Applied, EventClaim, JobKind, Outcome, Pipeline
from ..ledger.store import Job, NewJob, SqlStore, StoreTransaction
from ..marker import Marker, is_marked
from ..stripe_api.plain import event_object, id_of, to_plain
from .invoices import InvoiceEvents
from .reads import NeedsItems, Reads, apply_with_reads

__all__ = ["DISPUTED", "REFUNDED_HOOK", "HookJob", "PaymentEvents"]

logger = logging.getLogger("stripe_checkout_mw")

#: Job kinds of the two hooks (key: what changed, subject: the session id).
REFUNDED_HOOK = "refunded"
DISPUTED = "disputed"

OrderHook = Callable[[Order], Any]

#: How far a refund's Stripe status has got: it only moves forward.
_REFUND_RANK = {"pending": 0, "requires_action": 0, "succeeded": 1, "failed": 1,
                "canceled": 1}
_REFUND_LOST = ("failed", "canceled")
_DISPUTE_RANK = {"warning_needs_response": 0, "needs_response": 0,
                 "warning_under_review": 1, "under_review": 1,
                 "appeal_needs_response": 2, "appeal_under_review": 2,
                 "won": 3, "lost": 3, "warning_closed": 3, "prevented": 3}
_DISPUTE_OUTCOME = {"won": "won", "warning_closed": "won", "prevented": "won", "lost": "lost"}
#: Payment intents Stripe said no session of this shop has: bounded, per process.
_FOREIGN_CACHE = 10_000


@dataclass(frozen=True)
class _Target:
    """The order an event is about: its session id, and Stripe's session when it was asked."""

    session_id: str
    session: dict[str, Any] | None = None
    #: Not in the ledger but marked as this shop's: record it from Stripe first.
    record: bool = False


class HookJob(JobKind):
    """Runs ``refunded(order)`` or ``disputed(order)`` with the order as it is now."""

    def __init__(self, kind: str, store: SqlStore, hook: OrderHook | None) -> None:
        self.kind = kind
        self.store = store
        self.ledger = PaymentLedger(store)
        self.hook = hook

    def run(self, job: Job, known: Mapping[str, Any]) -> None:
        if self.hook is None:
            return
        order = self.store.get(job.subject)
        if order is None:
            logger.error("%s hook: order %s is no longer in the ledger", self.kind, job.subject)
            return
        order = self.ledger.attach(order)
        self.hook(replace(order, metadata=dict(order.metadata),
                          items=[dict(i) for i in order.items], hook_attempt=job.attempt))


class PaymentEvents:
    """Apply refund and dispute events to the ledger (see the module docstring).

    :param store: the ledger.
    :param client: asked for the session of a payment intent the ledger does not know.
    :param marker: this shop's session marker (``None``: only sessions in the ledger count).
    :param refunded: ``refunded(order)``, or ``None``.
    :param disputed: ``disputed(order)``, or ``None``.
    :param invoices: where a refund of an invoice's payment is kept (``None``: nowhere).
    """

    def __init__(self, store: SqlStore, client: stripe.StripeClient, *, marker: Marker | None,
                 refunded: OrderHook | None = None,
                 disputed: OrderHook | None = None,
                 invoices: InvoiceEvents | None = None) -> None:
        for name, hook in (("refunded", refunded), ("disputed", disputed)):
            if hook is not None and not callable(hook):
                raise TypeError(f"{name}: expected a callable {name}(order) or None")
        self.store = store
        self.client = client
        self.marker = marker
        self.ledger = PaymentLedger(store)
        self.refunded = refunded
        self.disputed = disputed
        self.invoices = invoices
        self._foreign: dict[str, None] = {}

    def kinds(self) -> list[JobKind]:
        """The job kinds a pipeline needs to run this class's hooks."""
        return [HookJob(REFUNDED_HOOK, self.store, self.refunded),
                HookJob(DISPUTED, self.store, self.disputed)]

    def process(self, pipeline: Pipeline, known: Mapping[str, Any], payload: dict[str, Any],
                handler_jobs: Callable[[str], list[NewJob]]) -> Outcome:
        """Run one event through ``pipeline``.

        :param known: what the jobs may use without reading it again (the SDK event, by id).
        :param handler_jobs: the event's handler jobs for a subject (recorded with it).
        :raises stripe.StripeError: Stripe could not be asked which session it is about.
        """
        event_id, event_type = str(payload["id"]), str(payload["type"])
        obj = event_object(payload) or {}
        target = self._resolve(obj, event_type)
        subject = target.session_id if target is not None else event_id
        refund = (self._invoice_refund(pipeline, obj, event_type) if target is None
                  else None)

        def apply(tx: StoreTransaction, reads: Reads) -> Applied:
            jobs = handler_jobs(subject)
            if target is None:
                if refund is not None and self.invoices is not None:
                    self.invoices.ledger.record_refund(tx, *refund)
                return Applied(jobs)
            record = None
            if target.record:
                items = reads.items.get(target.session_id)
                if items is None:
                    raise NeedsItems(target.session_id)
                assert target.session is not None
                record = order_from_stripe(target.session, items)
            applied = self._apply(tx, event_type, obj, target, record)
            applied.jobs[:0] = jobs
            return applied

        claim = EventClaim(event_id, event_type, target.session_id if target else None)
        return apply_with_reads(pipeline, self.client, apply, subject=subject, event=claim,
                                known=known)

    # -- which order ------------------------------------------------------------------

    def _resolve(self, obj: Mapping[str, Any], event_type: str) -> _Target | None:
        intent = _text(obj.get("payment_intent"))
        charge = _text(obj.get("id")) if event_type == "charge.refunded" else _text(
            obj.get("charge"))
        session_id = self.ledger.find_session(intent, charge)
        if session_id is not None:
            return _Target(session_id)
        if intent is None or intent in self._foreign:
            return None
        listed = self.client.v1.checkout.sessions.list(
            params={"payment_intent": intent, "limit": 1})
        sessions = [to_plain(s) for s in listed.data]
        session = sessions[0] if sessions else None
        if session is not None and isinstance(session.get("id"), str):
            if self.store.get(session["id"]) is not None:
                return _Target(session["id"], session)
            if is_marked(session, self.marker):
                return _Target(session["id"], session, record=True)
        if len(self._foreign) >= _FOREIGN_CACHE:
            self._foreign.pop(next(iter(self._foreign)))
        self._foreign[intent] = None
        logger.info("payment %s is not an order of this shop; its refund or dispute changes "
                    "nothing", intent)
        return None

    def _invoice_refund(self, pipeline: Pipeline, obj: Mapping[str, Any],
                        event_type: str) -> tuple[str, int] | None:
        """The invoice a refund event's payment paid and the charge's cumulative refunded
        amount, as Stripe says now; ``None`` for anything else. An invoice not yet in the
        ledger is stored first (one that is not the shop's customers' stays out)."""
        intent = _text(obj.get("payment_intent"))
        if self.invoices is None or intent is None or not event_type.startswith(
                ("charge.refunded", "refund.")):
            return None
        listed = self.client.v1.invoice_payments.list(params={
            "payment": {"type": "payment_intent", "payment_intent": intent}, "limit": 1})
        invoice_id = id_of(to_plain(listed.data[0]).get("invoice")) if listed.data else None
        charge_id = _text(obj.get("id")) if event_type == "charge.refunded" else _text(
            obj.get("charge"))
        if invoice_id is None or charge_id is None:
            return None
        charge = to_plain(self.client.v1.charges.retrieve(charge_id))
        if self.invoices.ledger.invoice(invoice_id) is None:
            self.invoices.refresh(pipeline, invoice_id)
        return invoice_id, _int(charge.get("amount_refunded"))

    # -- what changed -----------------------------------------------------------------

    def _apply(self, tx: StoreTransaction, event_type: str, obj: Mapping[str, Any],
               target: _Target, record: Order | None) -> Applied:
        session_id = target.session_id
        order = tx.lock_order(session_id)
        jobs: list[NewJob] = []
        if (order is None or STATUSES[order.status] < STATUSES[PAID]) and target.session:
            # The payment event never reached this ledger: take the payment from Stripe's
            # session first (it records the payment intent and the fulfilment job).
            applied = move_order(tx, session_id, status_for_session(target.session),
                             target.session, record=record, locked=(order,))
            jobs, order = applied.jobs, applied.value
        if order is None or STATUSES[order.status] < STATUSES[PAID]:
            logger.warning("%s for %s, which this ledger has not seen paid; ignored",
                           event_type, session_id)
            return Applied(jobs, value=order)
        payment = self.ledger.lock(tx, session_id, _text(obj.get("payment_intent")))
        before = (payment.amount_refunded, payment.dispute_status)
        changed_dispute = _update(payment, event_type, obj)
        status = order.status
        if payment.amount_refunded > 0:
            full = (event_type == "charge.refunded" and obj.get("refunded") is True) or (
                bool(order.amount_total) and payment.amount_refunded >= (order.amount_total or 0))
            status = REFUNDED if full else PARTIALLY_REFUNDED
        if STATUSES[status] > STATUSES[order.status]:
            order = replace(order, status=status)
            tx.save_order(order)
        self.ledger.save(tx, payment)
        if payment.amount_refunded > before[0] and self.refunded is not None:
            jobs.append(NewJob(REFUNDED_HOOK, f"{session_id}:{payment.amount_refunded}",
                               session_id))
        if (changed_dispute is not None and payment.dispute_status != before[1]
                and self.disputed is not None):
            jobs.append(NewJob(DISPUTED, f"{changed_dispute}:{payment.dispute_status}",
                               session_id))
        if order.status == REFUNDED and not order.fulfilled:
            # Refunded in full before its fulfilment succeeded: nothing is left to deliver,
            # so a retry must not ship it now (one already running cannot be stopped).
            jobs = [job for job in jobs if job.kind != FULFIL]
            if tx.drop_pending(session_id, FULFIL):
                logger.info("order %s was refunded in full before it was fulfilled; its "
                            "fulfilment will not be retried", session_id)
        return Applied(jobs, value=payment.attach(order))


def _update(payment: Payment, event_type: str, obj: Mapping[str, Any]) -> str | None:
    """Apply one event's object to ``payment``; the dispute id it changed, if any."""
    if event_type == "charge.refunded":
        payment.charge = payment.charge or _text(obj.get("id"))
        payment.amount_refunded = max(payment.amount_refunded, _int(obj.get("amount_refunded")))
        return None
    if event_type.startswith("refund."):
        refund_id = _text(obj.get("id"))
        if refund_id is None:
            return None
        payment.charge = payment.charge or _text(obj.get("charge"))
        status = _text(obj.get("status")) or "pending"
        known = payment.refunds.get(refund_id)
        if known is None or _REFUND_RANK.get(status, 0) >= _REFUND_RANK.get(known["status"], 0):
            payment.refunds[refund_id] = {"amount": _int(obj.get("amount")), "status": status,
                                          "created": _int(obj.get("created"))}
        live = sum(int(r["amount"]) for r in payment.refunds.values()
                   if r["status"] not in _REFUND_LOST)
        payment.amount_refunded = max(payment.amount_refunded, live)
        return None
    dispute_id = _text(obj.get("id"))
    if dispute_id is None:
        return None
    payment.charge = payment.charge or _text(obj.get("charge"))
    status = _text(obj.get("status")) or "needs_response"
    known = payment.disputes.get(dispute_id)
    if known is not None and _DISPUTE_RANK.get(status, 0) < _DISPUTE_RANK.get(known["status"], 0):
        return None
    payment.disputes[dispute_id] = {"amount": _int(obj.get("amount")), "status": status,
                                    "reason": _text(obj.get("reason")),
                                    "created": _int(obj.get("created"))}
    payment.dispute_status = _DISPUTE_OUTCOME.get(status, "disputed")
    return dispute_id


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
