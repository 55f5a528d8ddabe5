"""Fallback policy (DESIGN §9): which failures fail over, and the order of legs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmx_core.config.models import ModelRef, ResourceConfig
from vmx_core.errors import (
    InvalidRequest,
    ProviderError,
    UpstreamConnectionError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamStalledError,
    UpstreamTimeoutError,
)
from vmx_core.routing.legs import Leg, plan_legs, should_fail_over

SETTINGS = settings(max_examples=200, deadline=None)
# 401/403 from the upstream mean the *connection's* credential was refused -- the client never
# chose it -- so they fail over like 408/429; every other 4xx is the client's own fault.
UPSTREAM_FAULT_4XX = (401, 403, 408, 429)

refs = st.builds(
    ModelRef,
    connection=st.sampled_from(["a", "b", "c"]),
    model=st.text(min_size=1, max_size=6),
    max_retries=st.integers(0, 3),
)
resources = st.builds(
    ResourceConfig,
    model=refs,
    fallback=st.lists(refs, max_size=4),
    secondary_models=st.lists(refs, max_size=4),
    fallback_on=st.lists(st.integers(400, 499), max_size=4),
)


@SETTINGS
@given(resources, st.integers(400, 599), st.none() | st.floats(0, 60))
def test_http_failures_fail_over_per_status(resource: ResourceConfig, status: int, retry_after: float | None) -> None:
    """429, 408, 401/403 and 5xx fail over; any other 4xx only when the resource lists it in fallback_on."""
    error = UpstreamHTTPError(status, "upstream said no", retry_after=retry_after)
    expected = status in UPSTREAM_FAULT_4XX or status >= 500 or status in resource.fallback_on
    assert should_fail_over(error, resource) is expected


@SETTINGS
@given(resources, st.integers(400, 499).filter(lambda s: s not in UPSTREAM_FAULT_4XX))
def test_client_error_fails_over_only_when_listed(resource: ResourceConfig, status: int) -> None:
    """The same 4xx stops the request without fallback_on and fails over with it."""
    error = UpstreamHTTPError(status, "bad request")
    without = ResourceConfig(model=resource.model, fallback=resource.fallback, fallback_on=[])
    listed = ResourceConfig(model=resource.model, fallback=resource.fallback, fallback_on=[status])
    assert should_fail_over(error, without) is False
    assert should_fail_over(error, listed) is True


@pytest.mark.parametrize(
    "error",
    [
        UpstreamConnectionError("connection refused"),
        UpstreamTimeoutError("leg timed out"),
        UpstreamStalledError("no bytes for 60 s"),
        UpstreamProtocolError("HTML error page"),
        ProviderError("generic provider failure"),
    ],
    ids=lambda e: type(e).__name__,
)
@settings(max_examples=50, deadline=None)
@given(resource=resources)
def test_transport_failures_always_fail_over(error: ProviderError, resource: ResourceConfig) -> None:
    """Connection errors, timeouts, stalls and protocol errors fail over whatever fallback_on says."""
    assert should_fail_over(error, resource) is True


def test_retryable_flag_matches_status() -> None:
    """UpstreamHTTPError.retryable is set from the status alone."""
    assert [UpstreamHTTPError(s, "x").retryable for s in (400, 401, 403, 404, 408, 422, 429, 500, 503)] == [
        False, True, True, False, True, False, True, True, True,
    ]


# ------------------------------------------------------------------------------------------
# plan_legs


@SETTINGS
@given(resources, st.none() | refs)
def test_legs_are_head_then_fallback_chain(resource: ResourceConfig, routed: ModelRef | None) -> None:
    """Without secondaryModelIndex the legs are routed-or-primary, then every fallback in order."""
    legs = plan_legs(resource, None, routed)
    head = Leg(routed, "routed") if routed is not None else Leg(resource.model, "primary")
    assert legs == [head, *(Leg(r, "fallback") for r in resource.fallback)]


@SETTINGS
@given(resources.filter(lambda r: bool(r.secondary_models)), st.none() | refs, st.data())
def test_secondary_index_selects_and_skips_routing(resource: ResourceConfig, routed: ModelRef | None, data: st.DataObject) -> None:
    """A valid secondaryModelIndex (0 included) heads the legs with that model, ignoring routing."""
    index = data.draw(st.integers(0, len(resource.secondary_models) - 1))
    legs = plan_legs(resource, index, routed)
    assert legs[0] == Leg(resource.secondary_models[index], "secondary")
    assert [leg.ref for leg in legs[1:]] == resource.fallback


def test_secondary_index_zero_works() -> None:
    """`secondaryModelIndex: 0` picks the first secondary model (VM-X rejected it)."""
    first = ModelRef(connection="b", model="m-2")
    resource = ResourceConfig(model=ModelRef(connection="a", model="m-1"), secondary_models=[first])
    assert plan_legs(resource, 0)[0] == Leg(first, "secondary")


@SETTINGS
@given(resources, st.integers(0, 50))
def test_out_of_range_secondary_index_is_invalid(resource: ResourceConfig, extra: int) -> None:
    """An index at or past the end of secondary_models is a 400 naming vmx.secondaryModelIndex."""
    index = len(resource.secondary_models) + extra
    with pytest.raises(InvalidRequest) as exc:
        plan_legs(resource, index)
    assert exc.value.status == 400
    assert exc.value.param == "vmx.secondaryModelIndex"
    assert str(index) in exc.value.message
