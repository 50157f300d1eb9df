"""The ``check`` command: is this deployment's configuration one that will take payments?

A shop finds most configuration mistakes at start-up (the middleware checks its options
at construction), but some only show against the outside world: a key Stripe refuses,
a catalog naming a Stripe price that was archived or belongs to the other mode, a store
whose database cannot be reached. ``check`` looks at all of them before customers do::

    python -m stripe_checkout_mw check --catalog catalog.json
    python -m stripe_checkout_mw check --ini production.ini

With ``--ini`` it also loads each ``[app:NAME]`` section as ``pserve`` would (in a child
process, without the current folder on ``sys.path``), so an app ``pserve`` cannot import is
a ``FAIL``, and reads the server's thread count from ``[server:main]`` (its
``threads``; waitress's default of 4 when the section uses waitress without one), or from
``--threads N`` (gunicorn's ``--threads``, mod_wsgi's ``threads=``), and warns when the
threads leave none free beside ``max_concurrent_stripe_calls``: a hanging Stripe would
then hold every thread and webhooks and the app would wait for Stripe's timeout (no line
when neither says).

It reads what the middleware would read: the environment (``STRIPE_SECRET_KEY``,
``WEB_APP_URL``, ``STRIPE_WEBHOOK_SECRET``, ``STRIPE_CHECKOUT_STORE``, and
``STRIPE_API_BASE`` and ``STRIPE_CHECKOUT_CATALOG`` as the examples use them), then the
``[filter:checkout]`` section of an ``.ini`` file, then the command line options, each
overriding the one before. It prints one line per check, ``ok``, ``warn``, ``skip`` or
``FAIL``, and exits 1 if any failed. Secrets are never printed beyond their prefix.

Every option goes through the same conversion as ``CheckoutMiddleware`` and the
PasteDeploy filter (:func:`stripe_checkout_mw.settings.rules.load_settings`, and
:func:`stripe_checkout_mw.wsgi.paste.ini_options` for ``--ini``), so ``check`` refuses exactly
what the app would refuse at start-up; the first refused option is the one ``FAIL`` line.

It also reports the account's webhook endpoint at ``{domain_url}{webhook_path}``: missing,
disabled, lacking an event type the middleware handles, or at another API version than the
SDK's (:mod:`.webhook_endpoint`; ``webhook-endpoint setup`` fixes each).

``check`` changes nothing. The Stripe checks make read-only API calls (``prices.list``
with ``limit=1``, ``webhook_endpoints.list`` and ``prices.retrieve`` for each catalog price
id); the store check
opens the database read-only (a SQLite file that does not exist yet is not created; on
PostgreSQL it only queries) and reports tables the middleware will create on first use.
"""

from __future__ import annotations

import argparse
import configparser
import ipaddress
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, TextIO
from urllib.parse import urlsplit

import stripe

from ..checkout.prices import Catalog, ClientPrices, StripeLookupKeys
from ..errors import OptionError
from ..ledger.store import SCHEMA_VERSION, STORE_ENV, SQLiteStore, StoreError, open_store
from ..settings.rules import Settings, load_settings
from ..shop import build_client
from ..urls import origin_of
from ..wsgi.paste import PRICE_KEYS, ini_options, price_lookup_from_keys

__all__ = ["Check", "gather_options", "read_ini", "read_server_threads", "run", "run_checks"]

OK, WARN, SKIP, FAIL = "ok", "warn", "skip", "FAIL"
_STRIPE = "https://api.stripe.com"
#: The check line an option's mistake is reported on; others go on "configuration".
_TOPICS = {
    "secret_key": "secret key",
    "domain_url": "redirect URLs", "success_url": "redirect URLs", "cancel_url": "redirect URLs",
    "webhook_secret": "webhook secret", "webhook_path": "webhook secret",
    "stripe_api_base": "stripe",
    "store": "store",
    **{key: "catalog" for key in PRICE_KEYS},
}


@dataclass
class Check:
    """One result line: ``status`` is ``ok``, ``warn``, ``skip`` or ``FAIL``."""

    status: str
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name}: {self.detail}"


def _no_prices(items: Any, environ: Any) -> Any:
    """Stands in for a price lookup ``check`` was not given, so the other options are
    still checked; the catalog line then says prices were not checked."""
    raise AssertionError("check never prices an order")


def read_ini(path: Path, section: str = "filter:checkout") -> dict[str, Any]:
    """The options of the ``.ini`` file's checkout filter, as ``loadapp`` would pass them.

    :raises OptionError: unreadable file, missing section, or a key or value the filter
        refuses (``--ini`` for the file's own problems).
    """
    here = str(path.resolve().parent)
    parser = configparser.ConfigParser(defaults={"here": here, "__file__": str(path.resolve())})
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise OptionError("--ini", f"cannot read {str(path)!r}: {exc.strerror}") from None
    except configparser.Error as exc:
        raise OptionError("--ini", f"{str(path)!r} is not a valid .ini file: {exc}") from None
    if not parser.has_section(section):
        raise OptionError("--ini", f"{str(path)!r} has no [{section}] section (name it with "
                          f"--section)")
    defaults = parser.defaults()
    local_conf = {key: parser.get(section, key) for key in parser.options(section)
                  if key not in defaults and key != "use" and not key.startswith(("set ", "get "))}
    return ini_options(local_conf, here)


