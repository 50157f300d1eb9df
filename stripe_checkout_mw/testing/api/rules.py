"""Per-parameter validation as a table: one :class:`ParamRule` per parameter.

A create endpoint lists its parameters' rules in the order Stripe checks them
(the first failing one is the error answered); :func:`apply_rules` runs them over
a request's decoded params and returns the coerced values by name, which the
endpoint's handler builds its object from. A rule sees the values of the rules
before it (``ctx.valid``), so a rule like "only in ``subscription`` mode" is a row
of the table too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import invalid, missing

__all__ = ["ParamRule", "RuleContext", "apply_rules", "plain"]


@dataclass
class RuleContext:
    """What a rule may look at besides its own value."""

    now: int
    """The request's time, seconds since the epoch."""
    valid: dict[str, Any] = field(default_factory=dict)
    """The coerced values of the parameters checked so far."""


Coercer = Callable[[Any, str, RuleContext], Any]
"""``(decoded value, parameter name, context) -> coerced value``; raises ApiError."""


@dataclass(frozen=True)
class ParamRule:
    """How one top-level parameter is checked and coerced.

    :param name: the parameter.
    :param coerce: turns its decoded value into the value the handler uses.
    :param required: refuse the request when it is absent.
    :param exclusive_with: parameters that may not be sent together with it; the
        error names the other one, as Stripe does.
    """

    name: str
    coerce: Coercer
    required: bool = False
    exclusive_with: tuple[str, ...] = ()


def plain(coercer: Callable[[Any, str], Any]) -> Coercer:
    """A :data:`Coercer` from an ``as_*`` function that needs no context."""
    def coerce(value: Any, param: str, ctx: RuleContext) -> Any:
        return coercer(value, param)

    return coerce


def apply_rules(
    rules: tuple[ParamRule, ...], params: dict[str, Any], ctx: RuleContext
) -> dict[str, Any]:
    """Run ``rules`` in order over ``params``; the coerced values of those present."""
    for rule in rules:
        if rule.name not in params:
            if rule.required:
                raise missing(rule.name)
            continue
        for other in rule.exclusive_with:
            if other in params:
                raise invalid("You may only specify one of these parameters: "
                              f"{rule.name}, {other}.", other)
        ctx.valid[rule.name] = rule.coerce(params[rule.name], rule.name, ctx)
    return ctx.valid
