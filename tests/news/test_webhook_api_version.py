"""Events rendered in another API version than the SDK's pin are logged once per version.

The SDK does not compare ``event.api_version`` with its own: an endpoint created at an older
version delivers objects whose renamed fields read as absent. The receiver says so once
per version (not once per event, which would flood the log), naming the fix.
"""

from __future__ import annotations

import json
import logging

import pytest
import stripe
from test_webhooks import client, deliver, event_body, receiver_for, store  # noqa: F401

from stripe_checkout_mw.ledger.store import OrderStore


def _in_version(version: str) -> bytes:
    body = json.loads(event_body("customer.created", {"id": "cus_1", "object": "customer"}))
    body["api_version"] = version
    return json.dumps(body).encode()


def test_each_other_api_version_is_warned_about_once(
    store: OrderStore, client: stripe.StripeClient,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = receiver_for(store, client)
    caplog.set_level(logging.WARNING, logger="stripe_checkout_mw")
    for version in ("2020-08-27", "2020-08-27", "2024-06-20", stripe.api_version, "2024-06-20"):
        status, _ = deliver(receiver, _in_version(version))
        assert status == 200  # processed all the same: only the log says it
    warned = [r.getMessage() for r in caplog.records if "API version" in r.getMessage()]
    assert len(warned) == 2
    assert "2020-08-27" in warned[0] and "2024-06-20" in warned[1]
    assert all(stripe.api_version in line and "webhook-endpoint setup" in line
               for line in warned)
    assert all(r.levelno == logging.WARNING for r in caplog.records if "API version" in
               r.getMessage())
