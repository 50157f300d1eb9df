"""The billing side of the emulator's memory: customers, subscriptions, payments.

:class:`BillingObjects` holds, by id, the objects that a paid Checkout Session and
the emulator's helpers create (Stripe's shapes, stored, not copies), plus the few
things Stripe knows that no object shows: which subscriptions' next renewal is set
to fail, and which trials were already announced with ``trial_will_end``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BillingObjects", "RenewalFailure"]


@dataclass
class RenewalFailure:
    """How the next renewal of one subscription fails (set by ``fail_next_renewal``)."""

    retries_fail: bool = True
    """Whether the automatic retries fail too (until the card is updated)."""
    ending: str = "canceled"
    """The status once every retry failed: ``canceled`` or ``unpaid``."""


@dataclass
class BillingObjects:
    """Every billing object by id, oldest first (dicts keep insertion order)."""

    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    payment_methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    payment_intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoice_payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    disputes: dict[str, dict[str, Any]] = field(default_factory=dict)
    portal_sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    session_subscription_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Checkout Session id -> its ``subscription_data`` (trial, metadata)."""
    renewal_failures: dict[str, RenewalFailure] = field(default_factory=dict)
    """Subscription id -> how its next renewal fails; cleared by a working card."""
    trial_notices: set[str] = field(default_factory=set)
    """Subscriptions whose ``trial_will_end`` was sent."""
    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending_prorations: dict[str, list[Any]] = field(default_factory=dict)
    """Subscription id -> the proration lines (``invoices.LineSpec``) its next
    renewal invoice bills (``proration_behavior=create_prorations``)."""
