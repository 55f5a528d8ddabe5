"""CEL routing expressions compiled to plain Python closures.

cel-python parses and checks the standard grammar; this module walks its tree once, at config
load, and turns the supported subset into closures (a few µs per evaluation instead of
cel-python's 25-200 µs).  Anything outside the subset (comprehension macros other than
``exists``/``all``, bytes, messages) runs on cel-python's own evaluator, and
``tests/test_routing_cel.py`` proves with Hypothesis that both paths agree.

There is no ``eval`` anywhere: an expression can only read variables and call the functions
registered for rules, so code execution is impossible by construction.

Error semantics follow CEL: ``&&``/``||`` absorb an error when the other side decides the
result (``false && error`` is ``false``); any other error propagates as :class:`EvalError`, and
the rule then does not match.
"""

from __future__ import annotations

import ast as pyast
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import celpy
import lark
from attrs import frozen
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError

from vmx_core.routing.values import (
    EvalError,
    arith,
    eq,
    get,
    in_,
    is_num,
    order,
    size,
    str_method,
    to_double,
    to_int,
    to_string,
)

Value = Any
Vars = Mapping[str, Any]
Fn = Callable[[Vars], Value]


class CompileError(Exception):
    """An expression is not valid CEL, or uses something rules may not use."""


class Unsupported(Exception):
    """Outside the closure subset: the caller falls back to cel-python's evaluator."""


@frozen
class CallSite:
    """A call to a rule function with constant arguments: prefetched before evaluation, so
    async helpers (``error_rate``, ``capacity_usage``) work inside expressions."""

    name: str
    args: tuple[Value, ...]


#: Read by compiled closures: the prefetched results of async rule functions.
PREFETCHED = "__prefetched__"

_ENV = celpy.Environment()


def parse(expression: str) -> lark.Tree[Any]:
    try:
        return _ENV.compile(expression)
    except CELParseError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "syntax error"
        raise CompileError(f"invalid CEL: {first}") from None


@frozen
class Compiled:
    fn: Fn
    #: Top-level variable names the expression reads.
    names: frozenset[str]
    #: Calls to async rule functions, to prefetch.
    calls: tuple[CallSite, ...]
    #: True when the expression runs on cel-python's evaluator.
    fallback: bool


#: What the variables look like, for compile-time checks: root -> {field: type}, or "map" for a
#: map with any keys and string values (metadata).  Types: "num", "string", "bool", "any".
Schema = Mapping[str, "Mapping[str, str] | str"]


def compile_expression(
    expression: str,
    functions: Mapping[str, Callable[..., Any]],
    async_names: frozenset[str],
    schema: Schema | None = None,
) -> Compiled:
    """Compile ``expression``.  With a ``schema``, an unknown variable or field and a
    comparison between incompatible types (``tokens.input > "8000"``) are compile errors."""
    tree = parse(expression)
    builder = _Builder(functions, async_names, schema)
    try:
        fn = builder.expr(tree)
        return Compiled(fn, frozenset(builder.names), tuple(builder.calls), False)
    except Unsupported:
        if builder.calls:
            raise CompileError("async rule functions can only be used in the supported CEL subset") from None
        return Compiled(_celpy_fallback(tree, functions), frozenset(builder.names), (), True)


def _celpy_fallback(tree: lark.Tree[Any], functions: Mapping[str, Callable[..., Any]]) -> Fn:
    program = _ENV.program(tree, functions=dict(functions))

    def run(vars: Vars) -> Value:
        activation = {name: json_to_cel(_plain(vars[name])) for name in _top_names(tree) if name in vars}
        try:
            result = program.evaluate(activation)
        except Exception as exc:
            raise EvalError(str(exc)) from None
        if isinstance(result, Exception):
            raise EvalError(str(result))
        return _from_cel(result)

    return run


def _top_names(tree: lark.Tree[Any]) -> set[str]:
    return {str(t.children[0]) for t in tree.find_data("ident")}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(value[k]) for k in value}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _from_cel(value: Any) -> Any:
    if isinstance(value, celpy.celtypes.BoolType):
        return bool(value)
    if isinstance(value, celpy.celtypes.IntType | celpy.celtypes.UintType):
        return int(value)
    if isinstance(value, celpy.celtypes.DoubleType):
        return float(value)
    if isinstance(value, celpy.celtypes.StringType):
        return str(value)
    return value


