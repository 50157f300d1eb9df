"""Plan changes from the app: preview, change, schedule, cancel and resume a user's plan.

``mw.subscriptions`` is a :class:`ManagedSubscriptions`: the ledger's reads
(``is_active``, ``for_customer``) plus these calls, each on the app's user id::

    preview = mw.subscriptions.preview_change("user-42", price="pro", quantity=3)
    preview.amount_due_now, preview.next_invoice_total       # minor units, plain data
    mw.subscriptions.change("user-42", price="pro", quantity=3,
                            proration_date=preview.proration_date)
    mw.subscriptions.schedule_change("user-42", price="basic")   # at the period end
    mw.subscriptions.cancel_scheduled_change("user-42")
    mw.subscriptions.cancel("user-42")                            # at the period end
    mw.subscriptions.resume("user-42")                            # undo that cancel

Why it is built this way:

- *The user's own subscription only.* The subscription is one the ledger holds for the
  user (a ``subscription_id`` from a browser is only used when the ledger says it is the
  user's), and the subscription Stripe returns must belong to the user's Stripe Customer.
  Without ``subscription_id`` the user's one live subscription is meant (several: 409).
- *Only offered prices.* A price is named as the checkout names it (a lookup key with
  :class:`~stripe_checkout_mw.checkout.prices.StripeLookupKeys`, a catalog key with
  :class:`~stripe_checkout_mw.checkout.prices.Catalog`) and resolved by the configured
  ``price_lookup``; it is offered when that gives a recurring price kept in Stripe. Anything
  else (an unknown name, a one-time price, a catalog entry priced inline, a custom lookup
  callable) is refused with a 400.
- *A failed payment changes nothing.* :meth:`ManagedSubscriptions.change` charges the
  prorated difference at once (``proration_behavior="always_invoice"``) with
  ``payment_behavior="pending_if_incomplete"``: when the charge is declined or needs the
  customer's authentication, Stripe parks the change in ``pending_update`` and the user
  stays on the old plan; :class:`PaymentNotCompleted` (402) says so, with the invoice's
  hosted page where the customer can pay or authenticate (the change then applies; unpaid,
  Stripe drops it within 23 hours).
- *Downgrades at the period end* go through a subscription schedule made from the
  subscription, with two phases (the current one, then the new plan) and
  ``end_behavior="release"``; cancelling the scheduled change releases the schedule.
- *Stripe decides.* After each change the subscription is re-fetched and stored through
  the subscription applier and the pipeline (a ``subscription_changed`` job when its status
  or items changed); the ``customer.subscription.*`` webhooks converge on the same state.

Every Stripe call goes through the shop's guard. Errors are
:class:`~stripe_checkout_mw.errors.HTTPError` with a message fit for the customer: 400 for
a bad argument or a price not offered, 401 for no user, 404 when the user has no such
subscription, 409 when the subscription cannot take this change now (a change already
scheduled, several subscriptions), 402 (:class:`PaymentNotCompleted`) for an unpaid change,
503/502 when Stripe cannot be reached.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import stripe

from ..checkout.prices import PriceLookup
from ..checkout.service import stripe_error_to_http
from ..checkout.validation import ValidationError
from ..errors import HTTPError
from ..ledger.store import SqlStore
from ..marker import Marker
from ..stripe_api.guard import StripeGuard
from ..stripe_api.plain import id_of, to_plain
from .customers import CustomerDirectory
from .subscriptions import Subscription, SubscriptionLedger

if TYPE_CHECKING:
    from ..checkout.prices import CustomPriceLookup

__all__ = ["CHANGEABLE_STATUSES", "ChangePreview", "ChangeResult", "ManagedSubscriptions",
           "PaymentNotCompleted", "PreviewLine", "ScheduledChange"]

logger = logging.getLogger("stripe_checkout_mw")

#: Statuses of a subscription whose plan can be changed, cancelled or resumed.
CHANGEABLE_STATUSES = frozenset({"active", "trialing", "past_due"})
#: The largest seat count a change may ask for (Stripe's own limit is far higher; this
#: only keeps a typo from billing thousands of seats).
MAX_QUANTITY = 10_000

#: Re-fetch subscription ``id`` from Stripe and store it through the pipeline.
Refresh = Callable[[SubscriptionLedger, str], None]


@dataclass(frozen=True)
class PreviewLine:
    """One line of a previewed invoice (amounts in minor units)."""

    description: str | None
    amount: int
    proration: bool
    period_start: int | None
    period_end: int | None


@dataclass(frozen=True)
class ChangePreview:
    """What a change would bill, from Stripe's invoice preview.

    ``amount_due_now`` is what :meth:`ManagedSubscriptions.change` would charge at once
    (the prorations; negative amounts are credits), ``lines_now`` its lines;
    ``next_invoice_total`` is the first renewal after the change, on
    ``next_invoice_at``. Pass ``proration_date`` to ``change`` so the charge is the
    amount shown.
    """

    subscription: str
    price: str
    quantity: int
    currency: str
    proration_date: int | None
    amount_due_now: int
    lines_now: tuple[PreviewLine, ...]
    next_invoice_total: int
    next_invoice_at: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ChangeResult:
    """A change Stripe applied and was paid for: the subscription as now stored, and
    the invoice of the immediate charge (``None`` when nothing was billed)."""

    subscription: Subscription
    invoice: str | None
    amount_paid: int

    def to_dict(self) -> dict[str, Any]:
        return {"subscription": self.subscription.to_dict(), "invoice": self.invoice,
                "amount_paid": self.amount_paid}


@dataclass(frozen=True)
class ScheduledChange:
    """A change that takes effect at ``at`` (the current period's end) by ``schedule``."""

    subscription: str
    schedule: str
    price: str
    quantity: int
    at: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PaymentNotCompleted(HTTPError):
    """The change's payment was declined or needs the customer's authentication: the user
    stays on the old plan. ``hosted_invoice_url`` is where the customer can pay (or
    confirm with their bank); the change applies when that invoice is paid."""

    def __init__(self, subscription: Subscription | None, invoice: str | None,
                 hosted_invoice_url: str | None) -> None:
        where = (" Pay the invoice on its page to apply the change."
                 if hosted_invoice_url else "")
        super().__init__(
            402, "The payment for this plan change did not go through (the card was "
                 "declined or needs the customer's confirmation); the plan is unchanged."
                 + where, type="card_error")
        self.subscription = subscription
        self.invoice = invoice
        self.hosted_invoice_url = hosted_invoice_url

    def payload(self) -> dict[str, Any]:
        body = super().payload()
        body["error"]["hosted_invoice_url"] = self.hosted_invoice_url
        return body


@dataclass(frozen=True)
class _Target:
    """The subscription a call is about, as Stripe says it is now."""

    subscription: dict[str, Any]
    item: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.subscription["id"])

    @property
    def price(self) -> str:
        return str(id_of(self.item.get("price")))


