"""The stand-in hosted invoice page an invoice's ``hosted_invoice_url`` points at,
and its ``invoice_pdf``.

``GET /invoice/<id>`` shows the invoice (``#number``, ``#status``, ``#amount-due``,
its lines) and, while it is ``open``, a form: ``input#cardnumber`` (empty: the saved
card), ``button#pay`` pays, completing the card's authentication when it asks for
one (``4000 0027 6000 3184``), and ``button#fail-authentication`` abandons that
authentication (the invoice stays open, ``invoice.payment_action_required``).
Paying settles the subscription (see :func:`.api.subscription_updates.pay_invoice`:
``past_due`` -> ``active``, a pending update applied). ``GET /invoice/<id>/pdf`` is a
one-page PDF. Tests without a browser do the same with
:meth:`~.invoice_controls.InvoiceControls.pay_invoice`.
"""

from __future__ import annotations

import threading
from html import escape
from typing import TYPE_CHECKING, Any, Callable

from .api import ApiError
from .api.card_outcomes import (
    ACTION_REQUIRED,
    DECLINED,
    PAID,
    card_number,
    charge_outcome,
)
from .api.invoices import subscription_of
from .api.subscription_updates import pay_invoice
from .cards import CARD_AUTHENTICATE, CARD_DECLINES, CARD_OK, CARD_SAVED_BUT_DECLINES
from .forms import FormError, decode_form
from .hosted_checkout import form_field, method_not_allowed
from .page import format_amount, page_html, render_notice
from .server import HttpRequest, HttpResponse, html_response

if TYPE_CHECKING:
    from .api import StripeState

__all__ = ["HostedInvoicePage", "pay_on_page"]


def pay_on_page(state: StripeState, invoice: dict[str, Any], *, card: str = "",
                authenticate: bool = True) -> str | None:
    """Pay an open invoice as the customer on its page; the error shown, if any."""
    if card:
        number = card_number(card)
        if number in CARD_DECLINES or number == CARD_SAVED_BUT_DECLINES:
            outcome = DECLINED
        elif number == CARD_AUTHENTICATE:
            outcome = PAID if authenticate else ACTION_REQUIRED
        elif number == CARD_OK:
            outcome = PAID
        else:
            return "Your card number is incorrect."
    else:
        subscription = state.billing.subscriptions.get(subscription_of(invoice) or "")
        outcome = charge_outcome(state, subscription, invoice["customer"],
                                 on_session=authenticate)
    pay_invoice(state, invoice, outcome=outcome)
    if outcome == DECLINED:
        return "Your card was declined."
    if outcome == ACTION_REQUIRED:
        return "The authentication of this payment was not completed."
    return None


def _pdf(invoice: dict[str, Any]) -> bytes:
    text = (f"Invoice {invoice['number']} {invoice['status']} "
            f"{format_amount(invoice['total'], invoice['currency'])}")
    text = text.replace("\\", "").replace("(", "").replace(")", "")
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1", "replace")
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
               b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return out


def _render(invoice: dict[str, Any], error: str | None) -> str:
    rows = "".join(
        f"<tr class=\"line\"><td>{escape(str(line['description']))}</td>"
        f"<td class=\"amount\">{escape(format_amount(line['amount'], line['currency']))}"
        "</td></tr>" for line in invoice["lines"]["data"])
    due = format_amount(invoice["amount_remaining"], invoice["currency"])
    form = ""
    if invoice["status"] == "open":
        form = (
            f"<form method=\"post\" id=\"invoice\">"
            "<label for=\"cardnumber\">Card number (empty: the saved card)</label>"
            "<input type=\"text\" id=\"cardnumber\" name=\"cardnumber\" value=\"\">"
            "<div class=\"buttons\"><button type=\"submit\" name=\"action\" value=\"pay\" "
            f"id=\"pay\">Pay {escape(due)}</button><button type=\"submit\" name=\"action\" "
            "value=\"fail_authentication\" id=\"fail-authentication\">Fail "
            "authentication</button></div></form>")
    error_html = f"<p id=\"error\" role=\"alert\">{escape(error)}</p>" if error else ""
    body = (f"<h1>Invoice <span id=\"number\">{escape(str(invoice['number']))}</span></h1>"
            f"<p>Status: <strong id=\"status\">{escape(invoice['status'])}</strong>; "
            f"amount due <span id=\"amount-due\">{escape(due)}</span></p>"
            f"<table id=\"lines\">{rows}</table>{error_html}{form}")
    return page_html("Invoice (Stripe emulator)", body)


class HostedInvoicePage:
    """Serves ``/invoice/<id>`` and ``/invoice/<id>/pdf``.

    :param after_action: called outside the lock with the ids of the events a
        payment emitted (the emulator waits there for their first delivery).
    """

    def __init__(self, *, lock: threading.RLock, state: StripeState,
                 after_action: Callable[[list[str]], None]) -> None:
        self._lock = lock
        self._state = state
        self._after_action = after_action

    def handle(self, request: HttpRequest, rest: str) -> HttpResponse:
        if request.method not in ("GET", "HEAD", "POST"):
            return method_not_allowed()
        invoice_id, _, what = rest.partition("/")
        with self._lock:
            invoice = self._state.billing.invoices.get(invoice_id)
            if invoice is None or invoice["status"] == "draft" or what not in ("", "pdf"):
                return html_response(404, render_notice("Not found", "There is no such "
                                                        "invoice."))
            if what == "pdf":
                return HttpResponse(200, _pdf(invoice),
                                    [("Content-Type", "application/pdf")])
            if request.method != "POST" or invoice["status"] != "open":
                return html_response(200, _render(invoice, None))
            try:
                form = decode_form(request.body)
            except FormError:
                form = {}
            first = len(self._state.events)
            try:
                error = pay_on_page(
                    self._state, invoice, card=form_field(form, "cardnumber"),
                    authenticate=form_field(form, "action") != "fail_authentication")
            except ApiError as exc:
                error = exc.message
            emitted = [e["id"] for e in self._state.events[first:]]
            page = _render(invoice, error)
        self._after_action(emitted)
        return html_response(200, page)
