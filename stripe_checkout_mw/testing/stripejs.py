"""The emulator's stand-in Stripe.js, and the pages it frames.

Embedded Checkout (``ui_mode="embedded_page"``) and Elements (``ui_mode="elements"``)
run on the shop's own page through Stripe.js, which a browser loads from Stripe. The
emulator serves a stand-in at ``{api_base}/v3/stripe.js`` (see
``StripeEmulator.stripe_js_url``) so both modes work offline, in tests and in the demo.
It implements the subset of the current Stripe.js those two modes use:

- ``Stripe(publishableKey)``: refuses any key but the emulator's own
  (``StripeEmulator.publishable_key``), and a secret key outright;
- ``stripe.createEmbeddedCheckoutPage({fetchClientSecret, onComplete})`` resolves to an
  object with ``mount(selector)``, ``unmount()`` and ``destroy()``. Mounted, it frames
  the emulator's payment form (the hosted page's, at :data:`EMBEDDED_PREFIX`); on
  completion the shop's window goes to the session's ``return_url``
  (``redirect_on_completion="always"``, the default) or ``onComplete()`` is called
  (``"if_required"``, ``"never"``);
- ``stripe.initCheckoutElementsSdk({clientSecret})`` (synchronous; ``clientSecret`` a
  string or a Promise of one) returns a checkout with ``createPaymentElement()`` (whose
  ``mount(selector)`` frames the card field) and ``loadActions()``, resolving to
  ``{type: "success", actions}``. ``actions.confirm({email, redirect})`` resolves to
  ``{type: "success", session}`` or ``{type: "error", error: {message}}``; with
  ``redirect: "always"`` (the default) a success sends the window to ``return_url``,
  with ``"if_required"`` the customer stays on the page;
- the names those calls had before Stripe renamed them (``initEmbeddedCheckout``,
  ``initCheckout``) throw an ``IntegrationError``, as Stripe's do.

The card field and the embedded form live in frames served by the emulator, so the
card number never reaches the shop's page (as with Stripe's). They take the hosted
page's cards (:mod:`.cards`): ``4242 4242 4242 4242`` pays, ``4000 0000 0000 0002`` is
declined, the "delayed" box completes the session unpaid. Frames and the card field
talk to the shop's page with ``postMessage``, checked on both sides against the
origin each expects.
"""

from __future__ import annotations

import json
import secrets
import threading
from importlib import resources
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qs, urlsplit

from .api import ApiError, checkout_sessions
from .cards import payment_error
from .forms import FormError, decode_form
from .page import format_amount, render_checkout, render_notice
from .server import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from .api import StripeState

__all__ = [
    "ELEMENTS_PREFIX",
    "EMBEDDED_PREFIX",
    "STRIPE_JS_PATH",
    "ClientPages",
    "stripe_js_source",
]

#: Where the emulator serves the stand-in Stripe.js.
STRIPE_JS_PATH = "/v3/stripe.js"
#: The embedded form's frame: ``/embedded/{session_id}?client_secret=&key=&origin=``.
EMBEDDED_PREFIX = "/embedded/"
#: The card field's frame and its calls: ``/elements/{session_id}[/session|/confirm]``.
ELEMENTS_PREFIX = "/elements/"

_CONFIG_MARK = "/*EMULATOR_CONFIG*/null"


def stripe_js_source(api_base: str, publishable_key: str) -> str:
    """The stand-in Stripe.js, bound to one emulator's address and publishable key."""
    template = resources.files(__package__).joinpath("assets", "stripe.js").read_text(
        encoding="utf-8")
    config = {"apiBase": api_base, "publishableKey": publishable_key}
    return template.replace(_CONFIG_MARK, _script_json(config), 1)


