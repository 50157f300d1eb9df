"""Metrics and health, through a real server on 127.0.0.1 with the emulator as Stripe.

A scripted day (checkouts, a refused one, webhooks with a duplicate and a bad signature, a
``fulfill`` that fails, a hanging Stripe that opens the breaker) and then the metrics path's
names and values, cross-checked with what the emulator saw; the health path while all is
well, with the breaker open and with the ledger's file gone; the hook, the network check,
the missing extra, and the recorder that does nothing.
"""

from __future__ import annotations

import http.client
import json
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import waitress_serving
from prometheus_client.parser import text_string_to_metric_families

from stripe_checkout_mw import Catalog, CheckoutMiddleware, OptionError
from stripe_checkout_mw.observe import Measurement
from stripe_checkout_mw.observe.metrics import METRICS, NO_METRICS, PREFIX
from stripe_checkout_mw.stripe_api.client import ObservedRequestsClient, endpoint_of
from stripe_checkout_mw.stripe_api.guard import FAILURES_TO_OPEN
from stripe_checkout_mw.testing import StripeEmulator, sign_payload
from stripe_checkout_mw.testing.pytest_plugin import isolated_environment

CATALOG = Catalog({"tee": {"name": "T-shirt", "unit_amount": 2000, "currency": "usd"}})
ONE_TEE = {"line_items": [{"price": "tee", "quantity": 1}]}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def shop_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the shop"]


def call(base: str, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port = base.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def checkout(base: str, order: dict[str, Any] = ONE_TEE) -> tuple[int, dict[str, Any]]:
    status, _, body = call(base, "POST", "/create-checkout-session", json.dumps(order).encode(),
                           {"Content-Type": "application/json"})
    return status, json.loads(body)


def scrape(base: str) -> Samples:
    status, headers, body = call(base, "GET", "/metrics")
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples}


def health(base: str) -> tuple[int, dict[str, Any]]:
    status, _, body = call(base, "GET", "/health")
    return status, json.loads(body)


