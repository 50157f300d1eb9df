"""A members' area sold as a subscription: sign in, subscribe, read, manage billing.

One bare WSGI callable; the middleware does the rest. The pages:

- ``/``: the stand-in sign-in form, then the plan and its Subscribe button;
- ``/members``: the members' page, shown only while ``mw.subscriptions.is_active(user)``;
- ``/account``: the subscription as the ledger has it, and a Manage billing button that
  posts to the middleware's portal path (Stripe's billing portal: cancel, resume, card).

The sign-in is a STAND-IN for your app's own login: it trusts any name typed into it and
keeps it in an HMAC-signed cookie, so that ``customer_ref`` has a user to return. Replace
``signed_in_user`` with your session lookup; never take the user from a request field.

Run it on the offline emulator with ``python -m stripe_checkout_mw demo --framework
members``, or against Stripe's test mode::

    STRIPE_SECRET_KEY=sk_test_... STRIPE_WEBHOOK_SECRET=whsec_... python app.py
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Iterable
from datetime import datetime, timezone
from html import escape
from http.cookies import SimpleCookie
from typing import Any, Callable
from urllib.parse import parse_qs

from stripe_checkout_mw import Catalog, CheckoutMiddleware, Subscription
from stripe_checkout_mw.serving import serve_example

log = logging.getLogger("members_area")

StartResponse = Callable[..., Any]

#: The one plan, priced on the server (the browser names it by its key only).
PLANS: dict[str, dict[str, Any]] = {
    "club": {"name": "Members' club", "unit_amount": 500, "currency": "usd",
             "recurring": {"interval": "month"}},
}
COOKIE = "member"
#: Signs the stand-in login cookie; a new one each start (everyone signs in again).
_KEY = secrets.token_bytes(32)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body>
<h1>{title}</h1>
{body}
</body></html>
"""


