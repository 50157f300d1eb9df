"""The command line: ``python -m stripe_checkout_mw COMMAND`` (or ``stripe-checkout-mw``).

Every command's options are declared here; what a command does lives in its own module,
imported only when that command runs (so ``--help`` and one command never load the
others: the emulator, the demo's shops, the deployment check):

- ``demo``: a working shop, on the offline emulator unless ``STRIPE_SECRET_KEY`` is set
  (:mod:`stripe_checkout_mw.cli.demo`)::

      python -m stripe_checkout_mw demo                     # the built-in shop
      python -m stripe_checkout_mw demo --framework flask   # an example, from a checkout

- ``emulator``: the offline Stripe in the foreground (:mod:`stripe_checkout_mw.testing`)::

      python -m stripe_checkout_mw emulator --port 12111 \\
          --webhook-url http://127.0.0.1:8000/stripe-webhook

  It prints its api_base, secret key and webhook secret; give them to the shop as
  its Stripe API base, ``STRIPE_SECRET_KEY`` and webhook secret.
- ``check``: verify a deployment's configuration, one line per check, exit 0 or 1
  (:mod:`stripe_checkout_mw.cli.check`)::

      python -m stripe_checkout_mw check --catalog catalog.json

- ``webhook-endpoint setup``: create or fix the shop's webhook endpoint in Stripe
  (:mod:`stripe_checkout_mw.cli.webhook_endpoint`)::

      python -m stripe_checkout_mw webhook-endpoint setup --ini production.ini --dry-run

- ``orders``, ``events``, ``fulfil-pending``, ``sync``: the operator's commands over the
  ledger (:mod:`stripe_checkout_mw.cli.operations`)::

      python -m stripe_checkout_mw orders list --status refunded --since 7d
      python -m stripe_checkout_mw sync --since 3d --ini production.ini
      python -m stripe_checkout_mw sync --full --fulfil-after 2026-12-01 --ini production.ini

- ``customers``: link the app's users to existing Stripe Customers (``link``, ``show``,
  ``unlink``)::

      python -m stripe_checkout_mw customers link user-42 cus_... --ini production.ini

- ``subscriptions``, ``grants``: the users' subscriptions and the features granted by hand::

      python -m stripe_checkout_mw subscriptions show user-42
      python -m stripe_checkout_mw grants add user-42 reports --until 2027-01-31

The foreground commands (``demo``, ``emulator``) stop cleanly on Ctrl-C and on SIGTERM
(:func:`stop_on_signals`). Exit status: 0 done, 1 failed (one line on stderr says why),
2 bad usage.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Callable, TextIO

from ..settings.options import UI_MODES

if TYPE_CHECKING:
    from .demo import DemoShop

__all__ = ["DEMO_FRAMEWORKS", "DEMO_UI_MODES", "build_parser", "main", "run_demo",
           "stop_on_signals"]

#: ``demo --framework`` choices: the example shops (``demo.FRAMEWORKS``), named here so
#: that building the parser imports no command's module.
DEMO_FRAMEWORKS = ("bottle", "pyramid", "flask", "wsgi", "members")
#: ``demo --ui-mode`` choices: the options table's ui modes.
DEMO_UI_MODES = UI_MODES


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by Ctrl-C or SIGTERM, so both stop a foreground command cleanly.

    The previous handlers come back on exit. Python allows signal handlers only on the
    main thread; elsewhere (embedded in a thread of another program) the caller sets
    the event itself.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)")
    return int(text)


# -- demo ----------------------------------------------------------------------------

def _add_demo(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a demo shop (offline emulator unless STRIPE_SECRET_KEY is set)",
        description="Run a demo shop. Without STRIPE_SECRET_KEY it uses the offline Stripe "
        "emulator (no account, no real money); with an sk_test_ key it uses Stripe's test "
        "mode. Live keys are refused. Ctrl-C stops it.",
    )
    parser.add_argument("--framework", choices=DEMO_FRAMEWORKS, default=None,
                        help="run that example shop of a source checkout's examples/ "
                        "instead of the built-in shop")
    parser.add_argument("--port", type=_port, default=8000,
                        help="the shop's port; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the interface to serve on (default: %(default)s)")
    parser.add_argument("--offline", action="store_true",
                        help="use the offline emulator even when STRIPE_SECRET_KEY is set")
    parser.add_argument("--ui-mode", choices=DEMO_UI_MODES, default="hosted_page",
                        help="where the customer pays: Stripe's hosted page, or the shop's "
                        "own page with Embedded Checkout or Elements (examples/embedded_shop"
                        "; default: %(default)s)")
    parser.set_defaults(run=_run_demo_args)


def _demo_shop(args: argparse.Namespace) -> DemoShop:
    """The shop the ``demo`` options describe (one keyword per option)."""
    from .demo import DemoShop

    return DemoShop(args.framework, host=args.host, port=args.port, offline=args.offline,
                    ui_mode=args.ui_mode)


def _run_demo_args(args: argparse.Namespace) -> int:
    return run_demo(_demo_shop(args))


def run_demo(shop: DemoShop, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``shop`` in the foreground until Ctrl-C or SIGTERM; return the exit status."""
    from .demo import DemoError

    out = out or sys.stdout
    err = err or sys.stderr
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    with stop_on_signals() as stop:
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


