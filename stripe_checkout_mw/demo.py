"""The ``demo`` command: one of the example shops, running, with or without Stripe.

``python -m stripe_checkout_mw demo`` is the first thing a newcomer runs, so it must
work on a machine with no Stripe account: without ``STRIPE_SECRET_KEY`` it starts the
offline emulator (:mod:`stripe_checkout_mw.testing`), points the emulator's webhooks at
the shop, keeps the orders in a temporary SQLite file and says plainly that no real
money moves. With an ``sk_test_`` key it uses Stripe's test mode instead and explains
how to forward webhooks with the Stripe CLI; a live key is refused.

The shops are the ones in ``examples/`` (``--framework bottle|pyramid|flask|wsgi``),
loaded exactly as their READMEs say, with their configuration given through the
environment variables they read. In tests and scripts use :class:`DemoShop`::

    with DemoShop("flask", port=0) as shop:
        print(shop.url)          # http://127.0.0.1:PORT/
        shop.emulator.pay(...)   # the offline Stripe, when no key was given

Everything it starts (the shop's server thread, the emulator and its threads, the
temporary store) is stopped and removed by :meth:`DemoShop.stop`, and the environment
variables it set are put back.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any, Callable, TextIO

from .middleware import CheckoutMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from werkzeug.serving import BaseWSGIServer

    from .testing import StripeEmulator

__all__ = ["FRAMEWORKS", "BackgroundServer", "DemoError", "DemoShop", "add_command",
           "examples_dir", "load_shop", "run"]

#: ``--framework`` choices -> the example folder that holds that shop.
FRAMEWORKS = {"bottle": "bottle_shop", "pyramid": "pyramid_shop", "flask": "flask_shop",
              "wsgi": "plain_wsgi"}
#: The environment variable naming another ``examples/`` folder.
EXAMPLES_ENV = "STRIPE_CHECKOUT_EXAMPLES"
TEST_CARD = "4242 4242 4242 4242"

#: The variables the examples read; the demo sets some and restores all on stop.
_SHOP_ENV = ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE", "WEB_APP_URL",
             "STRIPE_CHECKOUT_STORE")


class DemoError(Exception):
    """Something the person running the demo must fix; the message says what, in one line."""


def examples_dir() -> Path:
    """The ``examples/`` folder: ``$STRIPE_CHECKOUT_EXAMPLES``, else the source checkout's."""
    configured = os.environ.get(EXAMPLES_ENV)
    folder = Path(configured) if configured else Path(__file__).resolve().parent.parent / (
        "examples")
    if not (folder / "catalog.json").is_file():
        where = f"{EXAMPLES_ENV}={configured}" if configured else str(folder)
        raise DemoError(f"the example shops are not at {where}; run the demo from a checkout "
                        f"of the repository (pip install -e .) or set {EXAMPLES_ENV} to its "
                        f"examples/ folder")
    return folder


def _load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DemoError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_shop(framework: str, examples: Path | None = None) -> WSGIApplication:
    """Build the example shop for ``framework`` the way its README does.

    Its configuration comes from the environment (``STRIPE_SECRET_KEY``, ``WEB_APP_URL``,
    ``STRIPE_WEBHOOK_SECRET``, ``STRIPE_API_BASE``, ``STRIPE_CHECKOUT_STORE``).

    :raises DemoError: the framework is unknown or not installed, or the shop's
        configuration was refused (the message is the middleware's, naming the option).
    """
    if framework not in FRAMEWORKS:
        raise DemoError(f"--framework {framework!r}: choose one of {', '.join(FRAMEWORKS)}")
    folder = (examples or examples_dir()) / FRAMEWORKS[framework]
    try:
        if framework == "pyramid":
            serve = _load_module(folder / "serve.py", "stripe_checkout_demo_pyramid_serve")
            app: WSGIApplication = serve.load(folder / "development.ini")
        else:
            module = _load_module(folder / "app.py", f"stripe_checkout_demo_{framework}")
            app = module.create_app()
    except ModuleNotFoundError as exc:
        raise DemoError(f"the {framework} shop needs {exc.name}: "
                        f"pip install 'stripe-checkout-mw[demo]'") from None
    except (ValueError, TypeError, LookupError, OSError) as exc:
        raise DemoError(f"the {framework} shop's configuration: {exc}") from None
    return app


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


