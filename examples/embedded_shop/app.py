"""A shop whose customers pay on its own page: Embedded Checkout or Elements, by configuration.

One bare WSGI callable (no framework) with one product page that works in each of the
middleware's three ``ui_mode`` values, read from ``STRIPE_CHECKOUT_UI_MODE``:

- ``hosted_page``: the Buy button posts the order and goes to Stripe's page;
- ``embedded_page``: Buy mounts Embedded Checkout in the page
  (``stripe.createEmbeddedCheckoutPage``); Stripe sends the customer to ``/return``;
- ``elements``: Buy mounts the Payment Element (``stripe.initCheckoutElementsSdk``) and
  a Pay button; the customer pays and sees the fulfilled order without leaving the page.

The page asks the middleware's ``/create-checkout-session/config`` for the publishable
key and the mode, and loads Stripe.js from ``STRIPE_JS_URL`` (default Stripe's; the demo
points it at the offline emulator's stand-in). The order is fulfilled from the webhook
in every mode; ``/return`` and the Elements page ask the status path how it stands.

Run it on werkzeug's development server::

    STRIPE_SECRET_KEY=sk_test_... STRIPE_PUBLISHABLE_KEY=pk_test_... \\
    STRIPE_CHECKOUT_UI_MODE=embedded_page python app.py

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

log = logging.getLogger("embedded_shop")

#: Stripe.js as Stripe serves it; ``STRIPE_JS_URL`` replaces it (the emulator's offline).
STRIPE_JS_URL = "https://js.stripe.com/dahlia/stripe.js"

#: The return page polls the status path, as the hosted page's success page does (in
#: ``hosted_page`` mode it is that success page); the cancel page is the examples' too.
RETURN = read_asset("success.html")
CANCEL = read_asset("cancel.html")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shop (pay on this page)</title></head>
<body data-stripe-js="{stripe_js}">
<h1>Shop: pay on this page</h1>
<p>Checkout: <code id="ui-mode">...</code></p>
<label>Email <input type="email" id="email" placeholder="optional"></label>
{sections}
<div id="checkout"></div>
<div id="payment" hidden>
  <p>Total: <span id="total"></span></p>
  <div id="payment-element"></div>
  <button type="button" id="pay">Pay</button>
</div>
<p id="error" role="alert"></p>
<p id="status"></p>
<ul id="items"></ul>
<script>
(function () {{
  var error = document.getElementById("error");
  var config = null;

  function order(key) {{
    var body = {{line_items: [{{price: key, quantity: 1}}]}};
    var email = document.getElementById("email").value;
    if (email) {{ body.customer_email = email; }}
    return fetch("/create-checkout-session", {{
      method: "POST", headers: {{"Content-Type": "application/json"}},
      body: JSON.stringify(body)
    }}).then(function (r) {{
      return r.json().then(function (data) {{
        if (!r.ok) {{ throw new Error(data.error.message); }}
        return data;
      }});
    }});
  }}

  function showOrder(sessionId) {{
    // The webhook fulfils the order; the status path says when it has.
    var status = document.getElementById("status");
    var tries = 0;
    function poll() {{
      fetch("/checkout-session?session_id=" + encodeURIComponent(sessionId))
        .then(function (r) {{ return r.ok ? r.json() : Promise.reject(r.status); }})
        .then(function (found) {{
          var list = document.getElementById("items");
          list.textContent = "";
          (found.items || []).forEach(function (item) {{
            var li = document.createElement("li");
            li.textContent = item.quantity + " x " + item.name;
            list.appendChild(li);
          }});
          if (found.fulfilled) {{
            status.textContent = "Payment received, order fulfilled";
            return;
          }}
          status.textContent = "Waiting for the payment to be confirmed (" + found.status + ")";
          if (++tries < 60) {{ setTimeout(poll, 1000); }}
        }})
        .catch(function () {{ status.textContent = "We could not look up this order."; }});
    }}
    poll();
  }}

  function embedded(stripe, key) {{
    var sessionId = null;
    return stripe.createEmbeddedCheckoutPage({{
      fetchClientSecret: function () {{
        return order(key).then(function (data) {{
          sessionId = data.sessionId;
          return data.clientSecret;
        }});
      }},
      // Runs with redirect_on_completion "if_required" or "never" only.
      onComplete: function () {{ showOrder(sessionId); }}
    }}).then(function (checkout) {{ checkout.mount("#checkout"); }});
  }}

  function elements(stripe, key) {{
    return order(key).then(function (data) {{
      var checkout = stripe.initCheckoutElementsSdk({{clientSecret: data.clientSecret}});
      checkout.createPaymentElement().mount("#payment-element");
      return checkout.loadActions().then(function (loaded) {{
        if (loaded.type !== "success") {{ throw new Error(loaded.error.message); }}
        var actions = loaded.actions;
        document.getElementById("total").textContent =
          actions.getSession().total.total.amount;
        document.getElementById("payment").hidden = false;
        var pay = document.getElementById("pay");
        pay.addEventListener("click", function () {{
          pay.disabled = true;
          error.textContent = "";
          actions.confirm({{email: document.getElementById("email").value,
                           redirect: "if_required"}}).then(function (result) {{
            if (result.type === "error") {{
              error.textContent = result.error.message;
              pay.disabled = false;
              return;
            }}
            document.getElementById("payment").hidden = true;
            showOrder(data.sessionId);
          }});
        }});
      }});
    }});
  }}

  function start(key) {{
    error.textContent = "";
    document.querySelectorAll("button.buy").forEach(function (b) {{ b.disabled = true; }});
    if (config.uiMode === "hosted_page") {{
      return order(key).then(function (data) {{ location.assign(data.url); }});
    }}
    var stripe = Stripe(config.publishableKey);
    return config.uiMode === "embedded_page" ? embedded(stripe, key) : elements(stripe, key);
  }}

  function loadStripeJs() {{
    if (config.uiMode === "hosted_page") {{ return Promise.resolve(); }}
    return new Promise(function (resolve, reject) {{
      var script = document.createElement("script");
      script.src = document.body.dataset.stripeJs;
      script.onload = resolve;
      script.onerror = function () {{ reject(new Error("Stripe.js could not be loaded.")); }};
      document.head.appendChild(script);
    }});
  }}

  fetch("/create-checkout-session/config")
    .then(function (r) {{ return r.json(); }})
    .then(function (answer) {{
      config = answer;
      document.getElementById("ui-mode").textContent = config.uiMode;
      return loadStripeJs();
    }})
    .then(function () {{
      document.querySelectorAll("button.buy").forEach(function (button) {{
        button.disabled = false;
        button.addEventListener("click", function () {{
          start(button.dataset.price).catch(function (e) {{ error.textContent = e.message; }});
        }});
      }});
      document.body.dataset.ready = "1";
    }})
    .catch(function (e) {{ error.textContent = e.message; }});
}})();
</script>
</body></html>
"""

