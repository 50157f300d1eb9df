"""Invoice events: re-fetch the invoice an event is about, store what Stripe says now
(:class:`~stripe_checkout_mw.billing.invoices.InvoiceLedger`), and record the app's hooks
for the money after the checkout as jobs.

:class:`InvoiceEvents` takes the events the router (:mod:`stripe_checkout_mw.news.router`)
sends it:

- the payment events ``invoice.paid``, ``invoice.payment_failed`` and
  ``invoice.payment_action_required``, which may make a hook due and also refresh the
  subscription of a subscription's invoice, as the subscription events do
  (:class:`~stripe_checkout_mw.news.subscriptions.SubscriptionEvents`);
- the status events ``invoice.finalized``, ``invoice.voided`` and
  ``invoice.marked_uncollectible`` (:data:`STATUS_ONLY`), which only keep the invoice's
  status: a manual invoice finalized and not paid yet is listed ``open``, an invoice the
  operator voids or writes off in the Dashboard ``void`` or ``uncollectible``. They make no
  hook due and refresh no subscription;
- ``customer.subscription.trial_will_end``.

For each it claims the event first (a duplicate fetches nothing), fetches the invoice
outside the transaction (one call; the lines are paged only when Stripe truncated them),
and stores it unless a fetch that began later is stored already: the event's payload
decides nothing, so events in any order leave the invoice as Stripe last said it is.

The hooks are numbered jobs of the event, run after the commit, retried (with the next
attempt number, never two at once) while they raise; each is recorded only for an invoice of
a customer the shop knows (a user's), and only when configured. Which is due follows from
the event's type and the invoice as the ledger has it after the event: as the event's fetch
stored it or, when a fetch that began later is stored already (a status event's, say), as
that one did. Their keys make each fire once for what it is about, whatever the order or
number of the events:

- ``invoice_paid(invoice)``: once per invoice, when Stripe says it is ``paid`` (the first
  invoice, each renewal, a change mid-cycle, a manual one: ``invoice.billing_reason`` says
  which).
- ``payment_failed(invoice)``: once per failed attempt (``invoice.attempt_count``), for an
  ``invoice.payment_failed`` event whose invoice is still open; dunning: email the customer
  ``invoice.hosted_invoice_url``.
- ``action_required(invoice)``: once per invoice, for an ``invoice.payment_action_required``
  event whose invoice is still open; the customer authenticates at
  ``invoice.hosted_invoice_url``.
- ``trial_will_end(subscription)``: once per trial end, while the subscription is trialing.

``payment_failed`` and ``action_required`` are skipped when, by the time they run, the ledger
has the invoice paid, void or ``uncollectible`` (written off: the customer is not asked to
pay it). None of them calls ``fulfill``.

:meth:`InvoiceEvents.refresh` stores one invoice, by id or as Stripe just gave it, outside
any event (for a backfill).

An invoice whose customer has no user yet (the first invoice is often paid, and its event
here, before the checkout's own event records whose customer it is) makes the applier ask
Stripe once which Checkout Session sold its subscription: a session in the ledger or
carrying this shop's marker gives the user (and records the customer's); a subscription
sold elsewhere is remembered (per process, bounded) and asked about no more.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import stripe

from ..billing.invoices import Invoice, InvoiceLedger
from ..billing.subscriptions import Subscription, SubscriptionLedger
from ..ledger.pipeline import Applied, EventClaim, JobKind, Outcome, Pipeline
from ..ledger.store import Job, NewJob, StoreTransaction
from ..marker import Marker, is_marked
from ..stripe_api.plain import event_object, id_of, to_plain
from .reads import NeedsSubscription, Reads, fetch_subscription
from .subscriptions import SubscriptionEvents

__all__ = ["ACTION_REQUIRED", "INVOICE_PAID", "PAYMENT_FAILED", "REFRESH_SUBSCRIPTION",
           "STATUS_ONLY", "TRIAL_WILL_END", "FetchedInvoice", "InvoiceEvents", "InvoiceHookJob",
           "TrialWillEndJob", "fetch_invoice", "with_all_lines"]

logger = logging.getLogger("stripe_checkout_mw")

#: The job kinds of the four hooks (each also the option's name).
INVOICE_PAID = "invoice_paid"
PAYMENT_FAILED = "payment_failed"
ACTION_REQUIRED = "action_required"
TRIAL_WILL_END = "trial_will_end"

#: The events that also re-fetch the subscription they are about (its status moves with
#: them); the other invoice events leave it to the subscription's own events.
REFRESH_SUBSCRIPTION = frozenset({"invoice.paid", "invoice.payment_failed",
                                  "invoice.payment_action_required",
                                  "customer.subscription.trial_will_end"})
#: The events that only keep the invoice's status (a manual invoice finalized, an invoice
#: voided or written off, often by the operator in the Dashboard): the invoice is stored
#: as Stripe says it is now, and nothing else: no hook, no subscription refresh.
STATUS_ONLY = frozenset({"invoice.finalized", "invoice.voided",
                         "invoice.marked_uncollectible"})
#: Subscriptions remembered as sold elsewhere (no session of this shop), per process.
_FOREIGN_CACHE = 10_000
#: Pages of 100 lines read at most for one invoice whose lines Stripe truncated.
MAX_LINE_PAGES = 20

InvoiceHook = Callable[[Invoice], object]
SubscriptionHook = Callable[[Subscription], object]


@dataclass(frozen=True)
class FetchedInvoice:
    """An invoice as Stripe answered (with all its lines), and when the request began
    (``invoice`` ``None``: Stripe does not know it)."""

    invoice: dict[str, Any] | None
    lines: list[dict[str, Any]]
    started_at: float


class NeedsOwner(Exception):
    """The invoice's customer has no user yet: ask Stripe which session sold its
    subscription (outside the transaction)."""

    def __init__(self, subscription_id: str) -> None:
        super().__init__(subscription_id)
        self.subscription_id = subscription_id


class NeedsInvoice(Exception):
    """The apply step needs the invoice fetched from Stripe (outside the transaction)."""

    def __init__(self, invoice_id: str) -> None:
        super().__init__(invoice_id)
        self.invoice_id = invoice_id


def fetch_invoice(client: stripe.StripeClient, invoice_id: str) -> FetchedInvoice:
    """What Stripe says the invoice is now, with every line. An invoice Stripe does not
    know (a deleted draft) is ``None``; other errors propagate (the delivery is retried).

    :raises stripe.StripeError: Stripe could not answer.
    """
    started = time.time()
    try:
        invoice = to_plain(client.v1.invoices.retrieve(invoice_id))
    except stripe.InvalidRequestError as exc:
        if exc.http_status != 404:
            raise
        logger.warning("invoice %s is not known to Stripe; not stored", invoice_id)
        return FetchedInvoice(None, [], started)
    return with_all_lines(client, invoice, started)


def with_all_lines(client: stripe.StripeClient, invoice: dict[str, Any],
                   started: float) -> FetchedInvoice:
    """``invoice`` (as Stripe answered a request begun at ``started``) with every line:
    Stripe gives the first few on the invoice, and the rest only by paging its lines.

    :raises stripe.StripeError: Stripe could not answer.
    """
    listed = invoice.get("lines")
    listed = listed if isinstance(listed, Mapping) else {}
    lines = [dict(line) for line in (listed.get("data") or [])]
    if listed.get("has_more"):
        lines = []
        after: str | None = None
        for _ in range(MAX_LINE_PAGES):
            page = client.v1.invoices.line_items.list(
                str(invoice["id"]), params={"limit": 100, **(
                    {"starting_after": after} if after is not None else {})})
            lines += [to_plain(line) for line in page.data]
            if not page.has_more or not page.data:
                break
            after = page.data[-1].id
    return FetchedInvoice(invoice, lines, started)


class InvoiceEvents:
    """Applies invoice events to the invoice ledger (see the module docstring).

    :param ledger: where invoices are stored (``mw.billing``).
    :param client: asked for the invoice (and subscription) an event is about.
    :param subscriptions: the subscriptions ledger, refreshed by a subscription's payment
        events and read for ``trial_will_end``; ``None`` keeps none.
    :param marker: this shop's session marker, which tells a subscription this shop sold
        when its customer's user is not recorded yet (``None``: only sessions in the ledger).
    :param invoice_paid, payment_failed, action_required, trial_will_end: the app's hooks
        (or ``None``); a hook's jobs are only recorded when it is given.
    """

    def __init__(self, ledger: InvoiceLedger, client: stripe.StripeClient, *,
                 subscriptions: SubscriptionLedger | None = None, marker: Marker | None = None,
                 invoice_paid: InvoiceHook | None = None,
                 payment_failed: InvoiceHook | None = None,
                 action_required: InvoiceHook | None = None,
                 trial_will_end: SubscriptionHook | None = None) -> None:
        self.hooks: dict[str, Callable[[Any], object] | None] = {
            INVOICE_PAID: invoice_paid, PAYMENT_FAILED: payment_failed,
            ACTION_REQUIRED: action_required, TRIAL_WILL_END: trial_will_end}
        for name, hook in self.hooks.items():
            if hook is not None and not callable(hook):
                raise TypeError(f"{name}: expected a callable or None")
        self.ledger = ledger
        self.client = client
        self.subscriptions = (SubscriptionEvents(subscriptions, client)
                              if subscriptions is not None else None)
        self.marker = marker
        # Subscriptions Stripe said no session of this shop sold: bounded, per process.
        self._foreign: dict[str, None] = {}

    def kinds(self) -> list[JobKind]:
        """The job kinds a pipeline needs to run this class's hooks."""
        return [InvoiceHookJob(kind, self.ledger, self.hooks[kind])
                for kind in (INVOICE_PAID, PAYMENT_FAILED, ACTION_REQUIRED)] + [
            TrialWillEndJob(self.hooks[TRIAL_WILL_END])]

    # -- the router's entry ------------------------------------------------------------

    def process(self, pipeline: Pipeline, known: Mapping[str, Any], payload: dict[str, Any],
                handler_jobs: Callable[[str], list[NewJob]]) -> Outcome:
        """Claim one event, re-fetch its invoice (and subscription) and store them, through
        ``pipeline``; the hooks it made due run after the commit.

        :raises stripe.StripeError: Stripe could not be asked (nothing was committed).
        """
        event_id, event_type = str(payload["id"]), str(payload["type"])
        obj = event_object(payload) or {}
        invoice_id = id_of(obj.get("id")) if event_type.startswith("invoice.") else None
        if invoice_id is not None and not invoice_id.startswith("in_"):
            invoice_id = None  # an upcoming invoice has no id to fetch

        def apply(tx: StoreTransaction, reads: Reads, invoices: _InvoiceReads) -> Applied:
            jobs = handler_jobs(event_id)
            if self.subscriptions is not None and event_type in REFRESH_SUBSCRIPTION:
                jobs += self.subscriptions.jobs_for(tx, payload, event_id, reads)
            if event_type == "customer.subscription.trial_will_end":
                jobs += self._trial_jobs(tx, obj, reads, event_id)
            if invoice_id is not None:
                jobs += self._invoice_jobs(tx, invoice_id, invoices, event_type, event_id)
            return Applied(jobs)

        return self._with_reads(pipeline, apply, subject=event_id,
                                event=EventClaim(event_id, event_type, None), known=known)

    def refresh(self, pipeline: Pipeline, invoice: str | Mapping[str, Any] | stripe.Invoice,
                *, fetched_at: float | None = None) -> Invoice | None:
        """Store one invoice through ``pipeline`` without an event (a backfill): by id
        (fetched from Stripe now) or as an object Stripe just gave (a list page's invoice,
        an SDK object or a plain dict), whose request began at ``fetched_at`` (default:
        now; give the time the list request began, so a later event's fetch wins). Hooks
        are recorded as for an event. The stored invoice, or ``None`` when Stripe does not
        know it.

        :raises stripe.StripeError: Stripe could not be asked.
        """
        reads = _InvoiceReads()
        if isinstance(invoice, str):
            invoice_id = invoice
        else:
            plain = to_plain(invoice)
            invoice_id = str(plain["id"])
            reads.invoices[invoice_id] = with_all_lines(
                self.client, plain, time.time() if fetched_at is None else fetched_at)

        def apply(tx: StoreTransaction, _: Reads, invoices: _InvoiceReads) -> Applied:
            return Applied(self._invoice_jobs(tx, invoice_id, invoices, "", invoice_id))

        self._with_reads(pipeline, apply, subject=invoice_id, event=None, known={},
                         invoices=reads)
        return self.ledger.invoice(invoice_id)

    # -- what changed -----------------------------------------------------------------

    def _invoice_jobs(self, tx: StoreTransaction, invoice_id: str, reads: _InvoiceReads,
                      event_type: str, subject: str) -> list[NewJob]:
        invoices, owners = reads.invoices, reads.owners
        got = invoices.get(invoice_id)
        if got is None:
            raise NeedsInvoice(invoice_id)
        if got.invoice is None:
            return []
        customer = id_of(got.invoice.get("customer")) or ""
        ref = (self.subscriptions.customers.ref_in(tx, customer)
               if self.subscriptions is not None and customer else None)
        invoice = Invoice.from_stripe(got.invoice, got.lines, ref, time.time())
        if ref is None and customer and self.subscriptions is not None and (
                invoice.subscription is not None
                and invoice.subscription not in self._foreign):
            # The first invoice is often paid (and its event here) before the checkout's
            # own event records whose customer it is: ask which session sold it.
            if invoice.subscription not in owners:
                raise NeedsOwner(invoice.subscription)
            ref = owners[invoice.subscription]
            if ref is not None:
                self.subscriptions.customers.record(tx, ref, customer)
                ref = self.subscriptions.customers.ref_in(tx, customer)
                invoice = replace(invoice, customer_ref=ref)
        now = self.ledger.store_fetched(tx, invoice, got.started_at)
        if ref is None or event_type in STATUS_ONLY:
            return []
        if now is None:
            # A fetch that began later is stored already, perhaps by an event that records
            # no hook (STATUS_ONLY): this event's hook is decided by what it stored.
            now = self.ledger.stored_in(tx, invoice_id)
            if now is None:
                return []
        payload = {"invoice": now.to_dict()}
        due: list[tuple[str, str]] = []
        if now.status == "paid":
            due.append((INVOICE_PAID, now.id))
        elif now.status == "open" and event_type == "invoice.payment_failed":
            due.append((PAYMENT_FAILED, f"{now.id}:{now.attempt_count}"))
        elif now.status == "open" and event_type == "invoice.payment_action_required":
            due.append((ACTION_REQUIRED, now.id))
        return [NewJob(kind, key, subject, payload) for kind, key in due
                if self.hooks[kind] is not None]

    def _trial_jobs(self, tx: StoreTransaction, obj: Mapping[str, Any], reads: Reads,
                    subject: str) -> list[NewJob]:
        if self.hooks[TRIAL_WILL_END] is None or self.subscriptions is None:
            return []
        subscription_id = id_of(obj.get("id"))
        got = reads.subscriptions.get(subscription_id or "")
        if subscription_id is None or got is None or got.subscription is None:
            return []
        customer = id_of(got.subscription.get("customer")) or ""
        ref = self.subscriptions.customers.ref_in(tx, customer) if customer else None
        subscription = Subscription.from_stripe(got.subscription, ref, time.time())
        if ref is None or subscription.status != "trialing":
            return []
        return [NewJob(TRIAL_WILL_END, f"{subscription.id}:{subscription.trial_end}", subject,
                       {"subscription": subscription.to_dict()})]

    def _with_reads(self, pipeline: Pipeline,
                    apply: Callable[[StoreTransaction, Reads, _InvoiceReads], Applied],
                    *, subject: str, event: EventClaim | None,
                    known: Mapping[str, Any], invoices: _InvoiceReads | None = None) -> Outcome:
        """Run ``apply`` through ``pipeline``, fetching (outside the transaction) what it
        says it needs, then trying again; the claim commits only with the last try."""
        reads = Reads()
        invoices = invoices or _InvoiceReads()
        while True:
            try:
                return pipeline.process(lambda tx: apply(tx, reads, invoices),
                                        subject=subject, event=event, known=known)
            except NeedsInvoice as need:
                invoices.invoices[need.invoice_id] = fetch_invoice(self.client,
                                                                   need.invoice_id)
            except NeedsOwner as need:
                invoices.owners[need.subscription_id] = self._owner_of(need.subscription_id)
            except NeedsSubscription as need:
                reads.subscriptions[need.subscription_id] = fetch_subscription(
                    self.client, need.subscription_id)


    def _owner_of(self, subscription_id: str) -> str | None:
        """The user of the session of this shop that sold ``subscription_id``, asked of
        Stripe once: a session in the ledger (its order's ref) or carrying this shop's
        marker; ``None`` (remembered) for a subscription sold elsewhere."""
        listed = self.client.v1.checkout.sessions.list(
            params={"subscription": subscription_id, "limit": 1})
        for found in listed.data:
            session = to_plain(found)
            order = self.ledger.store.get(str(session.get("id")))
            ref = order.client_reference_id if order is not None else (
                session.get("client_reference_id")
                if is_marked(session, self.marker) else None)
            if isinstance(ref, str) and ref:
                return ref
        if len(self._foreign) >= _FOREIGN_CACHE:
            self._foreign.pop(next(iter(self._foreign)))
        self._foreign[subscription_id] = None
        return None


