"""The billing portal: ``POST {portal_path}`` sends the signed-in user to Stripe's portal.

The customer is the one the ledger knows for the app's ``customer_ref(environ)``, never a
value from the request, and the portal sends them back to ``portal_return_url`` (default
``{domain_url}/account``). The middleware checks the origin (CSRF) as on the checkout path.

Answers: a form post gets ``303`` to the portal; anything else ``{"url": ...}``. No user:
401; a user with no Stripe Customer yet (never completed a checkout): 404.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import stripe

from ..checkout.service import stripe_error_to_http
from ..errors import HTTPError
from .customers import CustomerDirectory, CustomerRef, resolve_ref

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["BillingPortal"]

logger = logging.getLogger("stripe_checkout_mw")


class BillingPortal:
    """Creates billing portal sessions for the current user's Stripe Customer."""

    def __init__(self, client: stripe.StripeClient, customers: CustomerDirectory,
                 customer_ref: CustomerRef, return_url: str) -> None:
        self.client = client
        self.customers = customers
        self.customer_ref = customer_ref
        self.return_url = return_url

    def url_for(self, environ: WSGIEnvironment) -> str:
        """The portal address for the signed-in user, or :class:`HTTPError`."""
        ref = resolve_ref(self.customer_ref, environ)
        if ref is None:
            raise HTTPError(401, "Sign in to manage your billing.",
                            type="authentication_error")
        customer = self.customers.stripe_id(ref)
        if customer is None:
            raise HTTPError(404, "There is no billing account for this user yet.",
                            type="invalid_request_error")
        try:
            portal = self.client.v1.billing_portal.sessions.create(
                params={"customer": customer, "return_url": self.return_url})
        except stripe.StripeError as exc:
            raise stripe_error_to_http(exc, "billing portal session create") from None
        url = getattr(portal, "url", None)
        if not isinstance(url, str) or not url:
            logger.error("Stripe returned a billing portal session without a url")
            raise HTTPError(502, "The payment provider sent an unusable answer.",
                            type="api_error")
        logger.info("billing portal session %s created", getattr(portal, "id", "?"))
        return url