# -- emulator ------------------------------------------------------------------------

def _add_emulator(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "emulator",
        help="run the offline Stripe emulator in the foreground",
        description="Run the offline Stripe emulator (Checkout Sessions, Prices, Products, "
        "Events, a hosted payment page and signed webhooks) until Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=12111,
                        help="TCP port; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--webhook-url", default=None,
                        help="where to POST signed events, e.g. your shop's webhook path")
    parser.add_argument("--secret-key", default=None,
                        help="the sk_test_ key to report (default: random); any sk_test_ "
                        "key is accepted unless --strict-key")
    parser.add_argument("--strict-key", action="store_true",
                        help="accept only --secret-key, not any sk_test_ key")
    parser.add_argument("--webhook-secret", default=None,
                        help="the whsec_ secret to sign webhooks with (default: random); "
                        "set it to keep the same secret across restarts")
    parser.add_argument("--price", action="append", default=[], metavar="KEY=AMOUNT[:CUR]",
                        help="create a one-time price with this lookup key, amount in minor "
                        "units and currency (default usd), e.g. basic=1500:usd; repeatable")
    parser.add_argument("--delivery-attempts", type=int, default=3,
                        help="webhook attempts per event (default: %(default)s)")
    parser.add_argument("--delivery-backoff", type=float, default=1.0,
                        help="seconds before the first webhook retry, doubled for each next "
                        "(default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    parser.set_defaults(run=_run_emulator)


def _parse_price(text: str) -> tuple[str, int, str]:
    key, sep, rest = text.partition("=")
    amount, _, currency = rest.partition(":")
    if not sep or not key or not amount.isdigit():
        raise ValueError(f"--price {text!r}: expected KEY=AMOUNT[:CURRENCY], "
                         "e.g. basic=1500:usd")
    return key, int(amount), (currency or "usd").lower()


def _run_emulator(args: argparse.Namespace) -> int:
    from ..testing import StripeEmulator

    try:
        prices = [_parse_price(p) for p in args.price]
        emulator = StripeEmulator(
            args.webhook_url,
            host=args.host,
            port=args.port,
            secret_key=args.secret_key,
            webhook_secret=args.webhook_secret,
            accept_any_test_key=not args.strict_key,
            delivery_attempts=args.delivery_attempts,
            delivery_backoff=args.delivery_backoff,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with stop_on_signals() as stop:
        try:
            emulator.start()
        except OSError as exc:
            print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return 1
        try:
            for key, amount, currency in prices:
                price = emulator.add_price(amount, currency, lookup_key=key)
                print(f"price:          {price['id']} ({key}, {amount} {currency})")
            print(f"api_base:       {emulator.api_base}")
            print(f"secret key:     {emulator.secret_key}")
            print(f"webhook secret: {emulator.webhook_secret}")
            print(f"publishable key: {emulator.publishable_key}")
            print(f"stripe.js:      {emulator.stripe_js_url}")
            print(f"webhook url:    {emulator.webhook_url or '(none: events are not sent)'}")
            print("Stripe emulator running; press Ctrl-C to stop.", flush=True)
            while not stop.wait(0.5):
                pass
        finally:
            emulator.stop()
    print("Stripe emulator stopped.", flush=True)
    return 0


# -- check ---------------------------------------------------------------------------

def _add_check(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "check",
        help="check a deployment's configuration (key, URLs, catalog prices, store)",
        description="Check the configuration a deployment would use: the secret key's kind "
        "and that Stripe accepts it, absolute redirect URLs, the catalog file and that its "
        "Stripe prices exist, the webhook secret, and that the order store is reachable. "
        "Reads the environment (STRIPE_SECRET_KEY, WEB_APP_URL, STRIPE_WEBHOOK_SECRET, "
        "STRIPE_CHECKOUT_STORE, STRIPE_API_BASE, STRIPE_CHECKOUT_CATALOG), then --ini, then "
        "the options below. Exit status 0 when nothing failed, 1 otherwise.",
    )
    parser.add_argument("--ini", metavar="FILE",
                        help="read the checkout filter's options from this PasteDeploy file")
    parser.add_argument("--section", default="filter:checkout",
                        help="the .ini section of the filter (default: %(default)s)")
    parser.add_argument("--catalog", metavar="PATH", help="the catalog JSON file")
    parser.add_argument("--store", metavar="URL",
                        help="the order store URL (sqlite:///path.db or postgresql://...)")
    parser.add_argument("--stripe-api-base", metavar="URL",
                        help="another Stripe API address (such as the emulator)")
    parser.add_argument("--domain-url", metavar="URL", help="the shop's public address")
    parser.add_argument("--threads", metavar="N", type=int,
                        help="the server's threads per process (default: from --ini's "
                        "[server:main]), to warn when none are left beside the Stripe calls")
    parser.set_defaults(run=_run_check)


def _run_check(args: argparse.Namespace) -> int:
    from .check import run

    return run(args)


# -- webhook-endpoint -----------------------------------------------------------------

def _add_webhook_endpoint(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    parser = subparsers.add_parser(
        "webhook-endpoint", help="create or fix the shop's webhook endpoint in Stripe",
        description="The Stripe webhook endpoint at {domain_url}{webhook_path}: every event "
        "type the middleware handles, enabled, at the installed SDK's API version.")
    commands = parser.add_subparsers(dest="webhook_endpoint_command", metavar="setup",
                                     required=True)
    setup = commands.add_parser(
        "setup", help="create the endpoint, or enable it and add missing event types; "
        "prints a new endpoint's signing secret once",
        description="Create the endpoint (printing its signing secret once, and where to put "
        "it), or update the one found: enable it and add the event types it lacks. An "
        "endpoint at another API version cannot be changed: a second one is created and the "
        "switch's steps printed. Reads the configuration as check does.")
    setup.add_argument("--dry-run", action="store_true",
                       help="show what would change; change nothing")
    setup.add_argument("--ini", metavar="FILE",
                       help="read the checkout filter's options from this PasteDeploy file")
    setup.add_argument("--section", default="filter:checkout",
                       help="the .ini section of the filter (default: %(default)s)")
    setup.add_argument("--stripe-api-base", metavar="URL",
                       help="another Stripe API address (such as the emulator)")
    setup.add_argument("--domain-url", metavar="URL", help="the shop's public address")
    setup.set_defaults(run=_run_webhook_endpoint, catalog=None, store=None)


def _run_webhook_endpoint(args: argparse.Namespace) -> int:
    from .check import gather_options
    from .webhook_endpoint import run_setup

    try:
        given, _ = gather_options(args)
    except ValueError as exc:
        print(f"webhook-endpoint: {exc}", file=sys.stderr)
        return 1
    return run_setup(given, dry_run=args.dry_run)


# -- the ledger: orders, events, fulfil-pending, sync --------------------------------

def _ledger_options(parser: argparse.ArgumentParser, *, hooks: bool = False) -> None:
    """Where the ledger is (and, for commands that run jobs, the shop's fulfil hook)."""
    parser.add_argument("--store", metavar="URL", help="the order store URL (default: "
                        "STRIPE_CHECKOUT_STORE, or the --ini file's store)")
    parser.add_argument("--ini", metavar="FILE",
                        help="read the checkout filter's options from this PasteDeploy file")
    parser.add_argument("--section", default="filter:checkout",
                        help="the .ini section of the filter (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="JSON for scripts, not a table")
    if hooks:
        parser.add_argument("--fulfill", metavar="MODULE:FUNC",
                            help="the shop's fulfill hook (default: the --ini file's)")
        parser.add_argument("--no-fulfill", action="store_true",
                            help="record fulfilments without calling any hook")


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 100_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count from 1 to 100000")
    return int(text)


def _add_orders(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("orders", help="list orders or show one (read-only)",
                                   description="The orders in the ledger (read-only).")
    commands = parser.add_subparsers(dest="orders_command", metavar="list|show",
                                     required=True)
    listing = commands.add_parser("list", help="orders, newest first")
    listing.add_argument("--status", help="only orders with this status")
    listing.add_argument("--since", metavar="AGE", help="only orders created in the last AGE "
                         "(30m, 12h, 7d, 2w)")
    listing.add_argument("--email", help="only orders of this customer email")
    listing.add_argument("--limit", type=_count, default=100,
                         help="at most this many (default: %(default)s)")
    show = commands.add_parser("show", help="one order: items, amounts, status history, "
                               "refunds, disputes, fulfilment attempts")
    show.add_argument("session_id", metavar="cs_...")
    for sub in (listing, show):
        _ledger_options(sub)
    parser.set_defaults(run=_lazy("run_orders"))


def _add_events(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("events", help="list processed Stripe events (read-only)",
                                   description="The Stripe events the ledger processed.")
    commands = parser.add_subparsers(dest="events_command", metavar="list", required=True)
    listing = commands.add_parser("list", help="events, newest first")
    listing.add_argument("--failed", action="store_true",
                         help="only events with a job that ran and has not succeeded")
    listing.add_argument("--type", help="only events of this type")
    listing.add_argument("--limit", type=_count, default=100,
                         help="at most this many (default: %(default)s)")
    _ledger_options(listing)
    parser.set_defaults(run=_lazy("run_events"))


def _add_invoices(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("invoices", help="list a user's invoices (read-only)",
                                   description="The invoices in the ledger (read-only).")
    commands = parser.add_subparsers(dest="invoices_command", metavar="list", required=True)
    listing = commands.add_parser("list", help="one user's invoices, newest first")
    listing.add_argument("user_ref", metavar="USER_REF", help="the app's user id")
    listing.add_argument("--limit", type=int, choices=range(1, 101), default=20,
                         metavar="N", help="at most this many, 1 to 100 (default: "
                         "%(default)s)")
    listing.add_argument("--starting-after", metavar="in_...",
                         help="the invoices after this one (the last of the previous page)")
    _ledger_options(listing)

    def run(args: argparse.Namespace) -> int:
        from .invoices import run_invoices

        return run_invoices(args)
    parser.set_defaults(run=run)


def _add_fulfil_pending(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "fulfil-pending", help="run the fulfilments and hooks still due",
        description="Run the jobs still due (fulfilments whose last attempt failed, refund "
        "and dispute hooks), each once, under its lease. Exit 1 if one failed.")
    _ledger_options(parser, hooks=True)
    parser.set_defaults(run=_lazy("run_fulfil_pending"))


def _add_sync(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sync", help="recover what webhooks missed from Stripe's Events API",
        description="Replay Stripe's events since --since (at most 30 days) through the "
        "webhook path, run the jobs still due, and settle orders still open past their "
        "session's expiry. Safe to run from cron on every host. Needs STRIPE_SECRET_KEY (or "
        "the --ini file's secret_key). Exit 1 if anything failed.")
    parser.add_argument("--since", default="3d", metavar="AGE",
                        help="how far back (30m, 12h, 3d, 2w; default: %(default)s)")
    parser.add_argument("--full", action="store_true",
                        help="adopt what Stripe holds instead: this shop's completed sessions, "
                        "its users' Customers and their subscriptions, from Stripe's lists "
                        "(resumable; give --ini so the shop's marker is known)")
    parser.add_argument("--fulfil-after", metavar="DATE",
                        help="with --full: fulfil adopted orders whose session was created on "
                        "or after DATE (2026-12-01 or 2026-12-01T12:00, UTC); older ones are "
                        "recorded as fulfilled without calling fulfill (default: all)")
    _ledger_options(parser, hooks=True)
    parser.set_defaults(run=_lazy("run_sync"))


def _add_subscriptions(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "subscriptions", help="list subscriptions or show a user's (read-only)",
        description="The subscriptions in the ledger, as Stripe last said (read-only).")
    commands = parser.add_subparsers(dest="subscriptions_command", metavar="list|show",
                                     required=True)
    listing = commands.add_parser("list", help="subscriptions, newest first")
    listing.add_argument("--limit", type=_count, default=100,
                         help="at most this many (default: %(default)s)")
    show = commands.add_parser("show", help="one user's subscriptions, access, features "
                               "and grants")
    show.add_argument("user_ref", metavar="USER_REF", help="the app's user id")
    for sub in (listing, show):
        _ledger_options(sub)
    parser.set_defaults(run=_lazy("run_subscriptions"))


def _add_grants(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "grants", help="list, add or revoke features granted by hand",
        description="Features granted to a user by hand until a date (comped accounts, "
        "support credits), beside what their subscriptions give.")
    commands = parser.add_subparsers(dest="grants_command", metavar="list|add|revoke",
                                     required=True)
    listing = commands.add_parser("list", help="the current grants (read-only)")
    listing.add_argument("user_ref", metavar="USER_REF", nargs="?",
                         help="only this user's (default: every user's)")
    add = commands.add_parser("add", help="grant a feature until a date")
    add.add_argument("user_ref", metavar="USER_REF", help="the app's user id")
    add.add_argument("feature", metavar="FEATURE")
    add.add_argument("--until", required=True, metavar="DATE",
                     help="YYYY-MM-DD (through that day, UTC) or an ISO date and time")
    add.add_argument("--note", help="why (shown by grants list)")
    revoke = commands.add_parser("revoke", help="end a grant now")
    revoke.add_argument("user_ref", metavar="USER_REF", help="the app's user id")
    revoke.add_argument("feature", metavar="FEATURE")
    for sub in (listing, add, revoke):
        _ledger_options(sub)
    parser.set_defaults(run=_lazy("run_grants"))
def _add_customers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "customers", help="link the app's users to existing Stripe Customers",
        description="The ledger's map from the app's user ids (refs) to Stripe Customers.")
    commands = parser.add_subparsers(dest="customers_command", metavar="link|show|unlink",
                                     required=True)
    link = commands.add_parser("link", help="link an existing Stripe Customer to a user "
                               "(refused if linked to another user, or unknown to Stripe)")
    link.add_argument("user_ref", metavar="USER_REF")
    link.add_argument("customer_id", metavar="CUS_ID")
    show = commands.add_parser("show", help="a user's Customers and subscriptions (read-only)")
    unlink = commands.add_parser("unlink", help="remove a user's links (its subscriptions "
                                 "stay, without a user)")
    for sub in (show, unlink):
        sub.add_argument("user_ref", metavar="USER_REF")
    for sub in (link, show, unlink):
        _ledger_options(sub)
    parser.set_defaults(run=_lazy("run_customers"))


def _lazy(name: str) -> Callable[[argparse.Namespace], int]:
    """A command of :mod:`.operations`, imported only when it runs."""
    def run(args: argparse.Namespace) -> int:
        from . import operations

        command: Callable[[argparse.Namespace], int] = getattr(operations, name)
        return command(args)
    return run


# -- the parser ----------------------------------------------------------------------

#: One entry per subcommand, in the order ``--help`` lists them: a function adding its
#: parser, which sets ``run`` (args -> exit status) and imports nothing heavy.
_COMMANDS: dict[str, Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = {
    "demo": _add_demo,
    "emulator": _add_emulator,
    "check": _add_check,
    "webhook-endpoint": _add_webhook_endpoint,
    "orders": _add_orders,
    "events": _add_events,
    "invoices": _add_invoices,
    "fulfil-pending": _add_fulfil_pending,
    "sync": _add_sync,
    "subscriptions": _add_subscriptions,
    "grants": _add_grants,
    "customers": _add_customers,
}


def _package_version() -> str:
    """The installed distribution's version (the package's own when run from a checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stripe-checkout-mw")
    except PackageNotFoundError:
        from .. import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand in ``_COMMANDS``."""
    parser = argparse.ArgumentParser(
        prog="stripe-checkout-mw",
        description="Stripe hosted Checkout for WSGI apps: a demo shop, an offline Stripe "
        "emulator, a deployment check and the operator's commands over the order ledger.",
    )
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {_package_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _COMMANDS.values():
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] | None = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 2
    return run(args)
