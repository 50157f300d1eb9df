"""The operator's commands over the ledger: ``orders``, ``events``, ``fulfil-pending``, ``sync``.

Each reads its configuration as the middleware does, through the same
:func:`~stripe_checkout_mw.settings.rules.load_settings`, and builds the same
:class:`~stripe_checkout_mw.shop.Shop`: the environment (``STRIPE_CHECKOUT_STORE``,
``STRIPE_SECRET_KEY`` ...), then ``--ini FILE`` (its ``[filter:checkout]`` section), then
``--store URL``. With the shop's ``.ini`` a command sees what the app sees, its session
marker too::

    python -m stripe_checkout_mw orders list --status paid --since 7d
    python -m stripe_checkout_mw orders show cs_live_...
    python -m stripe_checkout_mw events list --failed
    python -m stripe_checkout_mw fulfil-pending --ini production.ini
    python -m stripe_checkout_mw sync --since 3d --ini production.ini

``subscriptions list|show USER_REF`` show what the app's ``mw.subscriptions`` answers (the
features from the ``--ini`` file's ``features``); ``grants list|add|revoke`` keep the
features granted by hand (:mod:`stripe_checkout_mw.billing.entitlements`)::

    python -m stripe_checkout_mw grants add user-42 reports --until 2027-01-31 --note "#81"

``orders``, ``events``, ``subscriptions`` and ``grants list`` only read: on a store that
does not exist yet they say so and show nothing, creating nothing (on an existing ledger
they may add the tables a newer version needs, as the middleware does on start);
``fulfil-pending`` runs the jobs still due and ``sync`` also replays Stripe's events
(:mod:`stripe_checkout_mw.news.reconcile`): those two call the shop's hooks, so they need
its ``fulfill`` (from ``--ini``, or ``--fulfill module:function``, or ``--no-fulfill`` to
record fulfilments without calling anything). Only ``sync`` calls Stripe and needs the
secret key (``STRIPE_SECRET_KEY`` or the ``.ini`` file's).

Output is a table for people, or JSON with ``--json``. Nothing prints a secret; only the
``orders`` commands print customers' emails. Exit status 0 done, 1 failed (one line on stderr
says why, or the report lists the failures), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OptionError
from ..settings.options import configured
from ..settings.rules import load_settings

if TYPE_CHECKING:
    from ..settings.rules import Settings
    from ..shop import Shop

__all__ = ["run_events", "run_fulfil_pending", "run_grants", "run_orders",
           "run_subscriptions", "run_sync"]


class CommandError(Exception):
    """A one-line reason for exit status 1 (or ``status``)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


#: The key of a command that never calls Stripe, when none is configured: the shop's
#: client is then never used.
_UNUSED_KEY = "sk_test_unused"


def _settings(args: argparse.Namespace, *, needs_stripe: bool) -> Settings:
    """The settings the middleware would get from the same configuration: the environment,
    then ``--ini``, then ``--store`` and ``--fulfill``, through the same ``load_settings``."""
    from .check import read_ini

    given: dict[str, Any] = read_ini(Path(args.ini), args.section) if args.ini else {}
    if args.store:
        given["store"] = args.store
    if getattr(args, "fulfill", None):
        given["fulfill"] = args.fulfill
    if not needs_stripe and not configured(given, "secret_key"):
        given["secret_key"] = _UNUSED_KEY
    return load_settings(given, serving=False)


def _ledger(settings: Settings) -> Any:
    """The ledger the settings name (the default URL when they keep none), not yet opened."""
    from ..ledger.store import open_store

    try:
        return open_store(settings.store)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _open_shop(settings: Settings) -> Shop:
    """The shop of a command that writes, built as the middleware builds it, on its ledger,
    whose schema is created or upgraded first."""
    store = _ledger(settings)
    try:
        store.ensure_schema()
    except BaseException:
        store.close()
        raise
    return _shop_on(settings, store)


