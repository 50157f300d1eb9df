"""Origins of URLs, strictly: the one parser the CSRF check and the settings share."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["DEFAULT_PORTS", "origin_of"]

DEFAULT_PORTS = {"http": "80", "https": "443"}
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")
_IPV6_CHARS = frozenset("0123456789abcdef:.")


def origin_of(url: str, *, bare: bool = False) -> str | None:
    """``https://shop.example/cart?x=1`` -> ``https://shop.example`` (None if unusable).

    Strict, because the CSRF check compares the result: the scheme must be http or
    https, the host plain (letters, digits, ``-``, ``.``, or a bracketed IPv6 address),
    the port a number; a URL with userinfo (``https://shop.example@evil.example``) is
    refused rather than guessed at. ``bare=True`` (an ``Origin`` header) also refuses a
    path, query or fragment: an origin is scheme, host and port, nothing else.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    default_port = DEFAULT_PORTS.get(scheme)
    host = (parts.hostname or "").lower()
    if default_port is None or not host or "@" in parts.netloc:
        return None
    if bare and (parts.path or parts.query or parts.fragment or url.endswith(("?", "#"))):
        return None
    if ":" in host:  # IPv6: urlsplit took the brackets off
        if not all(c in _IPV6_CHARS for c in host):
            return None
        host = f"[{host}]"
    elif not all(c in _HOST_CHARS for c in host) or host.startswith((".", "-")):
        return None
    if port is not None and str(port) != default_port:
        return f"{scheme}://{host}:{port}"
    return f"{scheme}://{host}"
