"""The CEL closure compiler agrees with cel-python's evaluator, and refuses what it must."""

from __future__ import annotations

from typing import Any

import celpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmx_core.routing.cel import CompileError, compile_expression
from vmx_core.routing.values import EvalError

ENV = celpy.Environment()
TEXT = st.text(alphabet="abcxyz é", max_size=6)
SMALL = st.integers(min_value=0, max_value=300)


def lit_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def int_exprs() -> st.SearchStrategy[str]:
    base = st.one_of(
        SMALL.map(str),
        SMALL.map(lambda n: f"-{n}"),
        st.sampled_from(["tokens.input", "request.tools_count"]),
        str_exprs_base().map(lambda s: f"size({s})"),
    )
    return st.recursive(
        base,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "%"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.tuples(bool_exprs_base(), inner, inner).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
        ),
        max_leaves=4,
    )


def str_exprs_base() -> st.SearchStrategy[str]:
    return st.one_of(
        TEXT.map(lit_str),
        st.sampled_from(["request.model", "metadata.team", 'metadata["region"]']),
    )


def str_exprs() -> st.SearchStrategy[str]:
    return st.recursive(
        str_exprs_base(),
        lambda inner: st.tuples(inner, inner).map(lambda t: f"({t[0]} + {t[1]})"),
        max_leaves=3,
    )


def bool_exprs_base() -> st.SearchStrategy[str]:
    return st.sampled_from(["true", "false", "request.stream", "has(metadata.team)", "has(metadata.region)"])


def bool_exprs() -> st.SearchStrategy[str]:
    ints, strs = int_exprs(), str_exprs()
    leaves = st.one_of(
        bool_exprs_base(),
        st.tuples(ints, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), ints).map(" ".join),
        st.tuples(strs, st.sampled_from(["==", "!=", "<", ">="]), strs).map(" ".join),
        # The receiver is never a concatenation: cel-python 0.5 returns a plain str for
        # `"a" + "b"`, which then has no .contains() (its bug; ours handles it).
        st.tuples(str_exprs_base(), st.sampled_from(["contains", "startsWith", "endsWith"]), strs).map(
            lambda t: f"{t[0]}.{t[1]}({t[2]})"
        ),
        st.tuples(strs, st.lists(TEXT, max_size=3)).map(lambda t: f"{t[0]} in [{', '.join(map(lit_str, t[1]))}]"),
        st.tuples(st.lists(SMALL, max_size=4), SMALL).map(lambda t: f"{t[0]}.exists(x, x > {t[1]})"),
        st.tuples(st.lists(SMALL, max_size=4), SMALL).map(lambda t: f"{t[0]}.all(x, x >= {t[1]})"),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            inner.map(lambda e: f"!({e})"),
            st.tuples(inner, st.sampled_from(["&&", "||"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        ),
        max_leaves=6,
    )


VARIABLES = st.fixed_dictionaries(
    {
        "tokens": st.fixed_dictionaries({"input": SMALL}),
        "request": st.fixed_dictionaries({"model": TEXT, "stream": st.booleans(), "tools_count": SMALL}),
        "metadata": st.dictionaries(st.sampled_from(["team", "region"]), TEXT, max_size=2),
    }
)


def celpy_result(expression: str, variables: dict[str, Any]) -> Any:
    program = ENV.program(ENV.compile(expression))
    try:
        result = program.evaluate({k: celpy.json_to_cel(v) for k, v in variables.items()})
    except celpy.CELEvalError:
        return "error"
    except IndexError:
        # cel-python 0.5 crashes while formatting the TypeError of `error && error`
        # (celparser.DumpAST pops an empty stack): it is still an evaluation error.
        return "error"
    if isinstance(result, celpy.CELEvalError):
        return "error"
    for kind, conv in ((celpy.celtypes.BoolType, bool), (celpy.celtypes.IntType, int), (celpy.celtypes.StringType, str)):
        if isinstance(result, kind):
            return conv(result)
    return result


def ours(expression: str, variables: dict[str, Any]) -> Any:
    compiled = compile_expression(expression, {}, frozenset())
    assert not compiled.fallback, expression
    try:
        return compiled.fn(variables)
    except EvalError:
        return "error"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bool_exprs(), VARIABLES)
def test_closures_agree_with_cel_python_on_boolean_expressions(expression: str, variables: dict[str, Any]) -> None:
    """Any generated well-typed boolean expression gives cel-python's answer, errors included."""
    assert ours(expression, variables) == celpy_result(expression, variables)


@settings(max_examples=200, deadline=None)
@given(int_exprs(), VARIABLES)
def test_closures_agree_with_cel_python_on_integer_arithmetic(expression: str, variables: dict[str, Any]) -> None:
    """Integer arithmetic (truncating division, sign of %, divide by zero) matches cel-python."""
    assert ours(expression, variables) == celpy_result(expression, variables)


@pytest.mark.parametrize(
    "expression",
    ["[1, 2, 3].map(x, x * 2) == [2, 4, 6]", "[1, 2, 3].filter(x, x > 1).size() == 2", "[4, 5].exists_one(x, x > 4)"],
)
def test_constructs_outside_the_subset_fall_back_to_cel_python(expression: str) -> None:
    """Comprehensions the closures don't cover still evaluate, through cel-python."""
    compiled = compile_expression(expression, {}, frozenset())
    assert compiled.fallback
    assert compiled.fn({}) is True


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("tokens.input >", "invalid CEL"),
        ("nosuchfunction(1)", "unknown function"),
        ("error_rate(request.model) > 1", "must be constants"),
        ("has(metadata)", "field selection"),
    ],
)
def test_invalid_expressions_fail_at_compile_time(expression: str, message: str) -> None:
    """Syntax errors, unknown functions and non-constant async arguments are compile errors."""
    with pytest.raises(CompileError, match=message):
        compile_expression(expression, {}, frozenset({"error_rate"}))


def test_no_python_code_can_run_from_an_expression() -> None:
    """Python-looking attacks are either invalid CEL or plain data, never executed."""
    for attack in ['__import__("os").system("true")', "request.__class__", '"".__class__.__mro__']:
        try:
            compiled = compile_expression(attack, {}, frozenset())
        except CompileError:
            continue
        with pytest.raises(EvalError):
            compiled.fn({"request": {"model": "x"}})


def test_numbers_compare_across_int_and_double() -> None:
    """Unlike cel-python 0.5, `tokens.input > 4.5` compares numerically (documented choice)."""
    compiled = compile_expression("tokens.input > 4.5", {}, frozenset())
    assert compiled.fn({"tokens": {"input": 5}}) is True
