"""The structured rule form: ``{all|any: [{field, op, value}, ...]}`` (DESIGN §8).

It compiles to the same kind of closure as a CEL expression and has the same semantics
(``tests/test_routing_rules.py`` checks them against each other): a missing field or a type
mismatch is an evaluation error, so the condition does not match -- except ``exists``, which
is simply false.  ``exists`` means present and not null (VM-X's was always true).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from vmx_core.routing.cel import CompileError, Fn, Schema, Vars
from vmx_core.routing.values import EvalError, eq, in_, order

OPS = frozenset(
    {"eq", "ne", "gt", "gte", "lt", "lte", "contains", "not_contains", "starts_with", "ends_with",
     "matches", "in", "not_in", "exists"}
)
_MISSING = object()


def compile_structured(tree: Any, path: str = "when", schema: Schema | None = None) -> tuple[Fn, frozenset[str]]:
    """Compile a condition tree; returns the closure and the top-level variables it reads.
    With a ``schema``, a field that no variable has is a compile error."""
    names: set[str] = set()
    fn = _node(tree, path, names, schema)
    return fn, frozenset(names)


def _node(node: Any, path: str, names: set[str], schema: Schema | None) -> Fn:
    if not isinstance(node, Mapping):
        raise CompileError(f"{path}: a condition must be an object")
    if "all" in node or "any" in node:
        if len(node) != 1:
            raise CompileError(f"{path}: a group has exactly one key, all or any")
        kind = "all" if "all" in node else "any"
        items = node[kind]
        if not isinstance(items, list) or not items:
            raise CompileError(f"{path}.{kind}: must be a non-empty list")
        parts = [_node(item, f"{path}.{kind}[{i}]", names, schema) for i, item in enumerate(items)]
        return _group(parts, kind == "all")
    return _leaf(node, path, names, schema)


def _group(parts: list[Fn], every: bool) -> Fn:
    def group(v: Vars) -> bool:
        error: EvalError | None = None
        for part in parts:
            try:
                result = part(v)
            except EvalError as exc:
                error = exc
                continue
            if result is not every:
                return bool(result)  # all: one false decides; any: one true decides
        if error is not None:
            raise error
        return every

    return group


def _leaf(node: Mapping[str, Any], path: str, names: set[str], schema: Schema | None) -> Fn:
    unknown = set(node) - {"field", "op", "value"}
    if unknown:
        raise CompileError(f"{path}: unknown key {sorted(unknown)[0]!r}")
    field, op = node.get("field"), node.get("op")
    if not isinstance(field, str) or not field:
        raise CompileError(f"{path}.field: must be a dotted variable path such as tokens.input")
    if op not in OPS:
        raise CompileError(f"{path}.op: {op!r} is not one of {', '.join(sorted(OPS))}")
    if op != "exists" and "value" not in node:
        raise CompileError(f"{path}.value: required for op {op}")
    value = node.get("value")
    keys = field.split(".")
    names.add(keys[0])
    if schema is not None:
        spec = schema.get(keys[0])
        if spec is None:
            raise CompileError(f"{path}.field: unknown variable {keys[0]!r} (variables: {', '.join(sorted(schema))})")
        if isinstance(spec, Mapping) and (len(keys) != 2 or keys[1] not in spec):
            raise CompileError(f"{path}.field: {field!r} is not a field of {keys[0]} (fields: {', '.join(sorted(spec))})")

    def get(v: Vars) -> Any:
        current: Any = v
        for key in keys:
            if not isinstance(current, Mapping) or key not in current:
                return _MISSING
            current = current[key]
        return current

    if op == "exists":
        return lambda v: (x := get(v)) is not _MISSING and x is not None
    if op in ("matches",):
        if not isinstance(value, str):
            raise CompileError(f"{path}.value: matches needs a regex string")
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise CompileError(f"{path}.value: invalid regex: {exc}") from None
    if op in ("in", "not_in") and not isinstance(value, list | Mapping):
        raise CompileError(f"{path}.value: {op} needs a list")

    compare = _comparator(op, value, pattern if op == "matches" else None)

    def leaf(v: Vars) -> bool:
        x = get(v)
        if x is _MISSING:
            raise EvalError(f"no such field: {field}")
        return bool(compare(x))

    return leaf


def _comparator(op: str, value: Any, pattern: re.Pattern[str] | None) -> Any:
    def need_str(x: Any) -> str:
        if not isinstance(x, str) or not isinstance(value, str):
            raise EvalError(f"{op} needs strings")
        return x

    table: dict[str, Any] = {
        "eq": lambda x: eq(x, value),
        "ne": lambda x: not eq(x, value),
        "gt": lambda x: order(">")(x, value),
        "gte": lambda x: order(">=")(x, value),
        "lt": lambda x: order("<")(x, value),
        "lte": lambda x: order("<=")(x, value),
        "contains": lambda x: value in need_str(x),
        "not_contains": lambda x: value not in need_str(x),
        "starts_with": lambda x: need_str(x).startswith(value),
        "ends_with": lambda x: need_str(x).endswith(value),
        "in": lambda x: in_(x, value),
        "not_in": lambda x: not in_(x, value),
    }
    if op == "matches":
        assert pattern is not None

        def matches(x: Any) -> bool:
            if not isinstance(x, str):
                raise EvalError("matches needs a string")
            return pattern.search(x) is not None

        return matches
    return table[op]
