"""CEL's value semantics, shared by the compiled CEL closures and the structured rule form:
typed equality and ordering (no implicit string/number coercion), integer division that
truncates toward zero, and errors instead of surprises."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any


class EvalError(Exception):
    """An expression failed while evaluating (missing key, type mismatch...)."""


def is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def same_kind(a: Any, b: Any) -> bool:
    if is_num(a) and is_num(b):
        return True
    return type(a) is type(b) or (isinstance(a, Mapping) and isinstance(b, Mapping)) or (
        isinstance(a, list | tuple) and isinstance(b, list | tuple)
    )


def eq(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if not same_kind(a, b):
        raise EvalError(f"no such overload: {type(a).__name__} == {type(b).__name__}")
    return bool(a == b)


def order(op: str) -> Callable[[Any, Any], bool]:
    def cmp(a: Any, b: Any) -> bool:
        if not (is_num(a) and is_num(b)) and not (type(a) is type(b) and isinstance(a, str | bool)):
            raise EvalError(f"no such overload: {type(a).__name__} {op} {type(b).__name__}")
        if op == "<":
            return bool(a < b)
        if op == "<=":
            return bool(a <= b)
        if op == ">":
            return bool(a > b)
        return bool(a >= b)

    return cmp


def in_(a: Any, b: Any) -> bool:
    if isinstance(b, Mapping):
        return a in b
    if isinstance(b, list | tuple):
        return any(same_kind(a, x) and a == x for x in b)
    raise EvalError(f"no such overload: in {type(b).__name__}")


def arith(op: str, a: Any, b: Any) -> Any:
    if op == "+":
        if (is_num(a) and is_num(b)) or (type(a) is type(b) and isinstance(a, str | list)):
            return a + b
    elif is_num(a) and is_num(b):
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if b == 0 and isinstance(a, int) and isinstance(b, int):
            raise EvalError("divide by zero")
        if op == "/":
            if isinstance(a, int) and isinstance(b, int):
                q = abs(a) // abs(b)
                return q if (a >= 0) == (b >= 0) else -q  # CEL truncates toward zero
            return a / b if b else (float("inf") if a > 0 else float("-inf") if a < 0 else float("nan"))
        if op == "%" and isinstance(a, int) and isinstance(b, int):
            r = abs(a) % abs(b)
            return r if a >= 0 else -r
    raise EvalError(f"no such overload: {type(a).__name__} {op} {type(b).__name__}")


def size(v: Any) -> int:
    if isinstance(v, str | list | tuple | Mapping):
        return len(v)
    raise EvalError(f"no such overload: size({type(v).__name__})")


def str_method(name: str) -> Callable[[Any, Any], bool]:
    def method(s: Any, arg: Any) -> bool:
        if not isinstance(s, str) or not isinstance(arg, str):
            raise EvalError(f"no such overload: {name}")
        if name == "contains":
            return arg in s
        if name == "startsWith":
            return s.startswith(arg)
        if name == "endsWith":
            return s.endswith(arg)
        try:
            return re.search(arg, s) is not None
        except re.error as exc:
            raise EvalError(f"invalid regex: {exc}") from None

    return method


def to_int(v: Any) -> int:
    try:
        if isinstance(v, float):
            return int(v)
        if isinstance(v, str):
            return int(v, 10)
        if isinstance(v, int):
            return int(v)
    except ValueError:
        pass
    raise EvalError(f"cannot convert {v!r} to int")


def to_double(v: Any) -> float:
    try:
        if is_num(v) or isinstance(v, str):
            return float(v)
    except ValueError:
        pass
    raise EvalError(f"cannot convert {v!r} to double")


def to_string(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str | int | float):
        return str(v)
    raise EvalError(f"cannot convert {type(v).__name__} to string")


def get(container: Any, key: Any) -> Any:
    if isinstance(container, Mapping):
        try:
            return container[key]
        except KeyError:
            raise EvalError(f"no such key: {key}") from None
    if isinstance(container, list | tuple) and isinstance(key, int) and not isinstance(key, bool):
        if 0 <= key < len(container):
            return container[key]
        raise EvalError(f"index out of range: {key}")
    raise EvalError(f"cannot index {type(container).__name__}")
