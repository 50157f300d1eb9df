"""The HTTP client the middleware (and the ``check`` command) talks to Stripe with.

It is the SDK's own :class:`stripe.RequestsClient`, whose ``requests`` sessions take their
proxy settings from the environment once, when the client is built, instead of on every
request. ``requests`` re-reads the environment for each request it sends (the
proxy variables and ``NO_PROXY``, and ``~/.netrc``), and on a server whose environment
holds many variables that costs a tenth of a millisecond or more per Stripe call.

What is read, and when:

- ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` and ``NO_PROXY``, as ``requests`` reads
  them, for the Stripe API address (``stripe_api_base``, else ``https://api.stripe.com``);
  a change to them after the middleware is built needs a restart.
- Certificates: the SDK always passes its own CA bundle, so ``REQUESTS_CA_BUNDLE`` never
  applied to Stripe calls, with or without this client.
- ``~/.netrc`` is not read: an entry for Stripe's host would have replaced the secret key's
  ``Authorization`` header.

Each thread keeps its own session (and keep-alive connection), as the SDK's client does on
its own: the client is the SDK's, with the part of the ``requests`` module it uses
(``Session`` and ``exceptions``) swapped for one whose sessions skip the environment.

Every HTTP request (each attempt of the SDK's retries) can be wrapped, for the calling
thread only, with :meth:`ObservedRequestsClient.observed`: the ``sync`` command paces,
counts and guards every call its run makes that way, the ``line_items`` fetches of the
events it replays included.

With a recorder (``metrics``), each HTTP request (every attempt of the SDK's retries) is
also counted by endpoint, method and outcome, and timed (``stripe_requests``,
``stripe_request_seconds`` in :mod:`stripe_checkout_mw.observe.metrics`); the endpoint is
the path with object ids replaced by ``{id}``, so the labels stay few.

Usage::

    client = stripe.StripeClient(key, http_client=stripe_http_client(timeout, api_base))
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Callable
from urllib.parse import urlsplit

import stripe

from ..observe.metrics import NO_METRICS, Recorder

__all__ = ["DEFAULT_API_BASE", "ObservedRequestsClient", "stripe_http_client"]

#: Where the SDK sends API requests when ``stripe_api_base`` is not set.
DEFAULT_API_BASE = "https://api.stripe.com"


def stripe_http_client(timeout: Any, api_base: str | None = None,
                       metrics: Recorder = NO_METRICS) -> ObservedRequestsClient:
    """A :class:`stripe.RequestsClient` with ``timeout`` (seconds, or ``(connect, read)``)
    whose sessions took their proxies from the environment once, for ``api_base``; it
    measures each request into ``metrics`` when that records anything."""
    from requests.utils import get_environ_proxies

    client = (_MeasuredClient(metrics, timeout=timeout) if metrics.enabled
              else ObservedRequestsClient(timeout=timeout))
    client.requests = _RequestsWithProxies(get_environ_proxies(api_base or DEFAULT_API_BASE))
    return client


class ObservedRequestsClient(stripe.RequestsClient):
    """The SDK's client, whose requests a thread can wrap (:meth:`observed`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._observers = threading.local()

    @contextmanager
    def observed(self, around: Callable[[], AbstractContextManager[object]]) -> Iterator[None]:
        """Wrap each HTTP request this thread sends, while in the block, in ``around()``."""
        previous = getattr(self._observers, "around", None)
        self._observers.around = around
        try:
            yield
        finally:
            self._observers.around = previous

    def request(
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None,
        **kwargs: Any,
    ) -> Any:
        around = getattr(self._observers, "around", None)
        if around is None:
            return super().request(method, url, headers, post_data, **kwargs)
        with around():
            return super().request(method, url, headers, post_data, **kwargs)


#: A path segment that names a resource (``v1``, ``checkout``, ``line_items``); any other
#: is an object id (Stripe's have digits or capitals in their random part).
_NAME = re.compile(r"(v[0-9]+|[a-z_]+)\Z")
#: Endpoints counted apart; any further one is counted as ``other`` (labels stay bounded).
MAX_ENDPOINTS = 100


def endpoint_of(url: str) -> str:
    """``https://api.stripe.com/v1/checkout/sessions/cs_test_a1?x`` ->
    ``/v1/checkout/sessions/{id}``: the label a request is counted under."""
    segments = urlsplit(url).path.split("/")
    return "/".join(s if not s or _NAME.match(s) else "{id}" for s in segments)


class _MeasuredClient(ObservedRequestsClient):
    """The client, counting and timing each request it sends."""

    def __init__(self, metrics: Recorder, **options: Any) -> None:
        super().__init__(**options)
        self._metrics = metrics
        self._endpoints: set[str] = set()

    def request(
        self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None,
        **kwargs: Any,
    ) -> Any:
        endpoint = endpoint_of(url)
        if endpoint not in self._endpoints:
            if len(self._endpoints) >= MAX_ENDPOINTS:
                endpoint = "other"
            else:
                self._endpoints.add(endpoint)
        started = time.perf_counter()
        try:
            answer = super().request(method, url, headers, post_data, **kwargs)
        except stripe.APIConnectionError:
            self._measure(endpoint, method, "connection_error", started)
            raise
        status = answer[1]
        self._measure(endpoint, method, "429" if status == 429 else f"{status // 100}xx",
                      started)
        return answer

    def _measure(self, endpoint: str, method: str, outcome: str, started: float) -> None:
        self._metrics.observe("stripe_request_seconds", time.perf_counter() - started,
                              endpoint=endpoint)
        self._metrics.count("stripe_requests", endpoint=endpoint, method=method.upper(),
                            outcome=outcome)


class _RequestsWithProxies:
    """What :class:`stripe.RequestsClient` uses of the ``requests`` module (a session for
    each thread, the exception classes), with sessions that never read the environment."""

    def __init__(self, proxies: dict[str, str]) -> None:
        import requests

        self.exceptions = requests.exceptions
        self._proxies = proxies

    def Session(self) -> Any:  # named as the module's class is, for the SDK
        import requests

        session = requests.Session()
        session.trust_env = False
        session.proxies.update(self._proxies)
        return session
