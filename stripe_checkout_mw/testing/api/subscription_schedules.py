"""Subscription schedules: ``/v1/subscription_schedules`` (create ``from_subscription``,
retrieve, list, update ``phases``/``end_behavior``, cancel, release) and the phase
switch the emulator's clock makes.

The path Stripe documents for "downgrade at the period end": create a schedule
``from_subscription`` (one phase: the current items over the current period,
``end_behavior: release``), then update it with two phases, the current one and the
next. When the clock passes a phase's ``end_date``, the next phase's items replace
the subscription's (``customer.subscription.updated``,
``subscription_schedule.updated``), before the renewal due at the same second; after
the last phase ``release`` (and ``none``, ``renew``) leaves the subscription running
(``subscription_schedule.released``) and ``cancel`` ends it
(``subscription_schedule.completed``). ``cancel`` on the schedule cancels the
subscription now (``subscription_schedule.canceled``); ``release`` detaches it.

A phase without ``end_date`` or ``duration`` lasts one interval of its first price.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from stripe import SubscriptionSchedule

from .errors import invalid, no_such
from .events import emit
from .ids import new_id
from .lists import list_object
from .params import as_str, expand_list, sub
from .prorations import planned_items
from .shapes import blank
from .subscription_changes import cancel_now
from .subscription_objects import add_interval, current_period, emit_updated, stored_subscription

if TYPE_CHECKING:
    from .routes import ApiCall
    from .state import StripeState

__all__ = ["cancel_schedule", "create_schedule", "list_schedules", "next_phase",
           "phase_end", "release_schedule", "retrieve_schedule", "update_schedule"]

_OPEN = ("not_started", "active")


def _phase(items: list[tuple[str, int]], start: int, end: int, currency: str,
           proration: str = "create_prorations") -> dict[str, Any]:
    phase = blank(SubscriptionSchedule.Phase)
    phase.update(start_date=start, end_date=end, currency=currency,
                 proration_behavior=proration, metadata={})
    for price_id, quantity in items:
        item = blank(SubscriptionSchedule.Phase.Item)
        item.update(price=price_id, plan=price_id, quantity=quantity, metadata={})
        phase["items"].append(item)
    return phase


def _stored(state: StripeState, schedule_id: str) -> dict[str, Any]:
    schedule = state.billing.schedules.get(schedule_id)
    if schedule is None:
        raise no_such("subscription_schedule", schedule_id)
    return schedule


def create_schedule(state: StripeState, call: ApiCall) -> dict[str, Any]:
    valid = call.valid
    if "from_subscription" not in valid:
        raise invalid("The emulator creates schedules only with from_subscription.",
                      "from_subscription")
    subscription = stored_subscription(state, valid["from_subscription"],
                                       "from_subscription")
    if subscription["schedule"] is not None:
        raise invalid(f"You cannot migrate a subscription that is already attached to a "
                      f"schedule: `{subscription['schedule']}`.", "from_subscription")
    start, end = current_period(subscription)
    schedule = blank(SubscriptionSchedule)
    schedule.update(
        id=new_id("sub_sched_"), created=state.now(), customer=subscription["customer"],
        end_behavior="release", metadata=dict(valid.get("metadata") or {}),
        status="active", subscription=subscription["id"],
        current_phase={"start_date": start, "end_date": end},
        phases=[_phase([(i["price"]["id"], int(i["quantity"]))
                        for i in subscription["items"]["data"]],
                       start, end, subscription["currency"])])
    schedule["billing_mode"]["type"] = "flexible"
    state.billing.schedules[schedule["id"]] = schedule
    subscription["schedule"] = schedule["id"]
    emit(state, "subscription_schedule.created", schedule, call.request)
    emit_updated(state, subscription, {"schedule": None}, call.request)
    return copy.deepcopy(schedule)


def _phase_end(raw: dict[str, Any], start: int, state: StripeState, param: str) -> int:
    if "end_date" in raw:
        end = state.now() if raw["end_date"] == "now" else int(raw["end_date"])
    elif "duration" in raw:
        duration = raw["duration"]
        end = add_interval(start, duration["interval"], int(duration.get("interval_count", 1)))
    else:
        price = state.prices[raw["items"][0]["price"]]
        recurring = price["recurring"]
        end = add_interval(start, recurring["interval"], int(recurring["interval_count"]))
    if end <= start:
        raise invalid("A phase's end_date must be after its start_date.", param)
    return end


def _phases(state: StripeState, raw_phases: list[dict[str, Any]],
            subscription: dict[str, Any]) -> list[dict[str, Any]]:
    phases: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_phases):
        param = sub("phases", index)
        if phases:
            start = int(phases[-1]["end_date"])
        elif "start_date" not in raw:
            raise invalid("The first phase needs a start_date.", sub(param, "start_date"))
        else:
            start = state.now() if raw["start_date"] == "now" else int(raw["start_date"])
        entries = [{"price": i["price"], "quantity": i.get("quantity", 1)}
                   for i in raw.get("items") or []]
        if not entries:
            raise invalid("Each phase needs items.", sub(param, "items"))
        planned_items(state, subscription, entries, sub(param, "items"))  # checks prices
        phases.append(_phase([(e["price"], int(e["quantity"])) for e in entries],
                             start, _phase_end(raw, start, state, param),
                             subscription["currency"],
                             raw.get("proration_behavior", "create_prorations")))
    return phases


def update_schedule(state: StripeState, call: ApiCall) -> dict[str, Any]:
    schedule = _stored(state, call.ids[0])
    valid = call.valid
    if schedule["status"] not in _OPEN:
        raise invalid(f"You cannot update a subscription schedule that is "
                      f"{schedule['status']}.", "schedule")
    subscription = stored_subscription(state, schedule["subscription"])
    if "phases" in valid:
        phases = _phases(state, list(valid["phases"]), subscription)
        now = state.now()
        current = next((p for p in phases if p["start_date"] <= now < p["end_date"]), None)
        if current is None:
            raise invalid("The phases must cover the current time.", "phases")
        schedule["phases"] = phases
        schedule["current_phase"] = {"start_date": current["start_date"],
                                     "end_date": current["end_date"]}
        _use_phase(state, subscription, current, call.request)
    if "end_behavior" in valid:
        schedule["end_behavior"] = valid["end_behavior"]
    if "metadata" in valid:
        schedule["metadata"] = {**(schedule["metadata"] or {}), **valid["metadata"]}
    emit(state, "subscription_schedule.updated", schedule, call.request)
    return copy.deepcopy(schedule)


def _use_phase(state: StripeState, subscription: dict[str, Any], phase: dict[str, Any],
               request: dict[str, Any] | None) -> None:
    """Give ``subscription`` the phase's items (reusing its item ids in order)."""
    wanted = [(i["price"], int(i["quantity"])) for i in phase["items"]]
    have = subscription["items"]["data"]
    if [(i["price"]["id"], int(i["quantity"])) for i in have] == wanted:
        return
    entries: list[dict[str, Any]] = []
    for index, (price_id, quantity) in enumerate(wanted):
        entry: dict[str, Any] = {"price": price_id, "quantity": quantity}
        if index < len(have):
            entry["id"] = have[index]["id"]
        entries.append(entry)
    entries += [{"id": item["id"], "deleted": True} for item in have[len(wanted):]]
    previous = {"items": copy.deepcopy(subscription["items"])}
    subscription["items"]["data"] = planned_items(state, subscription, entries)
    emit_updated(state, subscription, previous, request)


