"""Choosing the model: routing rules, secondary models and the fallback chain."""

from vmx_core.routing.legs import Leg, plan_legs, should_fail_over

__all__ = ["Leg", "plan_legs", "should_fail_over"]
