"""``invoices list USER_REF``: a user's invoices from the ledger, newest first (read-only).

The same rows the app's billing-history page gets from ``mw.billing.invoices``; no Stripe
call. A table for people, ``--json`` for scripts; ``--starting-after`` pages on from the
last id shown.
"""

from __future__ import annotations

import argparse
from typing import Any

from .operations import _iso, _json, _money, _run, _shop_to_read, _table, _when

__all__ = ["run_invoices"]


def run_invoices(args: argparse.Namespace) -> int:
    """``invoices list``."""
    return _run(args, _invoices_list)


def _invoices_list(args: argparse.Namespace, out: Any) -> int:
    shop = _shop_to_read(args, out, [])
    if shop is None:
        return 0
    try:
        assert shop.billing is not None  # a command's shop always has a ledger
        invoices = shop.billing.invoices(args.user_ref, limit=args.limit,
                                         starting_after=args.starting_after)
    finally:
        shop.close()
    if args.json:
        _json(out, [{**invoice.to_dict(), "created": _iso(invoice.created),
                     "paid_at": _iso(invoice.paid_at)} for invoice in invoices])
        return 0
    _table(out, ("CREATED (UTC)", "INVOICE", "NUMBER", "STATUS", "REASON", "TOTAL", "PAID",
                 "PERIOD (UTC)"), [
        (_when(i.created), i.id, i.number or "", i.status, i.billing_reason or "",
         _money(i.total, i.currency), _money(i.amount_paid, i.currency),
         f"{_when(i.period_start)[:10]} - {_when(i.period_end)[:10]}"
         if i.period_start else "")
        for i in invoices])
    print(f"{len(invoices)} invoice(s)" + (
        f" (more: --starting-after {invoices[-1].id})" if len(invoices) == args.limit
        else ""), file=out)
    return 0
