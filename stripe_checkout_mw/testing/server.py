"""The emulator's HTTP server: HTTP/1.1 keep-alive on a thread per connection.

werkzeug's development server always answers ``Connection: close`` (werkzeug 3.1
disables keep-alive on purpose), and the SDK's ``requests.Session`` is meant to reuse
its connection, which the project's benchmark checks. So this is the standard
library's ``http.server`` with ``protocol_version = "HTTP/1.1"``, every response
carrying ``Content-Length``, and a clean stop: open connections are shut down so
their threads end, then joined, and no socket is left for the garbage collector.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Callable

__all__ = [
    "HttpRequest",
    "HttpResponse",
    "HttpServer",
    "html_response",
    "json_response",
    "redirect_response",
]

logger = logging.getLogger("stripe_checkout_mw.testing")

MAX_BODY = 1024 * 1024


@dataclass
class HttpRequest:
    """One request as the emulator sees it; header names are lower-cased."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpResponse:
    """One response; the server adds ``Content-Length``."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[HttpRequest], HttpResponse]


def json_response(status: int, body: dict[str, Any],
                  headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    """``body`` as indented JSON, the way Stripe's API answers."""
    return HttpResponse(status, json.dumps(body, indent=2).encode("utf-8"),
                        [("Content-Type", "application/json"), *(headers or [])])


def html_response(status: int, html: str,
                  headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    """A page of the emulator's own (never cached: it shows live state)."""
    return HttpResponse(status, html.encode("utf-8"),
                        [("Content-Type", "text/html; charset=utf-8"),
                         ("Cache-Control", "no-store"), *(headers or [])])


def redirect_response(location: str) -> HttpResponse:
    """A ``303 See Other``: where a page's form sends the browser next."""
    return HttpResponse(303, b"", [("Location", location), ("Cache-Control", "no-store")])


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # An idle keep-alive connection is dropped after this, so a long-running CLI
    # emulator does not collect one thread per forgotten client.
    timeout = 120
    # Headers and body go out in two writes; without TCP_NODELAY the client's delayed
    # ACK stalls every keep-alive response by ~40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            body = None
        if body is None:
            self.close_connection = True
            self._send(HttpResponse(413, b'{"error": {"type": "invalid_request_error", '
                                         b'"message": "Request body too large."}}',
                                    [("Content-Type", "application/json")]))
            return
        request = HttpRequest(
            method=self.command,
            target=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        try:
            response = self.server.app(request)
        except Exception:
            # A bug in the emulator must show as a Stripe-like 500, not a dropped
            # connection the client would retry blindly.
            logger.exception("the Stripe emulator failed on %s %s", self.command, self.path)
            response = HttpResponse(
                500,
                b'{"error": {"type": "api_error", "message": "The Stripe emulator failed '
                b'on this request; see its log."}}',
                [("Content-Type", "application/json")],
            )
        self._send(response)

    def _send(self, response: HttpResponse) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
        self.wfile.flush()

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = _dispatch

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s - " + format, self.address_string(), *args)


class _Server(socketserver.ThreadingMixIn, HTTPServer):
    # Handler threads are joined on stop (block_on_close), so none outlives the emulator.
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: Handler) -> None:
        super().__init__(address, _RequestHandler)
        self.app = app
        self.connections = 0
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self.stopping = threading.Event()

    def track(self, conn: socket.socket) -> None:
        with self._open_lock:
            self.connections += 1
            self._open.add(conn)
            late = self.stopping.is_set()
        if late:
            # Accepted just before the stop: hang up now rather than wait for its timeout.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def untrack(self, conn: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(conn)

    def close_open_connections(self) -> None:
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hung up (a timeout test) or a stop in progress is not an error
        # worth a traceback on stderr.
        logger.debug("connection from %s ended with an error", client_address,
                     exc_info=True)


class HttpServer:
    """A threaded HTTP/1.1 server on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, app: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port), app)
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def connections(self) -> int:
        """How many TCP connections were accepted so far."""
        return self._server.connections

    @property
    def stopping(self) -> threading.Event:
        """Set once :meth:`stop` begins; handlers sleep on it to be interruptible."""
        return self._server.stopping

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"stripe-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.close_open_connections()
        self._server.server_close()