_BUILTINS: dict[str, Callable[..., Any]] = {"size": size, "int": to_int, "double": to_double, "string": to_string}
_METHODS = {name: str_method(name) for name in ("contains", "startsWith", "endsWith", "matches")}


class _Builder:
    def __init__(
        self, functions: Mapping[str, Callable[..., Any]], async_names: frozenset[str], schema: Schema | None = None
    ) -> None:
        self.functions = functions
        self.async_names = async_names
        self.schema = schema
        #: Static types of closures, by id: what the compile-time type check knows.
        self.types: dict[int, str] = {}
        #: Closures that read a schema root directly, by id -> root name.
        self.roots: dict[int, str] = {}
        self.names: set[str] = set()
        self.calls: list[CallSite] = []
        self.bound: list[str] = []

    def expr(self, t: lark.Tree[Any]) -> Fn:
        return self.node(t)

    def node(self, t: Any) -> Fn:
        if not isinstance(t, lark.Tree):
            raise Unsupported(str(t))
        method = getattr(self, "n_" + t.data, None)
        if method is None:
            raise Unsupported(t.data)
        fn: Fn = method(t.children)
        return fn

    # structure ----------------------------------------------------------------------------

    def n_expr(self, ch: Sequence[Any]) -> Fn:
        if len(ch) == 1 or ch[1] is None:
            return self.node(ch[0])
        cond, yes, no = (self.node(c) for c in ch)

        def ternary(v: Vars) -> Value:
            c = cond(v)
            if not isinstance(c, bool):
                raise EvalError("ternary condition is not a bool")
            return yes(v) if c else no(v)

        return ternary

    def n_conditionalor(self, ch: Sequence[Any]) -> Fn:
        if len(ch) == 1 or ch[0] is None:
            return self.node(ch[-1])
        left, right = self.node(ch[0]), self.node(ch[1])
        return _logic(left, right, absorbing=True)

    def n_conditionaland(self, ch: Sequence[Any]) -> Fn:
        if len(ch) == 1 or ch[0] is None:
            return self.node(ch[-1])
        left, right = self.node(ch[0]), self.node(ch[1])
        return _logic(left, right, absorbing=False)

    def n_relation(self, ch: Sequence[Any]) -> Fn:
        if len(ch) == 1 or ch[0] is None:
            return self.node(ch[-1])
        op_node, right_node = ch
        left, right = self.node(op_node.children[0]), self.node(right_node)
        lt, rt = self.types.get(id(left), "any"), self.types.get(id(right), "any")
        if op_node.data != "relation_in" and "any" not in (lt, rt) and lt != rt:
            raise CompileError(f"type error: cannot compare {lt} with {rt}")
        op: Callable[[Any, Any], bool] = {
            "relation_lt": order("<"), "relation_le": order("<="), "relation_gt": order(">"),
            "relation_ge": order(">="), "relation_eq": eq, "relation_ne": lambda a, b: not eq(a, b),
            "relation_in": in_,
        }[op_node.data]
        return lambda v: op(left(v), right(v))

    def n_addition(self, ch: Sequence[Any]) -> Fn:
        return self._binary(ch, {"addition_add": "+", "addition_sub": "-"})

    def n_multiplication(self, ch: Sequence[Any]) -> Fn:
        return self._binary(ch, {"multiplication_mul": "*", "multiplication_div": "/", "multiplication_mod": "%"})

    def _binary(self, ch: Sequence[Any], ops: dict[str, str]) -> Fn:
        if len(ch) == 1 or ch[0] is None:
            return self.node(ch[-1])
        op_node, right_node = ch
        left, right, op = self.node(op_node.children[0]), self.node(right_node), ops[op_node.data]
        return lambda v: arith(op, left(v), right(v))

    def n_unary(self, ch: Sequence[Any]) -> Fn:
        if len(ch) == 1:
            return self.node(ch[0])
        kind, inner = ch[0].data, self.node(ch[1])
        if kind == "unary_not":

            def not_(v: Vars) -> Value:
                x = inner(v)
                if not isinstance(x, bool):
                    raise EvalError("! needs a bool")
                return not x

            return not_

        def neg(v: Vars) -> Value:
            x = inner(v)
            if not is_num(x):
                raise EvalError("- needs a number")
            return -x

        return neg

    def n_member(self, ch: Sequence[Any]) -> Fn:
        return self.node(ch[0])

    def n_primary(self, ch: Sequence[Any]) -> Fn:
        return self.node(ch[0])

    def n_paren_expr(self, ch: Sequence[Any]) -> Fn:
        return self.node(ch[0])

    # values -------------------------------------------------------------------------------

    def n_literal(self, ch: Sequence[Any]) -> Fn:
        value = _literal(ch[0])
        fn: Fn = lambda v: value  # noqa: E731
        kind = "bool" if isinstance(value, bool) else "num" if is_num(value) else "string" if isinstance(value, str) else None
        if kind is not None:
            self.types[id(fn)] = kind
        return fn

    def n_list_lit(self, ch: Sequence[Any]) -> Fn:
        items = [self.node(c) for c in (ch[0].children if ch and ch[0] is not None else [])]
        return lambda v: [f(v) for f in items]

    def n_map_lit(self, ch: Sequence[Any]) -> Fn:
        raw = ch[0].children if ch and ch[0] is not None else []
        pairs = [(self.node(raw[i]), self.node(raw[i + 1])) for i in range(0, len(raw), 2)]
        return lambda v: {k(v): val(v) for k, val in pairs}

    def n_ident(self, ch: Sequence[Any]) -> Fn:
        name = str(ch[0])
        if name in self.bound:
            return lambda v: v[name]
        if self.schema is not None and name not in self.schema:
            raise CompileError(f"undeclared reference to {name!r} (variables: {', '.join(sorted(self.schema))})")
        self.names.add(name)

        def ident(v: Vars) -> Value:
            try:
                return v[name]
            except KeyError:
                raise EvalError(f"undeclared reference to {name!r}") from None

        self.roots[id(ident)] = name
        return ident

    def n_member_dot(self, ch: Sequence[Any]) -> Fn:
        target, field = self.node(ch[0]), str(ch[1])
        fn: Fn = lambda v: get(target(v), field)  # noqa: E731
        root = self.roots.get(id(target))
        if root is not None and self.schema is not None:
            spec = self.schema[root]
            if spec == "map":
                self.types[id(fn)] = "string"
            elif isinstance(spec, Mapping):
                if field not in spec:
                    raise CompileError(f"{root} has no field {field!r} (fields: {', '.join(sorted(spec))})")
                self.types[id(fn)] = spec[field]
        return fn

    def n_member_index(self, ch: Sequence[Any]) -> Fn:
        target, key = self.node(ch[0]), self.node(ch[1])
        return lambda v: get(target(v), key(v))

    # calls --------------------------------------------------------------------------------

    def _args(self, exprlist: Any) -> list[Any]:
        return list(exprlist.children) if exprlist is not None else []

    def n_ident_arg(self, ch: Sequence[Any]) -> Fn:
        name, raw_args = str(ch[0]), self._args(ch[1] if len(ch) > 1 else None)
        if name == "has":
            return self._has(raw_args)
        if name in self.async_names:
            consts = tuple(_constant(a) for a in raw_args)
            site = CallSite(name, consts)
            self.calls.append(site)
            return lambda v: v[PREFETCHED][site]
        fn = _BUILTINS.get(name) or self.functions.get(name)
        if fn is None:
            raise CompileError(f"unknown function {name!r}")
        args = [self.node(a) for a in raw_args]
        return _call(fn, args)

    def n_member_dot_arg(self, ch: Sequence[Any]) -> Fn:
        name = str(ch[1])
        raw_args = self._args(ch[2] if len(ch) > 2 else None)
        if name in ("exists", "all"):
            return self._macro(name, ch[0], raw_args)
        target = self.node(ch[0])
        args = [self.node(a) for a in raw_args]
        if name == "size" and not args:
            return lambda v: size(target(v))
        method = _METHODS.get(name)
        if method is None or len(args) != 1:
            raise Unsupported(name)
        arg = args[0]
        return lambda v: method(target(v), arg(v))

    def _has(self, raw_args: list[Any]) -> Fn:
        # has(a.b): a presence test that never errors on the missing field itself.
        inner = _unwrap(raw_args[0]) if len(raw_args) == 1 else None
        if not isinstance(inner, lark.Tree) or inner.data != "member_dot":
            raise CompileError("has() needs a field selection such as has(metadata.team)")
        target, field = self.node(inner.children[0]), str(inner.children[1])

        def has(v: Vars) -> Value:
            container = target(v)
            if not isinstance(container, Mapping):
                raise EvalError("has() on a non-map")
            return field in container

        return has

    def _macro(self, name: str, target_node: Any, raw_args: list[Any]) -> Fn:
        var = _unwrap(raw_args[0]) if len(raw_args) == 2 else None
        if not isinstance(var, lark.Tree) or var.data != "ident":
            raise Unsupported(name)
        var_name = str(var.children[0])
        target = self.node(target_node)
        self.bound.append(var_name)
        try:
            pred = self.node(raw_args[1])
        finally:
            self.bound.pop()

        def macro(v: Vars) -> Value:
            items = target(v)
            if isinstance(items, Mapping):
                items = list(items)
            if not isinstance(items, list | tuple):
                raise EvalError(f"{name}() on a non-list")
            scope = _Scope(v, var_name)
            results = []
            error: EvalError | None = None
            for item in items:
                scope.value = item
                try:
                    r = pred(scope)
                except EvalError as exc:
                    error = exc
                    continue
                if not isinstance(r, bool):
                    raise EvalError(f"{name}() predicate is not a bool")
                if r is (name == "exists"):
                    return r  # short-circuit: exists found one, all found a false
                results.append(r)
            if error is not None:
                raise error
            return name == "all"

        return macro


