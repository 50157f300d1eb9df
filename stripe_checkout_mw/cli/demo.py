"""The ``demo``: a shop, running, with or without a Stripe account.

``python -m stripe_checkout_mw demo`` is the first thing a newcomer runs, so it must
work right after installing the package, on a machine with no Stripe
account: without ``STRIPE_SECRET_KEY`` it starts the offline emulator
(:mod:`stripe_checkout_mw.testing`), points the emulator's webhooks at the shop, keeps
the orders in a temporary SQLite file and says plainly that no real money moves. With
an ``sk_test_`` key it uses Stripe's test mode instead and explains how to forward
webhooks with the Stripe CLI; a live key is refused.

The shop is the one shipped in the package (:mod:`stripe_checkout_mw.demo_shop`), or
with ``framework`` (``--framework bottle|pyramid|flask|wsgi|members``) one of the example shops
of a source checkout's ``examples/``, loaded exactly as their READMEs say. Either reads
its configuration from the environment variables the demo sets. In tests and scripts
use :class:`DemoShop`::

    with DemoShop(port=0) as shop:
        print(shop.url)          # http://127.0.0.1:PORT/
        shop.emulator.pay(...)   # the offline Stripe, when no key was given

Everything it starts (the shop's server thread, the emulator and its threads, the
temporary store) is stopped and removed by :meth:`DemoShop.stop`, and the environment
variables it set are put back. The command line itself (options, Ctrl-C) is
:mod:`stripe_checkout_mw.cli.main`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from ..errors import install_hint
from ..serving import BackgroundServer, ListenError
from ..settings.options import UI_MODES
from ..wsgi.middleware import CheckoutMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from ..testing import StripeEmulator

__all__ = ["EXAMPLES_ENV", "FRAMEWORKS", "HOME_PAGE", "DemoError", "DemoShop", "examples_dir",
           "find_middleware", "load_shop"]

#: ``--framework`` choices -> the example folder that holds that shop.
FRAMEWORKS = {"bottle": "bottle_shop", "pyramid": "pyramid_shop", "flask": "flask_shop",
              "wsgi": "plain_wsgi", "members": "members_area"}
#: ``--ui-mode`` choices are the options table's :data:`UI_MODES`; the two that pay on the
#: shop's page run ``examples/embedded_shop``.
PAGE_SHOP = "embedded_shop"
#: The environment variable naming another ``examples/`` folder.
EXAMPLES_ENV = "STRIPE_CHECKOUT_EXAMPLES"
#: Where the source, with its ``examples/``, is published.
HOME_PAGE = "https://github.com/stripe-checkout-mw/stripe-checkout-mw"
TEST_CARD = "4242 4242 4242 4242"

#: The variables the shops read; the demo sets some and restores all on stop.
_SHOP_ENV = ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE", "WEB_APP_URL",
             "STRIPE_CHECKOUT_STORE", "STRIPE_PUBLISHABLE_KEY", "STRIPE_JS_URL",
             "STRIPE_CHECKOUT_UI_MODE")


class DemoError(Exception):
    """Something the person running the demo must fix; the message says what, in one line."""


def examples_dir(framework: str) -> Path:
    """The ``examples/`` folder: ``$STRIPE_CHECKOUT_EXAMPLES``, else the source checkout's.

    :raises DemoError: it holds no shop for ``framework`` (an installed wheel has no
        ``examples/``); the message says where to get them and that the demo runs its
        own shop without ``--framework``.
    """
    configured = os.environ.get(EXAMPLES_ENV)
    folder = Path(configured) if configured else Path(__file__).resolve().parents[2] / (
        "examples")
    if not (folder / "catalog.json").is_file() or not (folder / FRAMEWORKS[framework]).is_dir():
        where = f"{EXAMPLES_ENV}={configured}" if configured else str(folder)
        raise DemoError(f"--framework {framework} runs an example shop from a source checkout "
                        f"and there is none at {where}; run the demo without --framework for "
                        f"the built-in shop, or get examples/ from {HOME_PAGE} (and point "
                        f"{EXAMPLES_ENV} at it)")
    return folder


def _load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DemoError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_framework(framework: str | None) -> None:
    if framework is not None and framework not in FRAMEWORKS:
        raise DemoError(f"--framework {framework!r}: choose one of {', '.join(FRAMEWORKS)}")


def load_shop(framework: str | None = None, examples: Path | None = None) -> WSGIApplication:
    """Build the built-in shop, or the example shop for ``framework`` the way its README does.

    Its configuration comes from the environment (``STRIPE_SECRET_KEY``, ``WEB_APP_URL``,
    ``STRIPE_WEBHOOK_SECRET``, ``STRIPE_API_BASE``, ``STRIPE_CHECKOUT_STORE``).

    :raises DemoError: the framework is unknown, its example or its package is not
        installed, or the shop's configuration was refused (the message is the
        middleware's, naming the option).
    """
    _check_framework(framework)
    try:
        if framework is None:
            from ..demo_shop import create_app

            return create_app()
        folder = (examples or examples_dir(framework)) / FRAMEWORKS[framework]
        if framework == "pyramid":
            serve = _load_module(folder / "serve.py", "stripe_checkout_demo_pyramid_serve")
            app: WSGIApplication = serve.load(folder / "development.ini")
        else:
            module = _load_module(folder / "app.py", f"stripe_checkout_demo_{framework}")
            app = module.create_app()
    except ModuleNotFoundError as exc:
        raise DemoError(f"the {framework or 'demo'} shop needs {exc.name}: "
                        + install_hint("demo", str(exc.name))) from None
    except (ValueError, TypeError, LookupError, OSError) as exc:
        raise DemoError(f"the {framework or 'demo'} shop's configuration: {exc}") from None
    return app


def _page_shop_dir(ui_mode: str) -> Path:
    """The ``examples/`` folder holding ``embedded_shop``, which shows the embedded modes."""
    configured = os.environ.get(EXAMPLES_ENV)
    folder = Path(configured) if configured else Path(__file__).resolve().parents[2] / (
        "examples")
    if not (folder / PAGE_SHOP / "app.py").is_file():
        where = f"{EXAMPLES_ENV}={configured}" if configured else str(folder)
        raise DemoError(f"--ui-mode {ui_mode} runs examples/{PAGE_SHOP} from a source "
                        f"checkout and there is none at {where}; get examples/ from "
                        f"{HOME_PAGE} (and point {EXAMPLES_ENV} at it)")
    return folder


def _load_page_shop(examples: Path) -> WSGIApplication:
    """``examples/embedded_shop``, configured from the environment as its README says."""
    try:
        module = _load_module(examples / PAGE_SHOP / "app.py", "stripe_checkout_demo_page")
        app: WSGIApplication = module.create_app()
    except (ValueError, TypeError, LookupError, OSError) as exc:
        raise DemoError(f"the {PAGE_SHOP} shop's configuration: {exc}") from None
    return app


def find_middleware(app: object) -> CheckoutMiddleware | None:
    """The ``CheckoutMiddleware`` in a shop: the app itself or Flask's ``wsgi_app``."""
    for candidate in (app, getattr(app, "wsgi_app", None)):
        if isinstance(candidate, CheckoutMiddleware):
            return candidate
    return None


