"""One checkout variant in a process of its own, driven over stdin/stdout (section 4, 5).

Why a process per variant: the Stripe-sample Flask route sets ``stripe.api_key`` and
``stripe.api_base``, process-wide globals, and keeps its HTTP sessions in
``stripe.default_http_client``; the middleware and the bare client must not share them.
Separate processes also keep the emulator (in the parent) from competing for the GIL
with the code being measured, as a real Stripe would not.

Every variant is driven the same way: (a) and (b) are WSGI apps called in-process with a
fresh environ holding the same JSON order, (c) is the ``StripeClient`` create call alone
with the parameters (a) sends. So the only difference between them is the code in
between, not the transport.

Protocol (one JSON object per line): the parent writes ``{"op": "setup", ...}`` and then
``{"op": "seq", "n": N}`` (N sequential checkouts: per-call latencies in ns),
``{"op": "conc", "n": N, "clients": C}`` (N checkouts spread over C persistent
threads: elapsed seconds), ``{"op": "stats"}`` or ``{"op": "quit"}``; the worker answers
each with one JSON line, ``{"error": "..."}`` when it failed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import queue
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any, Callable

from .common import CATALOG_ITEMS, DOMAIN_URL, base_environ

#: The one order every checkout places; (a) and (b) price it on the server.
ORDER = {"line_items": [{"price": "tee", "quantity": 1}]}
#: What the middleware sends Stripe for ``ORDER`` (checked against the emulator's record).
PARAMS: dict[str, Any] = {
    "mode": "payment",
    "line_items": [{
        "price_data": {"currency": "usd", "unit_amount": 2000,
                       "product_data": {"name": "T-shirt"}},
        "quantity": 1,
    }],
    "success_url": f"{DOMAIN_URL}/success?session_id={{CHECKOUT_SESSION_ID}}",
    "cancel_url": f"{DOMAIN_URL}/cancel",
    # The marker the middleware puts on every session; (b) and (c) send it too, so that
    # every variant makes the same request.
    "metadata": {"stripe_checkout_mw": hashlib.sha256(
        f"stripe-checkout-mw\0{DOMAIN_URL}/success?session_id={{CHECKOUT_SESSION_ID}}"
        .encode()).hexdigest()[:16]},
}


def _order_environ(body: bytes) -> dict[str, Any]:
    env = base_environ("/create-checkout-session", "POST")
    env["CONTENT_TYPE"] = "application/json"
    env["CONTENT_LENGTH"] = str(len(body))
    env["HTTP_ACCEPT"] = "application/json"
    env["wsgi.input"] = io.BytesIO(body)
    return env


def _call_wsgi(app: Any, body: bytes) -> None:
    status: list[str] = []

    def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(s)

    result: Iterable[bytes] = app(_order_environ(body), start_response)
    try:
        payload = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    if not status or not status[0].startswith("200") or b'"sessionId"' not in payload:
        raise RuntimeError(f"checkout failed: {status[:1]} {payload[:300]!r}")


def flask_sample(secret_key: str, api_base: str) -> Any:
    """(b): a Flask route written the way Stripe's Flask sample writes it.

    Module-level ``stripe.api_key`` (and ``stripe.api_base`` pointed at the emulator),
    ``stripe.checkout.Session.create`` with the parameters the middleware sends, prices
    from a dict kept with the app, errors as ``jsonify(error=str(e)), 403``.
    """
    import stripe
    from flask import Flask, jsonify, request

    stripe.api_key = secret_key
    stripe.api_base = api_base
    app = Flask("stripe_sample")
    products = CATALOG_ITEMS

    @app.route("/create-checkout-session", methods=["POST"])
    def create_checkout_session() -> Any:
        data = request.get_json()
        try:
            line_items = []
            for item in data["line_items"]:
                product = products[item["price"]]
                line_items.append({
                    "price_data": {
                        "currency": product["currency"],
                        "unit_amount": product["unit_amount"],
                        "product_data": {"name": product["name"]},
                    },
                    "quantity": item["quantity"],
                })
            checkout_session = stripe.checkout.Session.create(
                line_items=line_items,  # type: ignore[arg-type]
                mode="payment",
                success_url=DOMAIN_URL + "/success?session_id={CHECKOUT_SESSION_ID}",
                cancel_url=DOMAIN_URL + "/cancel",
                metadata=PARAMS["metadata"],
            )
            return jsonify({"sessionId": checkout_session["id"], "url": checkout_session.url})
        except Exception as e:
            return jsonify(error=str(e)), 403

    return app


#: Sections 4 and 5 measure speed with 8 concurrent clients, not the bulkhead (section 7
#: does): room for all of them.
_BULKHEAD = 16


def build(setup: dict[str, Any]) -> tuple[Callable[[int], None], Callable[[], dict[str, Any]]]:
    """The variant's one-checkout function (given a sequence number) and its stats."""
    import stripe

    from stripe_checkout_mw import Catalog, CheckoutMiddleware, StripeLookupKeys

    from .common import fully_configured, trivial_app

    variant = setup["variant"]
    secret, api_base, tmpdir = setup["secret_key"], setup["api_base"], setup["tmpdir"]
    body = json.dumps(ORDER).encode()
    if variant == "middleware":
        app = fully_configured(trivial_app, tmpdir, secret_key=secret, api_base=api_base,
                               webhook_secret=setup["webhook_secret"],
                               max_concurrent_stripe_calls=_BULKHEAD)
        return (lambda i: _call_wsgi(app, body)), dict
    if variant == "middleware-no-ledger":
        app = CheckoutMiddleware(trivial_app, secret_key=secret, stripe_api_base=api_base,
                                 domain_url=DOMAIN_URL, price_lookup=Catalog(CATALOG_ITEMS),
                                 allowed_origins=["https://other.example"], store=None,
                                 max_concurrent_stripe_calls=_BULKHEAD)
        return (lambda i: _call_wsgi(app, body)), dict
    if variant == "lookup-keys":
        lookup = StripeLookupKeys(ttl=setup["ttl"])
        app = CheckoutMiddleware(trivial_app, secret_key=secret, stripe_api_base=api_base,
                                 domain_url=DOMAIN_URL, price_lookup=lookup, store=None,
                                 max_concurrent_stripe_calls=_BULKHEAD)
        keys = setup["keys"]
        bodies = [json.dumps({"line_items": [{"price": k, "quantity": 1}]}).encode()
                  for k in keys]
        return (lambda i: _call_wsgi(app, bodies[i % len(bodies)])), (
            lambda: {"lookups": lookup.lookups})
    if variant == "flask":
        app = flask_sample(secret, api_base)
        return (lambda i: _call_wsgi(app, body)), dict
    if variant == "client":
        # The floor: the same client settings the middleware builds for itself (its HTTP
        # client included: proxies read once; see stripe_checkout_mw.stripe_api.client).
        from stripe_checkout_mw.stripe_api.client import stripe_http_client

        client = stripe.StripeClient(
            secret, base_addresses={"api": api_base}, max_network_retries=2,
            http_client=stripe_http_client((5.0, 10.0), api_base),
        )

        def create(i: int) -> None:
            session = client.v1.checkout.sessions.create(
                params=PARAMS,  # type: ignore[arg-type]
                options={"idempotency_key": f"bench-{uuid.uuid4()}"},
            )
            if not session.url:
                raise RuntimeError("no url")

        return create, dict
    raise ValueError(f"unknown variant {variant!r}")


