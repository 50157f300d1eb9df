"""A Pyramid shop; checkout is added by ``development.ini``, not by this code.

The app knows nothing of Stripe: its Buy buttons are plain HTML forms posting to
``/create-checkout-session``, which the ``checkout`` filter in the ``.ini`` pipeline
answers with ``303 See Other`` to Stripe's hosted page. That is the PasteDeploy habit:
middleware is configuration.
"""

from __future__ import annotations

import json
import logging
from html import escape
from pathlib import Path
from typing import Any

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from stripe_checkout_mw.demo_shop import read_asset

log = logging.getLogger("pyramid_shop")

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body>
{body}
</body></html>
"""

#: The success page (it polls the status path) and the cancel page, shared by the examples.
SUCCESS = read_asset("success.html")
CANCEL = read_asset("cancel.html")


def _html(title: str, body: str) -> Response:
    return Response(_PAGE.format(title=escape(title), body=body), content_type="text/html",
                    charset="utf-8")


def products(request: Request) -> Response:
    catalog = json.loads(Path(request.registry.settings["catalog"]).read_text(encoding="utf-8"))
    forms = []
    for key, item in catalog.items():
        price = f"{item['unit_amount'] / 100:.2f} {item['currency'].upper()}"
        forms.append(
            '<form method="post" action="/create-checkout-session">'
            f"<h2>{escape(item['name'])}</h2>"
            f"<p>{escape(item.get('description', ''))}</p><p>{escape(price)}</p>"
            f'<input type="hidden" name="price" value="{escape(key)}">'
            '<label>Quantity <input type="number" name="quantity" value="1" min="1" max="10">'
            "</label>"
            '<label>Email <input type="email" name="customer_email" placeholder="optional">'
            "</label>"
            f'<button type="submit" id="buy-{escape(key)}">Buy</button></form>'
        )
    return _html("Pyramid shop", "<h1>Pyramid shop</h1>" + "".join(forms))


def success(request: Request) -> Response:
    return Response(SUCCESS, content_type="text/html", charset="utf-8")


def cancel(request: Request) -> Response:
    return Response(CANCEL, content_type="text/html", charset="utf-8")


def fulfill(order: Any) -> None:
    """Called once the ledger records a paid order; again only, with a higher
    ``order.fulfilment_attempt``, when an attempt's outcome went unrecorded.
    Wired with ``fulfill = shop:fulfill`` in the .ini.
    """
    log.info("fulfilled %s: %s", order.session_id,
             ", ".join(f"{item['quantity']} x {item['name']}" for item in order.items))


def main(global_config: dict[str, str], **settings: str) -> Any:
    """The Pyramid app factory the ``.ini`` names (``use = call:shop:main``)."""
    if "catalog" not in settings:
        raise ValueError("catalog: add 'catalog = path/to/catalog.json' to [app:shop]")
    with Configurator(settings=settings) as config:
        config.add_route("products", "/")
        config.add_route("success", "/success")
        config.add_route("cancel", "/cancel")
        config.add_view(products, route_name="products", request_method="GET")
        config.add_view(success, route_name="success", request_method="GET")
        config.add_view(cancel, route_name="cancel", request_method="GET")
        return config.make_wsgi_app()
