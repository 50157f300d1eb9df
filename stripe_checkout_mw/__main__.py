"""The command line: ``python -m stripe_checkout_mw <command>`` (or ``stripe-checkout-mw``).

Commands:

- ``emulator``: run the offline Stripe in the foreground until Ctrl-C::

      python -m stripe_checkout_mw emulator --port 12111 \\
          --webhook-url http://127.0.0.1:8000/stripe/webhook

  It prints its api_base, secret key and webhook secret; give them to the shop as
  its Stripe API base, ``STRIPE_SECRET_KEY`` and webhook secret.
- ``demo``: an example shop, on the emulator unless ``STRIPE_SECRET_KEY`` is set
  (:mod:`stripe_checkout_mw.demo`)::

      python -m stripe_checkout_mw demo --framework flask --port 8000

- ``check``: verify a deployment's configuration, one line per check, exit 0 or 1
  (:mod:`stripe_checkout_mw.deploycheck`)::

      python -m stripe_checkout_mw check --catalog catalog.json
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Callable

from . import demo, deploycheck

__all__ = ["main"]


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
    from .testing import StripeEmulator

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
    # SIGTERM stops as cleanly as Ctrl-C, so scripts and process managers can end it.
    with demo.stop_on_signals() as stop:
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
            print(f"webhook url:    {emulator.webhook_url or '(none: events are not sent)'}")
            print("Stripe emulator running; press Ctrl-C to stop.", flush=True)
            while not stop.wait(0.5):
                pass
        finally:
            emulator.stop()
    print("Stripe emulator stopped.", flush=True)
    return 0


# One entry per subcommand: name -> function adding its parser, which sets `run`
# (args -> exit status) on it.
_COMMANDS: dict[str, Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = {
    "emulator": _add_emulator,
    "demo": demo.add_command,
    "check": deploycheck.add_command,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand in ``_COMMANDS``."""
    parser = argparse.ArgumentParser(
        prog="stripe-checkout-mw",
        description="Stripe hosted Checkout for WSGI apps: tools.",
    )
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


if __name__ == "__main__":
    sys.exit(main())
