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

Usage::

    client = stripe.StripeClient(key, http_client=stripe_http_client(timeout, api_base))
"""

from __future__ import annotations

from typing import Any

import stripe

__all__ = ["DEFAULT_API_BASE", "stripe_http_client"]

#: Where the SDK sends API requests when ``stripe_api_base`` is not set.
DEFAULT_API_BASE = "https://api.stripe.com"


def stripe_http_client(timeout: Any, api_base: str | None = None) -> stripe.RequestsClient:
    """A :class:`stripe.RequestsClient` with ``timeout`` (seconds, or ``(connect, read)``)
    whose sessions took their proxies from the environment once, for ``api_base``."""
    from requests.utils import get_environ_proxies

    client = stripe.RequestsClient(timeout=timeout)
    client.requests = _RequestsWithProxies(get_environ_proxies(api_base or DEFAULT_API_BASE))
    return client


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
