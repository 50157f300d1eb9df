"""Suite-wide rules and the store fixtures shared by the ledger, webhook and status tests.

In CI (STRIPE_CHECKOUT_NO_SKIPS=1) a skipped test fails the run: skips are only for
dependencies that are genuinely absent on a developer's machine (Chromium, a PostgreSQL
server); CI installs and starts them, so a skip there means a test silently did not run.

Store tests run on SQLite and on PostgreSQL, each PostgreSQL test in a schema of its own.
The server is the one STRIPE_CHECKOUT_TEST_PG names, else the documented default
``postgresql://postgres@127.0.0.1:5432/test`` when a server answers there; with neither,
the PostgreSQL tests skip and say how to enable them. ``STRIPE_CHECKOUT_TEST_PG=off``
skips them even when a server answers.

The suites live in folders that mirror the package (``tests/ledger/`` tests
``stripe_checkout_mw/ledger/``), plus ``tests/project/`` for the project as a whole and the
long suites apart: each file under ``property/``, ``faults/``, ``load/`` and ``browser/`` gets
its folder's marker and ``slow``, so ``pytest -m "not slow"`` is the quick loop.

Every test runs with the shop's configuration variables (STRIPE_*, WEB_APP_URL) removed
from the environment, as the ``stripe_emulator`` fixture does, so a developer's exported
keys or store change nothing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from stripe_checkout_mw import Catalog, CheckoutMiddleware
from stripe_checkout_mw.ledger.orders import Order
from stripe_checkout_mw.ledger.payments import PaymentLedger
from stripe_checkout_mw.ledger.store import OrderStore, open_store
from stripe_checkout_mw.testing import StripeEmulator
from stripe_checkout_mw.testing.pytest_plugin import isolated_environment

TESTS = Path(__file__).resolve().parent
README = TESTS.parent / "README.md"
#: The folders that mirror no package part: the project-wide checks, and the long suites,
#: each with the markers its tests get (see setup.cfg for what each marker means).
SUITE_FOLDERS: dict[str, tuple[str, ...]] = {
    "project": (),
    "property": ("property", "slow"),
    "faults": ("faults", "slow"),
    "load": ("load", "slow"),
    "browser": ("browser", "slow"),
}

PG_ENV = "STRIPE_CHECKOUT_TEST_PG"
#: The test database the README and .ci/run name; used when it answers and PG_ENV is unset.
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
_PG_HOW_TO = (f"start PostgreSQL at {DEFAULT_PG_URL} (user postgres, database test, no "
              f"password), or set {PG_ENV} to another server's URL")


@pytest.fixture(autouse=True)
def _fast_job_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed job is due again after a microsecond rather than seconds, so the suites that
    retry one at once (by a redelivery, a lookup, a sync) keep doing so; the schedule itself
    is tested with real delays, passed explicitly (tests/ledger/test_job_schedule.py,
    tests/news/test_webhooks.py, tests/news/test_sync.py)."""
    monkeypatch.setattr("stripe_checkout_mw.ledger.pipeline.DEFAULT_RETRY_BASE", 1e-6)


