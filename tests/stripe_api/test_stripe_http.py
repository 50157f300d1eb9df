"""The HTTP client to Stripe: proxy settings read from the environment once, when built.

A proxy here is a listening socket of the test's own on 127.0.0.1 that records the first
line it is sent and closes; Stripe itself is the emulator. Nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
import stripe

from stripe_checkout_mw import Catalog, CheckoutMiddleware
from stripe_checkout_mw.stripe_api.client import stripe_http_client
from stripe_checkout_mw.testing import StripeEmulator

_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                    "all_proxy", "NO_PROXY", "no_proxy")


class RecordingProxy:
    """Accepts connections on 127.0.0.1 and keeps the first line of each request."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.lines.append(data.split(b"\r\n", 1)[0].decode("latin-1"))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close() does not)
        self.listener.close()
        self.thread.join(5)
        assert not self.thread.is_alive()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    recording = RecordingProxy()
    yield recording
    recording.close()


def _client(key: str, api_base: str, http_client: stripe.RequestsClient) -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": api_base}, max_network_retries=0,
                               http_client=http_client)


def test_the_proxy_in_the_environment_carries_stripe_calls(
    clean_env: pytest.MonkeyPatch, proxy: RecordingProxy
) -> None:
    clean_env.setenv("HTTPS_PROXY", proxy.url)
    http_client = stripe_http_client(5, None)  # Stripe's own address, through the proxy
    with pytest.raises(stripe.APIConnectionError):
        _client("sk_test_unused", "https://api.stripe.com", http_client).v1.customers.retrieve(
            "cus_nobody")
    http_client.close()  # type: ignore[no-untyped-call]  # untyped in the SDK
    assert len(proxy.lines) == 1 and proxy.lines[0].startswith("CONNECT api.stripe.com:443 ")


def test_no_proxy_and_the_environment_read_once(
    clean_env: pytest.MonkeyPatch, proxy: RecordingProxy
) -> None:
    with StripeEmulator() as emu:
        clean_env.setenv("HTTP_PROXY", proxy.url)
        clean_env.setenv("NO_PROXY", "127.0.0.1")
        direct = stripe_http_client(5, emu.api_base)
        clean_env.delenv("NO_PROXY")
        # Read when built: NO_PROXY's removal afterwards changes nothing for this client...
        assert _client(emu.secret_key, emu.api_base, direct).v1.customers.create().id
        assert proxy.lines == []
        # ...while a client built now sends the emulator's calls to the proxy.
        proxied = stripe_http_client(5, emu.api_base)
        with pytest.raises(stripe.APIConnectionError):
            _client(emu.secret_key, emu.api_base, proxied).v1.customers.create()
        assert len(proxy.lines) == 1 and proxy.lines[0].startswith(
            f"POST {emu.api_base}/v1/customers ")
        for http_client in (direct, proxied):
            http_client.close()  # type: ignore[no-untyped-call]  # untyped in the SDK


def test_the_middleware_talks_to_stripe_through_the_environments_proxy(
    clean_env: pytest.MonkeyPatch, proxy: RecordingProxy
) -> None:
    with StripeEmulator() as emu:
        clean_env.setenv("HTTP_PROXY", proxy.url)
        mw = CheckoutMiddleware(lambda environ, start_response: [], secret_key=emu.secret_key,
                                stripe_api_base=emu.api_base, store=None,
                                domain_url="http://shop.test",
                                max_network_retries=0, price_lookup=Catalog({"tee": {
                                    "name": "T-shirt", "unit_amount": 2000, "currency": "usd"}}))
        try:
            with pytest.raises(stripe.APIConnectionError):
                mw.client.v1.customers.create()
        finally:
            mw.close()
    assert len(proxy.lines) == 1 and proxy.lines[0].startswith("POST ")