def _sign(user: str) -> str:
    mac = hmac.new(_KEY, user.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{mac}.{user}"


def signed_in_user(environ: dict[str, Any]) -> str | None:
    """``customer_ref``: the user of the stand-in login cookie, if its signature holds."""
    cookie = SimpleCookie(environ.get("HTTP_COOKIE", ""))
    morsel = cookie.get(COOKIE)
    if morsel is None:
        return None
    mac, _, user = morsel.value.partition(".")
    expected = hmac.new(_KEY, user.encode("utf-8"), hashlib.sha256).hexdigest()
    return user if user and hmac.compare_digest(mac, expected) else None


class MembersArea:
    """The app behind the middleware; it asks the middleware's ledger who has access."""

    def __init__(self) -> None:
        self.middleware: CheckoutMiddleware | None = None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        user = signed_in_user(environ)
        if path == "/login" and method == "POST":
            return self._login(environ, start_response)
        if method not in ("GET", "HEAD"):
            return _answer(start_response, "405 Method Not Allowed", "Not allowed", "")
        if path == "/":
            return self._home(start_response, user)
        if path == "/members":
            return self._members(start_response, user)
        if path == "/account":
            return self._account(start_response, user)
        return _answer(start_response, "404 Not Found", "Not found", "")

    def _login(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        form = parse_qs(environ["wsgi.input"].read(min(length, 4096)).decode("utf-8", "replace"))
        user = (form.get("user") or [""])[0].strip()
        if not user or len(user) > 64 or not user.isprintable():
            return _answer(start_response, "400 Bad Request", "Sign in",
                           "<p>Type a name of 1 to 64 characters.</p>")
        cookie = f"{COOKIE}={_sign(user)}; Path=/; HttpOnly; SameSite=Lax"
        start_response("303 See Other", [("Location", "/"), ("Set-Cookie", cookie),
                                         ("Content-Length", "0")])
        return [b""]

    def _active(self, user: str | None) -> bool:
        ledger = self.middleware.subscriptions if self.middleware else None
        return user is not None and ledger is not None and ledger.is_active(user)

    def _home(self, start_response: StartResponse, user: str | None) -> Iterable[bytes]:
        if user is None:
            body = ('<form method="post" action="/login"><p>This sign-in is a stand-in for '
                    'your own login.</p><label>Name <input name="user" id="user"></label> '
                    '<button id="login">Sign in</button></form>')
            return _answer(start_response, "200 OK", "Members' club", body)
        plan = PLANS["club"]
        amount = f"{plan['unit_amount'] / 100:.2f} {str(plan['currency']).upper()}"
        if self._active(user):
            action = ('<p id="state">You are a member.</p>'
                      '<p><a id="members" href="/members">Go to the members\' page</a></p>')
        else:
            action = ('<form method="post" action="/create-checkout-session">'
                      '<input type="hidden" name="price" value="club">'
                      f'<button id="subscribe">Subscribe for {escape(amount)} a month</button>'
                      '</form>')
        body = (f'<p>Signed in as <b id="user">{escape(user)}</b>.</p>{action}'
                '<p><a id="account" href="/account">Your account</a></p>')
        return _answer(start_response, "200 OK", "Members' club", body)

    def _members(self, start_response: StartResponse, user: str | None) -> Iterable[bytes]:
        if not self._active(user):
            return _answer(start_response, "403 Forbidden", "Members only",
                           '<p id="denied">Subscribe to read this page.</p>'
                           '<p><a href="/">Back</a></p>')
        return _answer(start_response, "200 OK", "The members' page",
                       '<p id="secret">Welcome in. This page is for members.</p>')

    def _account(self, start_response: StartResponse, user: str | None) -> Iterable[bytes]:
        if user is None or self.middleware is None or self.middleware.subscriptions is None:
            return _answer(start_response, "401 Unauthorized", "Your account",
                           '<p><a href="/">Sign in</a></p>')
        rows = "".join(_describe(sub) for sub in
                       self.middleware.subscriptions.for_customer(user)) or "<li>None yet.</li>"
        body = (f'<ul id="subscriptions">{rows}</ul>'
                '<form method="post" action="/billing-portal">'
                '<button id="portal">Manage billing</button></form>'
                '<p><a href="/">Home</a> <a href="/members">Members\' page</a></p>')
        return _answer(start_response, "200 OK", "Your account", body)


def _describe(sub: Subscription) -> str:
    end = (datetime.fromtimestamp(sub.current_period_end, timezone.utc).strftime("%Y-%m-%d")
           if sub.current_period_end else "?")
    ending = f", ends {end}" if sub.cancel_at_period_end else f", renews {end}"
    if sub.status not in ("active", "trialing", "past_due"):
        ending = ""
    return f'<li class="subscription">{escape(sub.status)}{escape(ending)}</li>'


def _answer(start_response: StartResponse, status: str, title: str,
            body: str) -> Iterable[bytes]:
    page = PAGE.format(title=escape(title), body=body).encode("utf-8")
    start_response(status, [("Content-Type", "text/html; charset=utf-8"),
                            ("Content-Length", str(len(page)))])
    return [page]


def subscription_changed(subscription: Subscription) -> None:
    """Called once per stored change of a member's subscription: grant or revoke here."""
    log.info("subscription %s of %s is now %s", subscription.id, subscription.customer_ref,
             subscription.status)


def create_app(**options: Any) -> CheckoutMiddleware:
    """The members' area wrapped in the middleware, configured from the environment
    (``STRIPE_SECRET_KEY``, ``WEB_APP_URL``, ``STRIPE_WEBHOOK_SECRET``, ``STRIPE_API_BASE``,
    ``STRIPE_CHECKOUT_STORE``); keyword ``options`` override them."""
    app = MembersArea()
    domain = os.environ.get("WEB_APP_URL", "http://127.0.0.1:8000").rstrip("/")
    settings: dict[str, Any] = {
        "price_lookup": Catalog(PLANS),
        "stripe_api_base": os.environ.get("STRIPE_API_BASE") or None,
        "store": os.environ.get("STRIPE_CHECKOUT_STORE") or None,
        "domain_url": domain,
        "success_url": f"{domain}/account",
        "customer_ref": signed_in_user,
        "subscription_changed": subscription_changed,
    }
    settings.update(options)
    app.middleware = CheckoutMiddleware(app, **settings)
    return app.middleware


def main() -> None:
    """Serve the members' area with werkzeug's ``run_simple`` on ``PORT`` (default 8000)."""
    serve_example("members_area", create_app)


if __name__ == "__main__":
    main()
