"""``StripeEmulator``: an offline Stripe for tests, the demo and development.

It is a real HTTP server on ``127.0.0.1`` that the real ``stripe`` SDK talks to:
Checkout Sessions, Prices, Products and Events with Stripe's paths, form encoding,
JSON shapes and error answers; a stand-in hosted payment page; webhooks signed the
way Stripe signs them; fault injection to prove that a client survives 500s, 429s,
timeouts and garbage::

    from stripe_checkout_mw.testing import StripeEmulator

    with StripeEmulator(webhook_url="http://127.0.0.1:8000/stripe/webhook") as emu:
        price = emu.add_price(unit_amount=1500, currency="usd", lookup_key="basic")
        client = stripe.StripeClient(emu.secret_key, base_addresses={"api": emu.api_base})
        session = client.v1.checkout.sessions.create(params={
            "mode": "payment",
            "line_items": [{"price": price["id"], "quantity": 1}],
            "success_url": "http://127.0.0.1:8000/thanks?session_id={CHECKOUT_SESSION_ID}",
        })
        emu.pay(session.id)          # completes it and delivers checkout.session.completed
        assert emu.deliveries[-1].ok

Keys: ``secret_key`` and ``webhook_secret`` are random per instance unless given
(``StripeEmulator(secret_key="sk_test_...", webhook_secret="whsec_...")``), like a
fresh Stripe account; any ``sk_test_`` key is accepted unless
``accept_any_test_key=False``. ``publishable_key`` (random ``pk_test_`` too) is the one
key its stand-in Stripe.js accepts, served at :attr:`StripeEmulator.stripe_js_url` for
Embedded Checkout and Elements (:mod:`.stripejs`).

Time: nothing here waits on the wall clock except webhook retries
(``delivery_backoff``, doubled per attempt) and injected delays. ``pay()``,
``expire()`` and ``redeliver()`` wait for their own webhook deliveries before they
return, so tests are deterministic. The hosted page's Pay button waits at most
``hosted_page_webhook_wait`` seconds for the first delivery attempt before it
redirects, so a shop usually has the webhook before the customer reaches the
success page; set it to 0 to test the other order.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union
from urllib.parse import urlsplit

from .api import API_VERSION, ApiError, StripeState, checkout_sessions, new_id, prices, products
from .billing import BillingControls
from .cards import payment_error
from .forms import FormError, decode_form
from .page import render_checkout, render_notice
from .server import HttpRequest, HttpResponse, HttpServer
from .stripejs import ELEMENTS_PREFIX, EMBEDDED_PREFIX, STRIPE_JS_PATH, ClientPages
from .webhooks import Delivery, DeliveryWorker

if TYPE_CHECKING:
    import stripe

__all__ = ["RecordedRequest", "StripeEmulator"]

logger = logging.getLogger("stripe_checkout_mw.testing")

Body = Union[bytes, str, dict[str, Any], None]

@dataclass
class RecordedRequest:
    """One API request the emulator received (hosted page requests are not recorded).

    ``headers`` has lower-cased names; ``params`` is the decoded form (values are the
    strings that were on the wire); ``request_id`` is the ``Request-Id`` answered
    (and the ``request.id`` of an event it caused); ``status`` is what the emulator
    answered (``None`` while it is still answering); ``fault`` is true when
    ``fail_next`` answered it.
    """

    method: str
    path: str
    query: str
    headers: dict[str, str]
    params: dict[str, Any]
    body: bytes
    at: float
    request_id: str
    status: int | None = None
    fault: bool = False

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


@dataclass
class _Fault:
    status: int | None
    headers: dict[str, str]
    body: Body
    delay: float | None
    remaining: int
    method: str | None = None
    path: str | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or path.startswith(self.path)
        )


@dataclass
class _Client:
    http_client: Any
    owner: threading.Thread = field(default_factory=threading.current_thread)


def _default_fault_body(status: int) -> dict[str, Any]:
    if status == 429:
        return {"error": {"type": "invalid_request_error", "code": "rate_limit",
                          "message": "Too many requests hit the API too quickly "
                                     "(injected by the emulator)."}}
    if status == 402:
        return {"error": {"type": "card_error", "code": "card_declined",
                          "message": "Your card was declined (injected by the emulator)."}}
    if status == 409:
        return {"error": {"type": "invalid_request_error", "code": "lock_timeout",
                          "message": "This object cannot be accessed right now because "
                                     "another API request or Stripe process is accessing "
                                     "it (injected by the emulator)."}}
    if status >= 500:
        return {"error": {"type": "api_error",
                          "message": "An unknown error occurred (injected by the emulator)."}}
    return {"error": {"type": "invalid_request_error",
                      "message": f"Injected error {status} (emulator)."}}


def _check_webhook_url(url: str | None) -> None:
    if url is not None and (urlsplit(url).scheme not in ("http", "https")
                            or not urlsplit(url).hostname):
        raise ValueError(f"webhook_url must be an absolute http(s) URL, not {url!r}")


def _json(status: int, body: dict[str, Any], headers: list[tuple[str, str]]) -> HttpResponse:
    return HttpResponse(
        status,
        json.dumps(body, indent=2).encode("utf-8"),
        [("Content-Type", "application/json"), *headers],
    )


class StripeEmulator(BillingControls):
    """An offline Stripe: start it, point a ``StripeClient`` at ``api_base``, stop it.

    Subscriptions, refunds, disputes, dropped webhooks and the portal page are
    driven by the methods of :class:`~.billing.BillingControls`.

    Use it as a context manager or call :meth:`start` and :meth:`stop`.

    :param webhook_url: where events are POSTed; ``None`` delivers nothing (events
        are still listed at ``/v1/events``). May be set later through
        :attr:`webhook_url` or :meth:`set_webhook_url`; only events emitted after
        that are delivered (use :meth:`redeliver` for older ones).
    :param host: interface to listen on; keep ``127.0.0.1`` unless you know why.
    :param port: TCP port; 0 (the default) picks a free one.
    :param secret_key: the key :attr:`secret_key` reports; random ``sk_test_`` by
        default.
    :param webhook_secret: the ``whsec_`` secret webhooks are signed with; random
        by default.
    :param publishable_key: the ``pk_test_`` key its stand-in Stripe.js accepts
        (:attr:`stripe_js_url`); random by default.
    :param accept_any_test_key: accept any ``sk_test_`` key (default) or only
        ``secret_key``.
    :param delivery_attempts: attempts per event in all, including the first.
    :param delivery_backoff: seconds before the first retry, doubled for each next.
    :param delivery_timeout: seconds a webhook receiver has to answer.
    :param hosted_page_webhook_wait: the longest the hosted page's Pay waits for
        the first delivery attempt before redirecting; 0 redirects at once.
    """

    def __init__(
        self,
        webhook_url: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        secret_key: str | None = None,
        webhook_secret: str | None = None,
        publishable_key: str | None = None,
        accept_any_test_key: bool = True,
        delivery_attempts: int = 3,
        delivery_backoff: float = 0.05,
        delivery_timeout: float = 5.0,
        hosted_page_webhook_wait: float = 2.0,
    ) -> None:
        if secret_key is not None and not secret_key.startswith("sk_test_"):
            raise ValueError("secret_key must be a test key starting with 'sk_test_'")
        if webhook_secret is not None and not webhook_secret.startswith("whsec_"):
            raise ValueError("webhook_secret must start with 'whsec_'")
        if publishable_key is not None and not publishable_key.startswith("pk_test_"):
            raise ValueError("publishable_key must be a test key starting with 'pk_test_'")
        if delivery_attempts < 1:
            raise ValueError("delivery_attempts must be at least 1")
        _check_webhook_url(webhook_url)
        self.host = host
        self._port = port
        self.secret_key = secret_key or "sk_test_emu_" + secrets.token_hex(16)
        self.webhook_secret = webhook_secret or "whsec_" + secrets.token_hex(24)
        self.publishable_key = publishable_key or "pk_test_emu_" + secrets.token_hex(16)
        self.accept_any_test_key = accept_any_test_key
        self.hosted_page_webhook_wait = hosted_page_webhook_wait
        self._webhook_url = webhook_url
        self._lock = threading.RLock()
        self._requests: list[RecordedRequest] = []
        self._deliveries: list[Delivery] = []
        self._faults: deque[_Fault] = deque()
        self._clients: list[_Client] = []
        self._server: HttpServer | None = None
        self._state: StripeState | None = None
        self._stopped = False
        self._clock_offset = 0.0
        self._worker = DeliveryWorker(
            lock=self._lock,
            secret=lambda: self.webhook_secret,
            record=self._deliveries.append,
            on_done=self._delivery_done,
            attempts=delivery_attempts,
            backoff=delivery_backoff,
            timeout=delivery_timeout,
        )

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> StripeEmulator:
        """Bind the port and serve on a background thread; returns ``self``."""
        if self._server is not None or self._stopped:
            raise RuntimeError("a StripeEmulator can be started once")
        server = HttpServer(self._app, self.host, self._port)
        self._server = server
        self._state = StripeState(lock=self._lock, api_base=self.api_base,
                                  on_event=self._on_event,
                                  clock=lambda: time.time() + self._clock_offset)
        self._client_pages = ClientPages(
            lock=self._lock, state=self._require_state, api_base=lambda: self.api_base,
            publishable_key=self.publishable_key, after_payment=self._after_page_payment)
        self._worker.start()
        server.start()
        logger.info("Stripe emulator serving on %s", self.api_base)
        return self

    def stop(self) -> None:
        """Stop serving, drop pending deliveries, close every socket and thread."""
        if self._server is None or self._stopped:
            return
        self._stopped = True
        for client in self._clients:
            client.http_client.close()
        self._clients.clear()
        self._worker.stop()
        self._server.stop()

    def __enter__(self) -> StripeEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- configuration -------------------------------------------------------------

    @property
    def api_base(self) -> str:
        """``http://127.0.0.1:PORT``, for ``base_addresses={"api": ...}``."""
        if self._server is None:
            raise RuntimeError("start the emulator first: the port is chosen on start()")
        return f"http://{self.host}:{self._server.port}"

    @property
    def stripe_js_url(self) -> str:
        """The stand-in Stripe.js (``{api_base}/v3/stripe.js``) for the embedded modes."""
        return self.api_base + STRIPE_JS_PATH

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("start the emulator first: the port is chosen on start()")
        return self._server.port

    @property
    def webhook_url(self) -> str | None:
        return self._webhook_url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        self.set_webhook_url(url)

    def set_webhook_url(self, url: str | None) -> None:
        """Deliver events emitted from now on to ``url`` (``None`` stops delivery)."""
        _check_webhook_url(url)
        with self._lock:
            self._webhook_url = url

    def client(
        self,
        *,
        max_network_retries: int = 0,
        timeout: float = 10.0,
        api_key: str | None = None,
    ) -> stripe.StripeClient:
        """A ``stripe.StripeClient`` pointed at this emulator.

        Its HTTP session is closed by :meth:`stop` (for the thread that calls stop),
        so tests leave no socket behind.
        """
        import stripe

        http_client = stripe.RequestsClient(timeout=timeout)
        with self._lock:
            self._clients.append(_Client(http_client))
        return stripe.StripeClient(
            api_key or self.secret_key,
            base_addresses={"api": self.api_base},
            max_network_retries=max_network_retries,
            http_client=http_client,
        )

    # -- what happened -------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every API request received so far, oldest first (a copy of the list)."""
        with self._lock:
            return list(self._requests)

    @property
    def deliveries(self) -> list[Delivery]:
        """Every webhook delivery attempt so far, oldest first."""
        with self._lock:
            return list(self._deliveries)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event emitted so far, oldest first (copies)."""
        with self._lock:
            return copy.deepcopy(self._require_state().events)

    @property
    def connections(self) -> int:
        """TCP connections accepted so far; with keep-alive one client makes one."""
        return self._server.connections if self._server is not None else 0

    def session(self, session_id: str) -> dict[str, Any]:
        """A copy of the Checkout Session ``session_id`` as the API would return it."""
        with self._lock:
            return copy.deepcopy(self._session(session_id))

    @property
    def sessions(self) -> list[dict[str, Any]]:
        """Every Checkout Session created so far, oldest first (copies)."""
        with self._lock:
            return copy.deepcopy(list(self._require_state().sessions.values()))

    def line_items(self, session_id: str) -> list[dict[str, Any]]:
        """Copies of the session's ``item`` objects."""
        with self._lock:
            self._session(session_id)
            return copy.deepcopy(self._require_state().line_items[session_id])

    # -- test helpers --------------------------------------------------------------

    def add_product(self, name: str, *, description: str | None = None,
                    metadata: dict[str, str] | None = None) -> dict[str, Any]:
        """Create a product directly (no HTTP); returns it as the API would."""
        with self._lock:
            return copy.deepcopy(products.new_product(
                self._require_state(), name, description=description, metadata=metadata))

    def add_price(
        self,
        unit_amount: int = 1500,
        currency: str = "usd",
        lookup_key: str | None = None,
        recurring: dict[str, Any] | None = None,
        product_name: str | None = None,
        *,
        product: str | None = None,
        nickname: str | None = None,
        active: bool = True,
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create a price directly (no HTTP) and return it as Stripe would.

        ``recurring={"interval": "month"}`` makes a subscription price. A
        ``lookup_key`` already used moves to the new price. Without ``product`` a
        product named ``product_name`` (or after the lookup key) is created.
        """
        if recurring is not None and recurring.get("interval") not in (
            "day", "week", "month", "year"
        ):
            raise ValueError("recurring needs an interval: day, week, month or year")
        with self._lock:
            state = self._require_state()
            if product is None:
                name = product_name or (f"Product {lookup_key}" if lookup_key else "Product")
                product = str(products.new_product(state, name)["id"])
            elif product not in state.products:
                raise ValueError(f"no such product {product!r}")
            return copy.deepcopy(prices.new_price(
                state, unit_amount=unit_amount, currency=currency.lower(), product=product,
                lookup_key=lookup_key, recurring=recurring, nickname=nickname,
                active=active, metadata=metadata,
            ))

    def fail_next(
        self,
        status: int | None = 500,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: Body = None,
        delay: float | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next ``times`` API requests with a fault instead of handling them.

        :param status: the status to answer; ``None`` handles the request normally
            after ``delay`` (a slow but correct Stripe).
        :param headers: extra response headers, e.g. ``{"Stripe-Should-Retry": "true"}``
            or ``{"Retry-After": "1"}``.
        :param body: the raw answer (``bytes``/``str``, e.g. malformed JSON or an HTML
            502 page) or a dict sent as JSON; default: Stripe's error JSON for
            ``status``.
        :param delay: seconds to wait before answering, to trip client timeouts.
        :param method: only requests with this method (``"POST"``) count.
        :param path: only requests whose path starts with this count.

        Faults queue up in call order; each matching request takes one.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(_Fault(status, dict(headers or {}), body, delay, times,
                                       method.upper() if method else None, path))

    def pay(
        self,
        session_id: str,
        async_payment: str | None = None,
        *,
        email: str | None = None,
        delayed: bool = False,
        wait: bool = True,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Pay for a session as a customer would on the hosted page.

        - ``pay(id)``: ``complete``/``paid``, ``checkout.session.completed``.
        - ``pay(id, delayed=True)``: ``complete``/``unpaid`` (a delayed method), the
          same event; settle it later with ``async_payment``.
        - ``pay(id, async_payment="succeeded"|"failed")``: on a delayed session,
          sends ``checkout.session.async_payment_succeeded``/``_failed`` (succeeded
          also makes it ``paid``); on an open session it first completes it unpaid.

        With ``wait`` (the default) it returns once the events' webhook deliveries
        are done (or given up), raising ``TimeoutError`` after ``timeout`` seconds.
        Returns a copy of the session. Raises ``ValueError`` when the session cannot
        be paid (expired, already paid).
        """
        if async_payment not in (None, "succeeded", "failed"):
            raise ValueError("async_payment must be 'succeeded', 'failed' or None")
        with self._lock:
            state = self._require_state()
            session = self._session(session_id)
            first = len(state.events)
            try:
                if session["status"] == "open":
                    checkout_sessions.complete(state, session_id, email=email,
                                   delayed=delayed or async_payment is not None)
                elif async_payment is None:
                    raise ValueError(f"session {session_id} is {session['status']}, "
                                     "not open")
                if async_payment is not None:
                    checkout_sessions.settle(state, session_id,
                                             succeeded=async_payment == "succeeded")
            except ApiError as exc:
                raise ValueError(exc.message) from None
            events = [e["id"] for e in state.events[first:]]
        if wait:
            self._wait(events, timeout)
        return self.session(session_id)

    def expire(self, session_id: str, *, wait: bool = True,
               timeout: float = 10.0) -> dict[str, Any]:
        """Expire an open session (``checkout.session.expired``), as time would."""
        with self._lock:
            state = self._require_state()
            self._session(session_id)
            try:
                event = checkout_sessions.expire(state, session_id, request=None)
            except ApiError as exc:
                raise ValueError(exc.message) from None
        if wait:
            self._wait([event["id"]], timeout)
        return self.session(session_id)

    def redeliver(self, event_id: str, *, wait: bool = True, timeout: float = 10.0) -> None:
        """Deliver event ``event_id`` again (a fresh signature), to test dedupe."""
        with self._lock:
            url = self._webhook_url
            if url is None:
                raise RuntimeError("no webhook_url is set; nothing to deliver to")
            state = self._require_state()
            event = next((e for e in state.events if e["id"] == event_id), None)
            if event is None:
                raise KeyError(f"no such event {event_id!r}")
            event["pending_webhooks"] = 1
            self._worker.enqueue(event, url)
        if wait:
            self._wait([event_id], timeout)

    def advance_clock(self, seconds: float, *, wait: bool = True,
                      timeout: float = 10.0) -> None:
        """Move the emulator's clock forward, e.g. past a session's ``expires_at``.

        Open sessions past their expiry become ``expired`` (and send
        ``checkout.session.expired``) the next time anything looks at them: an API
        call, the hosted page or :meth:`session`. Subscriptions do at once, in time
        order, what became due: trial ends, renewals, retries, cancellations (see
        :mod:`.api.subscriptions`); with ``wait`` this returns once their webhooks
        are delivered.
        """
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._clock_offset += seconds
        self._run_clock(wait=wait, timeout=timeout)

    def wait_for_deliveries(self, timeout: float = 5.0) -> None:
        """Wait until every queued delivery succeeded or ran out of attempts."""
        if not self._worker.wait(None, timeout):
            raise TimeoutError(f"webhook deliveries still pending after {timeout} s")

    # -- internals -----------------------------------------------------------------

    def _wait(self, event_ids: list[str], timeout: float) -> None:
        if event_ids and not self._worker.wait(event_ids, timeout):
            raise TimeoutError(f"webhook deliveries still pending after {timeout} s")

    def _wait_first_attempts(self, event_ids: list[str], timeout: float) -> None:
        self._worker.wait(event_ids, timeout, first_attempt_only=True)

    def _require_state(self) -> StripeState:
        if self._state is None:
            raise RuntimeError("start the emulator first")
        return self._state

    def _session(self, session_id: str) -> dict[str, Any]:
        try:
            return checkout_sessions.stored_session(self._require_state(), session_id)
        except ApiError:
            raise KeyError(f"no such checkout session {session_id!r}") from None

    def _on_event(self, event: dict[str, Any]) -> None:
        url = self._webhook_url
        if self._dropping_webhooks:
            event["pending_webhooks"] = 1
            return
        if url is None:
            return
        event["pending_webhooks"] = 1
        self._worker.enqueue(event, url)

    def _after_page_payment(self, event_id: str) -> None:
        if self.hosted_page_webhook_wait > 0:
            self._worker.wait([event_id], self.hosted_page_webhook_wait,
                              first_attempt_only=True)

    def _delivery_done(self, event: dict[str, Any], ok: bool) -> None:
        if ok:
            event["pending_webhooks"] = 0

    def _app(self, request: HttpRequest) -> HttpResponse:
        parts = urlsplit(request.target)
        path = parts.path
        if path.startswith("/v1/") or path == "/v1":
            return self._api(request, path, parts.query)
        if path.startswith("/pay/"):
            return self._page(request, path[len("/pay/"):])
        if path.startswith("/portal/"):
            return self._portal(request, path[len("/portal/"):], parts.query)
        if path == STRIPE_JS_PATH or path.startswith((EMBEDDED_PREFIX, ELEMENTS_PREFIX)):
            return self._client_pages.handle(request, path, parts.query)
        return _json(404, ApiError(f"Unrecognized request URL ({request.method}: {path}).",
                                   status=404).body(), [])

    # -- the API ---------------------------------------------------------------------

    def _api(self, request: HttpRequest, path: str, query: str) -> HttpResponse:
        request_id = new_id("req_", 14)
        record = RecordedRequest(request.method, path, query, request.headers, {},
                                 request.body, time.time(), request_id)
        headers = [("Request-Id", request_id), ("Stripe-Version", API_VERSION)]
        key = request.headers.get("idempotency-key")
        if key is not None and request.method == "POST":
            headers.append(("Idempotency-Key", key))
        params: dict[str, Any] = {}
        form_error: ApiError | None = None
        try:
            params = decode_form(query) if query else {}
            if request.method == "POST" and request.body:
                # The body wins over the query string, as it does at Stripe.
                params.update(decode_form(request.body))
        except FormError as exc:
            form_error = ApiError(exc.message, param=exc.param or None)
        else:
            record.params = params
        with self._lock:
            self._requests.append(record)
            fault = next((f for f in self._faults if f.matches(request.method, path)), None)
            if fault is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
        if fault is not None:
            response = self._fault(fault, headers)
            if response is not None:
                return self._finish(record, response, fault=True)
        try:
            self._authenticate(request.headers.get("authorization"))
            if form_error is not None:
                raise form_error
            if request.method == "POST" and request.body and not request.headers.get(
                "content-type", "application/x-www-form-urlencoded"
            ).startswith("application/x-www-form-urlencoded"):
                raise ApiError("Invalid request: the body must be "
                               "application/x-www-form-urlencoded.")
            result = self._require_state().handle(
                request.method, path, params, idempotency_key=key, request_id=request_id
            )
        except ApiError as exc:
            return self._finish(record, _json(exc.status, exc.body(request_id), headers))
        return self._finish(record, _json(result.status, result.body,
                                          [*headers, *result.headers]))

    def _finish(self, record: RecordedRequest, response: HttpResponse,
                fault: bool = False) -> HttpResponse:
        with self._lock:
            record.status = response.status
            record.fault = fault
        logger.info("%s %s -> %s%s", record.method, record.path, response.status,
                    " (injected)" if fault else "")
        return response

    def _fault(self, fault: _Fault, headers: list[tuple[str, str]]) -> HttpResponse | None:
        if fault.delay:
            assert self._server is not None
            self._server.stopping.wait(fault.delay)
        if fault.status is None:
            return None
        body = fault.body
        if body is None:
            body = _default_fault_body(fault.status)
        if isinstance(body, dict):
            raw = json.dumps(body, indent=2).encode("utf-8")
        elif isinstance(body, str):
            raw = body.encode("utf-8")
        else:
            raw = body
        overridden = {name.lower() for name in fault.headers}
        merged = [(n, v) for n, v in [("Content-Type", "application/json"), *headers]
                  if n.lower() not in overridden]
        merged.extend(fault.headers.items())
        return HttpResponse(fault.status, raw, merged)

    def _authenticate(self, header: str | None) -> None:
        if not header:
            raise ApiError(
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for "
                "details, or we can help at https://support.stripe.com/.",
                status=401,
            )
        scheme, _, credentials = header.partition(" ")
        key = credentials.strip()
        if scheme.lower() == "basic":
            try:
                key = base64.b64decode(key).decode("utf-8").partition(":")[0]
            except ValueError:
                key = ""
        elif scheme.lower() != "bearer":
            key = ""
        valid = key.startswith("sk_test_") and len(key) > len("sk_test_")
        if valid and not self.accept_any_test_key:
            valid = secrets.compare_digest(key, self.secret_key)
        if not valid:
            shown = f"{key[:8]}****{key[-4:]}" if len(key) > 12 else "****"
            raise ApiError(f"Invalid API Key provided: {shown}", status=401,
                           code="api_key_invalid" if key.startswith("sk_live_") else None)

    # -- the hosted page ---------------------------------------------------------------

    def _page(self, request: HttpRequest, session_id: str) -> HttpResponse:
        if request.method not in ("GET", "HEAD", "POST"):
            return self._html(405, render_notice("Method not allowed", "Use GET or POST."),
                              [("Allow", "GET, HEAD, POST")])
        with self._lock:
            state = self._require_state()
            try:
                session = checkout_sessions.stored_session(state, session_id)
            except ApiError:
                return self._html(404, render_notice("Not found",
                                                     "There is no such Checkout Session."))
            if session["status"] != "open" or session["ui_mode"] != "hosted_page":
                return self._html(200, self._closed_notice(session))
            items = state.line_items[session_id]
            action = f"/pay/{session_id}"
            if request.method != "POST":
                return self._html(200, render_checkout(session, items, action=action))
            try:
                form = decode_form(request.body)
            except FormError:
                form = {}

            def field(name: str) -> str:
                value = form.get(name, "")
                return value.strip() if isinstance(value, str) else ""

            if field("action") == "cancel":
                if session["cancel_url"]:
                    return self._redirect(session["cancel_url"])
                return self._html(200, render_notice("Payment cancelled",
                                                     "You cancelled this payment."))
            email = field("email")
            delayed = bool(field("delayed"))
            error = payment_error(email, field("cardnumber"), delayed)
            if error is not None:
                return self._html(200, render_checkout(session, items, action=action,
                                                       error=error, email=email,
                                                       cardnumber=field("cardnumber")))
            event = checkout_sessions.complete(state, session_id, email=email,
                                               delayed=delayed)
            success_url = session["success_url"]
        # Outside the lock: the receiver may call back into the emulator's API.
        if self.hosted_page_webhook_wait > 0:
            self._worker.wait([event["id"]], self.hosted_page_webhook_wait,
                              first_attempt_only=True)
        if success_url:
            return self._redirect(success_url.replace("{CHECKOUT_SESSION_ID}", session_id))
        return self._html(200, render_notice("Payment complete",
                                             "Thank you: this payment is complete."))

    @staticmethod
    def _closed_notice(session: dict[str, Any]) -> str:
        if session["status"] == "complete":
            return render_notice("Already paid", "This Checkout Session is already complete.")
        if session["status"] == "expired":
            return render_notice("Session expired", "This Checkout Session has expired.")
        return render_notice("Not available",
                             f"This session uses ui_mode {session['ui_mode']}, which has "
                             "no hosted page.")

    @staticmethod
    def _html(status: int, html: str,
              headers: list[tuple[str, str]] | None = None) -> HttpResponse:
        return HttpResponse(status, html.encode("utf-8"),
                            [("Content-Type", "text/html; charset=utf-8"),
                             ("Cache-Control", "no-store"), *(headers or [])])

    @staticmethod
    def _redirect(location: str) -> HttpResponse:
        return HttpResponse(303, b"", [("Location", location), ("Cache-Control", "no-store")])
