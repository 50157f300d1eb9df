"""A Flask shop wired the old way: ``app.wsgi_app = CheckoutMiddleware(app.wsgi_app, ...)``.

This is the pattern Flask's own docs use for WSGI middleware, and it works on every
Flask from 2.2 on (the oldest this project tests). The Buy buttons call the middleware
with ``fetch`` and the seed's JSON body, then send the browser to the ``url`` it
returns.

Run it on werkzeug's development server::

    STRIPE_SECRET_KEY=sk_test_... python app.py

or under any WSGI server, for example
``waitress-serve --threads=4 --max-request-body-size=1048576 --call app:create_app``
(``flask --app app:create_app run`` works too).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from flask import Flask, render_template_string

from stripe_checkout_mw import Catalog, CheckoutMiddleware
from stripe_checkout_mw.demo_shop import read_asset
from stripe_checkout_mw.serving import serve_example

log = logging.getLogger("flask_shop")

PRODUCTS = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Flask shop</title></head>
<body>
<h1>Flask shop</h1>
<label>Email <input type="email" id="email" placeholder="optional"></label>
{% for key, item in products.items() %}
<section>
  <h2>{{ item.name }}</h2>
  <p>{{ item.description }}</p>
  <p>{{ "%.2f"|format(item.unit_amount / 100) }} {{ item.currency|upper }}</p>
  <button type="button" class="buy" id="buy-{{ key }}" data-price="{{ key }}">Buy</button>
</section>
{% endfor %}
<p id="error" role="alert"></p>
<script>
// The seed's request: {"line_items": [...], "customer_email": ...}; then go to its url.
document.querySelectorAll("button.buy").forEach(function (button) {
  button.addEventListener("click", function () {
    var order = {line_items: [{price: button.dataset.price, quantity: 1}]};
    var email = document.getElementById("email").value;
    if (email) { order.customer_email = email; }
    var error = document.getElementById("error");
    fetch("/create-checkout-session", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(order)
    })
      .then(function (r) { return r.json().then(function (data) { return [r.ok, data]; }); })
      .then(function (answer) {
        if (answer[0]) { location.assign(answer[1].url); }
        else { error.textContent = answer[1].error.message; }
      })
      .catch(function () { error.textContent = "The shop could not be reached."; });
  });
});
</script>
</body></html>
"""

#: The success page (it polls the status path) and the cancel page, shared by the examples.
SUCCESS = read_asset("success.html")
CANCEL = read_asset("cancel.html")


def catalog_file() -> Path:
    """``STRIPE_CHECKOUT_CATALOG``, else the catalog the examples share."""
    return Path(os.environ.get("STRIPE_CHECKOUT_CATALOG") or
                Path(__file__).parent.parent / "catalog.json")


def fulfill(order: Any) -> None:
    """Called once the ledger records a paid order; again only, with a higher
    ``order.fulfilment_attempt``, when an attempt's outcome went unrecorded.
    Ship it here.
    """
    log.info("fulfilled %s: %s", order.session_id,
             ", ".join(f"{item['quantity']} x {item['name']}" for item in order.items))


def create_app(**options: Any) -> Flask:
    """The Flask app with checkout added, configured from the environment.

    ``STRIPE_SECRET_KEY``, ``WEB_APP_URL`` and ``STRIPE_WEBHOOK_SECRET`` are read by the
    middleware itself; ``STRIPE_API_BASE`` points it at the offline emulator,
    ``STRIPE_CHECKOUT_STORE`` names the order ledger (which also serves the success
    page's order status without webhooks) and ``STRIPE_CHECKOUT_CATALOG`` another
    catalog. Keyword ``options`` override them all.
    """
    app = Flask(__name__)

    @app.route("/")
    def products() -> str:
        catalog = json.loads(catalog_file().read_text(encoding="utf-8"))
        return render_template_string(PRODUCTS, products=catalog)

    @app.route("/success")
    def success() -> str:
        return SUCCESS

    @app.route("/cancel")
    def cancel() -> str:
        return CANCEL

    settings: dict[str, Any] = {
        "price_lookup": Catalog.from_file(catalog_file()),
        "stripe_api_base": os.environ.get("STRIPE_API_BASE") or None,
        "store": os.environ.get("STRIPE_CHECKOUT_STORE") or None,
        "fulfill": fulfill,
    }
    settings.update(options)
    app.wsgi_app = CheckoutMiddleware(app.wsgi_app, **settings)  # type: ignore[method-assign]
    return app


def main() -> None:
    """Serve the shop with werkzeug's ``run_simple`` on ``PORT`` (default 8000)."""
    serve_example("flask_shop", create_app)


if __name__ == "__main__":
    main()