class _Scope(Mapping[str, Any]):
    """Variables plus one comprehension variable."""

    def __init__(self, outer: Vars, name: str) -> None:
        self.outer, self.name, self.value = outer, name, None

    def __getitem__(self, key: str) -> Any:
        return self.value if key == self.name else self.outer[key]

    def __iter__(self) -> Any:
        return iter([*self.outer, self.name])

    def __len__(self) -> int:
        return len(self.outer) + 1


def _logic(left: Fn, right: Fn, *, absorbing: bool) -> Fn:
    # absorbing=True is ||: true wins; False is &&: false wins.
    def logic(v: Vars) -> Value:
        try:
            a = left(v)
            if not isinstance(a, bool):
                raise EvalError("logical operator on a non-bool")
        except EvalError as exc:
            b = right(v)
            if b is absorbing:
                return b
            raise exc from None
        if a is absorbing:
            return a
        b = right(v)
        if not isinstance(b, bool):
            raise EvalError("logical operator on a non-bool")
        return b

    return logic


def _call(fn: Callable[..., Any], args: list[Fn]) -> Fn:
    def call(v: Vars) -> Value:
        try:
            return fn(*(a(v) for a in args))
        except EvalError:
            raise
        except Exception as exc:  # a plugin's rule function failing must not fail the request
            raise EvalError(f"{getattr(fn, '__name__', 'function')} failed: {exc}") from None

    return call