def _shop_to_read(args: argparse.Namespace, out: Any, nothing: object) -> Shop | None:
    """The shop of a command that only reads (and never calls Stripe), or ``None`` (after
    saying so, and printing ``nothing`` as the JSON answer) when there is no ledger yet:
    reading creates nothing."""
    settings = _settings(args, needs_stripe=False)
    store = _ledger(settings)
    try:
        version = store.stored_version()
    except BaseException:
        store.close()
        raise
    if version is not None:
        return _shop_on(settings, store)
    store.close()
    message = f"no ledger yet at {store.url}; the app creates it on first use"
    if args.json:
        print(f"{args.command}: {message}", file=sys.stderr)
        _json(out, nothing)
    else:
        print(message, file=out)
    return None


def _ledger_of(shop: Shop) -> Any:
    assert shop.store is not None  # every command's shop is opened on a ledger
    return shop.store


def _shop_on(settings: Settings, store: Any) -> Shop:
    from ..shop import Shop

    # No "handlers" runner: handlers registered in code with mw.on run only in the app (or
    # mw.sync()); their jobs wait for it instead of being marked done here.
    return Shop.from_settings(settings, store=store, runs_handlers=False)


def _run(args: argparse.Namespace, command: Any) -> int:
    """Run ``command(args, out)`` with errors as one line on stderr and an exit status."""
    from ..ledger.store import StoreError

    try:
        return int(command(args, sys.stdout))
    except CommandError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return exc.status
    except OptionError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"{args.command}: the ledger cannot be read: {exc}", file=sys.stderr)
        return 1


# -- output ----------------------------------------------------------------------------------

def _when(value: float | None) -> str:
    if not value:
        return ""
    return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _iso(value: float | None) -> str | None:
    return datetime.fromtimestamp(value, timezone.utc).isoformat() if value else None


def _money(amount: int | None, currency: str | None) -> str:
    if amount is None:
        return ""
    return f"{amount / 100:.2f} {currency or ''}".strip()


def _table(out: Any, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in header], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(),
              file=out)


def _json(out: Any, value: object) -> None:
    json.dump(value, out, indent=2, sort_keys=True)
    print(file=out)


# -- orders ----------------------------------------------------------------------------------

def run_orders(args: argparse.Namespace) -> int:
    """``orders list`` and ``orders show``."""
    return _run(args, _orders_list if args.orders_command == "list" else _orders_show)


def _orders_list(args: argparse.Namespace, out: Any) -> int:
    from ..ledger.orders import STATUSES
    from ..ledger.reports import LedgerReports
    from ..news.reconcile import parse_duration

    if args.status is not None and args.status not in STATUSES:
        raise CommandError(f"--status {args.status!r}: use one of {', '.join(STATUSES)}", 2)
    try:
        since = parse_duration(args.since).total_seconds() if args.since else None
    except ValueError as exc:
        raise CommandError(str(exc), 2) from None
    shop = _shop_to_read(args, out, [])
    if shop is None:
        return 0
    store = _ledger_of(shop)
    try:
        rows = LedgerReports(store).recent_orders(
            created_since=time.time() - since if since else 0.0, status=args.status,
            email=args.email, limit=args.limit)
    finally:
        shop.close()
    orders = [{
        "session_id": r[0], "status": r[1], "amount_total": r[2], "currency": r[3],
        "customer_email": r[4], "fulfilled": bool(r[5]), "created_at": _iso(r[6]),
        "amount_refunded": int(r[7] or 0), "dispute": r[8],
    } for r in rows]
    if args.json:
        _json(out, orders)
        return 0
    _table(out, ("CREATED (UTC)", "SESSION", "STATUS", "TOTAL", "REFUNDED", "FULFILLED",
                 "EMAIL"), [
        (_when(r[6]), r[0], r[1] + (f" ({r[8]})" if r[8] else ""), _money(r[2], r[3]),
         _money(r[7], r[3]) if r[7] else "", "yes" if r[5] else "no", r[4] or "")
        for r in rows])
    print(f"{len(rows)} order(s)" + (" (the newest; raise --limit for more)"
                                    if len(rows) == args.limit else ""), file=out)
    return 0


