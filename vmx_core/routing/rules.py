"""Compiled routing rules and their evaluation (DESIGN §8).

Rules are compiled once, when the config loads.  Per request: rules are tried top to bottom;
the first match wins; ``traffic`` rolls and ``split`` choices are sticky per correlation id
(hashed with the rule name) and random otherwise; a rule whose condition fails to evaluate
does not match (counted, logged at debug).
"""

from __future__ import annotations

import hashlib
import inspect
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog
from attrs import define, frozen

from vmx_core.config.models import ModelRef, RoutingRule
from vmx_core.errors import BlockedByRouting, ConfigError
from vmx_core.routing.cel import PREFETCHED, CallSite, CompileError, Fn, compile_expression
from vmx_core.routing.structured import compile_structured
from vmx_core.routing.values import EvalError
from vmx_core.routing.variables import SCHEMA

log = structlog.get_logger("vmx.routing")

#: An async rule function: called as ``await fn(context, *args)`` before the rule runs.
AsyncRuleFunction = Callable[..., Awaitable[Any]]


@frozen
class RuleFunctions:
    """The functions callable from CEL, split into pure ones and prefetched async ones."""

    sync: Mapping[str, Callable[..., Any]]
    async_: Mapping[str, AsyncRuleFunction]

    @classmethod
    def from_mapping(cls, functions: Mapping[str, Callable[..., Any]]) -> RuleFunctions:
        sync = {n: f for n, f in functions.items() if not inspect.iscoroutinefunction(f)}
        async_ = {n: f for n, f in functions.items() if inspect.iscoroutinefunction(f)}
        return cls(sync, async_)


@frozen
class CompiledRule:
    name: str
    condition: Fn | None
    calls: tuple[CallSite, ...]
    traffic: float | None
    then: ModelRef | None
    block: bool
    split: tuple[tuple[float, ModelRef], ...]


# ``@define`` rather than ``@frozen``: one is made per request, and a frozen class's ``__init__`` sets each
# field through ``object.__setattr__``, several times the cost of a plain slot store (issue 9).
# Never mutated.
@define
class Decision:
    ref: ModelRef | None
    rule: str | None


@define
class RuleStats:
    evaluation_errors: int = 0


STATS = RuleStats()


@frozen
class RuleSet:
    rules: tuple[CompiledRule, ...]

    @classmethod
    def compile(cls, rules: Sequence[RoutingRule], functions: RuleFunctions, path: str) -> RuleSet:
        """Compile every rule; the first problem is a ConfigError naming the rule's path."""
        errors: list[tuple[str, str]] = []
        compiled = []
        for i, rule in enumerate(rules):
            rpath = f"{path}[{i}]"
            try:
                compiled.append(_compile_rule(rule, functions, rpath))
            except CompileError as exc:
                # Structured-form messages already start with their path below `when`.
                where = rpath if str(exc).startswith("when") else f"{rpath}.when"
                errors.append((where, str(exc)))
        if errors:
            raise ConfigError(errors)
        return cls(tuple(compiled))

    async def route(
        self, variables: dict[str, Any], functions: RuleFunctions, context: Any, correlation_id: str | None
    ) -> Decision:
        prefetched: dict[CallSite, Any] = {}
        variables[PREFETCHED] = prefetched
        for rule in self.rules:
            if rule.condition is not None:
                try:
                    for site in rule.calls:
                        if site not in prefetched:
                            prefetched[site] = await functions.async_[site.name](context, *site.args)
                    matched = rule.condition(variables) is True
                except EvalError as exc:
                    STATS.evaluation_errors += 1
                    log.debug("rule_evaluation_error", rule=rule.name, error=str(exc))
                    matched = False
                except Exception as exc:  # a plugin's async rule function failing
                    STATS.evaluation_errors += 1
                    log.warning("rule_function_error", rule=rule.name, error=type(exc).__name__)
                    matched = False
                if not matched:
                    continue
            if rule.traffic is not None and _roll(rule.name, correlation_id) >= rule.traffic:
                continue  # not taken: fall through to the next rule (canaries cascade)
            if rule.block:
                raise BlockedByRouting(f"blocked by routing rule {rule.name!r}")
            if rule.split:
                total = rule.split[-1][0]
                point = _roll(rule.name + "/split", correlation_id) / 100 * total
                for bound, ref in rule.split:
                    if point < bound:
                        return Decision(ref, rule.name)
                return Decision(rule.split[-1][1], rule.name)
            return Decision(rule.then, rule.name)
        return Decision(None, None)


def _compile_rule(rule: RoutingRule, functions: RuleFunctions, path: str) -> CompiledRule:
    condition: Fn | None = None
    calls: tuple[CallSite, ...] = ()
    if isinstance(rule.when, str):
        compiled = compile_expression(rule.when, functions.sync, frozenset(functions.async_), SCHEMA)
        condition, calls = compiled.fn, compiled.calls
    elif rule.when is not None:
        condition, _ = compile_structured(rule.when, "when", SCHEMA)
    split: list[tuple[float, ModelRef]] = []
    cumulative = 0.0
    for choice in rule.split or []:
        if choice.weight > 0:
            cumulative += choice.weight
            split.append((cumulative, choice.then))
    return CompiledRule(
        name=rule.name,
        condition=condition,
        calls=calls,
        traffic=rule.traffic,
        then=rule.then,
        block=rule.action == "block",
        split=tuple(split),
    )


def _roll(salt: str, correlation_id: str | None) -> float:
    """A number in [0, 100): a hash of (correlation id, rule) when sticky, else random."""
    if correlation_id is None:
        return random.random() * 100
    digest = hashlib.blake2b(f"{correlation_id}\x00{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100
