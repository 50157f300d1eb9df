"""Section 7, continued: the guard in front of every Stripe call (issue 23).

Each part serves the shop under waitress in a subprocess of its own, against one emulator in
this process, loaded from client threads on 127.0.0.1. The shop has a ledger (SQLite), a
webhook secret and a signed-in user (``X-User``, the app's own login in a real shop), so the
billing portal is served too.

d. A healthy Stripe answering every create in 300 ms (a real create takes 0.3-1 s), 8 server
   threads and ``max_concurrent_stripe_calls`` at the threads minus two (6): bursts of 8 and
   16 checkouts sent at once, and steady arrivals of 5 and 10 checkouts a second for 10 s.
   Goal: none refused (before the fix: 50%, 75%, 8% and 25% answered 503).
e. Stripe hanging (every call waits 120 s; the client times out after 10 s, 3 attempts):
   8 portal POSTs, 10 status polls and 12 checkouts sent at once, each client sending
   again 1 s after its answer (the ``Retry-After`` it got; 30 requests a second), while
   one client each keeps asking for a webhook delivery, a status look-up, the app's page
   (``GET /``) and a pass-through POST to the app, for 8 s after the first second (the
   first overdue bound, during which waiting calls still wait).
   Under 4 threads (the default ceiling, 3) and under 8 (ceiling 6). Goal: p99 of each
   probe under 100 ms (before the fix: 30.3 s, and 61.6 s for a webhook behind 12
   checkouts under 4 threads).
f. One signed-in user posting to the billing portal 300 times, one after another. Counted:
   the emulator's portal creates. Goal: within the user's budget (burst 3 + 3 a minute);
   before the fix, 300 (one create per POST, ~83/s).
g. ``fulfill`` failing (it raises on every call): one paid order, then 200 anonymous status
   GETs for it from 8 client threads, as fast as they are answered. Counted: ``fulfill``
   calls from the first (the webhook's) to the last GET. Goal: no more than the backoff
   schedule allows in that time (base 2 s doubled per failure, each step at least half its
   nominal delay); before the fix, 200 GETs -> 200 calls in 0.67 s.

    python -m benchmarks --only 7
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from stripe_checkout_mw.stripe_api.guard import MIN_OVERDUE

from .abuse import _Client, _in_threads
from .common import Row, Sizes, fmt_ms, judge, quantile

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_GOAL_MS = 100.0
#: Seconds the loading clients of part e wait before sending again: the guard's Retry-After.
_RETRY_AFTER = 1.0
_ORDER = json.dumps({"line_items": [{"price": "tee", "quantity": 1}]}).encode()
_JSON = {"Content-Type": "application/json", "Origin": "http://127.0.0.1"}


# -- the server subprocess ---------------------------------------------------------------------


def signed_in(environ: dict[str, Any]) -> str | None:
    """The stand-in login: the user a request names in ``X-User``."""
    user: str | None = environ.get("HTTP_X_USER")
    return user


def _failing_fulfill(tmpdir: str) -> Any:
    """A ``fulfill`` that notes the time of each call in ``tmpdir/fulfil-calls`` and raises."""
    path = os.path.join(tmpdir, "fulfil-calls")
    lock = threading.Lock()

    def fulfill(order: Any) -> None:
        with lock, open(path, "a") as calls:
            calls.write(f"{time.time()} {order.fulfilment_attempt}\n")
        raise RuntimeError("warehouse down")

    return fulfill


def _serve(argv: list[str]) -> int:
    """``python -m benchmarks.resilience --threads N --ceiling M --api-base ...``"""
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--ceiling", type=int, required=True)
    parser.add_argument("--api-base", required=True)
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--webhook-secret", required=True)
    parser.add_argument("--tmpdir", required=True)
    parser.add_argument("--failing-fulfill", action="store_true")
    args = parser.parse_args(argv)

    import waitress.server  # type: ignore[import-untyped]

    from stripe_checkout_mw import Catalog, CheckoutMiddleware

    from .common import trivial_app

    logging.getLogger("waitress").setLevel(logging.ERROR)
    logging.getLogger("stripe_checkout_mw").setLevel(logging.ERROR)
    app = CheckoutMiddleware(
        trivial_app, secret_key=args.secret_key, stripe_api_base=args.api_base,
        domain_url="http://127.0.0.1",
        price_lookup=Catalog({"tee": {"name": "T-shirt", "unit_amount": 2000,
                                      "currency": "usd"}}),
        webhook_secret=args.webhook_secret, store=f"sqlite:///{args.tmpdir}/orders.db",
        customer_ref=signed_in, max_concurrent_stripe_calls=args.ceiling,
        **({"fulfill": _failing_fulfill(args.tmpdir)} if args.failing_fulfill else {}),
    )
    server = waitress.server.create_server(app, host="127.0.0.1", port=0,
                                           threads=args.threads, ident="benchmarks")
    print(f"PORT {server.effective_port}", flush=True)

    def exit_on_eof() -> None:
        for _ in sys.stdin:
            pass
        os._exit(0)

    threading.Thread(target=exit_on_eof, daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0


@contextlib.contextmanager
def _server(emu: Any, tmpdir: str, threads: int, ceiling: int,
            *extra: str) -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.resilience", "--threads", str(threads),
         "--ceiling", str(ceiling), "--api-base", emu.api_base, "--secret-key",
         emu.secret_key, "--webhook-secret", emu.webhook_secret, "--tmpdir", tmpdir, *extra],
        cwd=_REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"benchmark server did not start: {line!r}")
        port = int(line.split()[1])
        emu.webhook_url = f"http://127.0.0.1:{port}/stripe-webhook"
        yield port
    finally:
        emu.webhook_url = None
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _checkout(client: _Client, user: str | None = None) -> tuple[int, bytes, float]:
    headers = dict(_JSON)
    if user is not None:
        headers["X-User"] = user
    return client.send("POST", "/create-checkout-session", _ORDER, headers)


def _customer(port: int, emu: Any, user: str) -> str:
    """Make ``user`` a Stripe customer of the shop (a paid checkout, its webhook applied);
    return the paid session's id."""
    client = _Client(port)
    try:
        status, body, _ = _checkout(client, user)
        if status != 200:
            raise RuntimeError(f"checkout answered {status}: {body[:200]!r}")
        session_id: str = json.loads(body)["sessionId"]
        emu.pay(session_id)
        return session_id
    finally:
        client.close()


