"""The demo's own shop, shipped inside the package so the demo runs from a wheel.

``python -m stripe_checkout_mw demo`` serves this shop unless ``--framework`` picks one
of the example shops of a source checkout. It is one plain WSGI callable, no framework:
a product page whose Buy buttons are HTML forms (the middleware answers them with
``303`` to the hosted payment page, no JavaScript needed), ``/success`` (which polls the
middleware's order status until the order is fulfilled) and ``/cancel``. Its pages and
catalog are package data next to this file (``shop.html``, ``success.html``,
``cancel.html``, ``catalog.json``), read with :mod:`importlib.resources`.

:func:`create_app` wraps it in :class:`~stripe_checkout_mw.CheckoutMiddleware`, configured
from the environment the same way as the example shops.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from html import escape
from importlib import resources
from string import Template
from typing import TYPE_CHECKING, Any, Callable

from ..checkout.prices import Catalog
from ..ledger.orders import Order
from ..wsgi.middleware import CheckoutMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["create_app", "read_asset", "shop"]

log = logging.getLogger("stripe_checkout_mw.demo_shop")

_FORM = """<form method="post" action="/create-checkout-session">
  <h2>{name}</h2>
  <p>{description}</p>
  <p>{amount}</p>
  <input type="hidden" name="price" value="{key}">
  <label>Quantity <input type="number" name="quantity" value="1" min="1" max="10"></label>
  <label>Email <input type="email" name="customer_email" placeholder="optional"></label>
  <button type="submit" id="buy-{key}">Buy</button>
</form>"""


def read_asset(name: str) -> str:
    """One of the shop's files (``shop.html``, ``catalog.json``, ...), as text."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def catalog() -> Catalog:
    """The shop's products, from its ``catalog.json``."""
    return Catalog(json.loads(read_asset("catalog.json")))


def products_page() -> str:
    """The product page: one form per catalog entry."""
    forms = []
    for key, item in json.loads(read_asset("catalog.json")).items():
        amount = f"{item['unit_amount'] / 100:.2f} {item['currency'].upper()}"
        forms.append(_FORM.format(key=escape(key), name=escape(item["name"]),
                                  description=escape(item.get("description", "")),
                                  amount=escape(amount)))
    return Template(read_asset("shop.html")).substitute(products="\n".join(forms))


def shop(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The whole shop: three GET pages, 404 for anything else."""
    pages: dict[str, Callable[[], str]] = {"/": products_page,
                                           "/success": lambda: read_asset("success.html"),
                                           "/cancel": lambda: read_asset("cancel.html")}
    page = pages.get(environ.get("PATH_INFO", ""))
    if page is None:
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"Not found"]
    if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
        start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"),
                                                  ("Content-Type", "text/plain; charset=utf-8")])
        return [b"Method not allowed"]
    body = page().encode("utf-8")
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]


def fulfill(order: Order) -> None:
    """Called once the ledger records a paid order; again only, with a higher
    ``order.fulfilment_attempt``, when an attempt's outcome went unrecorded.
    The demo only logs what a real shop would ship.
    """
    log.info("fulfilled %s: %s", order.session_id,
             ", ".join(f"{item['quantity']} x {item['name']}" for item in order.items))


def create_app(**options: Any) -> CheckoutMiddleware:
    """:func:`shop` wrapped in the middleware, configured from the environment.

    The middleware reads ``STRIPE_SECRET_KEY``, ``WEB_APP_URL``, ``STRIPE_WEBHOOK_SECRET``,
    ``STRIPE_CHECKOUT_STORE`` and ``STRIPE_API_BASE`` (which points it at the offline
    emulator) itself. Keyword ``options`` override them.
    """
    settings: dict[str, Any] = {
        "price_lookup": catalog(),
        "fulfill": fulfill,
    }
    settings.update(options)
    return CheckoutMiddleware(shop, **settings)