@pytest.fixture(scope="session", autouse=True)
def _isolated_from_the_shell() -> Iterator[None]:
    """No test, and no module fixture's subprocess, sees the shop configuration exported
    in the developer's shell (STRIPE_*, WEB_APP_URL); it comes back after the session."""
    with pytest.MonkeyPatch.context() as patch:
        isolated_environment(patch)
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test in a long suite's folder with that folder's markers, then put the
    ``slow`` tests first.

    pytest-xdist hands out tests in this order (a group as one unit, the largest first), so
    the long ones start while the many short ones can still fill the other workers, rather
    than one of them ending the run alone.
    """
    for item in items:
        try:
            folder = item.path.relative_to(TESTS).parts[0]
        except ValueError:  # a test outside this folder (the suite-setup test's own runs)
            continue
        for marker in SUITE_FOLDERS.get(folder, ()):
            item.add_marker(marker)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook; absent without it
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: two workers per core, at least two and at most eight.

    Most tests spend most of their time waiting (on sockets, subprocesses, the emulator's
    deliveries, timeouts they prove), so a second worker per core fills that wait: on 2
    cores, 4 workers took 172 s where 2 took 218 s. Eight at most bounds the emulators,
    servers and PostgreSQL connections a large machine would start at once (untried there).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(2, min(8, 2 * (cores or 1)))


def postgres_unavailable(url: str, timeout: int = 2) -> str | None:
    """Why no PostgreSQL server answers at ``url`` (one line), or None when one does."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=timeout):
            return None
    except psycopg.Error as exc:
        lines = str(exc).strip().splitlines()
        return lines[0] if lines else type(exc).__name__


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The PostgreSQL server for the store tests; skips, saying how to enable them, if none.

    A URL set in STRIPE_CHECKOUT_TEST_PG is used as given (a server that does not answer
    there fails the tests instead of skipping them); otherwise the default address is
    tried once, for two seconds.
    """
    configured = os.environ.get(PG_ENV, "").strip()
    if configured.lower() == "off":
        pytest.skip(f"{PG_ENV}=off: the PostgreSQL tests are switched off")
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("psycopg is not installed: pip install -e '.[test]'")
    if configured:
        return configured
    reason = postgres_unavailable(DEFAULT_PG_URL)
    if reason is not None:
        pytest.skip(f"no PostgreSQL answers at {DEFAULT_PG_URL} ({reason}); to run these "
                    f"tests, {_PG_HOW_TO}")
    return DEFAULT_PG_URL


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store URL: a file in tmp_path, or a schema of its own in PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/orders.db"
        return
    server: str = request.getfixturevalue("pg_url")
    import psycopg

    schema = f"scmw_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{server}{'&' if '?' in server else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def store(store_url: str) -> Iterator[OrderStore]:
    """An open, empty store on each backend."""
    with open_store(store_url) as opened:
        yield opened


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI, a skip fails the run; under pytest-xdist the workers' reports reach this
    hook in the controlling process, whose exit status is the run's."""
    if os.environ.get("STRIPE_CHECKOUT_NO_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped and exitstatus == 0:
        reporter.ensure_newline()
        for report in skipped:
            reporter.write_line(f"SKIPPED IN CI (counts as a failure): {report.nodeid}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@contextlib.contextmanager
def waitress_serving(app: Any, threads: int = 2) -> Iterator[str]:
    """Serve ``app`` with waitress on a free 127.0.0.1 port; yield its base URL; stop it."""
    from waitress.server import create_server

    server: Any = create_server(app, host="127.0.0.1", port=0, threads=threads)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        # Closing while a task thread still finishes a request closes the trigger under
        # it (EBADF) and strands that connection's socket: let the requests end first.
        deadline = time.monotonic() + 10
        while server.active_channels and time.monotonic() < deadline:
            time.sleep(0.01)
        server.close()
        thread.join(timeout=10)
        server.task_dispatcher.shutdown()
    assert not thread.is_alive()


class ServedShop:
    """A middleware on a threaded werkzeug server on 127.0.0.1, with an HTTP session to it.

    A test module's shop builds the middleware with the hooks it records, then hands it
    here; ``buy`` and ``status`` are the customer's two requests, ``close`` stops it all.
    """

    def __init__(self, middleware: CheckoutMiddleware) -> None:
        from werkzeug.serving import make_server

        self.middleware = middleware
        self.server = make_server("127.0.0.1", 0, middleware, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        # A short poll: shutdown() waits for the loop to notice, 0.5 s by default per shop.
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.http = requests.Session()

    def buy(self, quantity: int = 1) -> str:
        response = self.http.post(f"{self.url}/create-checkout-session", json={
            "line_items": [{"price": "tee", "quantity": quantity}],
            "customer_email": "ann@example.com"}, timeout=10)
        assert response.status_code == 200, response.text
        return str(response.json()["sessionId"])

    def status(self, session_id: str) -> dict[str, Any]:
        response = self.http.get(f"{self.url}/checkout-session",
                                 params={"session_id": session_id}, timeout=10)
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        return view

    def close(self) -> None:
        self.http.close()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        self.middleware.close()


REFUND_CATALOG = Catalog({"tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"}})


def plain_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"shop"]


class RefundShop(ServedShop):
    """The middleware on a real server, recording every hook call (refund, sync and CLI tests)."""

    def __init__(self, emu: StripeEmulator, store: str, **options: Any) -> None:
        self.calls: list[tuple[str, Order]] = []
        self.fail_refunded = 0
        self._lock = threading.Lock()
        super().__init__(CheckoutMiddleware(
            plain_app, secret_key=emu.secret_key, stripe_api_base=emu.api_base,
            domain_url="https://shop.example.com", price_lookup=REFUND_CATALOG,
            webhook_secret=emu.webhook_secret, store=store,
            fulfill=options.pop("fulfill", lambda order: self._record("fulfill", order)),
            refunded=self._refunded, disputed=lambda order: self._record("disputed", order),
            **options))
        emu.webhook_url = f"{self.url}/stripe-webhook"

    def _record(self, hook: str, order: Order) -> None:
        with self._lock:
            self.calls.append((hook, order))

    def _refunded(self, order: Order) -> None:
        if self.fail_refunded:
            self.fail_refunded -= 1
            raise RuntimeError("accounting is down")
        self._record("refunded", order)

    def hooks(self, name: str) -> list[Order]:
        return [order for hook, order in self.calls if hook == name]

    def order(self, session_id: str) -> Order:
        store = self.middleware.store
        assert store is not None
        order = store.get(session_id)
        assert order is not None
        return PaymentLedger(store).attach(order)


def run_together(jobs: list[Any], timeout: float = 120) -> list[Any]:
    """Run the callables in threads released at once (a race); their results, in order."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = jobs[index]()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "jobs did not finish in time"
    assert errors == []
    return results


class Fulfilments:
    """A ``fulfill`` hook that counts its calls, thread-safely, and can be told to fail."""

    def __init__(self, *, fail: bool = False, delay: float = 0.0) -> None:
        self.orders: list[Order] = []
        self.fail = fail
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self, order: Order) -> None:
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("warehouse is down")
        with self._lock:
            self.orders.append(order)


def code_block(starting_with: str, language: str = "python") -> str:
    """The one README code block in ``language`` that contains ``starting_with`` (for the
    tests that run what the README shows, wherever they live)."""
    blocks = re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    matches = [b for b in blocks if starting_with in b]
    assert len(matches) == 1, f"README has {len(matches)} blocks with {starting_with!r}"
    return str(matches[0])
