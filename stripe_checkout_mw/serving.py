"""Serving a WSGI app from this package: on a background thread, or in the foreground.

:class:`BackgroundServer` is werkzeug's threaded development server on a thread of its
own. The demo serves its shop with it, and a test serves a wrapped app with it so the
emulator's webhooks have somewhere to go::

    with BackgroundServer(mw) as server:
        stripe_emulator.webhook_url = server.url + "/stripe-webhook"
        ...

:func:`serve_example` is what the example shops' ``python app.py`` runs: werkzeug's
``run_simple`` in the foreground, with one-line start-up errors.

Only werkzeug and the standard library are imported here, so starting a server needs
nothing else of the package.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from werkzeug.serving import BaseWSGIServer

__all__ = ["BackgroundServer", "ListenError", "serve_example"]


class ListenError(OSError):
    """The port cannot be bound; the message says which and what to do, in one line."""


class BackgroundServer:
    """werkzeug's threaded development server, serving ``app`` on a thread of its own.

    The port is bound in the constructor, so a busy port is a :class:`ListenError`
    there and ``port=0`` gives a free port whose number (:attr:`port`, :attr:`url`) is
    known before the app is built (the app may be set later through :attr:`app`).
    Use it as a context manager, or call :meth:`start` and :meth:`stop`.

    :param app: the WSGI application; may be ``None`` until :meth:`start`.
    :param host: the interface; ``127.0.0.1`` keeps the server off the network.
    :param port: the TCP port, 0 for any free one.
    """

    def __init__(self, app: WSGIApplication | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.app = app
        self.host = host
        try:
            self._socket: socket.socket | None = socket.create_server((host, port))
        except OSError as exc:
            reason = "is in use" if port and "in use" in str(exc) else f"failed: {exc.strerror}"
            raise ListenError(f"port {port} on {host} {reason}; choose another with --port"
                              ) from None
        self.port: int = self._socket.getsockname()[1]
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://HOST:PORT``, without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    def _dispatch(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        assert self.app is not None
        return self.app(environ, start_response)

    def start(self) -> BackgroundServer:
        """Serve on a daemon thread; returns ``self``."""
        from werkzeug.serving import make_server

        if self._socket is None or self.app is None:
            raise RuntimeError("BackgroundServer: give it an app, and start it only once")
        # werkzeug serves a duplicate of our socket, so ours is closed right after.
        self._server = make_server(self.host, self.port, self._dispatch, threaded=True,
                                   fd=self._socket.fileno())
        self._socket.close()
        self._socket = None
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name=f"wsgi-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_example(
    name: str,
    load_app: Callable[[], WSGIApplication],
    errors: tuple[type[Exception], ...] = (ValueError, TypeError),
) -> None:
    """Run an example shop on werkzeug's ``run_simple`` at ``$PORT`` (default 8000).

    What the examples' ``python app.py`` calls. Every way the start can fail (a bad
    ``PORT``, a misconfiguration raised as one of ``errors``, a port in use) exits with
    one line, prefixed by ``name``, that says what to fix instead of a traceback.
    """
    from werkzeug.serving import run_simple

    logging.basicConfig(level=logging.INFO)
    port = os.environ.get("PORT", "8000")
    if not port.isdigit():
        sys.exit(f"{name}: PORT={port!r} is not a port number")
    os.environ.setdefault("WEB_APP_URL", f"http://127.0.0.1:{port}")
    try:
        app = load_app()
    except errors as exc:
        sys.exit(f"{name}: {exc}")
    try:  # run_simple would print two lines and exit; one line says it better
        socket.create_server(("127.0.0.1", int(port))).close()
    except OSError as exc:
        sys.exit(f"{name}: cannot listen on port {port} ({exc.strerror}); set PORT to a free port")
    run_simple("127.0.0.1", int(port), app)
