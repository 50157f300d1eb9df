"""The emulator's one HTTP entry: which part answers which path.

A small table of path prefixes: ``/v1`` is the API (:mod:`.api_door`), ``/pay/``
the hosted payment page, ``/invoice/`` the hosted invoice page, ``/portal/`` the
customer portal, and the stand-in
Stripe.js with its frames (:mod:`.stripejs`). Anything else gets Stripe's 404 JSON.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .api import ApiError
from .api_door import ApiDoor
from .hosted_checkout import HostedCheckoutPage
from .hosted_invoice import HostedInvoicePage
from .hosted_portal import HostedPortalPage
from .server import HttpRequest, HttpResponse, json_response
from .stripejs import ELEMENTS_PREFIX, EMBEDDED_PREFIX, STRIPE_JS_PATH, ClientPages

__all__ = ["FrontDoor"]


class FrontDoor:
    """Hands each request to the part that serves its path (the server's app)."""

    def __init__(self, *, api: ApiDoor, checkout_page: HostedCheckoutPage,
                 portal_page: HostedPortalPage, client_pages: ClientPages,
                 invoice_page: HostedInvoicePage) -> None:
        self._api = api
        self._checkout_page = checkout_page
        self._portal_page = portal_page
        self._client_pages = client_pages
        self._invoice_page = invoice_page

    def __call__(self, request: HttpRequest) -> HttpResponse:
        parts = urlsplit(request.target)
        path = parts.path
        if path.startswith("/v1/") or path == "/v1":
            return self._api.handle(request, path, parts.query)
        if path.startswith("/pay/"):
            return self._checkout_page.handle(request, path[len("/pay/"):])
        if path.startswith("/invoice/"):
            return self._invoice_page.handle(request, path[len("/invoice/"):])
        if path.startswith("/portal/"):
            return self._portal_page.handle(request, path[len("/portal/"):], parts.query)
        if path == STRIPE_JS_PATH or path.startswith((EMBEDDED_PREFIX, ELEMENTS_PREFIX)):
            return self._client_pages.handle(request, path, parts.query)
        return json_response(404, ApiError(
            f"Unrecognized request URL ({request.method}: {path}).", status=404).body())