#: waitress's own default thread count (``threads`` not set).
WAITRESS_DEFAULT_THREADS = 4


def read_server_threads(path: Path, section: str = "server:main") -> int | None:
    """The server's threads from an ``.ini``'s ``[server:main]``: its ``threads``, or
    waitress's default when the section uses waitress without one; ``None`` when the
    file does not say (no such section, another server, an unreadable value)."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, configparser.Error):
        return None
    if not parser.has_section(section):
        return None
    value = parser.get(section, "threads", fallback="").strip()
    if value.isdigit():
        return int(value)
    if not value and "waitress" in parser.get(section, "use", fallback=""):
        return WAITRESS_DEFAULT_THREADS
    return None


def _check_threads(settings: Settings, threads: int) -> Check:
    calls = settings.max_concurrent_stripe_calls
    room = threads - calls
    if room < 1:
        return Check(WARN, "server threads", f"{threads} threads and up to {calls} Stripe "
                     f"calls at once (max_concurrent_stripe_calls): a hanging Stripe holds "
                     f"every thread and webhooks and the app wait for it; set "
                     f"max_concurrent_stripe_calls to {max(1, threads - 2)} or raise threads")
    return Check(OK, "server threads", f"{threads} threads, up to {calls} Stripe calls at "
                 f"once: {room} left for webhooks and the app while Stripe hangs")


def gather_options(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """The options the deployment gives, and where they were read from.

    The environment is read by the options' own defaults; then ``--ini``; then the
    command line's ``--catalog``, ``--store``, ``--stripe-api-base`` and ``--domain-url``.
    """
    options: dict[str, Any] = {}
    sources = ["environment"]
    if args.ini:
        options.update(read_ini(Path(args.ini), args.section))
        sources.append(args.ini)
    for name in ("store", "stripe_api_base", "domain_url"):
        value = getattr(args, name, None)
        if value:
            options[name] = value
    catalog = args.catalog or (
        None if args.ini else os.environ.get("STRIPE_CHECKOUT_CATALOG", "").strip())
    if catalog:
        options["price_lookup"] = price_lookup_from_keys({"catalog": catalog}, None)
    options.setdefault("price_lookup", _no_prices)
    return options, sources


def _mode(settings: Settings) -> str:
    return "live" if settings.livemode else "test"


def _check_key(settings: Settings) -> Check:
    return Check(OK, "secret key", f"{_mode(settings)} mode ({settings.secret_key[:8]}...)")


def _check_urls(settings: Settings) -> Check:
    # The embedded modes have a return_url (or, with redirect "never", none) instead.
    urls = [url for url in (settings.success_url, settings.cancel_url, settings.return_url)
            if url is not None]
    if settings.livemode and not all(url.startswith("https:") for url in urls):
        return Check(WARN, "redirect URLs", f"a live key with plain-http URLs "
                     f"({urls[0]}); customers return unencrypted")
    return Check(OK, "redirect URLs", " and ".join(urls) or "none (no redirect)")


def _check_webhook_secret(settings: Settings) -> Check:
    if not settings.webhook_secrets:
        return Check(WARN, "webhook secret", "not set: orders are fulfilled only when the success "
                     "page asks; set STRIPE_WEBHOOK_SECRET (whsec_...) to receive webhooks")
    return Check(OK, "webhook secret", f"set (whsec_...), received at {settings.webhook_path}")


def _is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_marker(settings: Settings) -> Check:
    """Whether this shop's sessions are told apart from other shops' on the same account.

    The derived marker names a URL: two developers' apps on ``http://127.0.0.1:8000``
    sharing a Stripe test account would take each other's sessions.
    """
    marker = settings.marker
    if marker is None:
        return Check(SKIP, "marker", "no return address and no shop_id: sessions are "
                     "recognised by their ledger row only")
    if not marker.derived:
        return Check(OK, "marker", f"shop_id {marker.value!r} names this shop's sessions")
    address = settings.success_url or settings.return_url or ""
    if not settings.livemode and _is_loopback(address):
        return Check(WARN, "marker", "a test key and a marker derived from a loopback address "
                     f"({origin_of(address)}): another app at that address on the same Stripe "
                     "account takes this shop's sessions; set shop_id (or "
                     "STRIPE_CHECKOUT_SHOP_ID) to a name of your own")
    return Check(OK, "marker", "derived from the return address (set shop_id to name the "
                 "shop instead)")


def _client(settings: Settings) -> tuple[stripe.StripeClient, Any]:
    """The shop's client, built as the shop builds it, but without retries (a check should
    answer quickly), and its HTTP client, to close when done (the SDK's ``close`` is
    untyped, hence ``Any``)."""
    return build_client(replace(settings, max_network_retries=0))


def _stripe_error(exc: stripe.StripeError, where: str) -> str:
    if isinstance(exc, stripe.AuthenticationError):
        return "Stripe refused the key (revoked, mistyped or from another account)"
    if isinstance(exc, stripe.PermissionError):
        return "this restricted key may not read prices; allow 'Prices: read'"
    if isinstance(exc, stripe.APIConnectionError):
        return f"cannot reach Stripe at {where}"
    return f"Stripe answered {type(exc).__name__}: {exc.user_message or 'no message'}"


def _check_stripe(settings: Settings, client: stripe.StripeClient) -> Check:
    where = settings.stripe_api_base or _STRIPE
    try:
        client.v1.prices.list(params={"limit": 1})
    except stripe.StripeError as exc:
        return Check(FAIL, "stripe", _stripe_error(exc, where))
    if settings.stripe_api_base is None:
        return Check(OK, "stripe", "the key is accepted")
    status = WARN if settings.livemode else OK
    return Check(status, "stripe", f"the key is accepted at {where} (not api.stripe.com)")


def _check_webhook_endpoint(settings: Settings, client: stripe.StripeClient) -> Check:
    """The account's endpoint at the shop's webhook URL: enabled, every handled event type,
    the SDK's API version (:mod:`.webhook_endpoint`). A defect fails a live deployment and
    warns in test mode (where ``stripe listen`` may forward events without an endpoint)."""
    from .webhook_endpoint import endpoint_defects

    name = "webhook endpoint"
    if not settings.webhook_secrets:
        return Check(SKIP, name, "no webhook secret: no endpoint to check")
    try:
        url, defects, notes = endpoint_defects(settings, client)
    except stripe.StripeError as exc:
        if isinstance(exc, stripe.PermissionError):
            return Check(WARN, name, "this restricted key may not read webhook endpoints; "
                         "allow 'Webhook Endpoints: read'")
        return Check(FAIL, name, _stripe_error(exc, settings.stripe_api_base or _STRIPE))
    if url is None:
        return Check(SKIP, name, "the shop's address is unknown (domain_url)")
    fix = "; fix: python -m stripe_checkout_mw webhook-endpoint setup"
    if defects:
        return Check(FAIL if settings.livemode else WARN, name, "; ".join(defects) + fix)
    return Check(OK, name, "; ".join([f"enabled at {url}, every handled event type, the "
                                      "SDK's API version", *notes]))


def _check_catalog(settings: Settings) -> Check:
    lookup: Callable[..., Any] = settings.price_lookup
    if lookup is _no_prices:
        return Check(SKIP, "catalog", "no catalog file given (--catalog or "
                     "STRIPE_CHECKOUT_CATALOG); prices not checked")
    if isinstance(lookup, StripeLookupKeys):
        return Check(SKIP, "catalog", "prices are kept in Stripe by lookup key; nothing to "
                     "check before a checkout")
    if isinstance(lookup, ClientPrices):
        return Check(WARN, "catalog", "the browser sets prices (client_prices)")
    if not isinstance(lookup, Catalog):
        name = getattr(lookup, "__qualname__", type(lookup).__qualname__)
        return Check(SKIP, "catalog", f"a custom price lookup ({name})")
    ids = len(lookup.stripe_price_ids)
    return Check(OK, "catalog", f"{len(lookup)} products, {ids} of them Stripe prices")


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


def _schema_state(version: object) -> Check | None:
    """A FAIL for a ledger written by a newer version of the package, else None."""
    try:
        newer = int(str(version)) > SCHEMA_VERSION
    except ValueError:
        newer = True
    if newer:
        return Check(FAIL, "store", f"the ledger's schema version {version} is not one this "
                     f"version ({SCHEMA_VERSION}) can use; upgrade stripe-checkout-mw")
    return None


def _check_store(settings: Settings) -> Check:
    """The store the middleware would open, probed read-only: nothing is created."""
    if not settings.uses_store:
        return Check(SKIP, "store", f"not used (no webhook secret and no {STORE_ENV})")
    url = settings.store
    try:
        store = open_store(url)  # the middleware's own checks of the URL; opens nothing
    except ValueError as exc:
        return Check(FAIL, "store", exc.detail if isinstance(exc, OptionError)
                     else f"the middleware would refuse it ({exc})")
    sqlite = isinstance(store, SQLiteStore)
    if isinstance(store, SQLiteStore) and not os.path.exists(store.path):
        store.close()
        return Check(OK, "store", f"{store.url} does not exist yet; the middleware creates it "
                     f"and its tables on first use (its folder is writable)")
    try:
        version = store.stored_version()
    except StoreError as exc:
        return Check(FAIL, "store", f"{store.url} cannot be used: {exc}")
    finally:
        store.close()
    state = "readable" if sqlite else "reachable"
    if version is None:
        return Check(OK, "store", f"{store.url} is {state}; the middleware creates its tables "
                     f"on first use")
    return _schema_state(version or SCHEMA_VERSION) or Check(
        OK, "store", f"{store.url} is {state} and its tables are ready")


def run_checks(settings: Settings, threads: int | None = None) -> Iterator[Check]:
    """Every check of converted settings, in order (``threads``: the server's, if known)."""
    yield _check_key(settings)
    yield _check_urls(settings)
    yield _check_webhook_secret(settings)
    yield _check_marker(settings)
    if threads is not None:
        yield _check_threads(settings, threads)
    catalog_check = _check_catalog(settings)
    catalog = settings.price_lookup if isinstance(settings.price_lookup, Catalog) else None
    client, http_client = _client(settings)
    try:
        stripe_check = _check_stripe(settings, client)
        yield stripe_check
        if stripe_check.status != FAIL:
            yield _check_webhook_endpoint(settings, client)
        yield catalog_check
        if catalog is not None:
            usable = client if stripe_check.status != FAIL else None
            yield _check_prices(catalog, usable, settings.stripe_api_base or _STRIPE)
    finally:
        http_client.close()
    yield _check_store(settings)


#: Loads one ``[app:NAME]`` section in a fresh interpreter whose ``sys.path`` is what
#: ``pserve``'s is: the environment's ``PYTHONPATH`` and the installed packages, but not
#: the current folder (``python -m`` and ``-c`` put it first; ``pserve`` does not).
_LOAD_LIKE_PSERVE = (
    "import sys; del sys.path[0]\n"
    "from paste.deploy import loadapp\n"
    "loadapp(sys.argv[1], name=sys.argv[2])\n")


def check_apps(path: Path, timeout: float = 60) -> Iterator[Check]:
    """Each ``[app:NAME]`` section of the ``.ini``, loaded as ``pserve`` would load it.

    Runs the app's factory (as ``pserve`` does) in a child process, so a module that only
    imports because ``check`` was started from its folder is reported, not hidden.
    """
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, configparser.Error):
        return
    for section in parser.sections():
        if not section.startswith("app:"):
            continue
        name = section[len("app:"):]
        try:
            answer = subprocess.run(  # noqa: S603  # this interpreter, fixed code
                [sys.executable, "-c", _LOAD_LIKE_PSERVE, f"config:{path.resolve()}", name],
                capture_output=True, text=True, timeout=timeout, cwd=path.resolve().parent)
        except subprocess.TimeoutExpired:
            yield Check(FAIL, "app", f"[{section}] did not load within {timeout:.0f} s")
            continue
        if answer.returncode == 0:
            yield Check(OK, "app", f"[{section}] loads as pserve loads it")
            continue
        lines = [line for line in answer.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {answer.returncode}"
        hint = (" (pserve does not put the .ini's folder on sys.path: install the module, "
                "or set PYTHONPATH)" if "ModuleNotFoundError" in reason else "")
        yield Check(FAIL, "app", f"[{section}] cannot be loaded as pserve loads it: "
                    f"{reason[:300]}{hint}")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """The ``check`` command: print one line per check; 0 if none failed, else 1."""
    out = out or sys.stdout
    sources = ["environment"] + ([args.ini] if args.ini else [])
    try:
        options, sources = gather_options(args)
        settings = load_settings(options)
    except ValueError as exc:  # an OptionError, or a price lookup's own ValueError
        topic = _TOPICS.get(exc.option, "configuration") if isinstance(exc, OptionError) else (
            "configuration")
        print(Check(FAIL, topic, str(exc)).line(), file=out)
        print(f"NOT ready: the configuration is refused (read from {', '.join(sources)})",
              file=out)
        return 1
    threads = getattr(args, "threads", None)
    if threads is None and args.ini:
        threads = read_server_threads(Path(args.ini))
    counts = {OK: 0, WARN: 0, SKIP: 0, FAIL: 0}
    checks = run_checks(settings, threads)
    if args.ini:
        checks = itertools.chain(checks, check_apps(Path(args.ini)))
    for check in checks:
        counts[check.status] += 1
        print(check.line(), file=out, flush=True)
    verdict = "ready" if not counts[FAIL] else "NOT ready"
    print(f"{verdict}: {counts[OK]} ok, {counts[WARN]} warnings, {counts[FAIL]} failed "
          f"(read from {', '.join(sources)})", file=out)
    return 1 if counts[FAIL] else 0
