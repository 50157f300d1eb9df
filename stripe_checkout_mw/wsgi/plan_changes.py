"""``POST {path}/subscription``: the shop's own page previews or makes a plan change.

Off by default (``subscription_endpoint=True`` serves it). The user is the one the app's
``customer_ref(environ)`` names, never a value from the request; the middleware checks the
origin (CSRF) as on the checkout path. The body is JSON::

    {"action": "preview", "price": "pro", "quantity": 3}
    {"action": "change", "price": "pro", "quantity": 3, "proration_date": 1767225600}

with ``subscription`` (an id the ledger holds for the user) when the user has several.
Answers: ``{"preview": {...}}`` (:class:`~stripe_checkout_mw.billing.changes.ChangePreview`)
or ``{"subscription": {...}, "invoice": ..., "amount_paid": ...}``; errors are the JSON
error of every owned path: 401 without a user, 400 for a bad body or a price the shop does
not offer, 402 with ``hosted_invoice_url`` when the change's payment did not go through
(the plan is unchanged), 404/409 as :mod:`stripe_checkout_mw.billing.changes` says, 429
beyond the user's budget (each request is a few Stripe calls).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..billing.changes import ManagedSubscriptions
from ..billing.customers import CustomerRef, resolve_ref
from ..errors import HTTPError
from ..stripe_api.guard import PrincipalBudgets

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["PER_USER_BURST", "PER_USER_PER_MINUTE", "PlanChangeEndpoint"]

#: Requests a signed-in user may make a minute on average (a person previews a few plans).
PER_USER_PER_MINUTE = 10.0
#: Requests a signed-in user may make at once.
PER_USER_BURST = 5.0

_FIELDS = frozenset({"action", "price", "quantity", "subscription", "proration_date"})


class PlanChangeEndpoint:
    """Turns a parsed request body into a preview or a change of the user's plan."""

    def __init__(self, subscriptions: ManagedSubscriptions,
                 customer_ref: CustomerRef) -> None:
        self.subscriptions = subscriptions
        self.customer_ref = customer_ref
        self.per_user = PrincipalBudgets(PER_USER_PER_MINUTE, PER_USER_BURST)

    def handle(self, body: dict[str, Any], environ: WSGIEnvironment) -> dict[str, Any]:
        """The answer's JSON for ``body``; :class:`HTTPError` for anything else."""
        ref = resolve_ref(self.customer_ref, environ)
        if ref is None:
            raise HTTPError(401, "Sign in to change your plan.", type="authentication_error")
        mine = self.per_user.bucket(ref)
        if not mine.take():
            self.subscriptions.guard.refusals.note(
                "plan change user budget", "plan change refused: a user made more than %g "
                "requests a minute (429)", PER_USER_PER_MINUTE)
            raise HTTPError(429, "Too many plan change requests; try again shortly.",
                            type="rate_limit_error",
                            headers=[("Retry-After", str(mine.retry_after()))])
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            raise HTTPError(400, "Unknown field.", param=unknown[0][:50])
        action = body.get("action")
        subscription = body.get("subscription")
        if subscription is not None and not isinstance(subscription, str):
            raise HTTPError(400, "subscription must be a subscription id.",
                            param="subscription")
        if action == "preview":
            if "proration_date" in body:
                raise HTTPError(400, "A preview takes no proration_date.",
                                param="proration_date")
            preview = self.subscriptions.preview_change(
                ref, subscription, price=body.get("price"), quantity=body.get("quantity"))
            return {"preview": preview.to_dict()}
        if action == "change":
            result = self.subscriptions.change(
                ref, subscription, price=body.get("price"), quantity=body.get("quantity"),
                proration_date=body.get("proration_date"))
            return result.to_dict()
        raise HTTPError(400, 'action must be "preview" or "change".', param="action")
