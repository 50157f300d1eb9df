"""A shop that is one bare WSGI callable, wrapped the way a Django ``wsgi.py`` would be.

No framework: ``shop(environ, start_response)`` serves three pages and everything else
is the middleware's. The Buy buttons send the seed's request body unchanged, items
with ``price_data`` (name, currency, amount); the catalog accepts such an item only
when it matches one of its entries exactly, so the browser still cannot set a price.

Run it on werkzeug's development server::

    STRIPE_SECRET_KEY=sk_test_... python app.py

or under any WSGI server, for example
``waitress-serve --threads=4 --max-request-body-size=1048576 --call app:create_app``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from html import escape
from pathlib import Path
from typing import Any, Callable

from stripe_checkout_mw import Catalog, CheckoutMiddleware
from stripe_checkout_mw.demo_shop import read_asset
from stripe_checkout_mw.serving import serve_example

log = logging.getLogger("plain_wsgi")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body>
{body}
</body></html>
"""

BUY_SCRIPT = """<script>
// The seed's request, price_data and all; the server checks it against its catalog.
document.querySelectorAll("button.buy").forEach(function (button) {
  button.addEventListener("click", function () {
    var order = {line_items: [{quantity: 1, price_data: JSON.parse(button.dataset.item)}]};
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
</script>"""

#: The success page (it polls the status path) and the cancel page, shared by the examples.
SUCCESS = read_asset("success.html")
CANCEL = read_asset("cancel.html")

StartResponse = Callable[..., Any]


def catalog_file() -> Path:
    """``STRIPE_CHECKOUT_CATALOG``, else the catalog the examples share."""
    return Path(os.environ.get("STRIPE_CHECKOUT_CATALOG") or
                Path(__file__).parent.parent / "catalog.json")


def products_page() -> str:
    catalog = json.loads(catalog_file().read_text(encoding="utf-8"))
    sections = []
    for key, item in catalog.items():
        product = {"name": item["name"]}
        if "description" in item:
            product["description"] = item["description"]
        price_data = {"currency": item["currency"], "unit_amount": item["unit_amount"],
                      "product_data": product}
        amount = f"{item['unit_amount'] / 100:.2f} {item['currency'].upper()}"
        sections.append(
            f"<section><h2>{escape(item['name'])}</h2>"
            f"<p>{escape(item.get('description', ''))}</p><p>{escape(amount)}</p>"
            f'<button type="button" class="buy" id="buy-{escape(key)}" '
            f'data-item="{escape(json.dumps(price_data))}">Buy</button></section>'
        )
    body = ("<h1>Plain WSGI shop</h1>"
            '<label>Email <input type="email" id="email" placeholder="optional"></label>'
            + "".join(sections) + '<p id="error" role="alert"></p>' + BUY_SCRIPT)
    return PAGE.format(title="Plain WSGI shop", body=body)




def shop(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The whole shop: three GET pages, 404 for anything else."""
    path = environ.get("PATH_INFO", "")
    pages = {"/": products_page, "/success": lambda: SUCCESS, "/cancel": lambda: CANCEL}
    if path not in pages:
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"Not found"]
    if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
        start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"),
                                                  ("Content-Type", "text/plain; charset=utf-8")])
        return [b"Method not allowed"]
    body = pages[path]().encode("utf-8")
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]


def fulfill(order: Any) -> None:
    """Called once the ledger records a paid order; again only, with a higher
    ``order.fulfilment_attempt``, when an attempt's outcome went unrecorded.
    Ship it here.
    """
    log.info("fulfilled %s: %s", order.session_id,
             ", ".join(f"{item['quantity']} x {item['name']}" for item in order.items))


def create_app(**options: Any) -> CheckoutMiddleware:
    """``shop`` wrapped in the middleware, configured from the environment.

    In a Django project the same line goes in ``wsgi.py``:
    ``application = CheckoutMiddleware(get_wsgi_application(), ...)``.

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
    return CheckoutMiddleware(shop, **settings)


def main() -> None:
    """Serve the shop with werkzeug's ``run_simple`` on ``PORT`` (default 8000)."""
    serve_example("plain_wsgi", create_app)


if __name__ == "__main__":
    main()