def phase_end(state: StripeState, subscription: dict[str, Any]) -> int | None:
    """When the current phase of the subscription's schedule ends, if it has one."""
    schedule = state.billing.schedules.get(subscription["schedule"] or "")
    if schedule is None or schedule["status"] not in _OPEN:
        return None
    return int(schedule["current_phase"]["end_date"])


def next_phase(state: StripeState, subscription: dict[str, Any]) -> None:
    """The current phase ended: start the next one, or end the schedule."""
    schedule = state.billing.schedules[subscription["schedule"]]
    ended = int(schedule["current_phase"]["end_date"])
    upcoming = next((p for p in schedule["phases"] if p["start_date"] == ended), None)
    if upcoming is not None:
        schedule["current_phase"] = {"start_date": upcoming["start_date"],
                                     "end_date": upcoming["end_date"]}
        _use_phase(state, subscription, upcoming, None)
        emit(state, "subscription_schedule.updated", schedule, None)
    elif schedule["end_behavior"] == "cancel":
        schedule.update(status="completed", completed_at=state.now(), current_phase=None)
        cancel_now(state, subscription, reason="cancellation_requested", request=None,
                   ended_at=ended)
        emit(state, "subscription_schedule.completed", schedule, None)
    else:
        _release(state, schedule, None)


def _release(state: StripeState, schedule: dict[str, Any],
             request: dict[str, Any] | None) -> None:
    subscription = state.billing.subscriptions[schedule["subscription"]]
    schedule.update(status="released", released_at=state.now(), current_phase=None,
                    released_subscription=subscription["id"], subscription=None)
    subscription["schedule"] = None
    emit(state, "subscription_schedule.released", schedule, request)
    emit_updated(state, subscription, {"schedule": schedule["id"]}, request)


def release_schedule(state: StripeState, call: ApiCall) -> dict[str, Any]:
    schedule = _stored(state, call.ids[0])
    if schedule["status"] not in _OPEN:
        raise invalid(f"You cannot release a subscription schedule that is "
                      f"{schedule['status']}.", "schedule")
    _release(state, schedule, call.request)
    return copy.deepcopy(schedule)


def cancel_schedule(state: StripeState, call: ApiCall) -> dict[str, Any]:
    """Cancel the schedule and, as at Stripe, its subscription now."""
    schedule = _stored(state, call.ids[0])
    if schedule["status"] not in _OPEN:
        raise invalid(f"You cannot cancel a subscription schedule that is "
                      f"{schedule['status']}.", "schedule")
    subscription = state.billing.subscriptions[schedule["subscription"]]
    schedule.update(status="canceled", canceled_at=state.now(), current_phase=None)
    subscription["schedule"] = None
    cancel_now(state, subscription, reason="cancellation_requested", request=call.request)
    emit(state, "subscription_schedule.canceled", schedule, call.request)
    return copy.deepcopy(schedule)


def retrieve_schedule(state: StripeState, call: ApiCall) -> dict[str, Any]:
    expand_list(call.params)
    return copy.deepcopy(_stored(state, call.ids[0]))


def list_schedules(state: StripeState, call: ApiCall) -> dict[str, Any]:
    schedules = list(reversed(state.billing.schedules.values()))
    if "customer" in call.params:
        wanted = as_str(call.params["customer"], "customer")
        schedules = [s for s in schedules if s["customer"] == wanted]
    return list_object(schedules, "/v1/subscription_schedules", call.params)
