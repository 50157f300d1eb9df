"""The ``check`` command: is this deployment's configuration one that will take payments?

A shop finds most configuration mistakes at start-up (the middleware checks its options
at construction), but some only show against the outside world: a key Stripe refuses,
a catalog naming a Stripe price that was archived or belongs to the other mode, a store
whose database cannot be reached. ``check`` looks at all of them before customers do::

    python -m stripe_checkout_mw check --catalog catalog.json
    python -m stripe_checkout_mw check --ini production.ini

It reads what the middleware would read: the environment (``STRIPE_SECRET_KEY``,
``WEB_APP_URL``, ``STRIPE_WEBHOOK_SECRET``, ``STRIPE_CHECKOUT_STORE``, and
``STRIPE_API_BASE`` and ``STRIPE_CHECKOUT_CATALOG`` as the examples use them), then the
``[filter:checkout]`` section of an ``.ini`` file, then the command line options, each
overriding the one before. It prints one line per check, ``ok``, ``warn``, ``skip`` or
``FAIL``, and exits 1 if any failed. Secrets are never printed beyond their prefix.

The Stripe checks make read-only API calls (``prices.list`` with ``limit=1`` and
``prices.retrieve`` for each catalog price id); the store check creates the ledger's
tables if they are missing, as the middleware would on its first order.
"""

from __future__ import annotations

import argparse
import configparser
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import stripe

from .paste import check_keys, resolve_value
from .prices import Catalog
from .store import STORE_ENV, open_store

__all__ = ["Check", "DeploymentConfig", "add_command", "run_checks"]

OK, WARN, SKIP, FAIL = "ok", "warn", "skip", "FAIL"
_TEST_KEYS = ("sk_test_", "rk_test_")
_LIVE_KEYS = ("sk_live_", "rk_live_")


@dataclass
class Check:
    """One result line: ``status`` is ``ok``, ``warn``, ``skip`` or ``FAIL``."""

    status: str
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name}: {self.detail}"


@dataclass
class DeploymentConfig:
    """The settings ``check`` verifies, as strings (empty: not configured)."""

    secret_key: str = ""
    domain_url: str = ""
    success_url: str = ""
    cancel_url: str = ""
    stripe_api_base: str = ""
    webhook_secret: str = ""
    store: str = ""
    catalog: str = ""
    price_lookup: str = ""
    sources: list[str] = field(default_factory=list)

    @classmethod
    def from_environment(cls) -> DeploymentConfig:
        env = os.environ
        return cls(
            secret_key=env.get("STRIPE_SECRET_KEY", "").strip(),
            domain_url=env.get("WEB_APP_URL", "").strip(),
            stripe_api_base=env.get("STRIPE_API_BASE", "").strip(),
            webhook_secret=env.get("STRIPE_WEBHOOK_SECRET", "").strip(),
            store=env.get(STORE_ENV, "").strip(),
            catalog=env.get("STRIPE_CHECKOUT_CATALOG", "").strip(),
            sources=["environment"],
        )

    def read_ini(self, path: Path, section: str = "filter:checkout") -> None:
        """Take the options of the ``.ini`` file's checkout filter section.

        :raises ValueError: unreadable file, missing section or an unknown key.
        """
        parser = configparser.ConfigParser(
            defaults={"here": str(path.resolve().parent), "__file__": str(path.resolve())}
        )
        try:
            with path.open(encoding="utf-8") as handle:
                parser.read_file(handle)
        except OSError as exc:
            raise ValueError(f"--ini: cannot read {str(path)!r}: {exc.strerror}") from None
        except configparser.Error as exc:
            raise ValueError(f"--ini: {str(path)!r} is not a valid .ini file: {exc}") from None
        if not parser.has_section(section):
            raise ValueError(f"--ini: {str(path)!r} has no [{section}] section "
                             f"(name it with --section)")
        defaults = parser.defaults()
        options = {key: parser.get(section, key) for key in parser.options(section)
                   if key not in defaults and key != "use"
                   and not key.startswith(("set ", "get "))}
        check_keys(options)
        for key, raw in options.items():
            value = resolve_value(key, raw)
            if key == "catalog" and value and not Path(value).is_absolute():
                value = str(path.resolve().parent / value)
            if value and hasattr(self, key) and key != "sources":
                setattr(self, key, value.split()[0] if key == "webhook_secret" else value)
        self.sources.append(str(path))


def _mode(key: str) -> str:
    return "live" if key.startswith(_LIVE_KEYS) else "test"


