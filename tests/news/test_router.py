"""The router: one table of the Stripe event types this shop acts on, read by everything that
lists event types (the webhook path, sync's replay list, the README) and checked against the
event types the installed SDK knows."""

from __future__ import annotations

import ast
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REFUND_CATALOG, ServedShop, plain_app

from stripe_checkout_mw import CheckoutMiddleware, Order
from stripe_checkout_mw.news import reconcile
from stripe_checkout_mw.news.invoices import REFRESH_SUBSCRIPTION, STATUS_ONLY
from stripe_checkout_mw.news.reconcile import HANDLED_EVENTS
from stripe_checkout_mw.news.router import INVOICES, ROUTES, EventRouter, event_types
from stripe_checkout_mw.schema.sdk import enum_values
from stripe_checkout_mw.testing import StripeEmulator

PACKAGE = Path(__file__).resolve().parents[2] / "stripe_checkout_mw"
README = PACKAGE.parent / "README.md"
BEGIN = "<!-- webhook event types:"
END = "<!-- end of webhook event types -->"


def test_each_event_type_has_one_row_and_is_one_stripe_sends() -> None:
    types = [route.event_type for route in ROUTES]
    assert len(types) == len(set(types))
    # What a webhook endpoint may enable, read from the installed SDK.
    enabled = set(enum_values("WebhookEndpointCreateParams", ["enabled_events", "[]"]))
    assert set(types) <= enabled, set(types) - enabled


def test_the_invoice_appliers_own_lists_name_exactly_the_types_routed_to_it() -> None:
    """The invoice applier sorts its events into those that also refresh the subscription
    and those that only keep the invoice's status: together, and apart, they are the
    router's rows for it, so a row added there without a place here fails."""
    assert not REFRESH_SUBSCRIPTION & STATUS_ONLY
    assert set(event_types(INVOICES)) == REFRESH_SUBSCRIPTION | STATUS_ONLY


def test_sync_replays_exactly_the_routed_event_types() -> None:
    assert event_types() == HANDLED_EVENTS
    # Stripe takes at most 20 types in one list's types[]: the 23 routed types take two.
    assert reconcile.MAX_TYPES_PER_LIST == 20
    assert len(HANDLED_EVENTS) == 23


def test_the_readme_lists_the_routed_event_types_for_the_webhook_endpoint() -> None:
    text = README.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    block = text.split(BEGIN, 1)[1].split(END, 1)[0].split("-->", 1)[1]
    listed = re.findall(r"`([a-z_.]+)`", block)
    assert listed == list(event_types()), (
        "README's webhook event list differs from stripe_checkout_mw/news/router.py ROUTES")


def test_an_applier_no_row_uses_is_refused(store_url: str) -> None:
    shop = CheckoutMiddleware(plain_app, secret_key="sk_test_x", domain_url="https://s.example",
                              price_lookup=REFUND_CATALOG, store=store_url)
    try:
        assert shop.pipeline is not None
        with pytest.raises(ValueError, match="no route uses"):
            EventRouter(pipeline=shop.pipeline, handlers=shop.handlers,
                        appliers={"nothing_routes_here": object()})  # type: ignore[dict-item]
    finally:
        shop.close()


class _Shop(ServedShop):
    """A shop with a ledger and no webhook secret: only ``sync`` brings it Stripe's news."""

    def __init__(self, emu: StripeEmulator, store: str, **options: Any) -> None:
        self.calls: list[tuple[str, Order]] = []
        self._lock = threading.Lock()
        super().__init__(CheckoutMiddleware(
            plain_app, secret_key=emu.secret_key, stripe_api_base=emu.api_base,
            domain_url="https://shop.example.com", price_lookup=REFUND_CATALOG, store=store,
            fulfill=lambda order: self._record("fulfill", order),
            refunded=lambda order: self._record("refunded", order), **options))

    def _record(self, hook: str, order: Order) -> None:
        with self._lock:
            self.calls.append((hook, order))


@pytest.fixture
def emu() -> Iterator[StripeEmulator]:
    with StripeEmulator(hosted_page_webhook_wait=0) as emulator:
        yield emulator


def test_the_webhook_path_and_sync_share_one_router_with_an_applier_for_every_row(
    emu: StripeEmulator, store_url: str
) -> None:
    shop = _Shop(emu, store_url, webhook_secret=emu.webhook_secret)
    try:
        events = shop.middleware.events
        assert events is not None and shop.middleware.webhooks is not None
        assert shop.middleware.webhooks.events is events
        assert set(events.appliers) == {route.applier for route in ROUTES}
        for route in ROUTES:
            assert events.applier_for(route.event_type) is events.appliers[route.applier]
    finally:
        shop.close()