def _orders_show(args: argparse.Namespace, out: Any) -> int:
    from ..ledger.payments import PaymentLedger
    from ..ledger.reports import LedgerReports
    from ..news.status import SESSION_ID_PATTERN

    if not SESSION_ID_PATTERN.fullmatch(args.session_id):
        raise CommandError(f"{args.session_id!r} is not a Checkout Session id "
                           "(cs_test_... or cs_live_...)", 2)
    shop = _shop_to_read(args, out, None)
    if shop is None:
        return 0
    store = _ledger_of(shop)
    try:
        order = store.get(args.session_id)
        if order is None:
            raise CommandError(f"no order {args.session_id} in {store.url}")
        payment = PaymentLedger(store).get(order.session_id)
        reports = LedgerReports(store)
        events = reports.events_of(order.session_id)
        jobs = reports.jobs_of(order.session_id)
    finally:
        shop.close()
    refunds = payment.refunds if payment else {}
    disputes = payment.disputes if payment else {}
    shown = {
        "session_id": order.session_id, "status": order.status, "mode": order.mode,
        "payment_status": order.payment_status, "currency": order.currency,
        "amount_subtotal": order.amount_subtotal, "amount_total": order.amount_total,
        "amount_refunded": payment.amount_refunded if payment else 0,
        "dispute": payment.dispute_status if payment else None,
        "payment_intent": payment.payment_intent if payment else None,
        "customer_email": order.customer_email,
        "client_reference_id": order.client_reference_id,
        "fulfilled": order.fulfilled, "created_at": _iso(order.created_at),
        "updated_at": _iso(order.updated_at), "fulfilled_at": _iso(order.fulfilled_at),
        "items": order.items,
        "history": [{"at": _iso(e.processed_at), "event": e.event_type, "event_id": e.event_id}
                    for e in events],
        "refunds": [{"id": k, **v} for k, v in refunds.items()],
        "disputes": [{"id": k, **v} for k, v in disputes.items()],
        "jobs": [{"kind": j.kind, "key": j.key, "attempts": j.attempt,
                  "state": _job_state(j.lease_until, j.done_at, j.retry_at),
                  "done_at": _iso(j.done_at), "retry_at": _iso(j.retry_at)} for j in jobs],
    }
    if args.json:
        _json(out, shown)
        return 0
    for label, key in (("Order", "session_id"), ("Status", "status"), ("Email", "customer_email"),
                       ("Reference", "client_reference_id"), ("Payment", "payment_intent"),
                       ("Created", "created_at"), ("Fulfilled at", "fulfilled_at")):
        if shown[key] is not None:
            print(f"{label + ':':<14}{shown[key]}", file=out)
    print(f"{'Total:':<14}{_money(order.amount_total, order.currency)}"
          + (f", refunded {_money(int(shown['amount_refunded']), order.currency)}"
             if shown["amount_refunded"] else ""), file=out)
    if shown["dispute"]:
        print(f"{'Dispute:':<14}{shown['dispute']}", file=out)
    sections: list[tuple[str, Sequence[str], list[Sequence[object]]]] = [
        ("Items", ("NAME", "QTY", "UNIT", "PRICE"), [
            (i.get("name"), i.get("quantity"), _money(i.get("unit_amount"), i.get("currency")),
             i.get("price")) for i in order.items]),
        ("Status history", ("AT (UTC)", "EVENT", "ID"), [
            (_when(order.created_at), "created", ""),
            *[(_when(e.processed_at), e.event_type, e.event_id) for e in events]]),
        ("Refunds", ("ID", "AMOUNT", "STATUS"), [
            (k, _money(v.get("amount"), order.currency), v.get("status"))
            for k, v in refunds.items()]),
        ("Disputes", ("ID", "AMOUNT", "STATUS", "REASON"), [
            (k, _money(v.get("amount"), order.currency), v.get("status"), v.get("reason"))
            for k, v in disputes.items()]),
        ("Jobs (fulfilment and hooks)", ("KIND", "ATTEMPTS", "STATE", "DONE (UTC)",
                                         "RETRY AT (UTC)"), [
            (j.kind, j.attempt, _job_state(j.lease_until, j.done_at, j.retry_at),
             _when(j.done_at), "" if j.done_at else _when(j.retry_at)) for j in jobs]),
    ]
    for title, header, rows in sections:
        print(f"\n{title}:", file=out)
        if rows:
            _table(out, header, rows)
        else:
            print("  (none)", file=out)
    return 0


