"""Customers: the app's own user id (a *ref*) and the Stripe Customer that pays for it.

The app says who is signed in with ``customer_ref(environ) -> str | None`` (its user id, from
its own session; never a value the browser chose). With it, the middleware:

- sends ``client_reference_id=ref`` with every checkout of a signed-in user;
- sends ``customer=cus_...`` (instead of ``customer_email``) once the ledger knows that user's
  Stripe Customer, so a returning customer is not created twice; until then a Customer is
  always created (``customer_creation="always"`` in payment mode; subscription mode always
  creates one);
- records ref <-> Stripe Customer in the ledger (``stripe_checkout_customers``) when a
  completed Checkout Session of *this shop's ledger* names both: the ref is the one the shop
  sent, read back from its own order row, so an event can never attach a customer to a user.

Usage::

    mw.customers.stripe_id("user-42")   # "cus_..." or None, from the ledger (no Stripe call)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable

from ..errors import HTTPError
from ..ledger.billing import CustomerRows
from ..ledger.store import SqlStore, StoreTransaction

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["CustomerDirectory", "CustomerRef", "resolve_ref"]

logger = logging.getLogger("stripe_checkout_mw")

#: The app's hook: the signed-in user's id, or ``None`` for an anonymous visitor.
CustomerRef = Callable[["WSGIEnvironment"], Any]
#: Longest ref accepted; Stripe's ``client_reference_id`` takes at most 200 characters.
MAX_REF = 200


def resolve_ref(customer_ref: CustomerRef, environ: WSGIEnvironment) -> str | None:
    """Call the app's ``customer_ref``; a hook that raises or answers something other than
    a non-empty string (or ``None``) is a configuration error of the shop: 500, logged by
    the exception's or value's type only (a user id is personal data)."""
    try:
        ref = customer_ref(environ)
    except Exception as exc:
        logger.error("customer_ref raised %s; the shop's customer_ref is misconfigured",
                     type(exc).__name__)
        raise HTTPError(500, "The shop is misconfigured.", type="api_error") from None
    if ref is None:
        return None
    if not isinstance(ref, str) or not ref or len(ref) > MAX_REF:
        logger.error("customer_ref returned %s, not a string of 1 to %d characters or None; "
                     "the shop's customer_ref is misconfigured", type(ref).__name__, MAX_REF)
        raise HTTPError(500, "The shop is misconfigured.", type="api_error")
    return ref


class CustomerDirectory:
    """``mw.customers``: the ledger's ref <-> Stripe Customer map.

    A ref may have met several Customers (two first checkouts completed at once); the first
    one recorded is the one reused.
    """

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self._rows = CustomerRows(store)

    def stripe_id(self, ref: str) -> str | None:
        """The Stripe Customer (``cus_...``) the ledger knows for ``ref``, or ``None``."""
        if not isinstance(ref, str):
            return None
        return self._rows.first_customer_of(ref)

    def checkout_params(self, ref: str | None) -> dict[str, str]:
        """What a checkout by ``ref`` adds: its ``client_reference_id`` and, once known, its
        ``customer`` (``{}`` for an anonymous visitor)."""
        if ref is None:
            return {}
        params = {"client_reference_id": ref}
        customer = self.stripe_id(ref)
        if customer is not None:
            params["customer"] = customer
        return params

    def ref_in(self, tx: StoreTransaction, stripe_customer: str) -> str | None:
        """The ref of ``stripe_customer`` as the transaction sees it, or ``None``."""
        return self._rows.ref_of(tx, stripe_customer)

    def record(self, tx: StoreTransaction, ref: str, stripe_customer: str) -> None:
        """Map ``stripe_customer`` to ``ref`` (a customer keeps its first ref) and give the
        customer's subscriptions stored before the mapping their ref."""
        self._rows.insert(tx, stripe_customer, ref, time.time())
        owner = self.ref_in(tx, stripe_customer)
        if owner != ref:
            logger.warning("Stripe customer %s already belongs to another ref; not remapped",
                           stripe_customer)
            return
        self._rows.give_ref_to_subscriptions(tx, stripe_customer, ref)

    def record_session(self, tx: StoreTransaction, session: Mapping[str, Any],
                       ref: str | None) -> None:
        """Record the map from a completed session of this shop (``ref`` from its order)."""
        customer = session.get("customer")
        if isinstance(customer, Mapping):
            customer = customer.get("id")
        if ref and isinstance(customer, str) and customer.startswith("cus_"):
            self.record(tx, ref, customer)
