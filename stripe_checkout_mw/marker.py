"""The marker in each Checkout Session's metadata that says "this shop created it".

Every session the middleware creates carries ``metadata["stripe_checkout_mw"]``, a value
derived from the configuration: the first 16 hex digits of the SHA-256 of the configured
``success_url`` (``Settings.return_address``: the ``return_url`` in the embedded modes)
(so two shops, or a staging and a production deployment, sharing one Stripe
account have different markers, and a restart keeps the same one).

With it the webhook and the status lookup recognise their own sessions even when the
checkout's ledger row is missing (its write failed during a database outage, the row was
lost in a crash, or the database was restored from an older backup): they then take the
items from Stripe's ``line_items`` and settle the order as usual. A session without the
marker and without a row (a Payment Link, the Dashboard, another integration) is never
fulfilled.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

__all__ = ["MARKER_KEY", "is_marked", "shop_marker"]

#: The metadata key of the marker.
MARKER_KEY = "stripe_checkout_mw"


def shop_marker(success_url: str) -> str:
    """The marker value of the shop whose sessions return to ``success_url``."""
    digest = hashlib.sha256(b"stripe-checkout-mw\0" + success_url.encode("utf-8"))
    return digest.hexdigest()[:16]


def is_marked(session: Mapping[str, Any], marker: str | None) -> bool:
    """Whether a session (a dict) carries ``marker``; never with no marker configured."""
    if not marker:
        return False
    metadata = session.get("metadata")
    return isinstance(metadata, Mapping) and metadata.get(MARKER_KEY) == marker