def _job_state(lease_until: float, done_at: float | None, retry_at: float = 0.0) -> str:
    """``done``, ``running`` (leased), ``waiting`` (failed; due again at its retry time) or
    ``pending`` (due now)."""
    if done_at is not None:
        return "done"
    now = time.time()
    if float(lease_until) > now:
        return "running"
    return "waiting" if float(retry_at) > now else "pending"


# -- events ----------------------------------------------------------------------------------

def run_events(args: argparse.Namespace) -> int:
    """``events list``: the events the ledger processed, newest first."""
    return _run(args, _events_list)


def _events_list(args: argparse.Namespace, out: Any) -> int:
    from ..ledger.reports import LedgerReports

    shop = _shop_to_read(args, out, [])
    if shop is None:
        return 0
    store = _ledger_of(shop)
    try:
        rows = LedgerReports(store).recent_events(event_type=args.type, failing=args.failed,
                                                  limit=args.limit)
    finally:
        shop.close()
    if args.json:
        _json(out, [{"event_id": r.event_id, "type": r.event_type, "session_id": r.session_id,
                     "processed_at": _iso(r.processed_at),
                     **({"attempts": r.attempt, "retry_at": _iso(r.retry_at)}
                        if args.failed else {})} for r in rows])
        return 0
    if args.failed:
        # The failing job's attempts so far and when it is due again (empty: due now).
        _table(out, ("PROCESSED (UTC)", "EVENT", "TYPE", "SESSION", "ATTEMPTS",
                     "RETRY AT (UTC)"),
               [(_when(r.processed_at), r.event_id, r.event_type, r.session_id or "",
                 r.attempt, _when(r.retry_at) if r.retry_at > time.time() else "now")
                for r in rows])
    else:
        _table(out, ("PROCESSED (UTC)", "EVENT", "TYPE", "SESSION"),
               [(_when(r[3]), r[0], r[1], r[2] or "") for r in rows])
    print(f"{len(rows)} event(s)" + (" with a job still failing" if args.failed else ""),
          file=out)
    return 0


# -- fulfil-pending and sync -----------------------------------------------------------------

def run_fulfil_pending(args: argparse.Namespace) -> int:
    """``fulfil-pending``: run the jobs still due (fulfilments, refund and dispute hooks)."""
    return _run(args, _fulfil_pending)


def run_sync(args: argparse.Namespace) -> int:
    """``sync``: :class:`~stripe_checkout_mw.news.reconcile.Reconciler` from the command line."""
    return _run(args, _sync)


def _reconciling_shop(args: argparse.Namespace, *, needs_stripe: bool) -> Shop:
    """The shop of ``sync`` and ``fulfil-pending``, which call the shop's hooks."""
    settings = _settings(args, needs_stripe=needs_stripe)
    if settings.fulfill is None and not args.no_fulfill:
        raise CommandError("no fulfill hook: give --ini FILE (its fulfill), --fulfill "
                           "module:function, or --no-fulfill to record fulfilments without "
                           "calling anything", 2)
    return _open_shop(settings)