def find_middleware(app: object) -> CheckoutMiddleware | None:
    """The ``CheckoutMiddleware`` in a shop: the app itself or Flask's ``wsgi_app``."""
    for candidate in (app, getattr(app, "wsgi_app", None)):
        if isinstance(candidate, CheckoutMiddleware):
            return candidate
    return None


class BackgroundServer:
    """werkzeug's threaded development server, serving ``app`` on a thread of its own.

    The port is bound in the constructor, so a busy port is a :class:`DemoError` there
    and ``port=0`` gives a free port whose number is known before the app is built
    (the app may be set later through :attr:`app`).

    :param app: the WSGI application; may be ``None`` until :meth:`start`.
    :param host: the interface; ``127.0.0.1`` keeps the shop off the network.
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
            raise DemoError(f"port {port} on {host} {reason}; choose another with --port") from None
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
                                        name=f"shop-server-{self.port}", daemon=True)
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


class DemoShop:
    """An example shop served on ``host:port``, against the emulator or Stripe test mode.

    :param framework: ``bottle``, ``pyramid``, ``flask`` or ``wsgi``.
    :param host: the interface to serve on.
    :param port: the port; 0 picks a free one (see :attr:`url`).
    :param offline: use the emulator even when ``STRIPE_SECRET_KEY`` is set.
    :param examples: the ``examples/`` folder (default :func:`examples_dir`).

    The shops read their configuration from ``os.environ``, so :meth:`start` sets the
    variables there and :meth:`stop` puts back what was there before.
    """

    def __init__(self, framework: str = "wsgi", *, host: str = "127.0.0.1", port: int = 8000,
                 offline: bool = False, examples: Path | None = None) -> None:
        if framework not in FRAMEWORKS:
            raise DemoError(f"--framework {framework!r}: choose one of {', '.join(FRAMEWORKS)}")
        self.framework = framework
        self.host = host
        self.port = port
        self.offline = offline
        self.examples = examples
        self.environ: MutableMapping[str, str] = os.environ
        self.emulator: StripeEmulator | None = None
        self.app: WSGIApplication | None = None
        self.server: BackgroundServer | None = None
        self.store_dir: Path | None = None
        self._saved: dict[str, str | None] = {}

    @property
    def url(self) -> str:
        """The shop's address, ``http://127.0.0.1:PORT/``."""
        if self.server is None:
            raise RuntimeError("start the demo first")
        return self.server.url + "/"

    @property
    def mode(self) -> str:
        """``"emulator"`` (no Stripe account involved) or ``"test"`` (Stripe test mode)."""
        return "emulator" if self.emulator is not None else "test"

    def start(self) -> DemoShop:
        """Start the emulator if needed, build the shop and serve it.

        :raises DemoError: a live key, a busy port, a missing framework or a refused
            configuration; everything started so far is stopped again.
        """
        key = "" if self.offline else self.environ.get("STRIPE_SECRET_KEY", "").strip()
        if key.startswith(("sk_live_", "rk_live_")):
            raise DemoError("STRIPE_SECRET_KEY is a live key; the demo takes test payments "
                            "only: use an sk_test_ key, or unset it for the offline emulator")
        if key and not key.startswith(("sk_test_", "rk_test_")):
            raise DemoError("STRIPE_SECRET_KEY is not a Stripe secret key (sk_test_...); "
                            "fix it, or unset it for the offline emulator")
        examples = self.examples or examples_dir()
        try:
            self.server = BackgroundServer(host=self.host, port=self.port)
            self.store_dir = Path(tempfile.mkdtemp(prefix="stripe-checkout-demo-"))
            settings = {
                "WEB_APP_URL": self.server.url,
                "STRIPE_CHECKOUT_STORE": f"sqlite:///{self.store_dir / 'orders.db'}",
            }
            if not key:
                from .testing import StripeEmulator

                self.emulator = StripeEmulator(f"{self.server.url}/stripe-webhook").start()
                settings.update(STRIPE_SECRET_KEY=self.emulator.secret_key,
                                STRIPE_WEBHOOK_SECRET=self.emulator.webhook_secret,
                                STRIPE_API_BASE=self.emulator.api_base)
            self._set_environ(settings)
            self.app = self.server.app = load_shop(self.framework, examples)
            self.server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server, the emulator and the shop's store; restore the environment."""
        if self.server is not None:
            self.server.stop()
        middleware = find_middleware(self.app)
        if middleware is not None:
            middleware.close()
        self.app = None
        if self.emulator is not None:
            self.emulator.stop()
        for name, value in self._saved.items():
            if value is None:
                self.environ.pop(name, None)
            else:
                self.environ[name] = value
        self._saved.clear()
        if self.store_dir is not None:
            shutil.rmtree(self.store_dir, ignore_errors=True)
            self.store_dir = None

    def __enter__(self) -> DemoShop:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _set_environ(self, settings: dict[str, str]) -> None:
        for name in _SHOP_ENV:
            self._saved.setdefault(name, self.environ.get(name))
        self.environ.update(settings)

    def banner(self) -> str:
        """What to tell the person who started the demo, in a box they cannot miss."""
        url = self.url
        port = self.server.port if self.server is not None else self.port
        if self.emulator is not None:
            lines = [
                f"stripe-checkout-mw demo: the {self.framework} shop, on the OFFLINE Stripe "
                f"emulator.",
                "No Stripe account is used and NO REAL MONEY MOVES.",
                f"Open {url} and pay with card {TEST_CARD} (any email).",
            ]
        else:
            key = self.environ.get("STRIPE_SECRET_KEY", "")
            lines = [
                f"stripe-checkout-mw demo: the {self.framework} shop, in Stripe TEST mode "
                f"({key[:8]}...).",
                "Test mode: only test cards work and NO REAL MONEY MOVES.",
                f"Open {url} and pay with card {TEST_CARD}.",
                f"Webhooks: run  stripe listen --forward-to localhost:{port}/stripe-webhook",
            ]
            if not self.environ.get("STRIPE_WEBHOOK_SECRET"):
                lines.append("then restart the demo with STRIPE_WEBHOOK_SECRET set to the "
                             "whsec_... it prints.")
        lines.append(f"Orders are kept in {self.store_dir} until the demo stops. "
                     f"Ctrl-C stops it.")
        rule = "=" * max(len(line) for line in lines)
        return "\n".join([rule, *lines, rule])


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by Ctrl-C or SIGTERM, so both stop a foreground command cleanly.

    Used by ``demo`` and ``emulator``; the previous handlers come back on exit.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}
    # Python allows signal handlers only on the main thread; elsewhere (embedded in a
    # thread of another program) the caller stops the command itself.
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run(framework: str = "wsgi", *, host: str = "127.0.0.1", port: int = 8000,
        offline: bool = False, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the demo in the foreground until Ctrl-C or SIGTERM; return the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    with stop_on_signals() as stop:
        shop = DemoShop(framework, host=host, port=port, offline=offline)
        try:
            shop.start()
        except DemoError as exc:
            print(f"demo: {exc}", file=err, flush=True)
            return 1
        try:
            print(shop.banner(), file=out, flush=True)
            while not stop.wait(0.5):
                pass
        finally:
            shop.stop()
    print("Demo stopped.", file=out, flush=True)
    return 0


def _run_args(args: argparse.Namespace) -> int:
    return run(args.framework, host=args.host, port=args.port, offline=args.offline)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)")
    return int(text)


def add_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``demo`` to the command line's subcommands."""
    parser = subparsers.add_parser(
        "demo",
        help="run an example shop (offline emulator unless STRIPE_SECRET_KEY is set)",
        description="Run one of the example shops. Without STRIPE_SECRET_KEY it uses the "
        "offline Stripe emulator (no account, no real money); with an sk_test_ key it uses "
        "Stripe's test mode. Live keys are refused. Ctrl-C stops it.",
    )
    parser.add_argument("--framework", choices=list(FRAMEWORKS), default="wsgi",
                        help="which example shop to run (default: %(default)s)")
    parser.add_argument("--port", type=_port, default=8000,
                        help="the shop's port; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the interface to serve on (default: %(default)s)")
    parser.add_argument("--offline", action="store_true",
                        help="use the offline emulator even when STRIPE_SECRET_KEY is set")
    parser.set_defaults(run=_run_args)