def _absolute(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _check_key(config: DeploymentConfig) -> Check:
    key = config.secret_key
    if not key:
        return Check(FAIL, "secret key", "not set; set STRIPE_SECRET_KEY to the sk_test_... or "
                     "sk_live_... key from the Stripe dashboard")
    if key.startswith("pk_"):
        return Check(FAIL, "secret key", "this is a publishable key (pk_...); the server needs "
                     "the secret key (sk_...)")
    if not key.startswith(_TEST_KEYS + _LIVE_KEYS):
        return Check(FAIL, "secret key", "not a Stripe secret key (sk_test_... or sk_live_...)")
    return Check(OK, "secret key", f"{_mode(key)} mode ({key[:8]}...)")


def _check_urls(config: DeploymentConfig) -> Check:
    urls = {}
    domain = config.domain_url.rstrip("/")
    for name, explicit, default in (
        ("success_url", config.success_url, f"{domain}/success?session_id={{CHECKOUT_SESSION_ID}}"),
        ("cancel_url", config.cancel_url, f"{domain}/cancel"),
    ):
        if not explicit and not domain:
            return Check(FAIL, "redirect URLs", "no domain; set WEB_APP_URL to the shop's public "
                         "address, e.g. https://shop.example.com")
        urls[name] = explicit or default
    for name, url in urls.items():
        if not _absolute(url):
            source = name if getattr(config, name) else "WEB_APP_URL"
            return Check(FAIL, "redirect URLs", f"{source} {url!r} is not an absolute http(s) "
                         f"URL; write it in full, e.g. https://shop.example.com")
    if _mode(config.secret_key) == "live" and config.secret_key and not all(
            url.startswith("https:") for url in urls.values()):
        return Check(WARN, "redirect URLs", f"a live key with plain-http URLs "
                     f"({urls['success_url']}); customers return unencrypted")
    return Check(OK, "redirect URLs", f"{urls['success_url']} and {urls['cancel_url']}")


def _check_webhook_secret(config: DeploymentConfig) -> Check:
    secret = config.webhook_secret
    if not secret:
        return Check(WARN, "webhook secret", "not set: orders are fulfilled only when the success "
                     "page asks; set STRIPE_WEBHOOK_SECRET (whsec_...) to receive webhooks")
    if not secret.startswith("whsec_"):
        return Check(FAIL, "webhook secret", "not a webhook signing secret (whsec_...); copy it "
                     "from the webhook endpoint in the Stripe dashboard")
    return Check(OK, "webhook secret", "set (whsec_...)")


def _client(config: DeploymentConfig) -> tuple[stripe.StripeClient, Any]:
    """A client that does not retry (a check should answer quickly) and its HTTP client,
    to close when done (the SDK's ``close`` is untyped, hence ``Any``)."""
    http_client = stripe.RequestsClient(timeout=10)
    base = config.stripe_api_base.rstrip("/")
    client = stripe.StripeClient(
        config.secret_key, base_addresses={"api": base} if base else None,
        max_network_retries=0, http_client=http_client,
    )
    return client, http_client


def _stripe_error(exc: stripe.StripeError, where: str) -> str:
    if isinstance(exc, stripe.AuthenticationError):
        return "Stripe refused the key (revoked, mistyped or from another account)"
    if isinstance(exc, stripe.PermissionError):
        return "this restricted key may not read prices; allow 'Prices: read'"
    if isinstance(exc, stripe.APIConnectionError):
        return f"cannot reach Stripe at {where}"
    return f"Stripe answered {type(exc).__name__}: {exc.user_message or 'no message'}"


def _check_stripe(config: DeploymentConfig, client: stripe.StripeClient) -> Check:
    where = config.stripe_api_base or "https://api.stripe.com"
    try:
        client.v1.prices.list(params={"limit": 1})
    except stripe.StripeError as exc:
        return Check(FAIL, "stripe", _stripe_error(exc, where))
    note = "" if not config.stripe_api_base else f" at {where} (not api.stripe.com)"
    status = WARN if config.stripe_api_base and _mode(config.secret_key) == "live" else OK
    return Check(status, "stripe", f"the key is accepted{note}")


def _check_catalog(config: DeploymentConfig) -> tuple[Check, Catalog | None]:
    if config.price_lookup and config.price_lookup != "catalog":
        detail = {"lookup_keys": "prices are kept in Stripe by lookup key; nothing to check "
                  "before a checkout",
                  "client_prices": "the browser sets prices (client_prices)"}.get(
            config.price_lookup, f"a custom price lookup ({config.price_lookup})")
        return Check(WARN if config.price_lookup == "client_prices" else SKIP, "catalog",
                     detail), None
    if not config.catalog:
        return Check(SKIP, "catalog", "no catalog file given (--catalog or "
                     "STRIPE_CHECKOUT_CATALOG); prices not checked"), None
    try:
        catalog = Catalog.from_file(config.catalog)
    except ValueError as exc:
        return Check(FAIL, "catalog", str(exc).split(": ", 1)[-1]), None
    ids = len(catalog.stripe_price_ids)
    return Check(OK, "catalog", f"{config.catalog}: {len(catalog)} products, {ids} of them "
                 f"Stripe prices"), catalog


def _check_prices(catalog: Catalog, client: stripe.StripeClient | None, where: str) -> Check:
    ids = catalog.stripe_price_ids
    if not ids:
        return Check(SKIP, "catalog prices", "the catalog names no Stripe price ids")
    if client is None:
        return Check(SKIP, "catalog prices", "not checked without Stripe")
    problems = []
    for price_id in ids:
        try:
            price = client.v1.prices.retrieve(price_id)
        except stripe.InvalidRequestError:
            problems.append(f"{price_id} does not exist in this account and mode")
            continue
        except stripe.StripeError as exc:
            return Check(FAIL, "catalog prices", _stripe_error(exc, where))
        if not price.active:
            problems.append(f"{price_id} is archived (inactive)")
    if problems:
        return Check(FAIL, "catalog prices", "; ".join(problems))
    return Check(OK, "catalog prices", f"all {len(ids)} exist and are active")


def _check_store(config: DeploymentConfig) -> Check:
    if not config.store and not config.webhook_secret:
        return Check(SKIP, "store", f"not used (no webhook secret and no {STORE_ENV})")
    try:
        store = open_store(config.store or None)
    except ValueError as exc:
        return Check(FAIL, "store", str(exc).split(": ", 1)[-1])
    try:
        store.ensure_schema()
    except Exception as exc:
        # The driver's message may hold a host or user name but never the password,
        # which the URL form shown here has already had removed.
        return Check(FAIL, "store", f"{store.url} cannot be used: {type(exc).__name__}: {exc}")
    finally:
        store.close()
    return Check(OK, "store", f"{store.url} is reachable and its tables are ready")


def run_checks(config: DeploymentConfig) -> Iterator[Check]:
    """Every check, in order; the Stripe ones only once the key and API base make sense."""
    key = _check_key(config)
    yield key
    yield _check_urls(config)
    api_base_ok = not config.stripe_api_base or _absolute(config.stripe_api_base)
    if not api_base_ok:
        yield Check(FAIL, "stripe", f"STRIPE_API_BASE {config.stripe_api_base!r} is not an "
                    f"absolute URL")
    yield _check_webhook_secret(config)
    catalog_check, catalog = _check_catalog(config)
    if key.status != OK or not api_base_ok:
        if api_base_ok:
            yield Check(SKIP, "stripe", "not contacted without a usable secret key")
        yield catalog_check
        if catalog is not None:
            yield _check_prices(catalog, None, "")
    else:
        client, http_client = _client(config)
        try:
            stripe_check = _check_stripe(config, client)
            yield stripe_check
            yield catalog_check
            if catalog is not None:
                usable = client if stripe_check.status != FAIL else None
                yield _check_prices(catalog, usable,
                                    config.stripe_api_base or "https://api.stripe.com")
        finally:
            http_client.close()
    yield _check_store(config)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """The ``check`` command: print one line per check; 0 if none failed, else 1."""
    out = out or sys.stdout
    config = DeploymentConfig.from_environment()
    try:
        if args.ini:
            config.read_ini(Path(args.ini), args.section)
    except ValueError as exc:
        print(f"FAIL  configuration: {exc}", file=out)
        return 1
    for name in ("catalog", "store", "stripe_api_base", "domain_url"):
        value = getattr(args, name, None)
        if value:
            setattr(config, name, value)
    counts = {OK: 0, WARN: 0, SKIP: 0, FAIL: 0}
    for check in run_checks(config):
        counts[check.status] += 1
        print(check.line(), file=out, flush=True)
    verdict = "ready" if not counts[FAIL] else "NOT ready"
    print(f"{verdict}: {counts[OK]} ok, {counts[WARN]} warnings, {counts[FAIL]} failed "
          f"(read from {', '.join(config.sources)})", file=out)
    return 1 if counts[FAIL] else 0


def add_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``check`` to the command line's subcommands."""
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
    parser.set_defaults(run=run)