@dataclass
class _InvoiceReads:
    """What was read from Stripe for one event so far: invoices by id, and the user of
    each subscription's selling session."""

    invoices: dict[str, FetchedInvoice] = field(default_factory=dict)
    owners: dict[str, str | None] = field(default_factory=dict)


class InvoiceHookJob(JobKind):
    """Runs ``invoice_paid``, ``payment_failed`` or ``action_required`` with the invoice
    as the ledger has it now (numbered by ``invoice.hook_attempt``)."""

    def __init__(self, kind: str, ledger: InvoiceLedger, hook: InvoiceHook | None) -> None:
        self.kind = kind
        self.ledger = ledger
        self.hook = hook

    def run(self, job: Job, known: Mapping[str, Any]) -> None:
        if self.hook is None:
            return
        recorded = Invoice.from_dict(job.payload["invoice"])
        invoice = self.ledger.invoice(recorded.id) or recorded
        if self.kind != INVOICE_PAID and invoice.status in ("paid", "void", "uncollectible"):
            logger.info("%s for invoice %s skipped: it is %s now", self.kind, invoice.id,
                        invoice.status)
            return
        self.hook(replace(invoice, customer_ref=invoice.customer_ref or recorded.customer_ref,
                          hook_attempt=job.attempt))
        logger.info("%s for invoice %s handled (attempt %d)", self.kind, invoice.id,
                    job.attempt)


class TrialWillEndJob(JobKind):
    """Runs ``trial_will_end(subscription)`` for one trial end."""

    kind = TRIAL_WILL_END

    def __init__(self, hook: SubscriptionHook | None) -> None:
        self.hook = hook

    def run(self, job: Job, known: Mapping[str, Any]) -> None:
        if self.hook is not None:
            self.hook(Subscription.from_dict(job.payload["subscription"]))
