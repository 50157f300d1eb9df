"""The billing portal: ``POST {portal_path}`` sends the signed-in user to Stripe's portal.

The customer is the one the ledger knows for the app's ``customer_ref(environ)``, never a
value from the request, and the portal sends them back to ``portal_return_url`` (default
``{domain_url}/account``). The middleware checks the origin (CSRF) as on the checkout path.

Each portal session is one Stripe create, so the path has budgets: per signed-in user
(:data:`PER_USER_PER_MINUTE` a minute, :data:`PER_USER_BURST` at once; beyond it 429) and
per process (:data:`PER_PROCESS_PER_SECOND` a second; beyond it 503), both with
``Retry-After``, and the create goes through the middleware's
:class:`~stripe_checkout_mw.stripe_api.guard.StripeGuard`: while the circuit is open the
answer is 503 at once, and a hanging Stripe holds no more threads than the bulkhead allows.

Answers: a form post gets ``303`` to the portal; anything else ``{"url": ...}``. No user:
401; a user with no Stripe Customer yet (never completed a checkout): 404.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import stripe

from ..checkout.service import stripe_error_to_http
from ..errors import HTTPError
from ..stripe_api.guard import PrincipalBudgets, StripeGuard, TokenBucket
from .customers import CustomerDirectory, CustomerRef, resolve_ref

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["PER_PROCESS_PER_SECOND", "PER_USER_BURST", "PER_USER_PER_MINUTE", "BillingPortal"]

logger = logging.getLogger("stripe_checkout_mw")

#: Portal sessions a signed-in user may open a minute, on average (a person needs one).
PER_USER_PER_MINUTE = 3.0
#: Portal sessions a signed-in user may open at once (a double click, a back button).
PER_USER_BURST = 3.0
#: Portal sessions a process may open a second, all users together (burst: 4 x this):
#: far below Stripe's rate limit, which the checkouts share.
PER_PROCESS_PER_SECOND = 2.0


class BillingPortal:
    """Creates billing portal sessions for the current user's Stripe Customer.

    :param guard: the bulkhead and breaker the create goes through; default: one of its
        own (ceiling 3, 10 s cool-down).
    """

    def __init__(self, client: stripe.StripeClient, customers: CustomerDirectory,
                 customer_ref: CustomerRef, return_url: str, *,
                 guard: StripeGuard | None = None) -> None:
        self.client = client
        self.customers = customers
        self.customer_ref = customer_ref
        self.return_url = return_url
        self.guard = guard or StripeGuard(max_concurrent=3, cooldown=10)
        self.per_user = PrincipalBudgets(PER_USER_PER_MINUTE, PER_USER_BURST)
        self.per_process = TokenBucket(PER_PROCESS_PER_SECOND, 4 * PER_PROCESS_PER_SECOND)

    def url_for(self, environ: WSGIEnvironment) -> str:
        """The portal address for the signed-in user, or :class:`HTTPError`."""
        ref = resolve_ref(self.customer_ref, environ)
        if ref is None:
            raise HTTPError(401, "Sign in to manage your billing.",
                            type="authentication_error")
        self._spend_users(ref)
        customer = self.customers.stripe_id(ref)
        if customer is None:
            raise HTTPError(404, "There is no billing account for this user yet.",
                            type="invalid_request_error")
        self._spend_process()
        try:
            with self.guard.call("billing portal"):
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

    def _spend_users(self, ref: str) -> None:
        """Take one request from the user's budget (it also bounds their ledger look-ups)."""
        mine = self.per_user.bucket(ref)
        if not mine.take():
            self.guard.refusals.note(
                "portal user budget", "billing portal refused: a user opened more than %g "
                "sessions a minute (429)", PER_USER_PER_MINUTE)
            raise HTTPError(429, "Too many billing portal requests; try again shortly.",
                            type="rate_limit_error",
                            headers=[("Retry-After", str(mine.retry_after()))])

    def _spend_process(self) -> None:
        """Take one Stripe call from the process's budget (only requests that will call
        Stripe spend it, so users without a Customer cannot use it up)."""
        if not self.per_process.take():
            self.guard.refusals.note(
                "portal process budget", "billing portal refused: this process opened "
                "more than %g sessions a second (503)", PER_PROCESS_PER_SECOND)
            raise HTTPError(503, "The shop is busy; try again in a moment.", type="api_error",
                            headers=[("Retry-After", str(self.per_process.retry_after()))])
