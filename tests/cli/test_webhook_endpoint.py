"""``check``'s webhook-endpoint line and ``webhook-endpoint setup``, against the emulator's
``/v1/webhook_endpoints``: each defect (missing, disabled, a missing event type, another API
version) is reported by ``check`` and fixed by ``setup``, which ``--dry-run`` leaves alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import stripe

from stripe_checkout_mw.__main__ import main
from stripe_checkout_mw.news.router import event_types
from stripe_checkout_mw.testing import StripeEmulator

URL = "https://shop.example.com/stripe-webhook"
OLD_VERSION = "2026-09-30.endive"
HANDLED = sorted(event_types())


@pytest.fixture(autouse=True)
def deployment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stripe_emulator: StripeEmulator
) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", stripe_emulator.secret_key)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_emulator.api_base)
    monkeypatch.setenv("WEB_APP_URL", "https://shop.example.com")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", stripe_emulator.webhook_secret)
    monkeypatch.setenv("STRIPE_CHECKOUT_STORE", f"sqlite:///{tmp_path / 'orders.db'}")


@pytest.fixture
def client(stripe_emulator: StripeEmulator) -> stripe.StripeClient:
    return stripe_emulator.client()


def endpoint_line(capsys: pytest.CaptureFixture[str]) -> str:
    """``check``'s webhook endpoint line."""
    main(["check"])
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if "webhook endpoint:" in line]
    return line


def setup(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["webhook-endpoint", "setup", *args]) == 0
    return capsys.readouterr().out


def endpoints(client: stripe.StripeClient) -> list[Any]:
    return list(client.v1.webhook_endpoints.list().auto_paging_iter())


def test_a_missing_endpoint_is_reported_then_created_with_its_secret_shown_once(
    capsys: pytest.CaptureFixture[str], client: stripe.StripeClient
) -> None:
    line = endpoint_line(capsys)
    assert line.startswith("warn") and f"no endpoint at {URL}" in line
    assert "webhook-endpoint setup" in line

    planned = setup(capsys, "--dry-run")
    assert "would create" in planned and URL in planned and endpoints(client) == []

    out = setup(capsys)
    (made,) = endpoints(client)
    assert (made.url, made.status, made.api_version) == (URL, "enabled", stripe.api_version)
    assert sorted(made.enabled_events) == HANDLED
    secrets = [word for word in out.split() if word.startswith("whsec_")]
    assert len(secrets) == 1 and "STRIPE_WEBHOOK_SECRET" in out
    assert endpoint_line(capsys).startswith("ok")

    again = setup(capsys)
    assert again.startswith("ok:") and "whsec_" not in again and len(endpoints(client)) == 1


def test_a_disabled_endpoint_is_reported_and_enabled(
    capsys: pytest.CaptureFixture[str], client: stripe.StripeClient
) -> None:
    made = client.v1.webhook_endpoints.create(params={
        "url": URL, "enabled_events": HANDLED, "api_version": stripe.api_version})
    client.v1.webhook_endpoints.update(made.id, params={"disabled": True})
    line = endpoint_line(capsys)
    assert line.startswith("warn") and f"{made.id} is disabled" in line

    assert "would update" in setup(capsys, "--dry-run")
    assert client.v1.webhook_endpoints.retrieve(made.id).status == "disabled"
    out = setup(capsys)
    assert "whsec_" not in out and "unchanged" in out
    assert client.v1.webhook_endpoints.retrieve(made.id).status == "enabled"
    assert endpoint_line(capsys).startswith("ok")


def test_a_missing_event_type_is_named_and_added(
    capsys: pytest.CaptureFixture[str], client: stripe.StripeClient
) -> None:
    lacking = HANDLED[-1]
    made = client.v1.webhook_endpoints.create(params={
        "url": URL, "enabled_events": [t for t in HANDLED if t != lacking] + ["payout.paid"],
        "api_version": stripe.api_version})
    line = endpoint_line(capsys)
    assert line.startswith("warn") and "lacks 1 handled event type(s)" in line
    assert line.split("lacks 1 handled event type(s): ")[1].startswith(lacking)

    out = setup(capsys)
    assert lacking in out
    enabled = client.v1.webhook_endpoints.retrieve(made.id).enabled_events
    assert set(enabled) == set(HANDLED) | {"payout.paid"}  # the shop's own types kept
    assert endpoint_line(capsys).startswith("ok")


def test_another_api_version_gets_a_second_endpoint_and_the_switchs_steps(
    capsys: pytest.CaptureFixture[str], client: stripe.StripeClient
) -> None:
    old = client.v1.webhook_endpoints.create(params={
        "url": URL, "enabled_events": ["*"], "api_version": OLD_VERSION})
    line = endpoint_line(capsys)
    assert line.startswith("warn") and f"API version {OLD_VERSION}" in line
    assert stripe.api_version in line

    out = setup(capsys)
    (new,) = [e for e in endpoints(client) if e.id != old.id]
    assert new.api_version == stripe.api_version and new.status == "enabled"
    assert new.url == f"{URL}?api_version={stripe.api_version}"
    assert sorted(new.enabled_events) == HANDLED
    assert "webhook_secret = whsec_NEW whsec_CURRENT" in out and f"delete {old.id}" in out
    assert client.v1.webhook_endpoints.retrieve(old.id).status == "enabled"  # not deleted

    line = endpoint_line(capsys)
    assert line.startswith("ok") and f"{old.id}" in line and "delete it" in line


def test_without_a_webhook_secret_check_skips_the_endpoint_and_setup_still_runs(
    capsys: pytest.CaptureFixture[str], client: stripe.StripeClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET")
    assert endpoint_line(capsys).startswith("skip")
    setup(capsys)
    assert [e.url for e in endpoints(client)] == [URL]
