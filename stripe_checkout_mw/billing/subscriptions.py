"""The subscriptions ledger: what Stripe says each subscription is now, and who has access.

Stripe sends subscription news in no particular order, and an event's payload is what the
subscription was when the event was made. So the payload decides nothing here: every event
about a subscription makes its applier (:mod:`stripe_checkout_mw.news.subscriptions`)
re-fetch the subscription from Stripe and store what it says *now*
(:meth:`SubscriptionLedger.store_fetched`) with the time the fetch began. A row is only
replaced by a fetch that began later, so a slow, old answer that commits last cannot move a
subscription backwards.

Entitlement answers come from the ledger alone (no Stripe call)::

    mw.subscriptions.is_active("user-42")                 # any subscription giving access
    mw.subscriptions.is_active("user-42", price="pro")    # one with this price id or lookup key
    mw.subscriptions.has_feature("user-42", "reports")    # see billing.entitlements
    mw.subscriptions.for_customer("user-42")              # [Subscription, ...], newest first

Only subscriptions this shop sold give access (``Subscription.sold_here``; see
:mod:`stripe_checkout_mw.billing.entitlements`): one another integration made for the same
Stripe Customer is listed but counts for nothing.

``active`` and ``trialing`` give access. ``past_due`` (Stripe is still retrying the
payment) gives access for ``past_due_grace_days`` (14) from when the ledger first stored that
status, and none at all with ``past_due_is_active=False``; ``incomplete`` (the first payment
failed or awaits the customer's authentication) for ``incomplete_grace_days`` (0: none). A
subscription set to cancel at period end is still ``active`` at Stripe until the period
ends, and so keeps access until Stripe ends it.

Each stored change of status or items is returned to the applier, which records a
``subscription_changed`` job, run after the commit with the pipeline's attempt semantics
(retried until it returns). A subscription not sold here records none.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime
from typing import Any

from ..ledger.billing import SubscriptionRows
from ..ledger.store import SqlStore, StoreTransaction
from ..marker import Marker
from ..stripe_api.plain import id_of
from .customers import CustomerDirectory
from .entitlements import Entitlements, Grant, sold_here

__all__ = [
    "ACTIVE_STATUSES",
    "Subscription",
    "SubscriptionItem",
    "SubscriptionLedger",
]


#: Statuses that give access; ``past_due`` and ``incomplete`` too for their grace periods.
ACTIVE_STATUSES = frozenset({"active", "trialing"})
DAY = 86400.0


@dataclass(frozen=True)
class SubscriptionItem:
    """One item of a subscription: its price (id and lookup key), quantity and period end."""

    price: str
    lookup_key: str | None
    quantity: int
    current_period_end: int | None


@dataclass(frozen=True)
class Subscription:
    """A subscription as the ledger stores it (Stripe's values at the last fetch).

    ``customer_ref`` is the app's user id, or ``None`` for a Stripe Customer this shop never
    sold to through its own checkout (never attached to any user). ``current_period_end`` is
    the earliest of the items' (Stripe keeps periods on the items now); times are Unix
    seconds; ``updated_at`` is when the ledger last stored it, ``status_since`` when it
    first stored the current status (a grace period counts from it; ``None`` for a row
    stored before the ledger kept it). ``sold_here`` says whether it gives entitlement:
    this shop's checkout sold it, or it is of an entitling price. ``schedule`` is the id of
    the subscription schedule managing it (a plan change scheduled for the period end, see
    ``schedule_change``), ``None`` when none does.
    """

    id: str
    customer_ref: str | None
    stripe_customer: str
    status: str
    items: tuple[SubscriptionItem, ...]
    current_period_end: int | None
    cancel_at_period_end: bool
    cancel_at: int | None
    canceled_at: int | None
    trial_end: int | None
    latest_invoice_status: str | None
    updated_at: float
    sold_here: bool = True
    status_since: float | None = None
    schedule: str | None = None  # a default: records stored before it was kept parse

    def has_price(self, price: str) -> bool:
        """Whether an item is of ``price`` (a price id or a lookup key)."""
        return any(price in (item.price, item.lookup_key) for item in self.items)

    def price_names(self) -> list[str]:
        """The items' price ids and lookup keys: what ``is_active(price=...)`` matches."""
        names = [item.price for item in self.items]
        names += [item.lookup_key for item in self.items if item.lookup_key]
        return names

    def change_key(self) -> tuple[Any, ...]:
        """What a ``subscription_changed`` call is for: the status, the items' prices and
        quantities (not their periods: a renewal is no change), the owner, and whether it
        gives entitlement."""
        items = tuple((item.price, item.quantity) for item in self.items)
        return (self.status, items, self.customer_ref, self.sold_here)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Subscription:
        values = dict(data)
        values["items"] = tuple(SubscriptionItem(**item) for item in values["items"])
        return cls(**values)

    @classmethod
    def from_stripe(cls, sub: Mapping[str, Any], customer_ref: str | None,
                    at: float, *, sold_here: bool = True) -> Subscription:
        """The ledger's view of a Stripe Subscription object (a plain dict)."""
        items = []
        for item in ((sub.get("items") or {}).get("data") or []):
            price = item.get("price") or {}
            items.append(SubscriptionItem(
                price=str(price.get("id") if isinstance(price, Mapping) else price),
                lookup_key=price.get("lookup_key") if isinstance(price, Mapping) else None,
                quantity=int(item.get("quantity") or 0),
                current_period_end=_int(item.get("current_period_end")),
            ))
        ends = [item.current_period_end for item in items if item.current_period_end]
        invoice = sub.get("latest_invoice")
        return cls(
            id=str(sub["id"]),
            customer_ref=customer_ref,
            stripe_customer=id_of(sub.get("customer")) or "",
            status=str(sub.get("status")),
            items=tuple(items),
            current_period_end=min(ends) if ends else None,
            cancel_at_period_end=bool(sub.get("cancel_at_period_end")),
            cancel_at=_int(sub.get("cancel_at")),
            canceled_at=_int(sub.get("canceled_at")),
            trial_end=_int(sub.get("trial_end")),
            latest_invoice_status=(str(invoice["status"]) if isinstance(invoice, Mapping)
                                   and invoice.get("status") else None),
            updated_at=at,
            sold_here=sold_here,
            status_since=at,
            schedule=id_of(sub.get("schedule")),
        )


class SubscriptionLedger:
    """``mw.subscriptions``: reads for the app, and the write of what Stripe said.

    :param past_due_is_active: whether ``past_due`` gives access (Stripe is retrying);
        ``False`` is a ``past_due_grace_days`` of 0.
    :param past_due_grace_days: days ``past_due`` gives access from when it was first stored.
    :param incomplete_grace_days: days ``incomplete`` gives access from when it was first
        stored.
    :param clock: the time now (Unix seconds), for the grace periods and grants.
    :param marker: the shop's marker (:mod:`stripe_checkout_mw.marker`), which its checkout
        puts on the subscriptions it sells; ``None`` accepts any shop's marker.
    :param entitling_prices: price ids or lookup keys whose subscriptions give entitlement
        without the marker.
    :param features: price id or lookup key -> the feature names it gives.
    """

    def __init__(self, store: SqlStore, customers: CustomerDirectory, *,
                 past_due_is_active: bool = True, past_due_grace_days: float = 14.0,
                 incomplete_grace_days: float = 0.0, marker: Marker | None = None,
                 entitling_prices: Collection[str] = (),
                 features: Mapping[str, Iterable[str]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.customers = customers
        self.statuses = ACTIVE_STATUSES
        #: Status -> seconds it gives access from its ``status_since``.
        self.grace = {"past_due": past_due_grace_days * DAY if past_due_is_active else 0.0,
                      "incomplete": incomplete_grace_days * DAY}
        self.marker = marker
        self.entitling_prices = frozenset(entitling_prices)
        self._clock = clock
        self._rows = SubscriptionRows(store, self.statuses, self.grace)
        self.entitlements = Entitlements(self._rows, features or {}, clock=clock)

    # -- reads -------------------------------------------------------------------------

    def for_customer(self, ref: str) -> list[Subscription]:
        """The subscriptions of the app's user ``ref``, newest first (from the ledger)."""
        if not isinstance(ref, str):
            return []
        return [replace(Subscription.from_dict(record), customer_ref=owner)
                for record, owner in self._rows.records_of(ref)]

    def is_active(self, ref: str, price: str | None = None) -> bool:
        """Whether ``ref`` has a subscription giving access (of ``price``: a price id or a
        lookup key, when given). One indexed read of the ledger; no Stripe call."""
        if not isinstance(ref, str):
            return False
        if price is None:
            return self._rows.has_active(ref, self._clock())
        return any(price in prices for prices in self._rows.active_prices(ref, self._clock()))

    def has_feature(self, ref: str, feature: str) -> bool:
        """Whether ``ref`` has ``feature`` now, from a subscription giving access or a grant
        (:mod:`stripe_checkout_mw.billing.entitlements`). One indexed read; no Stripe call."""
        return self.entitlements.has_feature(ref, feature)

    def features(self, ref: str) -> frozenset[str]:
        """Every feature ``ref`` has now (see :meth:`has_feature`)."""
        return self.entitlements.features(ref)

    def grant(self, ref: str, feature: str, *, until: datetime | date | float | int,
              note: str | None = None) -> Grant:
        """Give ``ref`` the ``feature`` until ``until`` (a datetime, a date: through its
        end in UTC, or Unix seconds), e.g. a comped account or a support credit."""
        return self.entitlements.grant(ref, feature, until=until, note=note)

    def revoke(self, ref: str, feature: str) -> bool:
        """End a grant now; whether there was one."""
        return self.entitlements.revoke(ref, feature)

    def grants(self, ref: str | None = None) -> list[Grant]:
        """The current grants of ``ref``, or of every user."""
        return self.entitlements.grants(ref)

    def newest(self, limit: int = 100) -> list[Subscription]:
        """The newest ``limit`` subscriptions of every customer (for the operator)."""
        return [replace(Subscription.from_dict(record), customer_ref=owner)
                for record, owner in self._rows.newest_records(limit)]

    def unowned(self) -> list[Subscription]:
        """Subscriptions of Stripe Customers this shop never sold to (for the operator)."""
        return [Subscription.from_dict(record) for record in self._rows.unowned_records()]

    # -- the applier's write ----------------------------------------------------------

    def store_fetched(self, tx: StoreTransaction, sub: Mapping[str, Any],
                      fetched_at: float, *, sold_by_session: bool = False,
                      ) -> tuple[Subscription, int] | None:
        """Store a subscription as Stripe answered a fetch that began at ``fetched_at``,
        unless a fetch that began later is stored already (then only a newly known
        customer ref is kept).

        :param sold_by_session: the subscription came from a Checkout Session of this shop,
            so it is sold here even without the marker on the subscription itself (sessions
            made before the checkout put it there, adopted by ``sync --full``).
        :returns: the subscription as stored and its revision when it is new or its status,
            items or owner changed (a ``subscription_changed`` is due); ``None`` otherwise.
        """
        subscription_id = str(sub["id"])
        customer = id_of(sub.get("customer")) or ""
        ref = self.customers.ref_in(tx, customer) if customer else None
        now = self._clock()
        recognised = sold_by_session or sold_here(sub, self.marker, self.entitling_prices)
        new = Subscription.from_stripe(sub, ref, now, sold_here=recognised)
        row = self._rows.lock(tx, subscription_id)
        if row is None:
            created = float(_int(sub.get("created")) or now)
            if self._rows.insert(tx, subscription_id, customer, ref, new.status,
                                 new.to_dict(), new.price_names(), fetched_at=fetched_at,
                                 created=created, at=now, sold_here=recognised):
                return (new, 1) if recognised else None
            row = self._rows.lock(tx, subscription_id)
            assert row is not None  # inserted by a concurrent transaction, now committed
        # Once recognised, always: a marker removed later, or an entitling price dropped
        # from the configuration, takes no access away from a paying customer.
        old = replace(Subscription.from_dict(row.record), sold_here=row.sold_here)
        if old.sold_here and not new.sold_here:
            new = replace(new, sold_here=True)
        if row.fetched_at >= fetched_at:
            # A fetch that began later is stored: this answer may be older, so it only
            # brings the customer's ref, if that became known meanwhile.
            if old.customer_ref == ref:
                return None
            new = replace(old, customer_ref=ref, updated_at=now)
            fetched_at = row.fetched_at
        if new.status == old.status:
            # The same status: its grace keeps counting from when it was first stored.
            since = row.status_since if row.status_since is not None else old.updated_at
            new = replace(new, status_since=since)
        changed = (ref is not None and new.sold_here
                   and old.change_key() != new.change_key())
        revision = row.revision + (1 if changed else 0)
        self._rows.update(tx, subscription_id, customer, ref, new.status, new.to_dict(),
                          new.price_names(), revision=revision, fetched_at=fetched_at, at=now,
                          sold_here=new.sold_here,
                          status_since=now if new.status_since is None else new.status_since)
        return (new, revision) if changed else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value,
                                                                             bool) else None