def test_sync_applies_events_without_any_webhook_secret(
    emu: StripeEmulator, store_url: str
) -> None:
    shop = _Shop(emu, store_url)
    try:
        assert shop.middleware.webhooks is None and shop.middleware.events is not None
        session_id = shop.buy()
        emu.pay(session_id)
        emu.refund(session_id, amount=700)
        assert emu.deliveries == []
        report = shop.middleware.sync()
        assert report.ok, report.failures
        assert [(hook, order.session_id) for hook, order in shop.calls] == [
            ("fulfill", session_id), ("refunded", session_id)]
        assert [order.amount_refunded for hook, order in shop.calls if hook == "refunded"] == [
            700]
    finally:
        shop.close()


def test_sync_lists_more_types_than_one_list_takes_in_batches_replayed_oldest_first(
    emu: StripeEmulator, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The routed types pass Stripe's 20 types per list (two lists by default); with batches
    # of 5, the 23 types of today take five lists, and the events still replay oldest first.
    monkeypatch.setattr(reconcile, "MAX_TYPES_PER_LIST", 5)
    shop = _Shop(emu, store_url)
    try:
        session_id = shop.buy()
        emu.pay(session_id)
        emu.refund(session_id, amount=700)
        report = shop.middleware.sync()
        assert report.ok, report.failures
        assert (report.events_seen, report.events_new) == (4, 4)  # completed + 3 refund events
        assert [hook for hook, _ in shop.calls] == ["fulfill", "refunded"]
        again = shop.middleware.sync()
        assert (again.events_seen, again.events_new, again.stripe_calls) == (4, 0, 5)
    finally:
        shop.close()


def test_without_an_invoice_ledger_only_the_events_that_move_a_subscription_refresh_it(
    emu: StripeEmulator, store_url: str
) -> None:
    # A router built with a subscriptions ledger and no invoice applier: invoice.paid
    # refreshes the invoice's subscription, a status event (invoice.voided, ...) only runs
    # the app's handlers, as with the invoice applier.
    shop = _Shop(emu, store_url)
    try:
        mw = shop.middleware
        assert mw.store is not None and mw.pipeline is not None
        seen: list[str] = []
        mw.on("invoice.voided")(lambda event: seen.append(event.id))
        router = EventRouter.build(store=mw.store, handlers=mw.handlers, fulfill=None,
                                   client=mw.client, pipeline=mw.pipeline,
                                   subscriptions=mw.subscriptions)

        def event(kind: str) -> dict[str, Any]:
            return {"id": f"evt_{kind}", "object": "event", "type": kind, "data": {"object": {
                "id": "in_gone", "object": "invoice",
                "parent": {"subscription_details": {"subscription": "sub_gone"}}}}}

        before = len(emu.requests)
        outcome = router.apply(event("invoice.voided"))
        assert not outcome.duplicate and seen == ["evt_invoice.voided"]
        assert len(emu.requests) == before
        router.apply(event("invoice.paid"))
        assert [r.path for r in emu.requests[before:]] == ["/v1/subscriptions/sub_gone"]
    finally:
        shop.close()


def imported_modules(path: Path) -> set[str]:
    """The package modules ``path`` imports (relative imports resolved), at any depth."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = parts[: len(parts) - node.level] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("stripe_checkout_mw")}


def test_news_flows_one_way_endpoint_then_router_then_appliers_then_ledger() -> None:
    news = "stripe_checkout_mw.news"
    appliers = ["sessions", "payments", "subscriptions", "reads", "handlers", "fulfilment"]
    for name in appliers:
        imports = imported_modules(PACKAGE / "news" / f"{name}.py")
        for above in (f"{news}.router", f"{news}.webhooks", f"{news}.reconcile",
                      "stripe_checkout_mw.wsgi"):
            assert not any(i == above or i.startswith(above + ".") for i in imports), (
                name, above)
    assert f"{news}.webhooks" not in imported_modules(PACKAGE / "news" / "router.py")
    for path in (PACKAGE / "ledger").glob("*.py"):
        imports = imported_modules(path)
        assert not any(i.startswith((f"{news}", "stripe_checkout_mw.wsgi",
                                     "stripe_checkout_mw.billing")) for i in imports), path.name
