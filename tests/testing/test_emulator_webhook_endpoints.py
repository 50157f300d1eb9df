"""The emulator's ``/v1/webhook_endpoints``: the API (create, list, retrieve, update,
delete, the 16-endpoint limit, the secret only at creation, ``api_version`` fixed)
and delivery to each registered endpoint of only the event types it enables,
signed with its own secret, besides the emulator's ``webhook_url``, which still
gets every event.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from test_emulator_billing import (  # noqa: F401  # the shared fixtures
    SignedReceiver,
    client,
    emu,
    monthly,
    receiver,
)
from test_emulator_invoices import subscribe_with

from stripe_checkout_mw.testing import StripeEmulator

OLD_VERSION = "2026-09-30.endive"


@pytest.fixture
def receivers(client: stripe.StripeClient) -> Iterator[list[SignedReceiver]]:  # noqa: F811
    made: list[SignedReceiver] = []

    def stop() -> None:
        for hook in made:
            hook.server.shutdown()
            hook.server.server_close()
            hook.thread.join()

    yield made
    stop()


def endpoint_receiver(client: stripe.StripeClient, made: list[SignedReceiver],  # noqa: F811
                      **params: Any) -> tuple[Any, SignedReceiver]:
    """Register an endpoint (``params``) served by a new receiver checking its secret."""
    hook = SignedReceiver(client, "")
    hook.thread.start()
    made.append(hook)
    endpoint = client.v1.webhook_endpoints.create(params={"url": hook.url, **params})
    hook.secret = endpoint.secret
    return endpoint, hook


def test_the_endpoint_api_returns_the_secret_once_and_keeps_the_api_version(
        emu: StripeEmulator, client: stripe.StripeClient) -> None:  # noqa: F811
    created = client.v1.webhook_endpoints.create(params={
        "url": "https://shop.test/stripe/webhook", "enabled_events": ["invoice.paid"],
        "api_version": OLD_VERSION, "description": "shop"})
    assert created.id.startswith("we_") and created.secret.startswith("whsec_")
    assert (created.status, created.api_version) == ("enabled", OLD_VERSION)
    fetched = client.v1.webhook_endpoints.retrieve(created.id)
    assert fetched.secret is None and fetched.enabled_events == ["invoice.paid"]
    assert [e.id for e in client.v1.webhook_endpoints.list().data] == [created.id]

    disabled = client.v1.webhook_endpoints.update(created.id, params={
        "disabled": True, "enabled_events": ["*"]})
    assert (disabled.status, disabled.enabled_events) == ("disabled", ["*"])
    assert client.v1.webhook_endpoints.update(
        created.id, params={"disabled": False}).status == "enabled"
    with pytest.raises(stripe.InvalidRequestError) as fixed:
        client.v1.webhook_endpoints.update(created.id, params={
            "api_version": "2026-10-28.endive"})
    assert fixed.value.param == "api_version"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.webhook_endpoints.create(params={"url": "not a url",
                                                   "enabled_events": ["*"]})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.webhook_endpoints.create(params={
            "url": "https://shop.test/x"})

    for n in range(15):
        client.v1.webhook_endpoints.create(params={
            "url": f"https://shop.test/{n}", "enabled_events": ["*"]})
    with pytest.raises(stripe.InvalidRequestError, match="maximum of 16"):
        client.v1.webhook_endpoints.create(params={"url": "https://shop.test/17",
                                                   "enabled_events": ["*"]})
    deleted = client.v1.webhook_endpoints.delete(created.id)
    assert deleted.deleted is True
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.webhook_endpoints.retrieve(created.id)
    page = client.v1.webhook_endpoints.list(params={"limit": 10})
    assert page.has_more is True and len(list(page.auto_paging_iter())) == 15


def test_each_endpoint_gets_only_the_types_it_enables_and_webhook_url_gets_all(
        emu: StripeEmulator, client: stripe.StripeClient, receiver: SignedReceiver,  # noqa: F811
        receivers: list[SignedReceiver], monthly: dict[str, Any]) -> None:  # noqa: F811
    _, paid_only = endpoint_receiver(client, receivers, enabled_events=["invoice.paid"],
                                     api_version=OLD_VERSION)
    _, everything = endpoint_receiver(client, receivers, enabled_events=["*"])
    off, disabled = endpoint_receiver(client, receivers, enabled_events=["*"])
    client.v1.webhook_endpoints.update(off.id, params={"disabled": True})

    subscribe_with(emu, client, monthly)
    emu.wait_for_deliveries()

    assert set(paid_only.types()) == {"invoice.paid"}
    assert [e.api_version for e in paid_only.events] == [OLD_VERSION]
    assert everything.types() == receiver.types()
    assert sum(receiver.types().values()) >= 8
    assert disabled.events == []
    assert all(e.api_version == "2026-10-28.endive" for e in everything.events)
    # Delivered everywhere it was due: nothing is pending.
    events = client.v1.events.list(params={"delivery_success": False})
    assert events.data == []
    (paid,) = paid_only.events
    assert paid.id in {e.id for e in everything.events}
