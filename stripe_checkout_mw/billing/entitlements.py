"""Entitlements: which features a user has, from the subscriptions this shop sold and from
grants made by hand.

Apps gate features, not prices: a check written against a price id breaks when a plan is
renamed or a new price replaces it. The ``features`` option names the features each price
gives (a price id or a lookup key -> feature names)::

    CheckoutMiddleware(app, ..., features={"pro_monthly": ["reports", "api"],
                                           "basic_monthly": ["reports"]})

    mw.subscriptions.has_feature("user-42", "reports")   # True / False
    mw.subscriptions.features("user-42")                 # frozenset({"reports", "api"})

Both answer from the ledger in one indexed read, with no Stripe call: a subscription gives
its prices' features while it gives access (``is_active``: ``active``, ``trialing``, and
``past_due`` or ``incomplete`` for their grace periods, ``past_due_grace_days`` and
``incomplete_grace_days``, counted from when the ledger first stored that status).

Grants give a feature by hand until a time (a comped account, a support credit); they are
stored in the ledger, listed by ``python -m stripe_checkout_mw grants list`` and end by
themselves::

    mw.subscriptions.grant("user-42", "reports", until=date(2027, 1, 31), note="ticket 81")
    mw.subscriptions.revoke("user-42", "reports")

Only subscriptions this shop sold give entitlement (:func:`sold_here`): those its checkout
created (their metadata carries the shop's marker, put there through ``subscription_data``)
and those of the prices named in the ``entitling_prices`` option (subscriptions sold before
the marker existed, or made in the Dashboard). A subscription another integration created
for the same Stripe Customer is stored and listed, but gives no access and calls no
``subscription_changed``. Once recognised, a subscription stays recognised; the rows a
ledger stored before this rule existed count as sold here, as they did.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from ..ledger.billing import GrantRow, GrantRows, SubscriptionRows
from ..marker import MARKER_KEY, Marker

__all__ = ["Entitlements", "Grant", "expiry_of", "sold_here"]

#: How many rows the operator's listings show at most.
LIST_LIMIT = 10_000


def sold_here(sub: Mapping[str, Any], marker: Marker | None,
              entitling_prices: Collection[str]) -> bool:
    """Whether the Stripe subscription ``sub`` (a dict) gives entitlement in this shop.

    It does when its metadata carries the shop's ``marker`` (any value of the marker's key
    when the configuration names no marker: an operator's command without the shop's return
    address) or when one of its items is of a price (id or lookup key) in
    ``entitling_prices``.
    """
    metadata = sub.get("metadata")
    if isinstance(metadata, Mapping):
        mark = metadata.get(MARKER_KEY)
        if mark is not None and (marker is None or marker.matches(mark)):
            return True
    if not entitling_prices:
        return False
    for item in ((sub.get("items") or {}).get("data") or []):
        price = item.get("price") if isinstance(item, Mapping) else None
        if isinstance(price, Mapping):
            names = (price.get("id"), price.get("lookup_key"))
        else:
            names = (price, None)
        if any(name in entitling_prices for name in names if isinstance(name, str)):
            return True
    return False


@dataclass(frozen=True)
class Grant:
    """A feature granted to the user ``customer_ref`` by hand, until ``expires_at``
    (Unix seconds); ``note`` says why (for the operator)."""

    customer_ref: str
    feature: str
    expires_at: float
    note: str | None
    granted_at: float

    @classmethod
    def from_row(cls, row: GrantRow) -> Grant:
        return cls(*row)


def expiry_of(until: datetime | date | float | int) -> float:
    """The Unix time a grant ``until`` ends: a ``datetime`` (naive ones are UTC), a ``date``
    (through the end of that day, UTC) or Unix seconds.

    :raises TypeError: for anything else.
    """
    if isinstance(until, datetime):
        aware = until if until.tzinfo is not None else until.replace(tzinfo=timezone.utc)
        return aware.timestamp()
    if isinstance(until, date):
        next_day = datetime(until.year, until.month, until.day, tzinfo=timezone.utc)
        return (next_day + timedelta(days=1)).timestamp()
    if isinstance(until, (int, float)) and not isinstance(until, bool):
        return float(until)
    raise TypeError("until: expected a datetime, a date or Unix seconds")


class Entitlements:
    """Features from subscriptions and grants (see the module docstring).

    :param rows: the subscriptions table (its statuses and grace periods already chosen).
    :param features: price id or lookup key -> the feature names it gives.
    :param clock: the time now (Unix seconds).
    """

    def __init__(self, rows: SubscriptionRows, features: Mapping[str, Iterable[str]], *,
                 clock: Callable[[], float] = time.time) -> None:
        self._rows = rows
        self._clock = clock
        self._grants = GrantRows(rows.store)
        self._features: dict[str, frozenset[str]] = {
            str(price): frozenset(map(str, names)) for price, names in features.items()}
        #: feature -> the price names giving it, so has_feature tests one set per row.
        self._prices_of: dict[str, frozenset[str]] = {}
        for price, names in self._features.items():
            for name in names:
                self._prices_of[name] = self._prices_of.get(name, frozenset()) | {price}

    def features(self, ref: str) -> frozenset[str]:
        """The features ``ref`` has now: its subscriptions' (those giving access) and its
        current grants'. One indexed read of the ledger."""
        if not isinstance(ref, str):
            return frozenset()
        prices, granted = self._rows.entitled(ref, self._clock())
        found = set(granted)
        table = self._features
        for names in prices:
            for name in names:
                found.update(table.get(name, ()))
        return frozenset(found)

    def has_feature(self, ref: str, feature: str) -> bool:
        """Whether ``ref`` has ``feature`` now (see :meth:`features`)."""
        if not isinstance(ref, str):
            return False
        prices, granted = self._rows.entitled(ref, self._clock())
        giving = self._prices_of.get(feature)
        if giving is not None:
            for names in prices:
                if not giving.isdisjoint(names):
                    return True
        return feature in granted

    def grant(self, ref: str, feature: str, *, until: datetime | date | float | int,
              note: str | None = None) -> Grant:
        """Give ``ref`` the ``feature`` until ``until`` (replacing an earlier grant of it).

        :raises ValueError: an empty ref or feature, or a time already past.
        """
        if not isinstance(ref, str) or not ref:
            raise ValueError("grant: the user ref must be a non-empty string")
        if not isinstance(feature, str) or not feature.strip():
            raise ValueError("grant: the feature must be a non-empty string")
        expires_at, now = expiry_of(until), time.time()
        if expires_at <= now:
            raise ValueError("grant: until must be in the future")
        self._grants.put(ref, feature.strip(), expires_at, note, now)
        return Grant(ref, feature.strip(), expires_at, note, now)

    def revoke(self, ref: str, feature: str) -> bool:
        """End the grant of ``feature`` to ``ref`` now; whether there was one. A feature the
        user has through a subscription stays."""
        return self._grants.delete(ref, feature)

    def grants(self, ref: str | None = None) -> list[Grant]:
        """The current grants of ``ref`` (by feature), or of every user (by user)."""
        now = time.time()
        rows = (self._grants.current(now, LIST_LIMIT) if ref is None
                else self._grants.of(ref, now))
        return [Grant.from_row(row) for row in rows]
