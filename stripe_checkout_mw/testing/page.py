"""The emulator's stand-in for Stripe's hosted payment page.

A small self-contained HTML page (no scripts, no external assets) served at the
session's ``url``. Its element ids and field names are stable so a browser test can
drive it:

- ``input#email[name=email]``: prefilled with the session's ``customer_email``;
- ``input#cardnumber[name=cardnumber]``: ``4242 4242 4242 4242`` pays,
  ``4000 0000 0000 0002`` is declined (spaces allowed);
- ``input#delayed[name=delayed]``: a checkbox; when ticked the payment is "delayed"
  (like a bank debit): the session completes with ``payment_status: unpaid`` and the
  card number is not needed;
- ``button#pay`` and ``button#cancel``: submit the form with ``action=pay`` or
  ``action=cancel``;
- ``#error`` holds the message of a declined or invalid attempt, ``#notice`` the
  message of a page that takes no payment (completed, expired, cancelled).

Everything taken from the session is HTML-escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["format_amount", "page_html", "render_checkout", "render_notice"]

# Currencies whose amounts have no minor unit (Stripe's list, abridged to the common ones).
_ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd",
     "vuv", "xaf", "xof", "xpf"}
)

_STYLE = """
body{font-family:system-ui,sans-serif;background:#f6f9fc;color:#1a1f36;margin:0}
main{max-width:28rem;margin:2rem auto;background:#fff;padding:1.5rem 2rem;
border-radius:8px;box-shadow:0 2px 8px rgba(0,0,0,.08)}
h1{font-size:1.2rem}table{width:100%;border-collapse:collapse;margin:1rem 0}
td{padding:.3rem 0}td.amount{text-align:right}tr.total td{border-top:1px solid #ddd;
font-weight:bold}label{display:block;margin:.8rem 0 .2rem}
input[type=text],input[type=email]{width:100%;padding:.5rem;box-sizing:border-box}
.buttons{display:flex;gap:.5rem;margin-top:1rem}button{padding:.6rem 1.2rem}
#pay{background:#635bff;color:#fff;border:0;border-radius:4px}
#error{color:#b3093c;font-weight:bold}.note{color:#697386;font-size:.85rem}
""".strip()


def format_amount(amount: int | None, currency: str | None) -> str:
    """``1500, "usd"`` -> ``"15.00 USD"``, minding zero-decimal currencies."""
    if amount is None:
        return "-"
    code = (currency or "").upper()
    if (currency or "").lower() in _ZERO_DECIMAL:
        return f"{amount} {code}".strip()
    return f"{amount / 100:.2f} {code}".strip()


def page_html(title: str, body: str) -> str:
    """A complete page: ``body`` (already escaped HTML) inside the shared frame."""
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def render_notice(title: str, message: str) -> str:
    """A page that takes no payment: ``title`` and ``message`` in ``#notice``."""
    return page_html(title, f"<h1>{escape(title)}</h1><p id=\"notice\">{escape(message)}</p>")


def render_checkout(
    session: dict[str, Any],
    items: list[dict[str, Any]],
    *,
    action: str,
    error: str | None = None,
    email: str | None = None,
    cardnumber: str = "",
) -> str:
    """The payment form for an open session; ``error`` is shown above it."""
    rows = []
    for item in items:
        price = item["price"]
        interval = ""
        if price.get("recurring"):
            interval = f" / {price['recurring']['interval']}"
        rows.append(
            "<tr class=\"item\"><td>"
            f"{escape(str(item.get('description') or 'Item'))} &times; {int(item['quantity'])}"
            f"</td><td class=\"amount\">"
            f"{escape(format_amount(item['amount_total'], item['currency']) + interval)}"
            "</td></tr>"
        )
    total = format_amount(session.get("amount_total"), session.get("currency"))
    rows.append(
        f"<tr class=\"total\"><td>Total</td><td class=\"amount\" id=\"total\">"
        f"{escape(total)}</td></tr>"
    )
    prefill = email if email is not None else (session.get("customer_email") or "")
    error_html = f"<p id=\"error\" role=\"alert\">{escape(error)}</p>" if error else ""
    cancel = ""
    if session.get("cancel_url"):
        cancel = ("<button type=\"submit\" name=\"action\" value=\"cancel\" id=\"cancel\" "
                  "formnovalidate>Cancel</button>")
    body = (
        "<h1>Stripe emulator &mdash; test checkout</h1>"
        f"<p class=\"note\">Session <code id=\"session-id\">{escape(session['id'])}</code>."
        " No real payment is taken.</p>"
        f"<table id=\"items\">{''.join(rows)}</table>"
        f"{error_html}"
        f"<form method=\"post\" action=\"{escape(action)}\" id=\"checkout\">"
        "<label for=\"email\">Email</label>"
        f"<input type=\"email\" id=\"email\" name=\"email\" value=\"{escape(prefill)}\" "
        "autocomplete=\"email\">"
        "<label for=\"cardnumber\">Card number</label>"
        f"<input type=\"text\" id=\"cardnumber\" name=\"cardnumber\" "
        f"value=\"{escape(cardnumber)}\" inputmode=\"numeric\" autocomplete=\"cc-number\" "
        "placeholder=\"4242 4242 4242 4242\">"
        "<p class=\"note\">4242 4242 4242 4242 pays; 4000 0000 0000 0002 is declined.</p>"
        "<label><input type=\"checkbox\" id=\"delayed\" name=\"delayed\" value=\"1\"> "
        "Delayed payment (completes unpaid; settle it later with "
        "<code>emu.pay(id, async_payment=...)</code>)</label>"
        "<div class=\"buttons\"><button type=\"submit\" name=\"action\" value=\"pay\" "
        f"id=\"pay\">Pay {escape(total)}</button>{cancel}</div>"
        "</form>"
    )
    return page_html("Checkout (Stripe emulator)", body)