def _script_json(value: object) -> str:
    """JSON that is safe inside a ``<script>`` element (no ``</script>`` break-out)."""
    return (json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026"))


def _origin(value: str) -> str | None:
    """``value`` if it is exactly an ``http(s)://host[:port]`` origin, else ``None``."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        return None
    return value


def _json(status: int, body: dict[str, Any], *, cors: bool = False) -> HttpResponse:
    headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
    if cors:
        # Read by the shop's page (another origin); the client secret is the credential.
        headers.append(("Access-Control-Allow-Origin", "*"))
    return HttpResponse(status, json.dumps(body).encode("utf-8"), headers)


def _html(status: int, html: str) -> HttpResponse:
    return HttpResponse(status, html.encode("utf-8"),
                        [("Content-Type", "text/html; charset=utf-8"),
                         ("Cache-Control", "no-store")])


class _Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ClientPages:
    """Serves the stand-in Stripe.js and the frames and calls it makes.

    The emulator hands it every request under :data:`STRIPE_JS_PATH`,
    :data:`EMBEDDED_PREFIX` and :data:`ELEMENTS_PREFIX`.

    :param lock: the emulator's state lock.
    :param state: returns the emulator's :class:`StripeState`.
    :param api_base: returns the emulator's address.
    :param publishable_key: the only ``pk_`` key these pages accept.
    :param after_payment: called (outside the lock) with the id of the
        ``checkout.session.completed`` event a payment emitted, before the answer
        goes back (the emulator waits there for the webhook's first attempt).
    """

    def __init__(
        self,
        *,
        lock: threading.RLock,
        state: Callable[[], StripeState],
        api_base: Callable[[], str],
        publishable_key: str,
        after_payment: Callable[[str], None],
    ) -> None:
        self._lock = lock
        self._state = state
        self._api_base = api_base
        self.publishable_key = publishable_key
        self._after_payment = after_payment

    def handle(self, request: HttpRequest, path: str, query: str) -> HttpResponse:
        """Answer one request under the paths this class owns."""
        if path == STRIPE_JS_PATH:
            if request.method not in ("GET", "HEAD"):
                return _json(405, {"error": {"message": "Use GET."}})
            source = stripe_js_source(self._api_base(), self.publishable_key)
            return HttpResponse(200, source.encode("utf-8"),
                                [("Content-Type", "application/javascript; charset=utf-8"),
                                 ("Cache-Control", "no-store"),
                                 ("Access-Control-Allow-Origin", "*")])
        args = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        if path.startswith(EMBEDDED_PREFIX):
            return self._embedded(request, path[len(EMBEDDED_PREFIX):], args, query)
        rest = path[len(ELEMENTS_PREFIX):]
        session_id, _, action = rest.partition("/")
        if action == "session" and request.method == "GET":
            return self._elements_session(session_id, args)
        if action == "confirm" and request.method == "POST":
            return self._elements_confirm(session_id, request.body)
        if action == "" and request.method == "GET":
            return self._elements_frame(session_id, args)
        return _json(404, {"error": {"message": f"Unrecognized request URL ({path})."}})

    # -- checks shared by every frame and call ------------------------------------------

    def _session(self, session_id: str, args: dict[str, str], ui_mode: str) -> dict[str, Any]:
        """The open session these arguments may act on, or a :class:`_Refusal`."""
        key = args.get("key", "")
        if not secrets.compare_digest(key.encode(), self.publishable_key.encode()):
            raise _Refusal(401, "Invalid API Key provided: use the emulator's publishable key "
                                "with Stripe(...).")
        try:
            session = checkout_sessions.stored_session(self._state(), session_id)
        except ApiError:
            raise _Refusal(404, "There is no such Checkout Session.") from None
        given = args.get("client_secret", "")
        if not session.get("client_secret") or not secrets.compare_digest(
                given.encode(), str(session["client_secret"]).encode()):
            raise _Refusal(404, "The client secret does not belong to this Checkout Session.")
        if session["ui_mode"] != ui_mode:
            raise _Refusal(400, f"This Checkout Session uses ui_mode {session['ui_mode']}, "
                                f"not {ui_mode}.")
        return session

    def _pay(self, session: dict[str, Any], email: str, card: str,
             delayed: bool) -> tuple[str | None, str | None]:
        """Take the payment under the lock: ``(error, event_id)``."""
        if session["status"] == "complete":
            return "This Checkout Session is already complete.", None
        if session["status"] == "expired":
            return "This Checkout Session has expired.", None
        error = payment_error(email, card, delayed)
        if error is not None:
            return error, None
        event = checkout_sessions.complete(self._state(), session["id"], email=email,
                                          delayed=delayed)
        return None, str(event["id"])

    @staticmethod
    def _return_url(session: dict[str, Any]) -> str | None:
        url = session.get("return_url")
        return url.replace("{CHECKOUT_SESSION_ID}", session["id"]) if url else None

    # -- Embedded Checkout ----------------------------------------------------------------

    def _embedded(self, request: HttpRequest, session_id: str, args: dict[str, str],
                  query: str) -> HttpResponse:
        if request.method not in ("GET", "HEAD", "POST"):
            return _html(405, render_notice("Method not allowed", "Use GET or POST."))
        parent = _origin(args.get("origin", ""))
        if parent is None:
            return _html(400, render_notice("Not available", "This page is framed by "
                                            "Stripe.js; open the shop instead."))
        action = f"{EMBEDDED_PREFIX}{session_id}?{query}"
        with self._lock:
            try:
                session = self._session(session_id, args, "embedded_page")
            except _Refusal as refusal:
                return _html(refusal.status, render_notice("Not available", refusal.message))
            if session["status"] != "open":
                return _html(200, render_notice("Not available", "This Checkout Session is "
                                                f"{session['status']}."))
            items = self._state().line_items[session_id]
            if request.method != "POST":
                return _html(200, render_checkout(session, items, action=action))
            try:
                form = decode_form(request.body)
            except FormError:
                form = {}
            fields = {k: v.strip() for k, v in form.items() if isinstance(v, str)}
            error, event_id = self._pay(session, fields.get("email", ""),
                                        fields.get("cardnumber", ""),
                                        bool(fields.get("delayed")))
            if error is not None:
                return _html(200, render_checkout(
                    session, items, action=action, error=error,
                    email=fields.get("email", ""), cardnumber=fields.get("cardnumber", "")))
            redirect = None
            if (session.get("redirect_on_completion") or "always") == "always":
                redirect = self._return_url(session)
        assert event_id is not None
        self._after_payment(event_id)
        message = {"source": "stripe-emulator", "type": "embedded.complete",
                   "sessionId": session_id, "redirectUrl": redirect}
        script = (f"<script>parent.postMessage({_script_json(message)}, "
                  f"{_script_json(parent)});</script>")
        page = render_notice("Payment complete", "Thank you: this payment is complete.")
        return _html(200, page.replace("</body>", script + "</body>", 1))

    # -- Elements -------------------------------------------------------------------------

    def _elements_frame(self, session_id: str, args: dict[str, str]) -> HttpResponse:
        parent = _origin(args.get("origin", ""))
        if parent is None:
            return _html(400, render_notice("Not available", "This field is framed by "
                                            "Stripe.js; open the shop instead."))
        with self._lock:
            try:
                self._session(session_id, args, "elements")
            except _Refusal as refusal:
                return _html(refusal.status, render_notice("Not available", refusal.message))
        setup = {"parent": parent, "confirm": f"{ELEMENTS_PREFIX}{session_id}/confirm",
                 "clientSecret": args["client_secret"], "key": args["key"]}
        return _html(200, _PAYMENT_ELEMENT.replace("/*SETUP*/null", _script_json(setup), 1))

    def _elements_session(self, session_id: str, args: dict[str, str]) -> HttpResponse:
        with self._lock:
            try:
                session = self._session(session_id, args, "elements")
            except _Refusal as refusal:
                return _json(refusal.status, {"error": {"message": refusal.message}}, cors=True)
            items = self._state().line_items[session_id]
            view = _session_view(session, items)
        return _json(200, view, cors=True)

    def _elements_confirm(self, session_id: str, body: bytes) -> HttpResponse:
        try:
            form = decode_form(body)
        except FormError:
            form = {}
        fields = {k: v.strip() for k, v in form.items() if isinstance(v, str)}
        with self._lock:
            try:
                session = self._session(session_id, fields, "elements")
            except _Refusal as refusal:
                return _json(refusal.status, {"type": "error",
                                              "error": {"message": refusal.message}})
            error, event_id = self._pay(session, fields.get("email", ""),
                                        fields.get("cardnumber", ""),
                                        bool(fields.get("delayed")))
            if error is not None:
                return _json(200, {"type": "error", "error": {"message": error}})
            return_url = self._return_url(session)
        assert event_id is not None
        self._after_payment(event_id)
        with self._lock:
            view = _session_view(session, self._state().line_items[session_id])
        return _json(200, {"type": "success", "session": view, "returnUrl": return_url})


def _session_view(session: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """The small part of Stripe.js's session object the stand-in gives the shop."""
    total = session.get("amount_total")
    return {
        "id": session["id"],
        "status": {"type": session["status"], "paymentStatus": session["payment_status"]},
        "email": (session.get("customer_details") or {}).get("email")
        or session.get("customer_email"),
        "currency": session.get("currency"),
        "total": {"total": {"minorUnitsAmount": total,
                            "amount": format_amount(total, session.get("currency"))}},
        "lineItems": [{"name": item.get("description"), "quantity": item["quantity"],
                       "total": {"minorUnitsAmount": item["amount_total"]}}
                      for item in items],
    }


# The card field: its own small page, so the card number stays in the emulator's origin.
_PAYMENT_ELEMENT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Card (Stripe emulator)</title>
<style>body{font-family:system-ui,sans-serif;margin:0;padding:.2rem}
label{display:block;margin:.4rem 0 .2rem}input[type=text]{width:100%;padding:.5rem;
box-sizing:border-box}.note{color:#697386;font-size:.8rem;margin:.3rem 0}</style></head>
<body>
<label for="cardnumber">Card number</label>
<input type="text" id="cardnumber" name="cardnumber" inputmode="numeric"
 autocomplete="cc-number" placeholder="4242 4242 4242 4242">
<p class="note">Stripe emulator: 4242 4242 4242 4242 pays; 4000 0000 0000 0002 is declined.</p>
<label><input type="checkbox" id="delayed" name="delayed" value="1"> Delayed payment
(completes unpaid)</label>
<script>
(function () {
  var setup = /*SETUP*/null;
  function send(message) {
    message.source = "stripe-emulator";
    parent.postMessage(message, setup.parent);
  }
  window.addEventListener("message", function (event) {
    var data = event.data;
    if (event.source !== parent || event.origin !== setup.parent || !data ||
        data.source !== "stripe-emulator" || data.type !== "elements.confirm") { return; }
    var body = new URLSearchParams({
      client_secret: setup.clientSecret, key: setup.key, email: data.email || "",
      cardnumber: document.getElementById("cardnumber").value,
      delayed: document.getElementById("delayed").checked ? "1" : ""
    });
    fetch(setup.confirm, {method: "POST", body: body})
      .then(function (r) { return r.json(); })
      .then(function (result) { send({type: "elements.result", id: data.id, result: result}); })
      .catch(function () {
        send({type: "elements.result", id: data.id,
              result: {type: "error", error: {message: "The payment could not be sent."}}});
      });
  });
  send({type: "elements.ready"});
})();
</script>
</body></html>
"""