def row_of(sample_name: str) -> str:
    """The :data:`METRICS` row a sample belongs to (``..._total``, ``..._bucket`` ...)."""
    name = sample_name.removeprefix(PREFIX)
    for suffix in ("_total", "_bucket", "_count", "_sum"):
        if name.endswith(suffix) and name[:-len(suffix)] in METRICS:
            return name[:-len(suffix)]
    return name


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((PREFIX + name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[StripeEmulator]:
    """One delivery attempt per event, so each delivery is counted once."""
    isolated_environment(monkeypatch)
    with StripeEmulator(delivery_attempts=1) as started:
        yield started


class Day:
    """The shop of the scripted day, and what its ``fulfill`` and hook saw."""

    def __init__(self, emulator: StripeEmulator, store: str, **options: Any) -> None:
        self.failing: set[str] = set()
        self.measured: list[Measurement] = []
        self.mw = CheckoutMiddleware(
            shop_app, secret_key=emulator.secret_key, stripe_api_base=emulator.api_base,
            domain_url="https://shop.example.com", price_lookup=CATALOG,
            webhook_secret=emulator.webhook_secret, store=store, fulfill=self.fulfil,
            max_network_retries=0, timeout=0.4, circuit_cooldown=60,
            metrics_path="/metrics", health_path="/health", metrics_hook=self.measured.append,
            **options)

    def fulfil(self, order: Any) -> None:
        if order.session_id in self.failing:
            raise RuntimeError("the warehouse is down")


def test_a_scripted_day_shows_in_the_metrics_and_the_health_path(
    emulator: StripeEmulator, tmp_path: Path
) -> None:
    day = Day(emulator, f"sqlite:///{tmp_path}/orders.db")
    with day.mw, waitress_serving(day.mw, threads=4) as base:
        emulator.set_webhook_url(f"{base}/stripe-webhook")
        assert health(base) == (200, {"healthy": True, "ledger": "reachable",
                                      "breaker": "closed", "oldest_due_job_seconds": 0.0})
        paid, failing, _ = (checkout(base)[1]["sessionId"] for _ in range(3))
        assert checkout(base, {"line_items": [{"price": "hat", "quantity": 1}]})[0] == 400
        day.failing.add(failing)
        emulator.pay(paid)
        emulator.pay(failing)  # fulfill raises: the webhook answers 500
        completed = next(e["id"] for e in emulator.events
                         if e["data"]["object"]["id"] == paid)
        emulator.redeliver(completed)  # a duplicate
        forged = json.dumps({"id": "evt_forged", "object": "event", "type": "charge.refunded",
                             "data": {"object": {}}}).encode()
        assert call(base, "POST", "/stripe-webhook", forged, {
            "Stripe-Signature": sign_payload(forged, "whsec_not_ours"),
            "Content-Type": "application/json"})[0] == 400
        emulator.fail_next(status=None, delay=1.5, times=FAILURES_TO_OPEN,
                           path="/v1/checkout/sessions")
        assert [checkout(base)[0] for _ in range(FAILURES_TO_OPEN + 1)] == (
            [502] * FAILURES_TO_OPEN + [503])  # timeouts, then the open breaker
        time.sleep(1.1)  # past the health probe's cache
        status, answer = health(base)
        samples = scrape(base)
        stripe_seen = list(emulator.requests)

    # the health path: the breaker is reported, and fails nothing; the failed job is due
    assert status == 200 and answer["breaker"] == "open" and answer["ledger"] == "reachable"
    assert answer["oldest_due_job_seconds"] > 0

    deliveries = Counter((d.event_type, d.status) for d in emulator.deliveries)
    assert deliveries == {("checkout.session.completed", 200): 2,
                          ("checkout.session.completed", 500): 1}
    completed_type = "checkout.session.completed"
    assert value(samples, "webhooks_total", type=completed_type, outcome="processed") == 1
    assert value(samples, "webhooks_total", type=completed_type, outcome="duplicate") == 1
    assert value(samples, "webhooks_total", type=completed_type, outcome="failed") == 1
    assert value(samples, "webhooks_total", type="unverified", outcome="bad_signature") == 1

    assert value(samples, "checkouts_total", outcome="created") == 3
    assert value(samples, "checkouts_total", outcome="invalid") == 1
    assert value(samples, "checkouts_total", outcome="stripe_error") == FAILURES_TO_OPEN
    assert value(samples, "checkouts_total", outcome="unavailable") == 1
    assert value(samples, "refusals_total", reason="open") == 1
    assert value(samples, "refusals_total", reason="unknown_item") == 1
    assert value(samples, "refusals_total", reason="busy") == 0

    # every request the emulator saw is counted under its endpoint, and timed
    seen = Counter((endpoint_of(r.path), r.method) for r in stripe_seen)
    counted: Counter[tuple[str, str]] = Counter()
    for (name, pairs), n in samples.items():
        if name == PREFIX + "stripe_requests_total":
            counted[dict(pairs)["endpoint"], dict(pairs)["method"]] += int(n)
    assert counted == seen
    create = "/v1/checkout/sessions"
    assert value(samples, "stripe_requests_total", endpoint=create, method="POST",
                 outcome="2xx") == 3
    assert value(samples, "stripe_requests_total", endpoint=create, method="POST",
                 outcome="connection_error") == FAILURES_TO_OPEN
    assert value(samples, "stripe_request_seconds_count", endpoint=create) == 3 + FAILURES_TO_OPEN
    slow = value(samples, "stripe_request_seconds_count", endpoint=create) - value(
        samples, "stripe_request_seconds_bucket", endpoint=create, le="0.25")
    assert slow >= FAILURES_TO_OPEN  # each timed-out attempt took its 0.4 s timeout

    assert value(samples, "breaker_state", state="open") == 1
    assert value(samples, "breaker_state", state="closed") == 0
    assert value(samples, "jobs_due", kind="fulfil") == 1
    assert value(samples, "jobs_failed", kind="fulfil") == 1
    assert value(samples, "jobs_oldest_due_seconds") > 0
    assert value(samples, "ledger_errors_total") == 0

    # every name exposed is a row of the one table, and the hook saw what was counted
    assert {row_of(name) for name, _ in samples} == set(METRICS)  # no ..._created series
    hooked = Counter(m.labels["outcome"] for m in day.measured if m.name == "checkouts")
    assert hooked == {"created": 3, "invalid": 1, "stripe_error": FAILURES_TO_OPEN,
                      "unavailable": 1}


def test_health_is_503_naming_the_ledger_when_its_file_is_gone(
    emulator: StripeEmulator, tmp_path: Path
) -> None:
    folder = tmp_path / "ledger"
    folder.mkdir()
    day = Day(emulator, f"sqlite:///{folder}/orders.db")
    with day.mw, waitress_serving(day.mw, threads=4) as base:
        assert health(base)[0] == 200
        shutil.rmtree(folder)
        time.sleep(1.1)  # past the probe's cache
        status, answer = health(base)
        samples = scrape(base)
        assert call(base, "GET", "/")[0] == 200  # the app goes on
    assert (status, answer["failed"], answer["ledger"]) == (503, ["ledger"], "unreachable")
    assert value(samples, "ledger_errors_total") >= 1
    assert value(samples, "jobs_due", kind="fulfil") == 0  # unknown, so not exposed
    assert value(samples, "breaker_state", state="closed") == 1


def test_the_health_probe_reads_the_ledger_at_most_once_a_second(
    emulator: StripeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = Day(emulator, f"sqlite:///{tmp_path}/orders.db")
    store = day.mw.store
    assert store is not None
    reads = 0
    read = store.dialect.read  # every read outside a transaction goes through it

    def counting(sql: str, params: Any) -> Any:
        nonlocal reads
        reads += "GROUP BY kind" in sql
        return read(sql, params)

    monkeypatch.setattr(store.dialect, "read", counting)
    with day.mw, waitress_serving(day.mw, threads=4) as base:
        started = time.monotonic()
        answers = [health(base)[0] for _ in range(50)]
        elapsed = time.monotonic() - started
    assert answers == [200] * 50
    assert 1 <= reads <= elapsed + 1


def test_metrics_are_refused_outside_the_allowed_networks(
    emulator: StripeEmulator, tmp_path: Path
) -> None:
    day = Day(emulator, f"sqlite:///{tmp_path}/orders.db", metrics_allow="10.0.0.0/8")
    with day.mw, waitress_serving(day.mw) as base:
        status, _, body = call(base, "GET", "/metrics")
    assert status == 403
    assert json.loads(body)["error"]["type"] == "permission_error"


def test_metrics_path_without_the_extra_names_the_option_and_the_fix(
    emulator: StripeEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import raises ImportError
    with pytest.raises(OptionError) as refused:
        CheckoutMiddleware(shop_app, secret_key=emulator.secret_key,
                           stripe_api_base=emulator.api_base, price_lookup=CATALOG,
                           domain_url="https://shop.example.com", metrics_path="/metrics")
    assert refused.value.option == "metrics_path"
    assert "pip install prometheus-client (in a clone: pip install -e '.[metrics]')" in str(
        refused.value)


def test_options_are_checked_at_construction(emulator: StripeEmulator) -> None:
    base = {"secret_key": emulator.secret_key, "stripe_api_base": emulator.api_base,
            "price_lookup": CATALOG, "domain_url": "https://shop.example.com"}
    with pytest.raises(OptionError, match="metrics_allow: 'intranet' is not a network"):
        CheckoutMiddleware(shop_app, **base, metrics_allow="intranet")
    with pytest.raises(OptionError, match="must all differ"):
        CheckoutMiddleware(shop_app, **base, metrics_path="/up", health_path="/up")
    with pytest.raises(OptionError, match="metrics_hook"):
        CheckoutMiddleware(shop_app, **base, metrics_hook=42)


def test_a_hook_alone_gets_each_measurement_and_a_failing_hook_fails_nothing(
    emulator: StripeEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(measurement: Measurement) -> None:
        raise ValueError("statsd is down")

    options = {"secret_key": emulator.secret_key, "stripe_api_base": emulator.api_base,
               "price_lookup": CATALOG, "domain_url": "https://shop.example.com",
               "max_network_retries": 0}
    seen: list[Measurement] = []
    with CheckoutMiddleware(shop_app, **options, metrics_hook=seen.append) as mw, \
            waitress_serving(mw) as base:
        assert checkout(base)[0] == 200
        assert call(base, "GET", "/metrics")[0] == 200  # not served: the app's path
    assert [m for m in seen if m.name == "checkouts"] == [
        Measurement("checkouts", "counter", 1.0, {"outcome": "created"})]
    timed = [m for m in seen if m.name == "stripe_request_seconds"]
    assert len(timed) == 1 and timed[0].labels == {"endpoint": "/v1/checkout/sessions"}
    with CheckoutMiddleware(shop_app, **options, metrics_hook=broken) as mw, \
            waitress_serving(mw) as base:
        assert [checkout(base)[0] for _ in range(3)] == [200] * 3
    warnings = [r for r in caplog.records if "metrics sink" in r.getMessage()]
    assert len(warnings) == 1 and "ValueError" in warnings[0].getMessage()


def test_without_metrics_nothing_records_and_the_client_is_unmeasured(
    emulator: StripeEmulator,
) -> None:
    with CheckoutMiddleware(shop_app, secret_key=emulator.secret_key,
                            stripe_api_base=emulator.api_base, price_lookup=CATALOG,
                            domain_url="https://shop.example.com") as mw:
        assert mw.metrics is NO_METRICS and mw.guard.refusals.metrics is NO_METRICS
        assert type(mw.http_client) is ObservedRequestsClient


def test_the_health_path_alone_needs_no_metrics(
    emulator: StripeEmulator, tmp_path: Path
) -> None:
    with CheckoutMiddleware(shop_app, secret_key=emulator.secret_key,
                            stripe_api_base=emulator.api_base, price_lookup=CATALOG,
                            domain_url="https://shop.example.com",
                            store=f"sqlite:///{tmp_path}/orders.db", health_path="/health") as mw, \
            waitress_serving(mw) as base:
        assert mw.metrics is NO_METRICS
        assert health(base) == (200, {"healthy": True, "ledger": "reachable",
                                      "breaker": "closed", "oldest_due_job_seconds": 0.0})
        assert call(base, "HEAD", "/health")[2] == b""
        assert call(base, "GET", "/metrics")[2] == b"the shop"  # not served: the app's


def test_endpoints_are_labelled_without_object_ids() -> None:
    assert endpoint_of("https://api.stripe.com/v1/checkout/sessions/cs_test_a1B2c3?expand=x") \
        == "/v1/checkout/sessions/{id}"
    assert endpoint_of("http://127.0.0.1:1/v1/checkout/sessions/cs_test_9Zq/line_items") \
        == "/v1/checkout/sessions/{id}/line_items"
    assert endpoint_of("https://api.stripe.com/v1/billing_portal/sessions") \
        == "/v1/billing_portal/sessions"


def test_observe_imports_nothing_above_it() -> None:
    """observe/ sits at the bottom: everything may record into it, it imports only errors
    (prometheus_client is the optional extra, imported when the metrics path is served)."""
    import ast

    import stripe_checkout_mw.observe

    package = Path(stripe_checkout_mw.observe.__file__).parent
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 or node.module == "errors", (module.name, node.module)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module] if isinstance(node, ast.ImportFrom) else [
                    alias.name for alias in node.names]
                assert not any(str(n).startswith("stripe") for n in names), (module.name, names)