class DemoShop:
    """An example shop served on ``host:port``, against the emulator or Stripe test mode.

    :param framework: ``None`` for the built-in shop, or the example shop for
        ``bottle``, ``pyramid``, ``flask`` or ``wsgi``.
    :param host: the interface to serve on.
    :param port: the port; 0 picks a free one (see :attr:`url`).
    :param offline: use the emulator even when ``STRIPE_SECRET_KEY`` is set.
    :param examples: the ``examples/`` folder for ``framework`` (default
        :func:`examples_dir`).
    :param ui_mode: ``hosted_page`` (the default), or ``embedded_page``/``elements``,
        which run ``examples/embedded_shop`` on the emulator's stand-in Stripe.js (on
        Stripe's, with ``STRIPE_PUBLISHABLE_KEY``, when a key is set).

    The shops read their configuration from ``os.environ``, so :meth:`start` sets the
    variables there and :meth:`stop` puts back what was there before.
    """

    def __init__(self, framework: str | None = None, *, host: str = "127.0.0.1",
                 port: int = 8000, offline: bool = False, examples: Path | None = None,
                 ui_mode: str = "hosted_page") -> None:
        _check_framework(framework)
        if ui_mode not in UI_MODES:
            raise DemoError(f"--ui-mode {ui_mode!r}: choose one of {', '.join(UI_MODES)}")
        self.ui_mode = ui_mode
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
    def shop_name(self) -> str:
        """What the banner calls the shop: the built-in one or an example's framework."""
        return "the built-in shop" if self.framework is None else f"the {self.framework} shop"

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
        if self.ui_mode != "hosted_page" and self.framework is not None:
            raise DemoError(f"--ui-mode {self.ui_mode} is shown by examples/{PAGE_SHOP}; "
                            f"drop --framework {self.framework}")
        examples = self.examples
        if self.framework is not None and examples is None:
            examples = examples_dir(self.framework)
        if self.ui_mode != "hosted_page" and examples is None:
            examples = _page_shop_dir(self.ui_mode)
        try:
            try:
                self.server = BackgroundServer(host=self.host, port=self.port)
            except ListenError as exc:
                raise DemoError(str(exc)) from None
            self.store_dir = Path(tempfile.mkdtemp(prefix="stripe-checkout-demo-"))
            settings = {
                "WEB_APP_URL": self.server.url,
                "STRIPE_CHECKOUT_STORE": f"sqlite:///{self.store_dir / 'orders.db'}",
            }
            if not key:
                from ..testing import StripeEmulator

                self.emulator = StripeEmulator(f"{self.server.url}/stripe-webhook").start()
                settings.update(STRIPE_SECRET_KEY=self.emulator.secret_key,
                                STRIPE_WEBHOOK_SECRET=self.emulator.webhook_secret,
                                STRIPE_API_BASE=self.emulator.api_base,
                                STRIPE_PUBLISHABLE_KEY=self.emulator.publishable_key,
                                STRIPE_JS_URL=self.emulator.stripe_js_url)
            if self.ui_mode != "hosted_page":
                settings["STRIPE_CHECKOUT_UI_MODE"] = self.ui_mode
            self._set_environ(settings)
            if self.ui_mode == "hosted_page":
                self.app = self.server.app = load_shop(self.framework, examples)
            else:
                assert examples is not None
                self.app = self.server.app = _load_page_shop(examples)
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
                f"stripe-checkout-mw demo: {self.shop_name}, on the OFFLINE Stripe emulator.",
                "No Stripe account is used and NO REAL MONEY MOVES.",
                f"Open {url} and pay with card {TEST_CARD} (any email).",
            ]
        else:
            key = self.environ.get("STRIPE_SECRET_KEY", "")
            lines = [
                f"stripe-checkout-mw demo: {self.shop_name}, in Stripe TEST mode ({key[:8]}...).",
                "Test mode: only test cards work and NO REAL MONEY MOVES.",
                f"Open {url} and pay with card {TEST_CARD}.",
                f"Webhooks: run  stripe listen --forward-to localhost:{port}/stripe-webhook",
            ]
            if not self.environ.get("STRIPE_WEBHOOK_SECRET"):
                lines.append("then restart the demo with STRIPE_WEBHOOK_SECRET set to the "
                             "whsec_... it prints.")
        if self.ui_mode != "hosted_page":
            script = self.emulator.stripe_js_url if self.emulator is not None else "Stripe"
            lines.insert(1, f"Payment on the shop's own page: ui_mode {self.ui_mode} "
                            f"(examples/{PAGE_SHOP}), Stripe.js from {script}.")
        lines.append(f"Orders are kept in {self.store_dir} until the demo stops. "
                     f"Ctrl-C stops it.")
        rule = "=" * max(len(line) for line in lines)
        return "\n".join([rule, *lines, rule])
