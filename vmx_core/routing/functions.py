"""The built-in rule functions, registered through ``vmx_register_rule_functions`` like any
plugin's.  Async functions receive a :class:`RuleContext` first and are prefetched before the
rule that calls them runs."""

from __future__ import annotations

from typing import Any

from attrs import define

from vmx_core.plugins import hookimpl
from vmx_core.routing.health import ConnectionHealth
from vmx_core.routing.values import EvalError


# ``@define`` rather than ``@frozen``: one is made per request, and a frozen class's ``__init__`` sets each
# field through ``object.__setattr__``, several times the cost of a plain slot store (issue 9).
# Never mutated.
@define
class RuleContext:
    workspace: str
    environment: str
    #: The resource's primary connection: the default subject of error_rate().
    connection: str
    health: ConnectionHealth
    #: The capacity gate (vmx_core.capacity.gate.Gate): the source of capacity_usage().
    capacity: Any = None


async def error_rate(ctx: RuleContext, window_minutes: Any = 10, connection: Any = None) -> float:
    """% of failed upstream calls of the primary (or the named) connection."""
    if isinstance(window_minutes, bool) or not isinstance(window_minutes, int | float) or window_minutes <= 0:
        raise EvalError("error_rate(window_minutes): a positive number of minutes")
    name = ctx.connection if connection is None else str(connection)
    return await ctx.health.rate((ctx.workspace, ctx.environment, name), float(window_minutes))


async def capacity_usage(ctx: RuleContext, period: Any = "minute") -> dict[str, Any]:
    """How much of the primary connection's ``period`` limits is used, from the capacity
    store: ``{requests_percent, tokens_percent, remaining_requests, remaining_tokens}``.  With
    several limits of that period the fullest one is reported; a dimension-split limit has no
    single value and is left out; a missing limit reads 0 % and ``null`` remaining."""
    from vmx_core.capacity.gate import Subject
    from vmx_core.capacity.window import PERIOD_SECONDS

    if not isinstance(period, str) or period not in PERIOD_SECONDS:
        raise EvalError("capacity_usage(period): one of " + ", ".join(PERIOD_SECONDS))
    out: dict[str, Any] = {
        "requests_percent": 0.0, "tokens_percent": 0.0, "remaining_requests": None, "remaining_tokens": None
    }
    if ctx.capacity is None:
        return out
    subject = Subject(ctx.workspace, ctx.environment, ctx.connection, "", None, None, {})
    limits, counts = await ctx.capacity.usage(subject, period)
    for lim, used in zip(limits, counts, strict=True):
        if lim.config.dimension is not None:
            continue
        for kind, cap, n in (("requests", lim.config.requests, used.requests), ("tokens", lim.config.tokens, used.tokens)):
            if cap is None:
                continue
            percent = 100.0 * n / cap if cap else 100.0
            if percent >= out[f"{kind}_percent"]:
                out[f"{kind}_percent"] = percent
                out[f"remaining_{kind}"] = max(0, cap - n)
    return out


@hookimpl
def vmx_register_rule_functions() -> dict[str, Any]:
    return {"error_rate": error_rate, "capacity_usage": capacity_usage}
