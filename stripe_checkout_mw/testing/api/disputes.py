"""Disputes: ``/v1/disputes`` (retrieve, list) and the transitions the emulator's
``dispute()`` and ``close_dispute()`` helpers drive.

:func:`open_dispute` disputes a whole charge (``needs_response``, the charge's
``disputed`` set, ``charge.dispute.created``); :func:`close` submits the evidence
(``under_review``, ``charge.dispute.updated``) then decides (``won`` or ``lost``,
``charge.dispute.closed``).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .errors import invalid, no_such
from .events import emit
from .ids import new_id
from .lists import filter_created, list_object
from .params import as_str

if TYPE_CHECKING:
    from .routes import ApiCall
    from .state import StripeState

__all__ = ["EVIDENCE_DAYS", "close", "list_disputes", "open_dispute",
           "retrieve_dispute"]

EVIDENCE_DAYS = 7
"""Days the merchant has to respond (``evidence_details.due_by``)."""


def open_dispute(state: StripeState, charge: dict[str, Any], *,
                 reason: str = "fraudulent") -> dict[str, Any]:
    """Dispute the whole of ``charge``; return the stored dispute."""
    if charge["status"] != "succeeded":
        raise invalid(f"Charge {charge['id']} has not succeeded and cannot be disputed.",
                      "charge")
    if charge["disputed"]:
        raise invalid(f"Charge {charge['id']} is already disputed.", "charge")
    now = state.now()
    dispute_id = new_id("dp_")
    dispute: dict[str, Any] = {
        "id": dispute_id,
        "object": "dispute",
        "amount": charge["amount"],
        "balance_transactions": [],
        "charge": charge["id"],
        "created": now,
        "currency": charge["currency"],
        "enhanced_eligibility_types": [],
        "evidence": {"customer_email_address": charge["receipt_email"],
                     "product_description": None, "uncategorized_text": None},
        "evidence_details": {"due_by": now + EVIDENCE_DAYS * 86400,
                             "enhanced_eligibility": {}, "has_evidence": False,
                             "past_due": False, "submission_count": 0},
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "network_reason_code": None,
        "payment_intent": charge["payment_intent"],
        "payment_method_details": {"card": {"brand": "visa", "case_type": "chargeback",
                                            "network_reason_code": "10.4"},
                                   "type": "card"},
        "reason": reason,
        "status": "needs_response",
    }
    state.billing.disputes[dispute_id] = dispute
    charge["disputed"] = True
    emit(state, "charge.dispute.created", dispute, None)
    return dispute


def close(state: StripeState, dispute: dict[str, Any], *, won: bool) -> dict[str, Any]:
    """Submit evidence, then win or lose ``dispute``; return it."""
    if dispute["status"] in ("won", "lost", "warning_closed"):
        raise invalid(f"Dispute {dispute['id']} is already closed ({dispute['status']}).",
                      "dispute")
    previous_status = dispute["status"]
    dispute["status"] = "under_review"
    dispute["evidence_details"].update(has_evidence=True, submission_count=1)
    emit(state, "charge.dispute.updated", dispute, None,
         previous={"status": previous_status,
                   "evidence_details": {"has_evidence": False, "submission_count": 0}})
    dispute["status"] = "won" if won else "lost"
    emit(state, "charge.dispute.closed", dispute, None,
         previous={"status": "under_review"})
    return dispute


def retrieve_dispute(state: StripeState, call: ApiCall) -> dict[str, Any]:
    dispute = state.billing.disputes.get(call.ids[0])
    if dispute is None:
        raise no_such("dispute", call.ids[0])
    return copy.deepcopy(dispute)


def list_disputes(state: StripeState, call: ApiCall) -> dict[str, Any]:
    params = call.params
    disputes = list(reversed(state.billing.disputes.values()))
    for key in ("charge", "payment_intent"):
        if key in params:
            wanted = as_str(params[key], key)
            disputes = [d for d in disputes if d[key] == wanted]
    return list_object(filter_created(disputes, params), "/v1/disputes", params)
