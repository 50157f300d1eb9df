"""A Bottle shop whose Buy buttons are plain HTML forms: no JavaScript needed to pay.

Bottle's way to add middleware is to wrap ``bottle.default_app()``; the middleware then
answers the form post with ``303 See Other`` to Stripe's hosted page.

Run it on werkzeug's development server::

    STRIPE_SECRET_KEY=sk_test_... python app.py

or under any WSGI server, for example
``waitress-serve --threads=4 --max-request-body-size=1048576 --call app:create_app``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import bottle

from stripe_checkout_mw import Catalog, CheckoutMiddleware
from stripe_checkout_mw.demo_shop import read_asset
from stripe_checkout_mw.serving import serve_example

log = logging.getLogger("bottle_shop")


def catalog_file() -> Path:
    """``STRIPE_CHECKOUT_CATALOG``, else the catalog the examples share."""
    return Path(os.environ.get("STRIPE_CHECKOUT_CATALOG") or
                Path(__file__).parent.parent / "catalog.json")


PRODUCTS = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Bottle shop</title></head>
<body>
<h1>Bottle shop</h1>
% for key, item in products.items():
<form method="post" action="/create-checkout-session">
  <h2>{{item["name"]}}</h2>
  <p>{{item.get("description", "")}}</p>
  <p>{{"%.2f" % (item["unit_amount"] / 100)}} {{item["currency"].upper()}}</p>
  <input type="hidden" name="price" value="{{key}}">
  <label>Quantity <input type="number" name="quantity" value="1" min="1" max="10"></label>
  <label>Email <input type="email" name="customer_email" placeholder="optional"></label>
  <button type="submit" id="buy-{{key}}">Buy</button>
</form>
% end
</body></html>
"""

#: The success page (it polls the status path) and the cancel page, shared by the examples.
SUCCESS = read_asset("success.html")
CANCEL = read_asset("cancel.html")


@bottle.route("/")
def products() -> str:
    catalog = json.loads(catalog_file().read_text(encoding="utf-8"))
    return bottle.template(PRODUCTS, products=catalog)


@bottle.route("/success")
def success() -> str:
    return SUCCESS


@bottle.route("/cancel")
def cancel() -> str:
    return CANCEL


def fulfill(order: Any) -> None:
    """Called once the ledger records a paid order; again only, with a higher
    ``order.fulfilment_attempt``, when an attempt's outcome went unrecorded.
    Ship it here.
    """
    log.info("fulfilled %s: %s", order.session_id,
             ", ".join(f"{item['quantity']} x {item['name']}" for item in order.items))


def create_app(**options: Any) -> CheckoutMiddleware:
    """The shop wrapped in the middleware, configured from the environment.

    ``STRIPE_SECRET_KEY``, ``WEB_APP_URL`` and ``STRIPE_WEBHOOK_SECRET`` are read by the
    middleware itself; ``STRIPE_API_BASE`` points it at the offline emulator,
    ``STRIPE_CHECKOUT_STORE`` names the order ledger (which also serves the success
    page's order status without webhooks) and ``STRIPE_CHECKOUT_CATALOG`` another
    catalog. Keyword ``options`` override them all.
    """
    settings: dict[str, Any] = {
        "price_lookup": Catalog.from_file(catalog_file()),
        "stripe_api_base": os.environ.get("STRIPE_API_BASE") or None,
        "store": os.environ.get("STRIPE_CHECKOUT_STORE") or None,
        "fulfill": fulfill,
    }
    settings.update(options)
    return CheckoutMiddleware(bottle.default_app(), **settings)


def main() -> None:
    """Serve the shop with werkzeug's ``run_simple`` on ``PORT`` (default 8000)."""
    serve_example("bottle_shop", create_app)


if __name__ == "__main__":
    main()
