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

Layout: this class is the life cycle and the test controls; the work is done by
parts it builds on :meth:`~StripeEmulator.start`. :class:`~.front_door.FrontDoor`
sends each request to :class:`~.api_door.ApiDoor` (``/v1``: decoding, faults from
:mod:`.faults`, the key, :mod:`.request_log`, rendering), the pages of
:mod:`.hosted_checkout`, :mod:`.hosted_portal` and :mod:`.stripejs`;
:class:`~.api.state.StripeState` holds the objects, served through
:mod:`.api.routes`; :class:`~.outbox.WebhookOutbox` sends the events.
"""

from __future__ import annotations

import copy
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .api import StripeState
from .api_door import ApiDoor
from .billing import BillingControls
from .controls import CheckoutControls
from .faults import Fault, FaultBody, FaultQueue
from .front_door import FrontDoor
from .hosted_checkout import HostedCheckoutPage
from .hosted_invoice import HostedInvoicePage
from .hosted_portal import HostedPortalPage
from .invoice_controls import InvoiceControls
from .outbox import WebhookOutbox
from .request_log import RecordedRequest, RequestLog
from .server import HttpRequest, HttpResponse, HttpServer
from .stripejs import STRIPE_JS_PATH, ClientPages
from .webhooks import Delivery

if TYPE_CHECKING:
    import stripe

__all__ = ["RecordedRequest", "StripeEmulator"]

logger = logging.getLogger("stripe_checkout_mw.testing")


@dataclass
class _Client:
    http_client: Any
    owner: threading.Thread = field(default_factory=threading.current_thread)


class StripeEmulator(CheckoutControls, BillingControls, InvoiceControls):
    """An offline Stripe: start it, point a ``StripeClient`` at ``api_base``, stop it.

    Sessions, prices and payments are driven by the methods of
    :class:`~.controls.CheckoutControls`; subscriptions, refunds, disputes and
    dropped webhooks by those of :class:`~.billing.BillingControls`; hosted invoice
    payments, saved cards and manual invoices by those of
    :class:`~.invoice_controls.InvoiceControls`. Registered webhook endpoints
    (``/v1/webhook_endpoints``) get only the event types they enable, besides
    ``webhook_url``, which gets every event.

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
        self.host = host
        self._port = port
        self.secret_key = secret_key or "sk_test_emu_" + secrets.token_hex(16)
        self.webhook_secret = webhook_secret or "whsec_" + secrets.token_hex(24)
        self.publishable_key = publishable_key or "pk_test_emu_" + secrets.token_hex(16)
        self.accept_any_test_key = accept_any_test_key
        self.hosted_page_webhook_wait = hosted_page_webhook_wait
        self._lock = threading.RLock()
        self._outbox = WebhookOutbox(
            lock=self._lock, secret=lambda: self.webhook_secret, url=webhook_url,
            attempts=delivery_attempts, backoff=delivery_backoff, timeout=delivery_timeout)
        self._request_log = RequestLog(self._lock)
        self._faults = FaultQueue(self._lock)
        self._clients: list[_Client] = []
        self._server: HttpServer | None = None
        self._state: StripeState | None = None
        self._front_door: FrontDoor | None = None
        self._stopped = False
        self._clock_offset = 0.0

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> StripeEmulator:
        """Bind the port and serve on a background thread; returns ``self``."""
        if self._server is not None or self._stopped:
            raise RuntimeError("a StripeEmulator can be started once")
        server = HttpServer(self._respond, self.host, self._port)
        self._server = server
        state = StripeState(lock=self._lock, api_base=self.api_base,
                            on_event=self._outbox.on_event,
                            clock=lambda: time.time() + self._clock_offset)
        self._state = state
        self._outbox.set_registry(lambda: [
            (endpoint, state.webhook_secrets[endpoint_id])
            for endpoint_id, endpoint in state.webhook_endpoints.items()])
        self._front_door = FrontDoor(
            api=ApiDoor(lock=self._lock, state=state, log=self._request_log,
                        faults=self._faults, stopping=server.stopping,
                        secret_key=lambda: self.secret_key,
                        accept_any_test_key=lambda: self.accept_any_test_key),
            checkout_page=HostedCheckoutPage(
                lock=self._lock, state=state,
                after_payment=lambda event_id: self._wait_after_page([event_id])),
            portal_page=HostedPortalPage(lock=self._lock, state=state,
                                         after_action=self._wait_after_page),
            invoice_page=HostedInvoicePage(lock=self._lock, state=state,
                                           after_action=self._wait_after_page),
            client_pages=ClientPages(
                lock=self._lock, state=self._require_state,
                api_base=lambda: self.api_base, publishable_key=self.publishable_key,
                after_payment=lambda event_id: self._wait_after_page([event_id])),
        )
        self._outbox.start()
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
        self._outbox.stop()
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
        return self._outbox.url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        self.set_webhook_url(url)

    def set_webhook_url(self, url: str | None) -> None:
        """Deliver events emitted from now on to ``url`` (``None`` stops delivery)."""
        self._outbox.set_url(url)

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
        return self._request_log.snapshot()

    @property
    def deliveries(self) -> list[Delivery]:
        """Every webhook delivery attempt so far, oldest first."""
        return self._outbox.deliveries

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event emitted so far, oldest first (copies)."""
        with self._lock:
            return copy.deepcopy(self._require_state().events)

    @property
    def connections(self) -> int:
        """TCP connections accepted so far; with keep-alive one client makes one."""
        return self._server.connections if self._server is not None else 0

    # -- test helpers --------------------------------------------------------------

    def fail_next(
        self,
        status: int | None = 500,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: FaultBody = None,
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
        self._faults.add(Fault(status, dict(headers or {}), body, delay, times,
                               method.upper() if method else None, path))

    def redeliver(self, event_id: str, *, wait: bool = True, timeout: float = 10.0) -> None:
        """Deliver event ``event_id`` again (a fresh signature), to test dedupe."""
        self._outbox.redeliver(event_id, lambda: self._require_state().events)
        if wait:
            self._wait([event_id], timeout)

    def advance_clock(self, seconds: float, *, wait: bool = True,
                      timeout: float = 10.0) -> None:
        """Move the emulator's clock forward, e.g. past a session's ``expires_at``.

        Open sessions past their expiry become ``expired`` (and send
        ``checkout.session.expired``) the next time anything looks at them: an API
        call, the hosted page or :meth:`session`. Subscriptions do at once, in time
        order, what became due: trial ends, renewals, retries, cancellations (see
        :mod:`.api.subscription_clock`); with ``wait`` this returns once their webhooks
        are delivered.
        """
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._clock_offset += seconds
        self._run_clock(wait=wait, timeout=timeout)

    def wait_for_deliveries(self, timeout: float = 5.0) -> None:
        """Wait until every queued delivery succeeded or ran out of attempts."""
        self._outbox.wait(None, timeout)

    # -- internals -----------------------------------------------------------------

    def _respond(self, request: HttpRequest) -> HttpResponse:
        assert self._front_door is not None, "the server serves only after start()"
        return self._front_door(request)

    def _wait(self, event_ids: list[str], timeout: float) -> None:
        self._outbox.wait(event_ids, timeout)

    def _wait_after_page(self, event_ids: list[str]) -> None:
        """Let a page's redirect wait for its webhooks' first attempts, within
        ``hosted_page_webhook_wait``, so the shop usually has them first."""
        if event_ids and self.hosted_page_webhook_wait > 0:
            self._outbox.wait_first_attempts(event_ids, self.hosted_page_webhook_wait)

    def _require_state(self) -> StripeState:
        if self._state is None:
            raise RuntimeError("start the emulator first")
        return self._state