def _fulfil_pending(args: argparse.Namespace, out: Any) -> int:
    from ..ledger.reports import LedgerReports
    from ..news.reconcile import SyncReport

    shop = _reconciling_shop(args, needs_stripe=False)
    report = SyncReport(since=time.time())
    try:
        assert shop.reconciler is not None  # the shop has a ledger
        shop.reconciler.run_due_jobs(report)
        # Failed jobs run on their schedule, not on demand: show what waits, and until when.
        waiting = LedgerReports(_ledger_of(shop)).waiting_jobs(time.time(), _WAITING_SHOWN)
    finally:
        shop.close()
    if args.json:
        _json(out, {"jobs_run": report.jobs_run, "busy": report.busy,
                    "failures": report.failures, "ok": report.ok,
                    "waiting": [{"kind": w.kind, "key": w.key, "subject": w.subject,
                                 "attempts": w.attempt, "retry_at": _iso(w.retry_at)}
                                for w in waiting]})
    else:
        print(f"jobs run: {report.jobs_run}", file=out)
        if report.busy:
            print(f"orders left alone: {report.busy} (a job held by another worker, or an "
                  "event's handlers, which run in the app)", file=out)
        print(f"failures: {len(report.failures)}", file=out)
        for failure in report.failures:
            print(f"  {failure}", file=out)
        print(f"waiting for their retry time: {len(waiting)}"
              + (f" (at most {_WAITING_SHOWN} shown)" if len(waiting) >= _WAITING_SHOWN else ""),
              file=out)
        if waiting:
            _table(out, ("KIND", "SUBJECT", "ATTEMPTS", "RETRY AT (UTC)"),
                   [(w.kind, w.subject, w.attempt, _when(w.retry_at)) for w in waiting])
    return 0 if report.ok else 1


#: Jobs waiting for their retry time that ``fulfil-pending`` lists.
_WAITING_SHOWN = 50


def _sync(args: argparse.Namespace, out: Any) -> int:
    from ..news.reconcile import parse_since

    try:
        since, clamped = parse_since(args.since)
    except ValueError as exc:
        raise CommandError(str(exc), 2) from None
    if clamped:
        print("sync: warning: --since is limited to Stripe's 30 days of events; using 30d",
              file=sys.stderr)
    fulfil_after = _fulfil_after(args)
    shop = _reconciling_shop(args, needs_stripe=True)
    try:
        if args.full and shop.settings.marker is None:
            print("sync: warning: no marker (give --ini with the shop's success_url): only "
                  "sessions already in the ledger are adopted", file=sys.stderr)
        report = (shop.sync(full=True, fulfil_after=fulfil_after) if args.full
                  else shop.sync(since))
    finally:
        shop.close()
    if args.json:
        _json(out, report.as_dict())
    else:
        for line in report.lines():
            if not line.startswith("warning:"):
                print(line, file=out)
    return 0 if report.ok else 1


# -- subscriptions and grants ------------------------------------------------------------------

def run_subscriptions(args: argparse.Namespace) -> int:
    """``subscriptions list`` and ``subscriptions show USER_REF``."""
    return _run(args, _subscriptions_list if args.subscriptions_command == "list"
                else _subscriptions_show)


def _subscription_view(sub: Any) -> dict[str, Any]:
    return {"id": sub.id, "customer_ref": sub.customer_ref,
            "stripe_customer": sub.stripe_customer, "status": sub.status,
            "sold_here": sub.sold_here,
            "items": [{"price": item.price, "lookup_key": item.lookup_key,
                       "quantity": item.quantity} for item in sub.items],
            "current_period_end": _iso(sub.current_period_end),
            "cancel_at_period_end": sub.cancel_at_period_end,
            "updated_at": _iso(sub.updated_at)}


def _subscription_rows(subscriptions: Sequence[Any]) -> list[tuple[object, ...]]:
    return [(s.id, s.customer_ref or "(unknown)", s.status + ("" if s.sold_here
                                                               else " (not sold here)"),
             " ".join(f"{i.lookup_key or i.price}x{i.quantity}" for i in s.items),
             _when(s.current_period_end) + (" (cancels)" if s.cancel_at_period_end else ""))
            for s in subscriptions]