def _creates(emu: Any, path: str = "/v1/checkout/sessions") -> int:
    return sum(1 for r in emu.requests if r.method == "POST" and r.path == path)


# -- d. a healthy Stripe at 300 ms -------------------------------------------------------------


def _healthy(sizes: Sizes, tmpdir: str, emu: Any, ceiling: int = 6) -> list[Row]:
    threads = 8
    seconds = 1.0 if sizes.smoke else 10.0
    bursts = 1 if sizes.smoke else 10
    emu.fail_next(status=None, delay=0.3, times=100_000, path="/v1/checkout/sessions")
    rows = []
    with _server(emu, tmpdir, threads, ceiling) as port:
        for burst in (8, 16):
            answers: list[tuple[int, float]] = []
            for _ in range(bursts):
                answers += _burst(port, burst)
            rows.append(_refused_row(
                f"healthy Stripe at 300 ms, {threads} threads (ceiling {ceiling}): bursts of "
                f"{burst} checkouts at once", answers, f"{bursts} bursts"))
        for rate in (5, 10):
            answers = _steady(port, rate, seconds)
            rows.append(_refused_row(
                f"healthy Stripe at 300 ms, {threads} threads (ceiling {ceiling}): steady "
                f"{rate} checkouts/s", answers, f"{len(answers)} over {seconds:g} s"))
    return rows


def _burst(port: int, size: int) -> list[tuple[int, float]]:
    """``size`` checkouts sent at once, each on a connection of its own."""
    answers: list[tuple[int, float]] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        client = _Client(port)
        try:
            status, _, took = _checkout(client)
        finally:
            client.close()
        with lock:
            answers.append((status, took))

    _in_threads(size, one)
    return answers


def _steady(port: int, rate: float, seconds: float) -> list[tuple[int, float]]:
    """Checkouts arriving ``rate`` a second on schedule for ``seconds``, from 16 clients."""
    answers: list[tuple[int, float]] = []
    lock = threading.Lock()
    total = int(rate * seconds)
    started = time.perf_counter()

    def arrive(index: int) -> None:
        client = _Client(port)
        try:
            for n in range(index, total, 16):
                time.sleep(max(0.0, started + n / rate - time.perf_counter()))
                status, _, took = _checkout(client)
                with lock:
                    answers.append((status, took))
        finally:
            client.close()

    _in_threads(16, arrive)
    return answers


def _refused_row(name: str, answers: list[tuple[int, float]], what: str) -> Row:
    refused = sum(1 for status, _ in answers if status != 200)
    share = 100.0 * refused / len(answers)
    latencies = [took * 1000 for _, took in answers]
    return Row("7", name, f"{share:.1f}% refused", f"p99 {fmt_ms(quantile(latencies, 0.99))}",
               "0% refused", judge(refused == 0),
               note=f"{what}: {len(answers) - refused}/{len(answers)} answered 200; "
                    f"median {fmt_ms(quantile(latencies, 0.5))}",
               data={"refused": refused, "answered": len(answers)})


# -- e. a hanging Stripe -----------------------------------------------------------------------


