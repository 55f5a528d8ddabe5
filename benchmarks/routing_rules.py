"""Routing-rule evaluation per request for a typical resource: one rule on ``tokens.input``,
one on ``metadata``, one 10% canary (DESIGN §8 asks for < 20 µs).

Measured: building the lazy variables, counting tokens when the first rule reads them, and
evaluating all three rules, against cel-python's default interpreter on the same two expressions (without token counting).
Run: ``.venv/bin/python benchmarks/routing_rules.py``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time

import celpy

from vmx_core.config.convert import structure
from vmx_core.config.models import RoutingRule
from vmx_core.routing.functions import RuleContext, vmx_register_rule_functions
from vmx_core.routing.health import ConnectionHealth
from vmx_core.routing.rules import RuleFunctions, RuleSet
from vmx_core.routing.variables import rule_variables
from vmx_core.wire.formats import Format

RULES = [
    {"name": "long", "when": "tokens.input > 8000", "then": {"connection": "c", "model": "big"}},
    {"name": "team", "when": 'metadata.team == "research"', "then": {"connection": "c", "model": "r"}},
    {"name": "canary", "traffic": 10, "then": {"connection": "c", "model": "canary"}},
]
BODY = {"model": "chat", "messages": [{"role": "system", "content": "You are terse."},
                                       {"role": "user", "content": "Summarise the plot of Hamlet in three sentences."}]}
N = 20_000


async def ours() -> float:
    functions = RuleFunctions.from_mapping(vmx_register_rule_functions())
    rules = RuleSet.compile([structure(r, RoutingRule) for r in RULES], functions, "$")
    ctx = RuleContext("w", "e", "c", ConnectionHealth())
    start = time.perf_counter()
    for _ in range(N):
        variables = rule_variables(Format.CHAT_COMPLETIONS, BODY, {"team": "support"}, "app")
        await rules.route(variables, functions, ctx, None)
    return (time.perf_counter() - start) / N * 1e6


def celpy_runner() -> float:
    env = celpy.Environment()
    programs = [env.program(env.compile(r["when"])) for r in RULES if "when" in r]
    start = time.perf_counter()
    for _ in range(N // 10):
        activation = {
            "tokens": celpy.json_to_cel({"input": 20}),
            "metadata": celpy.json_to_cel({"team": "support"}),
        }
        for p in programs:
            p.evaluate(activation)
    return (time.perf_counter() - start) / (N // 10) * 1e6


def main() -> None:
    rounds = [asyncio.run(ours()) for _ in range(5)]
    baseline = [celpy_runner() for _ in range(3)]
    print(json.dumps({
        "vmx_route_us": {"median": round(statistics.median(rounds), 2), "min": round(min(rounds), 2)},
        "celpy_interpreter_us": {"median": round(statistics.median(baseline), 2)},
    }, indent=2))


if __name__ == "__main__":
    main()