class Pool:
    """``clients`` threads that live as long as the worker, so their keep-alive connections
    last across rounds."""

    def __init__(self, clients: int, call: Callable[[int], None]) -> None:
        self.call = call
        self.inboxes: list[queue.Queue[int]] = [queue.Queue() for _ in range(clients)]
        self.done: queue.Queue[str | None] = queue.Queue()
        self.threads = [threading.Thread(target=self._serve, args=(box,), daemon=True)
                        for box in self.inboxes]
        for thread in self.threads:
            thread.start()

    def _serve(self, inbox: queue.Queue[int]) -> None:
        while True:
            count = inbox.get()
            if count < 0:
                return
            error = None
            try:
                for i in range(count):
                    self.call(i)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            self.done.put(error)

    def run(self, n: int) -> float:
        share, extra = divmod(n, len(self.inboxes))
        t0 = time.perf_counter()
        for k, box in enumerate(self.inboxes):
            box.put(share + (1 if k < extra else 0))
        errors = [self.done.get() for _ in self.inboxes]
        elapsed = time.perf_counter() - t0
        failed = [e for e in errors if e]
        if failed:
            raise RuntimeError(failed[0])
        return elapsed


def main() -> int:
    out = sys.stdout
    call: Callable[[int], None] | None = None
    stats: Callable[[], dict[str, Any]] = dict
    pool: Pool | None = None
    counter = 0
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        try:
            if op == "setup":
                call, stats = build(request)
                answer: dict[str, Any] = {"ok": True, "pid": os.getpid()}
            elif op == "seq":
                assert call is not None
                latencies = []
                for _ in range(request["n"]):
                    t0 = time.perf_counter_ns()
                    call(counter)
                    latencies.append(time.perf_counter_ns() - t0)
                    counter += 1
                answer = {"latencies_ns": latencies}
            elif op == "conc":
                assert call is not None
                if pool is None or len(pool.inboxes) != request["clients"]:
                    pool = Pool(request["clients"], call)
                answer = {"seconds": pool.run(request["n"])}
            elif op == "stats":
                answer = stats()
            elif op == "quit":
                out.write(json.dumps({"ok": True}) + "\n")
                out.flush()
                return 0
            else:
                answer = {"error": f"unknown op {op!r}"}
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
