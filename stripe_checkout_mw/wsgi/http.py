"""HTTP plumbing for the middleware's own paths: bodies, errors, CORS and origins.

Everything here works on the raw WSGI ``environ`` so that the routing layer stays a
thin dispatcher. Nothing in this module is used for requests the middleware does not
own: those never have their body read or their headers parsed.

Every error on an owned path is raised as :class:`HTTPError` and rendered by
:func:`json_response` in the one shape the project promises::

    {"error": {"type": "...", "message": "...", "param": "..."}}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from werkzeug.http import HTTP_STATUS_CODES, parse_options_header
from werkzeug.wsgi import get_content_length

from ..errors import HTTPError
from ..stripe_api.guard import RefusalLog, loggable
from ..urls import DEFAULT_PORTS, origin_of

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"



def status_line(status: int) -> str:
    """``303`` -> ``"303 See Other"``, as ``start_response`` wants it."""
    return f"{status} {HTTP_STATUS_CODES.get(status, 'Unknown')}"


def json_response(
    start_response: StartResponse,
    status: int,
    payload: Mapping[str, Any],
    headers: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    """Answer ``payload`` as JSON, never cached (orders and errors are per request)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    start_response(
        status_line(status),
        [
            ("Content-Type", JSON_TYPE),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *headers,
        ],
    )
    return [body]


def redirect_response(
    start_response: StartResponse, location: str, headers: Iterable[tuple[str, str]] = ()
) -> list[bytes]:
    """``303 See Other``: after a form post the browser follows it with a GET."""
    start_response(
        status_line(303),
        [("Location", location), ("Content-Type", "text/plain; charset=utf-8"),
         ("Content-Length", "0"), ("Cache-Control", "no-store"), *headers],
    )
    return []


def read_body(environ: WSGIEnvironment, limit: int) -> bytes:
    """Read the request body, refusing (413) anything over ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before a single byte is
    read, so a large upload costs the server nothing. A body without a length is read
    only when the server says the stream is terminated (chunked uploads), and then no
    further than one byte past the limit.
    """
    stream = environ["wsgi.input"]
    length = get_content_length(environ)
    if length is None:
        if not environ.get("wsgi.input_terminated"):
            return b""
        data: bytes = stream.read(limit + 1)
    else:
        if length > limit:
            raise _too_large(limit)
        data = stream.read(length)
    if len(data) > limit:
        raise _too_large(limit)
    return data


def _too_large(limit: int) -> HTTPError:
    return HTTPError(413, f"The request body is larger than {limit} bytes.")


def media_type(environ: WSGIEnvironment) -> str:
    """The request's media type, lower-cased, without parameters such as charset."""
    return parse_options_header(environ.get("CONTENT_TYPE", ""))[0].lower()


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Parse a JSON object, turning every way it can fail into a 400."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise HTTPError(400, "The request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise HTTPError(400, "The request body must be a JSON object.")
    return value


def parse_form_order(body: bytes) -> dict[str, Any]:
    """Turn an HTML form post into the seed's JSON order shape.

    A form names items by repeating ``price`` (and optionally ``quantity``, paired by
    position), so ``price=tee&quantity=2&price=mug`` is two line items. Any other field
    is kept as a top-level key, for the validator to accept or refuse.
    """
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise HTTPError(400, "The form body could not be decoded as UTF-8.") from None
    prices: list[str] = []
    quantities: list[str] = []
    order: dict[str, Any] = {}
    for name, value in pairs:
        if name == "price":
            prices.append(value)
        elif name == "quantity":
            quantities.append(value)
        elif name in order:
            raise HTTPError(400, f"The form field {name!r} was given more than once.", param=name)
        else:
            order[name] = value
    if quantities and len(quantities) != len(prices):
        raise HTTPError(
            400, "Each price field needs its own quantity field.", param="quantity"
        )
    order["line_items"] = [
        {"price": price, "quantity": _form_int(quantities[i]) if quantities else 1}
        for i, price in enumerate(prices)
    ]
    return order


def _form_int(value: str) -> int | str:
    # Leave anything that is not a plain number as a string: the validator names it.
    stripped = value.strip()
    if stripped.isascii() and stripped.isdigit() and len(stripped) < 10:
        return int(stripped)
    return value


def own_origin(environ: WSGIEnvironment) -> str:
    """The origin the app is being served from, as the browser sees it."""
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
    scheme = environ.get("wsgi.url_scheme", "http")
    if ":" not in host:
        port = environ.get("SERVER_PORT", "")
        if port and port != DEFAULT_PORTS.get(scheme):
            host = f"{host}:{port}"
    return origin_of(f"{scheme}://{host}") or "null"


def request_origin(environ: WSGIEnvironment) -> str | None:
    """Where a request claims to come from: ``Origin``, else ``Referer``'s origin."""
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None:
        # "null" (sandboxed frames, file: pages) is an origin nobody can be allowed.
        return origin_of(origin.strip(), bare=True) or "null"
    referer = environ.get("HTTP_REFERER")
    if referer is not None:
        return origin_of(referer.strip()) or "null"
    return None


def refuse_origin(refusals: RefusalLog, origin: str, action: str) -> HTTPError:
    """The 403 for a post from a foreign origin, logged (once per period, with the count)
    naming the origin and the option that would allow it: the classic cause is a page
    opened as ``http://localhost`` posting to a shop configured as ``127.0.0.1``."""
    refusals.note("origin", "refused to %s for origin %s: not the shop's own origin "
                  "(domain_url) nor in allowed_origins; add it to allowed_origins if "
                  "that page is yours", action, loggable(origin))
    return HTTPError(403, f"This origin may not {action}.", type="permission_error")