class ManagedSubscriptions(SubscriptionLedger):
    """``mw.subscriptions``: the ledger's reads, and the user's plan changes (see the
    module docstring).

    :param client: the shop's Stripe client.
    :param guard: the guard every Stripe call goes through.
    :param price_lookup: the configured ``price_lookup``, which says which prices are
        offered.
    :param refresh: re-fetches a subscription and stores it through the pipeline.
    """

    def __init__(self, store: SqlStore, customers: CustomerDirectory, *,
                 past_due_is_active: bool = True, past_due_grace_days: float = 14.0,
                 incomplete_grace_days: float = 0.0, marker: Marker | None = None,
                 entitling_prices: Collection[str] = (),
                 features: Mapping[str, Iterable[str]] | None = None,
                 client: stripe.StripeClient, guard: StripeGuard,
                 price_lookup: PriceLookup | CustomPriceLookup | None,
                 refresh: Refresh) -> None:
        super().__init__(store, customers, past_due_is_active=past_due_is_active,
                         past_due_grace_days=past_due_grace_days,
                         incomplete_grace_days=incomplete_grace_days, marker=marker,
                         entitling_prices=entitling_prices, features=features)
        self.client = client
        self.guard = guard
        self.price_lookup = price_lookup
        self._refresh = refresh

    # -- the app's calls ---------------------------------------------------------------

    def preview_change(self, user_ref: str, subscription_id: str | None = None, *,
                       price: str | None = None, quantity: int | None = None,
                       ) -> ChangePreview:
        """What changing to ``price`` and/or ``quantity`` would bill now and next.

        Two invoice previews (Stripe's ``invoices.create_preview``): the immediate charge
        and the first renewal after the change. Nothing changes at Stripe.
        """
        target = self._target(user_ref, subscription_id, "preview a plan change")
        new_price, new_quantity = self._wanted(target, price, quantity)
        item = {"id": target.item["id"], "price": new_price, "quantity": new_quantity}
        base = {"customer": id_of(target.subscription.get("customer")),
                "subscription": target.id}
        now = self._call("plan change preview", lambda: self.client.v1.invoices.create_preview(
            params={**base, "subscription_details": {  # type: ignore[arg-type]
                "items": [item], "proration_behavior": "always_invoice"}}))
        later = self._call("plan change preview", lambda: self.client.v1.invoices.create_preview(
            params={**base, "subscription_details": {  # type: ignore[arg-type]
                "items": [item], "proration_behavior": "none"}}))
        lines = tuple(_line(line) for line in _lines(now))
        starts = [line.period_start for line in (_line(x) for x in _lines(later))
                  if line.period_start is not None]
        parent = now.get("parent") or {}
        details = parent.get("subscription_details") or {}
        return ChangePreview(
            subscription=target.id, price=new_price, quantity=new_quantity,
            currency=str(now.get("currency") or ""),
            proration_date=_int(details.get("subscription_proration_date")),
            amount_due_now=int(now.get("amount_due") or 0), lines_now=lines,
            next_invoice_total=int(later.get("total") or 0),
            next_invoice_at=min(starts) if starts else None)

    def change(self, user_ref: str, subscription_id: str | None = None, *,
               price: str | None = None, quantity: int | None = None,
               proration_date: int | None = None) -> ChangeResult:
        """Change the plan now, charging the prorated difference at once.

        :param proration_date: the preview's ``proration_date``, so the charge is the
            amount the preview showed.
        :raises PaymentNotCompleted: the charge was not paid; the plan is unchanged.
        """
        target = self._target(user_ref, subscription_id, "change the plan")
        self._no_schedule(target)
        new_price, new_quantity = self._wanted(target, price, quantity)
        params: dict[str, Any] = {
            "items": [{"id": target.item["id"], "price": new_price,
                       "quantity": new_quantity}],
            "proration_behavior": "always_invoice",
            "payment_behavior": "pending_if_incomplete",
            "expand": ["latest_invoice"],
        }
        if proration_date is not None:
            if isinstance(proration_date, bool) or not isinstance(proration_date, int):
                raise HTTPError(400, "proration_date must be a Unix time in seconds.",
                                param="proration_date")
            params["proration_date"] = proration_date
        updated = self._call("plan change", lambda: self.client.v1.subscriptions.update(
            target.id, params=params))  # type: ignore[arg-type]
        invoice = updated.get("latest_invoice")
        invoice = invoice if isinstance(invoice, Mapping) else {}
        invoice_id = id_of(invoice) if invoice.get("id") != id_of(
            target.subscription.get("latest_invoice")) else None
        stored = self._stored_after(user_ref, target.id)
        if updated.get("pending_update"):
            logger.info("plan change of subscription %s waits for its payment (invoice %s)",
                        target.id, invoice_id)
            raise PaymentNotCompleted(stored, invoice_id, invoice.get("hosted_invoice_url"))
        logger.info("subscription %s changed to %s x %d", target.id, new_price, new_quantity)
        assert stored is not None  # the user's subscription, just stored
        return ChangeResult(stored, invoice_id,
                            int(invoice.get("amount_paid") or 0) if invoice_id else 0)

    def schedule_change(self, user_ref: str, subscription_id: str | None = None, *,
                        price: str | None = None, quantity: int | None = None,
                        ) -> ScheduledChange:
        """Change the plan at the end of the current period (a downgrade: nothing is
        charged or credited now), through a subscription schedule."""
        target = self._target(user_ref, subscription_id, "schedule a plan change")
        self._no_schedule(target)
        new_price, new_quantity = self._wanted(target, price, quantity)
        schedule = self._call("plan change schedule",
                              lambda: self.client.v1.subscription_schedules.create(
                                  params={"from_subscription": target.id}))
        current = (schedule.get("phases") or [{}])[0]
        phases = [
            {"items": [{"price": id_of(item.get("price")), "quantity": item.get("quantity")}
                       for item in current.get("items") or []],
             "start_date": current.get("start_date"), "end_date": current.get("end_date")},
            {"items": [{"price": new_price, "quantity": new_quantity}]},
        ]
        try:
            self._call("plan change schedule",
                       lambda: self.client.v1.subscription_schedules.update(
                           str(schedule["id"]), params={  # type: ignore[arg-type]
                               "end_behavior": "release", "phases": phases}))
        except HTTPError:
            # Leave the subscription as it was rather than managed by a one-phase schedule.
            self._release_quietly(str(schedule["id"]))
            raise
        self._stored_after(user_ref, target.id)
        logger.info("subscription %s: change to %s x %d scheduled (%s)", target.id,
                    new_price, new_quantity, schedule["id"])
        return ScheduledChange(target.id, str(schedule["id"]), new_price, new_quantity,
                               int(current.get("end_date") or 0))

    def cancel_scheduled_change(self, user_ref: str,
                                subscription_id: str | None = None) -> Subscription:
        """Drop the scheduled change: the schedule is released, the plan stays as it is."""
        target = self._target(user_ref, subscription_id, "cancel a scheduled change")
        schedule = id_of(target.subscription.get("schedule"))
        if schedule is None:
            raise HTTPError(404, "No plan change is scheduled for this subscription.")
        self._call("scheduled change release",
                   lambda: self.client.v1.subscription_schedules.release(schedule))
        logger.info("subscription %s: scheduled change %s released", target.id, schedule)
        return self._stored_after(user_ref, target.id)  # type: ignore[return-value]

    def cancel(self, user_ref: str, at_period_end: bool = True,
               subscription_id: str | None = None) -> Subscription:
        """Cancel the subscription at the period end (access lasts until then; undo with
        :meth:`resume`), or now with ``at_period_end=False``."""
        target = self._target(user_ref, subscription_id, "cancel the subscription")
        self._no_schedule(target)
        if at_period_end:
            self._call("subscription cancel", lambda: self.client.v1.subscriptions.update(
                target.id, params={"cancel_at_period_end": True}))
        else:
            self._call("subscription cancel",
                       lambda: self.client.v1.subscriptions.cancel(target.id))
        logger.info("subscription %s cancelled (%s)", target.id,
                    "at the period end" if at_period_end else "now")
        return self._stored_after(user_ref, target.id)  # type: ignore[return-value]

    def resume(self, user_ref: str, subscription_id: str | None = None) -> Subscription:
        """Undo a cancel at the period end; a subscription not set to cancel is left as
        it is (so a second click changes nothing)."""
        target = self._target(user_ref, subscription_id, "resume the subscription")
        if target.subscription.get("cancel_at_period_end"):
            self._call("subscription resume", lambda: self.client.v1.subscriptions.update(
                target.id, params={"cancel_at_period_end": False}))
            logger.info("subscription %s resumed", target.id)
        return self._stored_after(user_ref, target.id)  # type: ignore[return-value]

    # -- helpers -----------------------------------------------------------------------

    def _target(self, user_ref: str, subscription_id: str | None, action: str) -> _Target:
        """The user's subscription, fetched from Stripe, with its one item."""
        if not isinstance(user_ref, str) or not user_ref:
            raise HTTPError(401, f"Sign in to {action}.", type="authentication_error")
        if subscription_id is not None and not isinstance(subscription_id, str):
            raise HTTPError(400, "subscription must be a subscription id.",
                            param="subscription")
        mine = [sub for sub in self.for_customer(user_ref)
                if sub.status in CHANGEABLE_STATUSES]
        if subscription_id is not None:
            mine = [sub for sub in mine if sub.id == subscription_id]
        if not mine:
            raise HTTPError(404, "There is no active subscription to change.",
                            param="subscription" if subscription_id else None)
        if len(mine) > 1:
            raise HTTPError(409, "This user has several subscriptions; name one with "
                                 "subscription.", param="subscription")
        owned = mine[0]
        fetched = self._call("subscription retrieve",
                             lambda: self.client.v1.subscriptions.retrieve(owned.id))
        if id_of(fetched.get("customer")) != owned.stripe_customer:
            logger.error("subscription %s no longer belongs to the ledger's customer %s; "
                         "not changed", owned.id, owned.stripe_customer)
            raise HTTPError(404, "There is no active subscription to change.")
        if fetched.get("status") not in CHANGEABLE_STATUSES:
            self._stored_after(user_ref, owned.id)
            raise HTTPError(409, f"This subscription is {fetched.get('status')} and can no "
                                 f"longer be changed.")
        items = (fetched.get("items") or {}).get("data") or []
        if len(items) != 1:
            raise HTTPError(409, "This subscription has several items; change it in the "
                                 "billing portal.")
        return _Target(fetched, items[0])

    def _wanted(self, target: _Target, price: str | None,
                quantity: int | None) -> tuple[str, int]:
        """The new price id and quantity: the offered price named, the quantity checked;
        what is not given stays as it is."""
        if price is None and quantity is None:
            raise HTTPError(400, "Name the new price, the new quantity, or both.",
                            param="price")
        if quantity is not None and (isinstance(quantity, bool) or not isinstance(
                quantity, int) or not 1 <= quantity <= MAX_QUANTITY):
            raise HTTPError(400, f"quantity must be a whole number from 1 to {MAX_QUANTITY}.",
                            param="quantity")
        new_price = target.price if price is None else self._offered(price)
        new_quantity = quantity if quantity is not None else int(
            target.item.get("quantity") or 1)
        if (new_price, new_quantity) == (target.price, int(target.item.get("quantity") or 0)):
            raise HTTPError(409, "The subscription already has this price and quantity.")
        return new_price, new_quantity

    def _offered(self, name: object) -> str:
        """The Stripe price id ``name`` stands for, if the shop offers it as a plan."""
        if not isinstance(name, str) or not 0 < len(name) <= 200:
            raise HTTPError(400, "price must be the name of one of the shop's plans.",
                            param="price")
        refused = HTTPError(400, "This price is not one of the shop's plans.", param="price")
        lookup = self.price_lookup
        if not isinstance(lookup, PriceLookup):
            raise refused
        try:
            with self.guard.call("plan price look-up"):
                (priced,) = lookup.resolve([{"price": name, "quantity": 1}], self.client)
        except ValidationError:
            raise refused from None
        except stripe.StripeError as exc:
            raise stripe_error_to_http(exc, "plan price look-up") from None
        price_id = priced.line_item.get("price")
        if not priced.recurring or not isinstance(price_id, str):
            raise refused
        return price_id

    def _no_schedule(self, target: _Target) -> None:
        schedule = id_of(target.subscription.get("schedule"))
        if schedule is not None:
            raise HTTPError(409, "A plan change is already scheduled for this subscription; "
                                 "cancel the scheduled change first.")

    def _call(self, action: str, call: Callable[[], Any]) -> dict[str, Any]:
        """One Stripe call through the guard; Stripe's errors as answers for the app."""
        try:
            with self.guard.call(action):
                answer = call()
        except stripe.InvalidRequestError as exc:
            stripe_error_to_http(exc, action)  # logs the request id and code
            raise HTTPError(400, "The payment provider refused this change.",
                            param=getattr(getattr(exc, "error", None), "param", None),
                            ) from None
        except stripe.CardError as exc:
            stripe_error_to_http(exc, action)
            raise HTTPError(402, "The card was declined; nothing was changed.",
                            type="card_error") from None
        except stripe.StripeError as exc:
            raise stripe_error_to_http(exc, action) from None
        return to_plain(answer)

    def _stored_after(self, user_ref: str, subscription_id: str) -> Subscription | None:
        """Re-fetch and store what Stripe says now; the stored subscription. A refresh
        that fails is logged: the change is made, and the webhook brings it."""
        try:
            self._refresh(self, subscription_id)
        except Exception as exc:
            logger.warning("subscription %s changed at Stripe but not re-stored now (%s); "
                           "its webhook will bring it", subscription_id, type(exc).__name__)
        for sub in self.for_customer(user_ref):
            if sub.id == subscription_id:
                return sub
        return None

    def _release_quietly(self, schedule: str) -> None:
        try:
            self._call("schedule release", lambda: self.client.v1.subscription_schedules
                       .release(schedule))
        except HTTPError:
            logger.error("subscription schedule %s could not be released after a failed "
                         "update; release it in the Dashboard", schedule)


def _lines(invoice: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((invoice.get("lines") or {}).get("data") or [])


def _line(line: Mapping[str, Any]) -> PreviewLine:
    parent = line.get("parent") or {}
    details = parent.get("subscription_item_details") or {}
    period = line.get("period") or {}
    return PreviewLine(description=line.get("description"), amount=int(line.get("amount") or 0),
                       proration=bool(details.get("proration")),
                       period_start=_int(period.get("start")),
                       period_end=_int(period.get("end")))


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value,
                                                                             bool) else None
