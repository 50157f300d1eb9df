"""What the emulator's clock does to subscriptions: :func:`run_due`, called when the
clock moves, does in time order everything that became due:

- ``trial_will_end`` three days before a trial ends (at once for shorter trials);
- at a period end: a ``subscription_cycle`` invoice; paid -> the next period
  (``trialing`` becomes ``active``); declined -> ``past_due``;
- retries of a declined renewal
  :data:`~.subscription_objects.RETRY_DAYS` days after the first failure; one
  that succeeds makes it ``active`` again; when the last fails it becomes
  ``canceled`` (``customer.subscription.deleted``) or ``unpaid``, as the
  ``fail_next_renewal`` call said. ``unpaid`` and ``past_due`` subscriptions do
  not renew further;
- ``cancel_at`` (set by ``cancel_at_period_end``) ends it: ``canceled``,
  ``ended_at``, ``customer.subscription.deleted``;
- a subscription schedule's next phase starts (:mod:`.subscription_schedules`),
  before the renewal due at the same second, so that renewal bills the new phase;
- a pending update expires (:mod:`.subscription_updates`).

A renewal charges the saved card off-session: the card decides the outcome
(:mod:`.card_outcomes`: ``invoice.payment_action_required`` and ``past_due`` for a
card that needs authentication, with no automatic retry; ``invoice.payment_failed``
and the retries for one that declines), as does ``fail_next_renewal``. The
renewal invoice also bills the prorations an update left for it.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from . import invoices, subscription_schedules
from .card_outcomes import ACTION_REQUIRED, PAID, charge_outcome
from .events import emit
from .subscription_changes import cancel_now
from .subscription_objects import (
    DAY,
    RETRY_DAYS,
    TRIAL_NOTICE,
    current_period,
    emit_updated,
    period_end,
)
from .subscription_updates import expire_pending_update

if TYPE_CHECKING:
    from .state import StripeState

__all__ = ["announce_trial", "run_due"]


def announce_trial(state: StripeState, subscription: dict[str, Any]) -> None:
    """Send ``trial_will_end`` once, if the trial ends within :data:`TRIAL_NOTICE`."""
    trial_end = subscription["trial_end"]
    if (subscription["status"] == "trialing" and trial_end is not None
            and subscription["id"] not in state.billing.trial_notices
            and state.now() >= trial_end - TRIAL_NOTICE):
        state.billing.trial_notices.add(subscription["id"])
        emit(state, "customer.subscription.trial_will_end", subscription, None)


def _next_due(subscription: dict[str, Any], state: StripeState) -> tuple[int, str] | None:
    status = subscription["status"]
    if status not in ("trialing", "active", "past_due"):
        return None
    due: list[tuple[int, str]] = []
    if status == "trialing" and subscription["id"] not in state.billing.trial_notices:
        due.append((int(subscription["trial_end"]) - TRIAL_NOTICE, "trial_notice"))
    if subscription["cancel_at"] is not None:
        due.append((int(subscription["cancel_at"]), "cancel"))
    if subscription["pending_update"] is not None:
        due.append((int(subscription["pending_update"]["expires_at"]), "expire_update"))
    phase_end = subscription_schedules.phase_end(state, subscription)
    if phase_end is not None:
        due.append((phase_end, "phase"))
    if status == "past_due":
        invoice = state.billing.invoices[subscription["latest_invoice"]]
        if invoice["status"] == "open" and invoice["next_payment_attempt"] is not None:
            due.append((int(invoice["next_payment_attempt"]), "retry"))
    else:
        due.append((current_period(subscription)[1], "renew"))
    return min(due) if due else None


def run_due(state: StripeState) -> int:
    """Do, in time order, everything due by now on every subscription; how many steps."""
    steps = 0
    while steps < 10_000:
        now = state.now()
        candidates = []
        for subscription in state.billing.subscriptions.values():
            due = _next_due(subscription, state)
            if due is not None and due[0] <= now:
                candidates.append((due, subscription["id"]))
        if not candidates:
            return steps
        (_, what), subscription_id = min(candidates)
        subscription = state.billing.subscriptions[subscription_id]
        if what == "trial_notice":
            announce_trial(state, subscription)
        elif what == "cancel":
            cancel_now(state, subscription, reason="cancellation_requested",
                       ended_at=int(subscription["cancel_at"]), request=None)
        elif what == "retry":
            _retry(state, subscription)
        elif what == "expire_update":
            expire_pending_update(state, subscription)
        elif what == "phase":
            subscription_schedules.next_phase(state, subscription)
        else:
            _renew(state, subscription)
        steps += 1
    return steps


def _renew(state: StripeState, subscription: dict[str, Any]) -> None:
    previous: dict[str, Any] = {"items": copy.deepcopy(subscription["items"]),
                                "latest_invoice": subscription["latest_invoice"]}
    start = current_period(subscription)[1]
    for item in subscription["items"]["data"]:
        item["current_period_start"] = start
        item["current_period_end"] = period_end(start, item["price"],
                                                int(subscription["billing_cycle_anchor"]))
    invoice = invoices.new_invoice(
        state, subscription, billing_reason="subscription_cycle",
        extra=state.billing.pending_prorations.pop(subscription["id"], []))
    subscription["latest_invoice"] = invoice["id"]
    invoices.announce(state, invoice)
    invoices.finalize(state, invoice)
    failure = state.billing.renewal_failures.get(subscription["id"])
    if failure is not None and not failure.retries_fail:
        del state.billing.renewal_failures[subscription["id"]]
    outcome = charge_outcome(state, subscription, subscription["customer"])
    first_retry = int(invoice["status_transitions"]["finalized_at"]) + RETRY_DAYS[0] * DAY
    invoices.attempt(state, invoice, succeeds=failure is None and outcome == PAID,
                     next_attempt=first_retry, action_required=outcome == ACTION_REQUIRED)
    old_status = subscription["status"]
    subscription["status"] = "active" if invoice["status"] == "paid" else "past_due"
    if subscription["status"] != old_status:
        previous["status"] = old_status
    emit_updated(state, subscription, previous)


def _retry(state: StripeState, subscription: dict[str, Any]) -> None:
    invoice = state.billing.invoices[subscription["latest_invoice"]]
    failure = state.billing.renewal_failures.get(subscription["id"])
    attempts = int(invoice["attempt_count"])  # the attempts made so far, >= 1
    first_failure = int(invoice["status_transitions"]["finalized_at"])
    next_attempt = (first_failure + RETRY_DAYS[attempts] * DAY
                    if attempts < len(RETRY_DAYS) else None)
    outcome = charge_outcome(state, subscription, subscription["customer"])
    invoices.attempt(state, invoice, succeeds=failure is None and outcome == PAID,
                     next_attempt=next_attempt)
    if invoice["status"] == "paid":
        subscription["status"] = "active"
        emit_updated(state, subscription, {"status": "past_due"})
    elif next_attempt is None:
        ending = failure.ending if failure is not None else "canceled"
        state.billing.renewal_failures.pop(subscription["id"], None)
        if ending == "unpaid":
            subscription["status"] = "unpaid"
            emit_updated(state, subscription, {"status": "past_due"})
        else:
            cancel_now(state, subscription, reason="payment_failed", request=None)