_WRAPPERS = frozenset(
    {"expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication", "unary",
     "member", "primary", "paren_expr"}
)


def _unwrap(t: Any) -> Any:
    """Follow single-child wrapper nodes down to the node that means something."""
    while isinstance(t, lark.Tree) and t.data in _WRAPPERS:
        kids = [c for c in t.children if c is not None]
        if len(kids) != 1:
            break
        t = kids[0]
    return t


def _constant(t: Any) -> Value:
    lit = next(iter(t.find_data("literal")), None) if isinstance(t, lark.Tree) else None
    if lit is None or any(True for _ in t.find_data("ident")):
        raise CompileError("arguments to async rule functions (error_rate, capacity_usage) must be constants")
    value = _literal(lit.children[0])
    neg = any(True for _ in t.find_data("unary_neg"))
    return -value if neg and is_num(value) else value


def _literal(token: Any) -> Value:
    kind, text = token.type, str(token)
    if kind == "INT_LIT":
        return int(text, 0) if not text.lstrip("-").startswith("0x") else int(text, 16)
    if kind == "FLOAT_LIT":
        return float(text)
    if kind == "BOOL_LIT":
        return text == "true"
    if kind == "NULL_LIT":
        return None
    if kind in ("STRING_LIT", "MLSTRING_LIT"):
        if text[:1] in "rR":
            return text[4:-3] if kind == "MLSTRING_LIT" else text[2:-1]
        try:
            value = pyast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise Unsupported("string escape") from None
        if isinstance(value, str):
            return value
    raise Unsupported(kind)