_SUBSCRIPTION_HEADER = ("SUBSCRIPTION", "USER", "STATUS", "ITEMS", "PERIOD END (UTC)")


def _subscriptions_list(args: argparse.Namespace, out: Any) -> int:
    shop = _shop_to_read(args, out, [])
    if shop is None:
        return 0
    try:
        assert shop.subscriptions is not None
        subscriptions = shop.subscriptions.newest(args.limit)
    finally:
        shop.close()
    if args.json:
        _json(out, [_subscription_view(sub) for sub in subscriptions])
        return 0
    _table(out, _SUBSCRIPTION_HEADER, _subscription_rows(subscriptions))
    print(f"{len(subscriptions)} subscription(s)" + (
        " (the newest; raise --limit for more)" if len(subscriptions) == args.limit else ""),
        file=out)
    return 0


def _subscriptions_show(args: argparse.Namespace, out: Any) -> int:
    shop = _shop_to_read(args, out, None)
    if shop is None:
        return 0
    try:
        ledger = shop.subscriptions
        assert ledger is not None
        ref = args.user_ref
        subscriptions = ledger.for_customer(ref)
        active, features, grants = (ledger.is_active(ref), ledger.features(ref),
                                    ledger.grants(ref))
    finally:
        shop.close()
    if args.json:
        _json(out, {"customer_ref": ref, "active": active, "features": sorted(features),
                    "subscriptions": [_subscription_view(sub) for sub in subscriptions],
                    "grants": [_grant_view(grant) for grant in grants]})
        return 0
    print(f"user:      {ref}", file=out)
    print(f"active:    {'yes' if active else 'no'}", file=out)
    print(f"features:  {' '.join(sorted(features)) or '(none)'}", file=out)
    print(file=out)
    _table(out, _SUBSCRIPTION_HEADER, _subscription_rows(subscriptions))
    if grants:
        print(file=out)
        _table(out, _GRANT_HEADER, _grant_rows(grants))
    return 0


def run_grants(args: argparse.Namespace) -> int:
    """``grants list [USER_REF]``, ``grants add USER_REF FEATURE --until DATE`` and
    ``grants revoke USER_REF FEATURE``."""
    command = {"list": _grants_list, "add": _grants_add, "revoke": _grants_revoke}
    return _run(args, command[args.grants_command])


_GRANT_HEADER = ("USER", "FEATURE", "UNTIL (UTC)", "GRANTED (UTC)", "NOTE")


def _grant_view(grant: Any) -> dict[str, Any]:
    return {"customer_ref": grant.customer_ref, "feature": grant.feature,
            "until": _iso(grant.expires_at), "granted_at": _iso(grant.granted_at),
            "note": grant.note}


def _grant_rows(grants: Sequence[Any]) -> list[tuple[object, ...]]:
    return [(g.customer_ref, g.feature, _when(g.expires_at), _when(g.granted_at), g.note or "")
            for g in grants]


def _grants_list(args: argparse.Namespace, out: Any) -> int:
    shop = _shop_to_read(args, out, [])
    if shop is None:
        return 0
    try:
        assert shop.subscriptions is not None
        grants = shop.subscriptions.grants(args.user_ref)
    finally:
        shop.close()
    if args.json:
        _json(out, [_grant_view(grant) for grant in grants])
        return 0
    _table(out, _GRANT_HEADER, _grant_rows(grants))
    print(f"{len(grants)} grant(s)", file=out)
    return 0


def _until(text: str) -> datetime | Any:
    """``--until``: a date (through that day, UTC) or an ISO date and time (UTC if naive)."""
    from datetime import date

    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--until {text!r}: write a date (2027-01-31) or an ISO date and "
                           "time (2027-01-31T12:00:00+00:00)", 2) from None


