"""The emulator's stand-in for Stripe's customer portal (``billing_portal.session.url``).

A self-contained HTML page (no scripts) listing the customer's live subscriptions.
Its ids and field names are stable so a browser test can drive it; every form
posts ``action`` and ``subscription``:

- ``form.cancel`` / ``button#cancel-<sub>``: cancel at the end of the period;
- ``form.resume`` / ``button#resume-<sub>``: call off a scheduled cancellation;
- ``form.switch`` / ``select#price-<sub>[name=price]`` + ``button#switch-<sub>``:
  move to another of the shop's active recurring prices (same currency);
- ``form#card`` / ``input#cardnumber[name=cardnumber]`` + ``button#update-card``:
  ``4242 4242 4242 4242`` saves a working card (and pays a ``past_due``
  subscription's open invoice); ``4000 0000 0000 0002`` is declined and changes
  nothing; ``4000 0000 0000 0341`` is saved but declines the next renewal;
- ``a#return``: back to the session's ``return_url``;
- ``#notice`` says what the last action did, ``#error`` why it was refused.

Everything taken from the objects is HTML-escaped.
"""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape
from typing import Any

from .page import format_amount, page_html

__all__ = ["NOTICES", "render_portal"]

NOTICES = {
    "canceled": "Your subscription will be canceled at the end of the period.",
    "resumed": "Your subscription will continue.",
    "switched": "Your plan was changed.",
    "card": "Your card was updated.",
}
"""The messages a finished action redirects to (``?notice=<key>``)."""


def _date(ts: int | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d")


def _price_label(price: dict[str, Any]) -> str:
    name = price.get("nickname") or price.get("lookup_key") or price["id"]
    interval = (price.get("recurring") or {}).get("interval", "")
    return f"{name}: {format_amount(price['unit_amount'], price['currency'])} / {interval}"


def _form(sub_id: str, action: str, inner: str, css: str | None = None) -> str:
    return (f"<form method=\"post\" class=\"{css or action}\">"
            f"<input type=\"hidden\" name=\"action\" value=\"{action}\">"
            f"<input type=\"hidden\" name=\"subscription\" value=\"{escape(sub_id)}\">"
            f"{inner}</form>")


def _subscription(sub: dict[str, Any], prices: list[dict[str, Any]]) -> str:
    sid = escape(sub["id"])
    item = sub["items"]["data"][0]
    period_end = min(int(i["current_period_end"]) for i in sub["items"]["data"])
    lines = [
        f"<section class=\"subscription\" id=\"{sid}\">",
        f"<h2>{escape(_price_label(item['price']))}</h2>",
        f"<p>Status: <span class=\"status\">{escape(sub['status'])}</span>. ",
    ]
    if sub["cancel_at_period_end"]:
        lines.append(f"Ends on <span class=\"period-end\">{_date(period_end)}</span>.</p>")
        lines.append(_form(sub["id"], "resume",
                           f"<button type=\"submit\" id=\"resume-{sid}\">"
                           "Don't cancel</button>"))
    else:
        lines.append(f"Renews on <span class=\"period-end\">{_date(period_end)}</span>.</p>")
        lines.append(_form(sub["id"], "cancel",
                           f"<button type=\"submit\" id=\"cancel-{sid}\">"
                           "Cancel plan</button>"))
    choices = [p for p in prices if p["currency"] == sub["currency"]
               and p["id"] != item["price"]["id"]]
    if choices:
        options = "".join(f"<option value=\"{escape(p['id'])}\">{escape(_price_label(p))}"
                          "</option>" for p in choices)
        lines.append(_form(sub["id"], "switch",
                           f"<select id=\"price-{sid}\" name=\"price\">{options}</select> "
                           f"<button type=\"submit\" id=\"switch-{sid}\">Change plan"
                           "</button>"))
    lines.append("</section>")
    return "".join(lines)


def render_portal(
    portal: dict[str, Any],
    customer: dict[str, Any],
    subscriptions: list[dict[str, Any]],
    prices: list[dict[str, Any]],
    *,
    notice: str | None = None,
    error: str | None = None,
) -> str:
    """The portal page of ``portal`` (a billing portal session) for ``customer``."""
    parts = ["<h1>Stripe emulator &mdash; customer portal</h1>",
             f"<p class=\"note\">Customer <code id=\"customer-id\">"
             f"{escape(customer['id'])}</code> {escape(customer.get('email') or '')}</p>"]
    if notice:
        parts.append(f"<p id=\"notice\">{escape(notice)}</p>")
    if error:
        parts.append(f"<p id=\"error\" role=\"alert\">{escape(error)}</p>")
    if subscriptions:
        parts.extend(_subscription(sub, prices) for sub in subscriptions)
    else:
        parts.append("<p id=\"no-subscriptions\">No active subscriptions.</p>")
    parts.append(
        "<form method=\"post\" id=\"card\"><input type=\"hidden\" name=\"action\" "
        "value=\"card\"><label for=\"cardnumber\">New card number</label>"
        "<input type=\"text\" id=\"cardnumber\" name=\"cardnumber\" inputmode=\"numeric\" "
        "placeholder=\"4242 4242 4242 4242\">"
        "<p class=\"note\">4242 4242 4242 4242 works; 4000 0000 0000 0002 is declined; "
        "4000 0000 0000 0341 is saved but declines the next renewal.</p>"
        "<button type=\"submit\" id=\"update-card\">Update card</button></form>")
    if portal.get("return_url"):
        parts.append(f"<p><a id=\"return\" href=\"{escape(portal['return_url'])}\">"
                     "Return to the shop</a></p>")
    return page_html("Customer portal (Stripe emulator)", "".join(parts))
