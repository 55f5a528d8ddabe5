"""The built-in rule functions, registered through ``vmx_register_rule_functions`` like any
plugin's.  Async functions receive a :class:`RuleContext` first and are prefetched before the
rule that calls them runs."""

from __future__ import annotations

from typing import Any

from attrs import frozen

from vmx_core.plugins import hookimpl
from vmx_core.routing.health import ConnectionHealth
from vmx_core.routing.values import EvalError


@frozen
class RuleContext:
    workspace: str
    environment: str
    #: The resource's primary connection: the default subject of error_rate().
    connection: str
    health: ConnectionHealth


async def error_rate(ctx: RuleContext, window_minutes: Any = 10, connection: Any = None) -> float:
    """% of failed upstream calls of the primary (or the named) connection."""
    if isinstance(window_minutes, bool) or not isinstance(window_minutes, int | float) or window_minutes <= 0:
        raise EvalError("error_rate(window_minutes): a positive number of minutes")
    name = ctx.connection if connection is None else str(connection)
    return ctx.health.error_rate((ctx.workspace, ctx.environment, name), float(window_minutes))


@hookimpl
def vmx_register_rule_functions() -> dict[str, Any]:
    return {"error_rate": error_rate}