def _grants_add(args: argparse.Namespace, out: Any) -> int:
    until = _until(args.until)
    shop = _open_shop(_settings(args, needs_stripe=False))
    try:
        assert shop.subscriptions is not None
        try:
            grant = shop.subscriptions.grant(args.user_ref, args.feature, until=until,
                                             note=args.note)
        except ValueError as exc:
            raise CommandError(str(exc), 2) from None
    finally:
        shop.close()
    if args.json:
        _json(out, _grant_view(grant))
    else:
        print(f"granted {grant.feature} to {grant.customer_ref} until "
              f"{_when(grant.expires_at)} UTC", file=out)
    return 0


def _grants_revoke(args: argparse.Namespace, out: Any) -> int:
    shop = _open_shop(_settings(args, needs_stripe=False))
    try:
        assert shop.subscriptions is not None
        revoked = shop.subscriptions.revoke(args.user_ref, args.feature)
    finally:
        shop.close()
    if not revoked:
        raise CommandError(f"{args.user_ref} has no grant of {args.feature}")
    if args.json:
        _json(out, {"customer_ref": args.user_ref, "feature": args.feature, "revoked": True})
    else:
        print(f"revoked {args.feature} from {args.user_ref}", file=out)
    return 0
def _fulfil_after(args: argparse.Namespace) -> datetime | None:
    """``--fulfil-after DATE`` as a UTC datetime (``None`` when not given)."""
    if args.fulfil_after is None:
        return None
    if not args.full:
        raise CommandError("--fulfil-after goes with --full", 2)
    try:
        when = datetime.fromisoformat(args.fulfil_after.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"--fulfil-after {args.fulfil_after!r}: expected a date such as "
                           "2026-12-01 or 2026-12-01T12:00 (UTC)", 2) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


# -- customers ----------------------------------------------------------------------------

def run_customers(args: argparse.Namespace) -> int:
    """``customers link|show|unlink``: the operator's edits of the ref <-> Customer map."""
    return _run(args, _customers)


def _customers(args: argparse.Namespace, out: Any) -> int:
    import stripe

    from ..billing.customers import LinkRefused

    command = args.customers_command
    shop = _open_shop(_settings(args, needs_stripe=command == "link"))
    try:
        directory, subscriptions = shop.customers, shop.subscriptions
        assert directory is not None and subscriptions is not None  # the shop has a ledger
        if command == "link":
            try:
                linked = directory.link(args.user_ref, args.customer_id)
            except LinkRefused as exc:
                raise CommandError(str(exc), 1) from None
            except ValueError as exc:
                raise CommandError(str(exc), 2) from None
            except stripe.StripeError as exc:
                raise CommandError(f"Stripe could not be asked ({type(exc).__name__}); "
                                   "nothing was linked", 1) from None
            answer: dict[str, Any] = {"ref": args.user_ref, "customer": args.customer_id,
                                      "linked": linked}
            text = [f"{args.customer_id} linked to {args.user_ref}" if linked
                    else f"{args.customer_id} was already linked to {args.user_ref}"]
        elif command == "unlink":
            removed = _checked(directory.unlink, args.user_ref)
            answer = {"ref": args.user_ref, "unlinked": removed}
            text = [f"{removed} customer(s) unlinked from {args.user_ref}"]
        else:
            customers = _checked(directory.show, args.user_ref)
            subs = subscriptions.for_customer(args.user_ref)
            answer = {"ref": args.user_ref, "customers": customers,
                      "subscriptions": [{"id": s.id, "status": s.status,
                                         "stripe_customer": s.stripe_customer} for s in subs]}
            text = [f"customers: {', '.join(customers) or 'none'}",
                    *(f"subscription {s.id}: {s.status} ({s.stripe_customer})" for s in subs)]
    finally:
        shop.close()
    if args.json:
        _json(out, answer)
    else:
        for line in text:
            print(line, file=out)
    return 0


def _checked(call: Any, ref: str) -> Any:
    try:
        return call(ref)
    except ValueError as exc:
        raise CommandError(str(exc), 2) from None
