"""What every benchmark section shares: sizes, statistics, the table row, the test apps.

The machines this runs on are shared and noisy, so nothing here trusts one timing. Every
comparison is made side by side in one process run, in interleaved rounds (A, B, C, then
B, C, A, ...), and reported as the median of the per-round figures with their spread
(the inter-quartile range, or min..max when there are few rounds). Goals are judged on
medians and ratios, never on an absolute time.
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, TypeVar

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

T = TypeVar("T")

#: Used when ``STRIPE_CHECKOUT_TEST_PG`` is not set (the project's CI database).
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
#: The path the pass-through requests ask for: two segments, like a typical app page.
APP_PATH = "/products/42"
#: The price every checkout buys, kept with the app (``Catalog``).
CATALOG_ITEMS = {"tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"}}
DOMAIN_URL = "http://127.0.0.1:8000"
OTHER_ORIGIN = "https://other.example"


@dataclass(frozen=True)
class Sizes:
    """How much work each section does; ``smoke()`` is for CI, ``full()`` for the table."""

    smoke: bool
    passthrough_rounds: int
    passthrough_calls: int  # per side per round
    server_rounds: int
    server_seconds: float  # per side per round
    stream_bytes: int
    stream_repeats: int  # transfers per direction per server
    checkout_rounds: int
    checkout_sequential: int  # per variant per round
    checkout_concurrent: int  # per variant per round, spread over the clients
    checkout_clients: int
    connection_checkouts: int
    webhook_rounds: int
    webhook_events: int  # per side per round
    ledger_rows: int  # events, orders and done jobs already stored (section 8)

    @classmethod
    def full(cls) -> Sizes:
        return cls(
            smoke=False,
            passthrough_rounds=20, passthrough_calls=10_000,  # 200k calls per side
            server_rounds=20, server_seconds=1.0,
            stream_bytes=100 * 1024 * 1024, stream_repeats=3,
            checkout_rounds=7, checkout_sequential=120, checkout_concurrent=240,
            checkout_clients=8,
            connection_checkouts=200,
            webhook_rounds=7, webhook_events=200,
            ledger_rows=1_000_000,
        )

    @classmethod
    def tiny(cls) -> Sizes:
        return cls(
            smoke=True,
            passthrough_rounds=2, passthrough_calls=500,
            server_rounds=1, server_seconds=1.0,
            stream_bytes=2 * 1024 * 1024, stream_repeats=1,
            checkout_rounds=1, checkout_sequential=5, checkout_concurrent=8,
            checkout_clients=8,
            connection_checkouts=10,
            webhook_rounds=1, webhook_events=10,
            ledger_rows=2_000,
        )


@dataclass
class Row:
    """One line of the results table.

    ``verdict`` is ``met``, ``missed``, ``info`` (a figure without a goal of its own) or
    ``skipped``; smoke runs judge nothing and print ``-`` instead.
    """

    section: str
    name: str
    value: str
    spread: str = ""
    goal: str = ""
    verdict: str = "info"
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def judge(ok: bool) -> str:
    return "met" if ok else "missed"


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile by linear interpolation (``q=0.5`` is the median)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], fmt: Callable[[float], str]) -> str:
    """``IQR a..b`` for five or more values, ``min..max`` below that (quartiles of three
    numbers say nothing)."""
    if len(values) >= 5:
        return f"IQR {fmt(quantile(values, 0.25))}..{fmt(quantile(values, 0.75))}"
    return f"min..max {fmt(min(values))}..{fmt(max(values))}"


def rotations(items: Sequence[T], rounds: int) -> Iterable[tuple[int, list[T]]]:
    """Yield ``(round, order)`` with the order rotated each round, so that no variant
    always runs first (after a pause) or last (after the others warmed the caches)."""
    n = len(items)
    for r in range(rounds):
        k = r % n
        yield r, [*items[k:], *items[:k]]


def trivial_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The cheapest honest WSGI app: a fixed 200 answer. Any cost added in front of it
    shows up undiluted."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def base_environ(path: str = APP_PATH, method: str = "GET") -> dict[str, Any]:
    """A GET as a WSGI server would pass it, with the usual browser headers."""
    import io

    return {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "benchmarks/1",
        "HTTP_ACCEPT": "text/html",
        "HTTP_ACCEPT_ENCODING": "gzip",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def fully_configured(
    app: WSGIApplication,
    tmpdir: str,
    *,
    secret_key: str = "sk_test_benchmarks",
    api_base: str = "http://127.0.0.1:9",  # never reached by a pass-through request
    webhook_secret: str = "whsec_benchmarks",
    store: str | None = None,
    **options: Any,
) -> Any:
    """The middleware with every owned path on: checkout, webhook, status, and CORS."""
    from stripe_checkout_mw import Catalog, CheckoutMiddleware

    return CheckoutMiddleware(
        app,
        secret_key=secret_key,
        stripe_api_base=api_base,
        domain_url=DOMAIN_URL,
        price_lookup=options.pop("price_lookup", None) or Catalog(CATALOG_ITEMS),
        webhook_secret=webhook_secret,
        store=store or f"sqlite:///{tmpdir}/orders.db",
        allowed_origins=[OTHER_ORIGIN],
        **options,
    )


def pg_url() -> tuple[str | None, str]:
    """The PostgreSQL URL to use and, when there is none, why (for the table's note)."""
    url = os.environ.get("STRIPE_CHECKOUT_TEST_PG") or DEFAULT_PG_URL
    try:
        import psycopg
    except ImportError:
        return None, "psycopg is not installed (pip install 'stripe-checkout-mw[postgres]')"
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return None, f"no PostgreSQL at STRIPE_CHECKOUT_TEST_PG ({type(exc).__name__})"
    return url, ""


def fmt_ns(value: float) -> str:
    return f"{value:.0f} ns"


def fmt_ratio(value: float) -> str:
    return f"{value:.3f}"


def fmt_ms(value: float) -> str:
    return f"{value:.2f} ms"


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}/s"


def fmt_mb(value: float) -> str:
    return f"{value:.2f} MB"
