"""The marker in each Checkout Session's metadata that says "this shop created it".

Every session the middleware creates carries ``metadata["stripe_checkout_mw"]``. With it
the webhook, the status lookup and ``sync`` recognise their own sessions even when the
checkout's ledger row is missing (its write failed during a database outage, the row was
lost in a crash, or the database was restored from an older backup): they then take the
items from Stripe's ``line_items`` and settle the order as usual. A session without this
shop's marker and without a row (a Payment Link, the Dashboard, another integration,
another shop on the same account) is never fulfilled.

Which value a shop writes (:func:`marker_for`, called once by
:func:`~stripe_checkout_mw.settings.rules.load_settings`):

- with the ``shop_id`` option: the ``shop_id`` itself, so the shop is named, not its URL
  (two developers' apps at ``http://127.0.0.1:8000`` on one Stripe test account each get
  their own sessions only). The marker derived from the return address is still accepted,
  so sessions created before ``shop_id`` was set keep being recognised;
- without it (the default, as before ``shop_id`` existed): the first 16 hex digits of the
  SHA-256 of the configured ``success_url`` (``Settings.return_address``: the
  ``return_url`` in the embedded modes), so a staging and a production deployment sharing
  one account differ, and a restart keeps the same value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MARKER_KEY", "Marker", "is_marked", "marker_for", "shop_marker"]

#: The metadata key of the marker.
MARKER_KEY = "stripe_checkout_mw"


def shop_marker(success_url: str) -> str:
    """The marker value derived from the address ``success_url`` (the default marker)."""
    digest = hashlib.sha256(b"stripe-checkout-mw\0" + success_url.encode("utf-8"))
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Marker:
    """One shop's marker: the value its new sessions carry and every value it accepts."""

    #: Written into the metadata of each session this shop creates.
    value: str
    #: Also recognised as this shop's (the address-derived marker of a shop with a
    #: ``shop_id``, so its older sessions stay its own).
    also_accepted: frozenset[str] = frozenset()
    #: Whether ``value`` is derived from the return address (no ``shop_id`` configured).
    derived: bool = False

    def matches(self, value: object) -> bool:
        """Whether a session's marker value ``value`` is this shop's."""
        return isinstance(value, str) and bool(value) and (
            value == self.value or value in self.also_accepted)


def marker_for(shop_id: str | None, return_address: str | None) -> Marker | None:
    """This shop's marker from its ``shop_id`` option and its return address.

    None when there is neither (an operator's command configured without pages): no
    session is then recognised by its marker alone.
    """
    derived = shop_marker(return_address) if return_address is not None else None
    if shop_id is not None:
        return Marker(shop_id, frozenset({derived}) if derived is not None else frozenset())
    return Marker(derived, derived=True) if derived is not None else None


def is_marked(session: Mapping[str, Any], marker: Marker | None) -> bool:
    """Whether a session (a dict) carries ``marker``; never with no marker configured."""
    if marker is None:
        return False
    metadata = session.get("metadata")
    return isinstance(metadata, Mapping) and marker.matches(metadata.get(MARKER_KEY))