StartResponse = Callable[..., Any]


def catalog_file() -> Path:
    """``STRIPE_CHECKOUT_CATALOG``, else the catalog the examples share."""
    return Path(os.environ.get("STRIPE_CHECKOUT_CATALOG") or
                Path(__file__).parent.parent / "catalog.json")


def products_page(stripe_js_url: str) -> str:
    catalog = json.loads(catalog_file().read_text(encoding="utf-8"))
    sections = []
    for key, item in catalog.items():
        amount = f"{item['unit_amount'] / 100:.2f} {item['currency'].upper()}"
        sections.append(
            f"<section><h2>{escape(item['name'])}</h2>"
            f"<p>{escape(item.get('description', ''))}</p><p>{escape(amount)}</p>"
            f'<button type="button" class="buy" id="buy-{escape(key)}" '
            f'data-price="{escape(key)}" disabled>Buy</button></section>'
        )
    return PAGE.format(stripe_js=escape(stripe_js_url), sections="".join(sections))


def make_shop(stripe_js_url: str) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The shop's own pages: ``/`` (products and payment), ``/return`` (and, for the
    hosted page, ``/success`` and ``/cancel``)."""
    pages = {"/": lambda: products_page(stripe_js_url), "/return": lambda: RETURN,
             "/success": lambda: RETURN, "/cancel": lambda: CANCEL}

    def shop(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in pages:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"Not found"]
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed",
                           [("Allow", "GET, HEAD"),
                            ("Content-Type", "text/plain; charset=utf-8")])
            return [b"Method not allowed"]
        body = pages[path]().encode("utf-8")
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return shop


def fulfill(order: Any) -> None:
    """Called once the ledger records a paid order; again only, with a higher
    ``order.fulfilment_attempt``, when an attempt's outcome went unrecorded.
    Ship it here.
    """
    log.info("fulfilled %s: %s", order.session_id,
             ", ".join(f"{item['quantity']} x {item['name']}" for item in order.items))


def create_app(*, stripe_js_url: str | None = None, **options: Any) -> CheckoutMiddleware:
    """The shop wrapped in the middleware, configured from the environment.

    ``STRIPE_SECRET_KEY``, ``STRIPE_PUBLISHABLE_KEY``, ``WEB_APP_URL`` and
    ``STRIPE_WEBHOOK_SECRET`` are read by the middleware itself;
    ``STRIPE_CHECKOUT_UI_MODE`` chooses the mode (default ``embedded_page``),
    ``STRIPE_JS_URL`` where Stripe.js comes from, ``STRIPE_API_BASE`` points the
    middleware at the offline emulator, ``STRIPE_CHECKOUT_STORE`` names the order ledger
    and ``STRIPE_CHECKOUT_CATALOG`` another catalog. Keyword ``options`` override them.
    """
    settings: dict[str, Any] = {
        "price_lookup": Catalog.from_file(catalog_file()),
        "ui_mode": os.environ.get("STRIPE_CHECKOUT_UI_MODE") or "embedded_page",
        "stripe_api_base": os.environ.get("STRIPE_API_BASE") or None,
        "store": os.environ.get("STRIPE_CHECKOUT_STORE") or None,
        "fulfill": fulfill,
    }
    settings.update(options)
    script = stripe_js_url or os.environ.get("STRIPE_JS_URL") or STRIPE_JS_URL
    return CheckoutMiddleware(make_shop(script), **settings)


def main() -> None:
    """Serve the shop with werkzeug's ``run_simple`` on ``PORT`` (default 8000)."""
    serve_example("embedded_shop", create_app)


if __name__ == "__main__":
    main()
