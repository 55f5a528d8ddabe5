"""The legs of a request (DESIGN §9): routed-or-primary, then the fallback chain."""

from __future__ import annotations

from attrs import define

from vmx_core.config.models import ModelRef, ResourceConfig
from vmx_core.errors import InvalidRequest, ProviderError, UpstreamHTTPError


# ``@define`` rather than ``@frozen``: legs are made per request, and a frozen class's ``__init__`` sets each
# field through ``object.__setattr__``, several times the cost of a plain slot store (issue 9).
# Never mutated.
@define
class Leg:
    ref: ModelRef
    #: primary, secondary, routed or fallback
    role: str


def plan_legs(resource: ResourceConfig, secondary_index: int | None, routed: ModelRef | None = None) -> list[Leg]:
    """The ordered legs to try.  ``secondaryModelIndex`` skips routing (0 is valid)."""
    if secondary_index is not None:
        if secondary_index >= len(resource.secondary_models):
            raise InvalidRequest(
                f"vmx.secondaryModelIndex: {secondary_index} is out of range; the resource has "
                f"{len(resource.secondary_models)} secondary model(s)",
                param="vmx.secondaryModelIndex",
            )
        head = Leg(resource.secondary_models[secondary_index], "secondary")
    elif routed is not None:
        head = Leg(routed, "routed")
    else:
        head = Leg(resource.model, "primary")
    return [head, *(Leg(ref, "fallback") for ref in resource.fallback)]


def should_fail_over(error: ProviderError, resource: ResourceConfig) -> bool:
    """Connection errors, timeouts, stalls, 429 and 5xx fail over; other 4xx only when the
    resource's ``fallback_on`` lists them (the client's request is wrong, and another
    provider would most likely refuse it too)."""
    if isinstance(error, UpstreamHTTPError) and not error.retryable:
        return error.status in resource.fallback_on
    return error.retryable
