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

An existing Stripe Customer (a shop adopting its account, say) is linked by the operator:
``link`` refuses a Customer linked to another user, and one Stripe does not know (one
retrieve); ``unlink`` removes a user's links (its subscriptions stay, without a user).

Usage::

    mw.customers.stripe_id("user-42")   # "cus_..." or None, from the ledger (no Stripe call)
    mw.customers.link("user-42", "cus_...")
    mw.customers.show("user-42")        # ["cus_...", ...]
    mw.customers.unlink("user-42")      # links removed
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable

import stripe

from ..errors import HTTPError
from ..ledger.backfill import CustomerLinks
from ..ledger.billing import CustomerRows
from ..ledger.store import SqlStore, StoreTransaction

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["CustomerDirectory", "CustomerRef", "LinkRefused", "resolve_ref"]

logger = logging.getLogger("stripe_checkout_mw")

#: The app's hook: the signed-in user's id, or ``None`` for an anonymous visitor.
CustomerRef = Callable[["WSGIEnvironment"], Any]
#: Longest ref accepted; Stripe's ``client_reference_id`` takes at most 200 characters.
MAX_REF = 200


def _check_ref(ref: object) -> None:
    if not isinstance(ref, str) or not ref or len(ref) > MAX_REF:
        raise ValueError(f"customers: a user ref is a string of 1 to {MAX_REF} characters")


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


class LinkRefused(ValueError):
    """``link`` refused: the Customer belongs to another user, or Stripe does not know it."""


class CustomerDirectory:
    """``mw.customers``: the ledger's ref <-> Stripe Customer map.

    A ref may have met several Customers (two first checkouts completed at once); the first
    one recorded is the one reused.

    :param client: asked whether a Customer being linked exists (``link`` only).
    """

    def __init__(self, store: SqlStore, client: stripe.StripeClient | None = None) -> None:
        self.store = store
        self.client = client
        self._rows = CustomerRows(store)
        self._links = CustomerLinks(store)

    def link(self, ref: str, stripe_customer: str) -> bool:
        """Link an existing Stripe Customer to the app's user ``ref``; its subscriptions
        stored without a user get ``ref``. ``False`` if it was linked to ``ref`` already.

        :raises LinkRefused: linked to another user, or not a Customer Stripe knows (or a
            deleted one).
        :raises ValueError: ``ref`` or ``stripe_customer`` is malformed.
        :raises stripe.StripeError: Stripe could not be asked; nothing was linked.
        """
        _check_ref(ref)
        if not isinstance(stripe_customer, str) or not stripe_customer.startswith("cus_") \
                or len(stripe_customer) > 255:
            raise ValueError("customers link: expected a Stripe Customer id (cus_...)")
        owner = self._links.owner(stripe_customer)
        if owner == ref:
            return False
        if owner is not None:
            raise LinkRefused(f"customer {stripe_customer} is linked to another user; "
                              "unlink that user first")
        self._require_at_stripe(stripe_customer)
        with self.store.transaction() as tx:
            if self._links.owner_in(tx, stripe_customer) not in (None, ref):
                raise LinkRefused(f"customer {stripe_customer} is linked to another user; "
                                  "unlink that user first")
            self.record(tx, ref, stripe_customer)
        logger.info("Stripe customer %s linked by the operator", stripe_customer)
        return True

    def unlink(self, ref: str) -> int:
        """Remove every link of ``ref``; its subscriptions stay, without a user. Returns
        the number of Customers unlinked."""
        _check_ref(ref)
        with self.store.transaction() as tx:
            return self._links.unlink(tx, ref)

    def show(self, ref: str) -> list[str]:
        """The Stripe Customers linked to ``ref``, the one checkouts reuse first."""
        _check_ref(ref)
        return self._links.customers_of(ref)

    def _require_at_stripe(self, stripe_customer: str) -> None:
        if self.client is None:
            raise ValueError("customers link: this directory has no Stripe client")
        try:
            found = self.client.v1.customers.retrieve(stripe_customer)
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                raise LinkRefused(f"customer {stripe_customer} does not exist at Stripe "
                                  "(for this key's account and mode)") from None
            raise
        if getattr(found, "deleted", False):
            raise LinkRefused(f"customer {stripe_customer} was deleted at Stripe")

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