def _hanging(sizes: Sizes, tmpdir: str, emu: Any, threads: int, ceiling: int) -> list[Row]:
    from stripe_checkout_mw.testing import sign_payload

    # Under the client's 10 s timeout, so every call that reached Stripe still hangs at the
    # end and none was retried by the SDK.
    seconds = 0.5 if sizes.smoke else 8.0
    probes: dict[str, list[float]] = {"webhook": [], "status": [], "app GET": [],
                                      "pass-through POST": []}
    odd: list[str] = []
    load: dict[str, list[int]] = {"portal": [], "status": [], "checkout": []}
    lock = threading.Lock()
    with _server(emu, tmpdir, threads, ceiling) as port:
        users = [f"user{i}" for i in range(2 if sizes.smoke else 8)]
        for user in users:
            _customer(port, emu, user)
        maker = _Client(port)
        open_ids = [json.loads(_checkout(maker)[1])["sessionId"] for _ in range(11)]
        maker.close()
        emu.fail_next(status=None, delay=120, times=100_000)  # from here every call hangs
        before = len(emu.requests)
        stop = time.perf_counter() + seconds + 1.0

        def loader(index: int) -> None:
            client = _Client(port)
            kind = "portal" if index < 8 else "status" if index < 18 else "checkout"
            try:
                while time.perf_counter() < stop:
                    try:
                        if kind == "portal":
                            status, _, _ = client.send(
                                "POST", "/billing-portal", b"{}",
                                {**_JSON, "X-User": users[index % len(users)]})
                        elif kind == "status":
                            status, _, _ = client.send(
                                "GET", f"/checkout-session?session_id={open_ids[index - 8]}")
                        else:
                            status, _, _ = _checkout(client)
                    except (OSError, ConnectionError):
                        return  # a call hanging on Stripe, cut off when the server stops
                    with lock:
                        load[kind].append(status)
                    time.sleep(_RETRY_AFTER)  # as a browser honouring Retry-After would
            finally:
                client.close()

        loaders = [threading.Thread(target=loader, args=(i,), daemon=True) for i in range(30)]
        for thread in loaders:
            thread.start()
        # The first overdue bound (MIN_OVERDUE after Stripe's last answer): from here the
        # guard sheds at once.
        time.sleep(MIN_OVERDUE + (0.0 if sizes.smoke else 0.5))
        probe_stop = time.perf_counter() + seconds

        def probe(index: int) -> None:
            client = _Client(port)
            n = 0
            try:
                while time.perf_counter() < probe_stop:
                    n += 1
                    name = list(probes)[index]
                    if name == "webhook":
                        event = json.dumps({
                            "id": f"evt_probe_{n}", "object": "event", "type": "ping",
                            "api_version": "2026-10-28.endive", "created": int(time.time()),
                            "livemode": False, "data": {"object": {}}}).encode()
                        status, _, took = client.send(
                            "POST", "/stripe-webhook", event,
                            {"Content-Type": "application/json",
                             "Stripe-Signature": sign_payload(event, emu.webhook_secret)})
                    elif name == "status":
                        status, _, took = client.send(
                            "GET", f"/checkout-session?session_id={open_ids[10]}")
                    elif name == "app GET":
                        status, _, took = client.send("GET", "/")
                    else:
                        status, _, took = client.send("POST", "/products/42", b"x" * 200,
                                                      {"Content-Type": "text/plain"})
                    with lock:
                        probes[name].append(took)
                        if status != 200:
                            odd.append(f"{name} {status}")
                    time.sleep(0.005)
            finally:
                client.close()

        _in_threads(len(probes), probe)
        reached = len(emu.requests) - before
    rows = []
    for name, latencies in probes.items():
        p99 = quantile(latencies, 0.99) * 1000
        rows.append(Row(
            "7", f"Stripe hanging, {threads} threads (ceiling {ceiling}): {name} p99",
            fmt_ms(p99), f"median {fmt_ms(quantile(latencies, 0.5) * 1000)}",
            f"< {_GOAL_MS:g} ms", judge(p99 < _GOAL_MS and not any(
                entry.startswith(name) for entry in odd)),
            note=f"{len(latencies)} requests in {seconds:g} s"
                 + (f"; non-200: {sorted(set(odd))}" if odd else ""),
            data={"p99_ms": p99, "n": len(latencies)}))
    counts = "; ".join(
        f"{kind}: " + ", ".join(f"{statuses.count(code)} x {code}"
                                for code in sorted(set(statuses)))
        for kind, statuses in load.items())
    rows.append(Row(
        "7", f"Stripe hanging, {threads} threads (ceiling {ceiling}): calls that reached "
             f"Stripe", str(reached), "", f"<= {ceiling} (the ceiling)", judge(reached <= ceiling),
        note=f"30 clients (8 portal, 10 status, 12 checkout) answered: {counts}",
        data={"reached": reached}))
    return rows


