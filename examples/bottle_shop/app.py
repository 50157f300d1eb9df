"""A Bottle shop whose Buy buttons are plain HTML forms: no JavaScript needed to pay.

Bottle's way to add middleware is to wrap ``bottle.default_app()``; the middleware then
answers the form post with ``303 See Other`` to Stripe's hosted page.

Run it on werkzeug's development server::

    STRIPE_SECRET_KEY=sk_test_... python app.py

or under any WSGI server, for example ``waitress-serve --call app:create_app``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

import bottle
from werkzeug.serving import run_simple

from stripe_checkout_mw import Catalog, CheckoutMiddleware

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

#: The success page's script, shared by the examples: it polls the status path.
ORDER_STATUS_JS = (Path(__file__).resolve().parent.parent / "order_status.js").read_text(
    encoding="utf-8"
)

SUCCESS = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Thank you</title></head>
<body>
<h1>Thank you!</h1>
<p id="status">Checking your order...</p>
<ul id="items"></ul>
<p><a href="/">Back to the shop</a></p>
<script>
""" + ORDER_STATUS_JS + """</script>
</body></html>
"""

CANCEL = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Cancelled</title></head>
<body><h1>Payment cancelled</h1><p>Nothing was charged.</p>
<p><a href="/">Back to the shop</a></p></body></html>
"""


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
    """Called once per paid order, after Stripe's webhook: ship it here."""
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
    logging.basicConfig(level=logging.INFO)
    port = os.environ.get("PORT", "8000")
    if not port.isdigit():
        sys.exit(f"bottle_shop: PORT={port!r} is not a port number")
    os.environ.setdefault("WEB_APP_URL", f"http://127.0.0.1:{port}")
    try:
        app = create_app()
    except (ValueError, TypeError) as exc:
        sys.exit(f"bottle_shop: {exc}")
    try:  # run_simple would print two lines and exit; one line says it better
        socket.create_server(("127.0.0.1", int(port))).close()
    except OSError as exc:
        sys.exit(f"bottle_shop: cannot listen on port {port} ({exc.strerror}); "
                 "set PORT to a free port")
    run_simple("127.0.0.1", int(port), app)


if __name__ == "__main__":
    main()
