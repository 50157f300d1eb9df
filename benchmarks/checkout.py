"""Sections 4 and 5: the checkout path against the offline Stripe emulator.

4. Sessions per second for (a) the middleware, fully configured (it also records each
   session in its SQLite ledger), (a') the middleware without a ledger, (b) a Flask
   route written the way Stripe's Flask sample writes it, and (c) the bare
   ``StripeClient`` create call alone, the floor. Each runs in a worker process of its
   own (:mod:`benchmarks.checkout_worker`), all against one emulator in this process,
   in interleaved rounds: sequential latency (median, p95), then throughput with 8
   concurrent client threads. The middleware's own cost per checkout is (a) - (c),
   taken per round from the sequential medians.
5. Connections and price look-ups: over N sequential checkouts through a middleware
   using ``StripeLookupKeys``, how many TCP connections the emulator accepted (keep-alive
   reuse: one per client thread) and how many ``prices.list`` calls were made (one per
   key per ttl), then the same with 8 threads, and with a short ttl.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from .common import (
    Row,
    Sizes,
    fmt_ms,
    fmt_rate,
    fmt_ratio,
    judge,
    median,
    quantile,
    rotations,
    spread,
)

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_LABELS = {
    "middleware": "(a) middleware, fully configured",
    "middleware-no-ledger": "(a') middleware, no ledger",
    "flask": "(b) Flask route, Stripe-sample style",
    "client": "(c) bare StripeClient create",
}


class Worker:
    """A :mod:`benchmarks.checkout_worker` process and its JSON-lines pipe."""

    def __init__(self, setup: dict[str, Any]) -> None:
        self.variant = setup["variant"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.checkout_worker"], cwd=_REPO,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.pid = self.proc.pid
        self.ask({"op": "setup", **setup})

    def send(self, request: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"checkout worker {self.variant} exited "
                               f"(status {self.proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"checkout worker {self.variant}: {answer['error']}")
        return answer

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        self.send(request)
        return self.receive()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ask({"op": "quit"})
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def workers(setups: list[dict[str, Any]]) -> Iterator[dict[str, Worker]]:
    started: dict[str, Worker] = {}
    try:
        for setup in setups:
            started[setup["variant"]] = Worker(setup)
        yield started
    finally:
        for worker in started.values():
            worker.close()


def _emulator() -> Any:
    from stripe_checkout_mw.testing import StripeEmulator

    return StripeEmulator(webhook_url=None)


def _check_params(emu: Any) -> None:
    """Every variant must have sent Stripe the same create parameters."""
    creates = [r for r in emu.requests
               if r.method == "POST" and r.path == "/v1/checkout/sessions"]
    shapes = {json.dumps({k: v for k, v in r.params.items()}, sort_keys=True)
              for r in creates}
    if len(shapes) != 1:
        raise RuntimeError(f"the variants sent different create parameters: {sorted(shapes)}")


def checkout_speed(sizes: Sizes, tmpdir: str) -> list[Row]:
    """Section 4 (see the module docstring)."""
    variants = list(_LABELS)
    seq: dict[str, list[int]] = {v: [] for v in variants}
    seq_medians: dict[str, list[float]] = {v: [] for v in variants}
    rates: dict[str, list[float]] = {v: [] for v in variants}
    clients = sizes.checkout_clients
    with _emulator() as emu:
        common = {"secret_key": emu.secret_key, "api_base": emu.api_base,
                  "webhook_secret": emu.webhook_secret}
        setups = [{"variant": v, "tmpdir": tmpdir, **common} for v in variants]
        with workers(setups) as running:
            for worker in running.values():  # warm-up: imports, connections, ledger schema
                worker.ask({"op": "seq", "n": 3})
                worker.ask({"op": "conc", "n": clients, "clients": clients})
            for _, order in rotations(variants, sizes.checkout_rounds):
                for v in order:
                    latencies = running[v].ask(
                        {"op": "seq", "n": sizes.checkout_sequential})["latencies_ns"]
                    seq[v] += latencies
                    seq_medians[v].append(median(latencies) / 1e6)
                for v in order:
                    seconds = running[v].ask({"op": "conc", "n": sizes.checkout_concurrent,
                                              "clients": clients})["seconds"]
                    rates[v].append(sizes.checkout_concurrent / seconds)
        _check_params(emu)

    rows = []
    per_round = (f"{sizes.checkout_rounds} rounds x {sizes.checkout_sequential} sequential + "
                 f"{sizes.checkout_concurrent} concurrent per variant")
    for v in variants:
        ms = [x / 1e6 for x in seq[v]]
        rows.append(Row("4", f"{_LABELS[v]}: sequential latency", fmt_ms(median(ms)),
                        f"p95 {fmt_ms(quantile(ms, 0.95))}",
                        note=per_round if v == "middleware" else ""))
    for v in variants:
        rows.append(Row("4", f"{_LABELS[v]}: {clients} concurrent clients",
                        fmt_rate(median(rates[v])), spread(rates[v], fmt_rate),
                        note="sessions/s"))

    def diff(a: str, b: str) -> list[float]:
        return [x - y for x, y in zip(seq_medians[a], seq_medians[b])]

    own = diff("middleware", "client")
    own_light = diff("middleware-no-ledger", "client")
    vs_flask = [x / y for x, y in zip(seq_medians["middleware"], seq_medians["flask"])]
    vs_flask_rate = [x / y for x, y in zip(rates["middleware"], rates["flask"])]
    light_vs_flask = [x / y for x, y in zip(seq_medians["middleware-no-ledger"],
                                            seq_medians["flask"])]
    light_vs_flask_rate = [x / y for x, y in zip(rates["middleware-no-ledger"], rates["flask"])]
    rows += [
        Row("4", "own cost per checkout, (a) - (c)", fmt_ms(median(own)),
            spread(own, fmt_ms), "< 0.5 ms", judge(median(own) < 0.5),
            note="per-round difference of sequential medians; includes the ledger write"),
        Row("4", "own cost per checkout without the ledger, (a') - (c)",
            fmt_ms(median(own_light)), spread(own_light, fmt_ms)),
        Row("4", "latency (a) / (b)", fmt_ratio(median(vs_flask)), spread(vs_flask, fmt_ratio),
            "<= 1 (a as fast as b)", judge(median(vs_flask) <= 1.0)),
        Row("4", f"throughput (a) / (b), {clients} clients", fmt_ratio(median(vs_flask_rate)),
            spread(vs_flask_rate, fmt_ratio), ">= 1", judge(median(vs_flask_rate) >= 1.0)),
        Row("4", "latency (a') / (b), both without a ledger", fmt_ratio(median(light_vs_flask)),
            spread(light_vs_flask, fmt_ratio),
            note="(b) records nothing; (a') is the like-for-like peer"),
        Row("4", f"throughput (a') / (b), {clients} clients",
            fmt_ratio(median(light_vs_flask_rate)), spread(light_vs_flask_rate, fmt_ratio)),
    ]
    return rows


def connections_and_lookups(sizes: Sizes, tmpdir: str) -> list[Row]:
    """Section 5 (see the module docstring)."""
    n = sizes.connection_checkouts
    clients = sizes.checkout_clients
    keys = ["basic", "plus", "pro"]
    short_ttl = 0.05
    with _emulator() as emu:
        for i, key in enumerate(keys):
            emu.add_price(unit_amount=1000 + 500 * i, currency="usd", lookup_key=key)
        common = {"secret_key": emu.secret_key, "api_base": emu.api_base, "tmpdir": tmpdir,
                  "keys": keys}
        rows = []
        with workers([{"variant": "lookup-keys", "ttl": 300, **common}]) as running:
            worker = running["lookup-keys"]
            before = emu.connections
            worker.ask({"op": "seq", "n": n})
            sequential = emu.connections - before
            lookups = worker.ask({"op": "stats"})["lookups"]
            listed = sum(1 for r in emu.requests if r.path == "/v1/prices")
            before = emu.connections
            worker.ask({"op": "conc", "n": n, "clients": clients})
            threaded = emu.connections - before
            lookups_after = worker.ask({"op": "stats"})["lookups"]
        rows += [
            Row("5", f"TCP connections, {n} sequential checkouts", str(sequential), "",
                "1 (one per thread)", judge(sequential == 1),
                note="StripeLookupKeys + Checkout Session create on one client"),
            Row("5", f"TCP connections, {n} checkouts on {clients} threads", str(threaded),
                "", f"{clients} (one per thread)", judge(threaded == clients),
                note="new threads after the sequential run"),
            Row("5", f"StripeLookupKeys look-ups, {n} checkouts, {len(keys)} keys, ttl 300 s",
                str(lookups), "", f"<= {len(keys)} (one per key per ttl)",
                judge(lookups <= len(keys)),
                note=f"emulator saw {listed} GET /v1/prices; "
                     f"{lookups_after - lookups} more during the threaded run"),
        ]
        before_requests = sum(1 for r in emu.requests if r.path == "/v1/prices")
        with workers([{"variant": "lookup-keys", "ttl": short_ttl, **common}]) as running:
            t0 = time.perf_counter()
            running["lookup-keys"].ask({"op": "seq", "n": n})
            elapsed = time.perf_counter() - t0
            lookups = running["lookup-keys"].ask({"op": "stats"})["lookups"]
        listed = sum(1 for r in emu.requests if r.path == "/v1/prices") - before_requests
        bound = len(keys) * (math.floor(elapsed / short_ttl) + 1)
        rows.append(Row(
            "5", f"StripeLookupKeys look-ups, {n} checkouts, ttl {short_ttl:g} s", str(lookups),
            "", f"<= {bound} (keys x ttl periods)", judge(lookups <= bound),
            note=f"{elapsed:.2f} s run; emulator saw {listed} GET /v1/prices",
        ))
    return rows