# -- f. one user and the billing portal --------------------------------------------------------


def _portal_budget(sizes: Sizes, tmpdir: str, emu: Any) -> list[Row]:
    from stripe_checkout_mw.billing.portal import PER_USER_BURST, PER_USER_PER_MINUTE

    posts = 30 if sizes.smoke else 300
    with _server(emu, tmpdir, 8, 6) as port:
        _customer(port, emu, "mallory")
        before = _creates(emu, "/v1/billing_portal/sessions")
        client = _Client(port)
        statuses = []
        started = time.perf_counter()
        try:
            for _ in range(posts):
                status, _, _ = client.send("POST", "/billing-portal", b"{}",
                                           {**_JSON, "X-User": "mallory"})
                statuses.append(status)
        finally:
            client.close()
        elapsed = time.perf_counter() - started
        creates = _creates(emu, "/v1/billing_portal/sessions") - before
    bound = PER_USER_BURST + PER_USER_PER_MINUTE * elapsed / 60
    counts = ", ".join(f"{statuses.count(code)} x {code}" for code in sorted(set(statuses)))
    return [Row(
        "7", f"one user, {posts} billing portal POSTs: Stripe portal creates", str(creates), "",
        f"<= {bound:.1f} (burst {PER_USER_BURST:g} + {PER_USER_PER_MINUTE:g}/min x "
        f"{elapsed:.1f} s)", judge(creates <= bound),
        note=f"{posts / elapsed:.0f} POSTs/s: {counts} (429: over the user's budget)",
        data={"posts": posts, "creates": creates, "seconds": elapsed})]


# -- g. fulfill failing, strangers polling the status path -----------------------------------


def _failing_fulfil(sizes: Sizes, tmpdir: str, emu: Any) -> list[Row]:
    from stripe_checkout_mw.ledger.pipeline import DEFAULT_RETRY_BASE

    gets = 200
    with _server(emu, tmpdir, 8, 6, "--failing-fulfill") as port:
        session_id = _customer(port, emu, "ann")  # paid: the webhook's fulfill fails
        statuses: list[int] = []
        lock = threading.Lock()
        sent = iter(range(gets))

        def stranger(index: int) -> None:
            client = _Client(port)
            try:
                while True:
                    with lock:
                        if next(sent, None) is None:
                            return
                    status, _, _ = client.send(
                        "GET", f"/checkout-session?session_id={session_id}")
                    with lock:
                        statuses.append(status)
            finally:
                client.close()

        started = time.perf_counter()
        _in_threads(8, stranger)
        elapsed = time.perf_counter() - started
        with open(os.path.join(tmpdir, "fulfil-calls")) as noted:
            calls = [float(line.split()[0]) for line in noted]
    window = time.time() - calls[0] if calls else 0.0
    # The most calls the schedule allows in the window: the first, then one per step, each
    # step at least half of base * 2 ** (attempt - 1).
    bound, waited = 1, 0.0
    while waited + 0.5 * DEFAULT_RETRY_BASE * 2 ** (bound - 1) <= window:
        waited += 0.5 * DEFAULT_RETRY_BASE * 2 ** (bound - 1)
        bound += 1
    counts = ", ".join(f"{statuses.count(code)} x {code}" for code in sorted(set(statuses)))
    return [Row(
        "7", f"fulfill failing, {gets} anonymous status GETs: fulfill calls", str(len(calls)),
        "", f"<= {bound} (backoff base {DEFAULT_RETRY_BASE:g} s over {window:.2f} s)",
        judge(len(calls) <= bound),
        note=f"{gets} GETs in {elapsed:.2f} s: {counts} (503 + Retry-After: still being "
             "processed); Stripe's redeliveries count too",
        data={"gets": gets, "calls": len(calls), "seconds": elapsed, "window": window})]


def resilience(sizes: Sizes, tmpdir: str) -> list[Row]:
    """Section 7's guard rows (see the module docstring)."""
    from stripe_checkout_mw.testing import StripeEmulator

    parts: list[tuple[str, Any]] = [
        ("healthy", _healthy),
        ("hang4", lambda s, d, e: _hanging(s, d, e, 4, 3)),
        ("hang8", lambda s, d, e: _hanging(s, d, e, 8, 6)),
        ("portal", _portal_budget),
        ("fulfil", _failing_fulfil),
    ]
    rows: list[Row] = []
    for name, part in parts:
        with StripeEmulator(webhook_url=None) as emu:
            part_dir = os.path.join(tmpdir, name)
            os.makedirs(part_dir)
            rows += part(sizes, part_dir, emu)
    return rows


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1:]))
