"""A members' area sold as a subscription: sign in, subscribe, read, change plan, pay.

One bare WSGI callable; the middleware does the rest. The pages:

- ``/``: the stand-in sign-in form, then the plans (Basic and Pro) and their Subscribe
  buttons;
- ``/members``: the members' page, shown only while ``mw.subscriptions.is_active(user)``;
- ``/reports``: a page for one feature, shown only while
  ``mw.subscriptions.has_feature(user, "reports")`` (the Pro plan gives it);
- ``/account``: the plan and seats as the ledger has them, a plan change with its preview
  (``preview_change`` shows the amount due now; Confirm calls ``change``), a change at the
  period end (``schedule_change``), cancel and resume, the billing history
  (``mw.billing.invoices``) and a Manage billing button for Stripe's billing portal.

The plans are prices kept in Stripe, named by lookup key (``members_basic``,
``members_pro``); :func:`ensure_plans` creates them on start-up when the account has none
with those keys (once: later starts find them). A plan change can only name them: the
``Catalog`` given to the middleware holds these two prices and nothing else.

The account page's own forms post to ``/account/...``; each post must come from this site
(its ``Origin``, else ``Referer``, is ``WEB_APP_URL``'s origin), the same cross-site check
the middleware makes on its own paths.

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
from urllib.parse import parse_qs, urlsplit

import stripe

from stripe_checkout_mw import (
    Catalog,
    CheckoutMiddleware,
    PaymentNotCompleted,
    Subscription,
)
from stripe_checkout_mw.billing.changes import ChangePreview
from stripe_checkout_mw.errors import HTTPError
from stripe_checkout_mw.serving import serve_example

log = logging.getLogger("members_area")

StartResponse = Callable[..., Any]

#: The plans, by the key the pages use. Each is a monthly price kept in Stripe under its
#: ``lookup_key``; ``features`` is what it gives (the middleware's ``features`` option).
PLANS: dict[str, dict[str, Any]] = {
    "basic": {"name": "Basic", "lookup_key": "members_basic", "unit_amount": 500,
              "currency": "usd", "features": ["archive"]},
    "pro": {"name": "Pro", "lookup_key": "members_pro", "unit_amount": 1500,
            "currency": "usd", "features": ["archive", "reports"]},
}
MAX_SEATS = 50
COOKIE = "member"
#: Signs the stand-in login cookie; a new one each start (everyone signs in again).
_KEY = secrets.token_bytes(32)
#: What a redirect after a successful account action says (the query names one of these).
NOTICES = {
    "changed": "Your plan was changed.",
    "scheduled": "Your plan changes at the end of the current period.",
    "unscheduled": "The scheduled change was called off.",
    "canceled": "Your subscription ends at the end of the current period.",
    "resumed": "Your subscription renews again.",
}

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


def _money(amount: int, currency: str) -> str:
    return f"{amount / 100:.2f} {currency.upper()}"


def _day(timestamp: float | None) -> str:
    if not timestamp:
        return "?"
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")


class MembersArea:
    """The app behind the middleware; it asks the middleware's ledger who has access."""

    def __init__(self, origin: str) -> None:
        self.middleware: CheckoutMiddleware | None = None
        #: The site's own origin (``scheme://host:port``): the account forms' posts must
        #: come from it.
        self.origin = origin

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        user = signed_in_user(environ)
        if path == "/login" and method == "POST":
            return self._login(environ, start_response)
        if path.startswith("/account/") and method == "POST":
            return self._account_action(environ, start_response, user, path[len("/account/"):])
        if method not in ("GET", "HEAD"):
            return _answer(start_response, "405 Method Not Allowed", "Not allowed", "")
        if path == "/":
            return self._home(start_response, user)
        if path == "/members":
            return self._members(start_response, user)
        if path == "/reports":
            return self._reports(start_response, user)
        if path == "/account":
            notice = parse_qs(environ.get("QUERY_STRING", "")).get("notice", [""])[0]
            return self._account(start_response, user, notice=NOTICES.get(notice, ""))
        return _answer(start_response, "404 Not Found", "Not found", "")

    def _login(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        form = _form(environ)
        user = form.get("user", "").strip()
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
        if self._active(user):
            action = ('<p id="state">You are a member.</p>'
                      '<p><a id="members" href="/members">Go to the members\' page</a> '
                      '<a id="reports" href="/reports">Reports</a></p>')
        else:
            action = "".join(
                '<form method="post" action="/create-checkout-session">'
                f'<input type="hidden" name="price" value="{escape(key)}">'
                f'<button id="subscribe-{escape(key)}">Subscribe to {escape(plan["name"])} '
                f'for {escape(_money(plan["unit_amount"], plan["currency"]))} a month'
                '</button></form>' for key, plan in PLANS.items())
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

    def _reports(self, start_response: StartResponse, user: str | None) -> Iterable[bytes]:
        ledger = self.middleware.subscriptions if self.middleware else None
        if user is None or ledger is None or not ledger.has_feature(user, "reports"):
            return _answer(start_response, "403 Forbidden", "Reports",
                           '<p id="denied">Reports come with the Pro plan.</p>'
                           '<p><a href="/account">Change your plan</a></p>')
        return _answer(start_response, "200 OK", "Reports",
                       '<p id="report">This month: 3 new members, 0 cancellations.</p>')

    # -- the account page and its forms ------------------------------------------------

    def _account(self, start_response: StartResponse, user: str | None, *,
                 status: str = "200 OK", notice: str = "", error: str = "",
                 extra: str = "") -> Iterable[bytes]:
        if user is None or self.middleware is None or self.middleware.subscriptions is None:
            return _answer(start_response, "401 Unauthorized", "Your account",
                           '<p><a href="/">Sign in</a></p>')
        subscriptions = self.middleware.subscriptions.for_customer(user)
        rows = "".join(_describe(sub) for sub in subscriptions) or "<li>None yet.</li>"
        parts = []
        if notice:
            parts.append(f'<p id="notice">{escape(notice)}</p>')
        if error:
            parts.append(f'<p id="error" role="alert">{error}</p>')
        parts.append(extra)
        parts.append(f'<ul id="subscriptions">{rows}</ul>')
        live = [sub for sub in subscriptions if sub.status in ("active", "trialing", "past_due")]
        if live:
            parts.append(_plan_forms(live[0]))
        parts.append(_history(self.middleware, user))
        parts.append('<form method="post" action="/billing-portal">'
                     '<button id="portal">Manage billing</button></form>'
                     '<p><a href="/">Home</a> <a href="/members">Members\' page</a> '
                     '<a href="/reports">Reports</a></p>')
        return _answer(start_response, status, "Your account", "".join(parts))

    def _account_action(self, environ: dict[str, Any], start_response: StartResponse,
                        user: str | None, action: str) -> Iterable[bytes]:
        if not self._same_site(environ):
            return _answer(start_response, "403 Forbidden", "Not allowed",
                           "<p>This form must be sent from this site.</p>")
        if user is None or self.middleware is None or self.middleware.subscriptions is None:
            return _answer(start_response, "401 Unauthorized", "Your account",
                           '<p><a href="/">Sign in</a></p>')
        subs = self.middleware.subscriptions
        form = _form(environ)
        try:
            if action == "preview":
                price, quantity = _plan_and_seats(form)
                preview = subs.preview_change(user, price=price, quantity=quantity)
                return self._account(start_response, user,
                                     extra=_preview(preview, price, quantity))
            if action == "change":
                price, quantity = _plan_and_seats(form)
                subs.change(user, price=price, quantity=quantity,
                            proration_date=_whole(form.get("proration_date")))
                notice = "changed"
            elif action == "schedule":
                price, quantity = _plan_and_seats(form)
                subs.schedule_change(user, price=price, quantity=quantity)
                notice = "scheduled"
            elif action == "unschedule":
                subs.cancel_scheduled_change(user)
                notice = "unscheduled"
            elif action == "cancel":
                subs.cancel(user)
                notice = "canceled"
            elif action == "resume":
                subs.resume(user)
                notice = "resumed"
            else:
                return _answer(start_response, "404 Not Found", "Not found", "")
        except PaymentNotCompleted as exc:
            link = (f' <a id="pay" href="{escape(exc.hosted_invoice_url)}">Pay the invoice</a>'
                    if exc.hosted_invoice_url else "")
            return self._account(start_response, user, status="402 Payment Required",
                                 error=escape(exc.message) + link)
        except HTTPError as exc:
            return self._account(start_response, user, status=f"{exc.status} Refused",
                                 error=escape(exc.message))
        start_response("303 See Other", [("Location", f"/account?notice={notice}"),
                                         ("Content-Length", "0")])
        return [b""]

    def _same_site(self, environ: dict[str, Any]) -> bool:
        """The post came from this site's own page (the browser's ``Origin``, else its
        ``Referer``): a page on another site cannot change a member's plan."""
        origin = environ.get("HTTP_ORIGIN")
        if origin is None and environ.get("HTTP_REFERER"):
            parts = urlsplit(environ["HTTP_REFERER"])
            origin = f"{parts.scheme}://{parts.netloc}"
        return origin is not None and origin == self.origin


def _form(environ: dict[str, Any]) -> dict[str, str]:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(min(max(length, 0), 4096)).decode("utf-8", "replace")
    return {name: values[0] for name, values in parse_qs(body).items()}


def _whole(value: str | None) -> int | None:
    return int(value) if value and value.isascii() and value.isdigit() and len(value) < 12 else None


def _plan_and_seats(form: dict[str, str]) -> tuple[str, int]:
    """The plan key and seat count of a form; ``HTTPError`` (shown on the page) if not."""
    plan = form.get("plan", "")
    if plan not in PLANS:
        raise HTTPError(400, "Choose one of the plans.")
    seats = _whole(form.get("seats"))
    if seats is None or not 1 <= seats <= MAX_SEATS:
        raise HTTPError(400, f"Seats must be a whole number from 1 to {MAX_SEATS}.")
    return plan, seats


def _plan_of(sub: Subscription) -> tuple[str, int]:
    """The plan's name and seats of a one-item subscription."""
    item = sub.items[0] if sub.items else None
    if item is None:
        return "?", 0
    names = {plan["lookup_key"]: plan["name"] for plan in PLANS.values()}
    return names.get(item.lookup_key or "", item.lookup_key or item.price), item.quantity


def _describe(sub: Subscription) -> str:
    name, seats = _plan_of(sub)
    end = _day(sub.current_period_end)
    ending = f", ends {end}" if sub.cancel_at_period_end else f", renews {end}"
    if sub.schedule is not None and not sub.cancel_at_period_end:
        ending += "; your plan changes then (scheduled)"
    if sub.status not in ("active", "trialing", "past_due"):
        return f'<li class="subscription">{escape(sub.status)}</li>'
    return (f'<li class="subscription"><span class="plan">{escape(name)}</span> x '
            f'<span class="seats">{seats}</span>: {escape(sub.status)}{escape(ending)}</li>')


def _plan_choice(selected: str) -> str:
    options = "".join(
        f'<option value="{escape(key)}"{" selected" if key == selected else ""}>'
        f'{escape(plan["name"])} ({escape(_money(plan["unit_amount"], plan["currency"]))}'
        ' a seat a month)</option>' for key, plan in PLANS.items())
    return f'<select name="plan">{options}</select>'


def _plan_forms(sub: Subscription) -> str:
    """Change the plan or seats (now, after a preview; or at the period end), cancel or
    resume."""
    name, seats = _plan_of(sub)
    current = next((key for key, plan in PLANS.items() if plan["name"] == name), "basic")
    fields = (f'<label>Plan {_plan_choice(current)}</label> <label>Seats <input name="seats" '
              f'type="number" min="1" max="{MAX_SEATS}" value="{seats}"></label>')
    forms = [
        f'<form method="post" action="/account/preview" id="change-form">{fields} '
        '<button id="preview">Preview the change</button></form>',
        # One change at a time may wait for the period end: offer to schedule one, or to
        # call off the one scheduled.
        f'<form method="post" action="/account/schedule" id="schedule-form">{fields} '
        '<button id="schedule">Change at the end of the period</button></form>'
        if sub.schedule is None else
        '<form method="post" action="/account/unschedule"><button id="unschedule">'
        'Call off the scheduled change</button></form>',
    ]
    if sub.cancel_at_period_end:
        forms.append('<form method="post" action="/account/resume">'
                     '<button id="resume">Resume</button></form>')
    else:
        forms.append('<form method="post" action="/account/cancel">'
                     '<button id="cancel">Cancel at the end of the period</button></form>')
    return '<h2>Your plan</h2>' + "".join(forms)


def _preview(preview: ChangePreview, plan: str, seats: int) -> str:
    """Stripe's preview of a change, and the form that confirms it."""
    lines = "".join(f'<li>{escape(line.description or "")}: '
                    f'{escape(_money(line.amount, preview.currency))}</li>'
                    for line in preview.lines_now)
    later = escape(_money(preview.next_invoice_total, preview.currency))
    proration = "" if preview.proration_date is None else (
        f'<input type="hidden" name="proration_date" value="{int(preview.proration_date)}">')
    return (f'<div id="change-preview"><h2>Change to {escape(PLANS[plan]["name"])} x '
            f'{seats}</h2><p>Due now: <b id="due-now">'
            f'{escape(_money(preview.amount_due_now, preview.currency))}</b></p>'
            f'<ul>{lines}</ul><p>Then <span id="next-total">{later}</span> from '
            f'{escape(_day(preview.next_invoice_at))}.</p>'
            '<form method="post" action="/account/change">'
            f'<input type="hidden" name="plan" value="{escape(plan)}">'
            f'<input type="hidden" name="seats" value="{seats}">{proration}'
            '<button id="confirm">Confirm and pay now</button></form></div>')


def _history(middleware: CheckoutMiddleware, user: str) -> str:
    """The billing history: the user's invoices from the ledger, newest first."""
    rows = []
    ledger = middleware.billing
    for invoice in ledger.invoices(user, limit=20) if ledger is not None else ():
        link = (f'<a href="{escape(invoice.hosted_invoice_url)}">view</a>'
                if invoice.hosted_invoice_url else "")
        rows.append(f'<tr class="invoice"><td>{escape(_day(invoice.created))}</td>'
                    f'<td>{escape(invoice.number or invoice.id)}</td>'
                    f'<td>{escape(invoice.billing_reason or "")}</td>'
                    f'<td>{escape(_money(invoice.total, invoice.currency))}</td>'
                    f'<td class="status">{escape(invoice.status)}</td><td>{link}</td></tr>')
    body = "".join(rows) or '<tr><td colspan="6">No invoices yet.</td></tr>'
    return (f'<h2>Billing history</h2><table id="invoices"><tr><th>Date</th><th>Number</th>'
            f'<th>Reason</th><th>Total</th><th>Status</th><th></th></tr>{body}</table>')


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


def ensure_plans(client: stripe.StripeClient) -> dict[str, str]:
    """The Stripe price id of each plan, by plan key: the active price with the plan's
    lookup key, created (with its product) when there is none yet."""
    keys = [plan["lookup_key"] for plan in PLANS.values()]
    found = {price.lookup_key: price.id for price in client.v1.prices.list(
        params={"lookup_keys": keys, "active": True, "limit": len(keys)}).data}
    ids = {}
    for key, plan in PLANS.items():
        price_id = found.get(plan["lookup_key"])
        if price_id is None:
            price_id = client.v1.prices.create(params={
                "unit_amount": plan["unit_amount"], "currency": plan["currency"],
                "recurring": {"interval": "month"}, "lookup_key": plan["lookup_key"],
                "product_data": {"name": f"Members' club {plan['name']}"}}).id
            log.info("created the %s plan's price %s", key, price_id)
        ids[key] = price_id
    return ids


def create_app(**options: Any) -> CheckoutMiddleware:
    """The members' area wrapped in the middleware, configured from the environment
    (``STRIPE_SECRET_KEY``, ``WEB_APP_URL``, ``STRIPE_WEBHOOK_SECRET``, ``STRIPE_API_BASE``,
    ``STRIPE_CHECKOUT_STORE``); keyword ``options`` override them."""
    domain = os.environ.get("WEB_APP_URL", "http://127.0.0.1:8000").rstrip("/")
    parts = urlsplit(domain)
    app = MembersArea(f"{parts.scheme}://{parts.netloc}")
    api_base = options.get("stripe_api_base", os.environ.get("STRIPE_API_BASE") or None)
    key = options.get("secret_key", os.environ.get("STRIPE_SECRET_KEY", ""))
    prices: dict[str, str] = {}
    if key:  # without one the middleware refuses to start and says why
        client = stripe.StripeClient(key, base_addresses={"api": api_base} if api_base else {})
        prices = ensure_plans(client)
    settings: dict[str, Any] = {
        "price_lookup": Catalog({plan: {"price": price} for plan, price in prices.items()}),
        "features": {plan["lookup_key"]: plan["features"] for plan in PLANS.values()},
        "stripe_api_base": api_base,
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
