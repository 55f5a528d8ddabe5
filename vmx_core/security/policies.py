"""Role policies for the management API (DESIGN §12).

A policy is ``{statements: [{effect, actions, resources}]}``.  Patterns are **anchored**
globs — ``*`` is any run of characters (``:`` included), ``?`` one character, everything else
literal — so ``workspace:prod`` never matches ``workspace:production``.  Evaluation is
order-free: a request is allowed when some statement of some role allows it and **no**
statement of any role denies it (VM-X instead applies the first match, with unanchored
regexes).  Nothing matching means denied.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

from attrs import frozen

from vmx_core.config.models import PolicyStatement as Statement

#: Every ``<module>:<op>`` the management API checks (VM-X's vocabulary).
MODULE_OPS: dict[str, tuple[str, ...]] = {
    "workspace": ("create", "get", "list", "update", "delete"),
    "environment": ("create", "get", "list", "update", "delete"),
    "ai-connection": ("create", "get", "list", "update", "delete"),
    "ai-resource": ("create", "get", "list", "update", "delete"),
    "api-key": ("create", "get", "list", "update", "delete"),
    "pool-definition": ("get", "update"),
    "role": ("create", "get", "list", "update", "delete"),
    "user": ("create", "get", "list", "update", "delete"),
    "request-audit": ("list",),
    "request-usage": ("query",),
}
ACTIONS: tuple[str, ...] = tuple(f"{m}:{op}" for m, ops in MODULE_OPS.items() for op in ops)


def matches(st: Statement, action: str, resource: str) -> bool:
    return any(glob(p).fullmatch(action) for p in st.actions) and any(
        glob(p).fullmatch(resource) for p in st.resources
    )


@functools.lru_cache(maxsize=4096)
def glob(pattern: str) -> re.Pattern[str]:
    """The anchored regex of a glob (use ``fullmatch``)."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.S)


@frozen
class Decision:
    allowed: bool
    #: ``"role[i]"`` of the deciding statement, or ``None`` when nothing matched.
    by: str | None


def evaluate(roles: Mapping[str, Iterable[Statement]], action: str, resource: str) -> Decision:
    """Deny overrides allow, across every statement of every role; no match denies."""
    allowed_by: str | None = None
    for name, statements in roles.items():
        for i, st in enumerate(statements):
            if not matches(st, action, resource):
                continue
            if st.effect == "deny":
                return Decision(False, f"{name}[{i}]")
            allowed_by = allowed_by or f"{name}[{i}]"
    return Decision(allowed_by is not None, allowed_by)


_USER_ADMIN = [f"{m}:{op}" for m in ("user", "role") for op in ("create", "update", "delete")]

#: Always present; a config may not redefine them.
SEEDED_ROLES: dict[str, list[Statement]] = {
    "admin": [Statement("allow", ["*"], ["*"])],
    "read-only": [Statement("allow", ["*:get", "*:list", "request-usage:query"], ["*"])],
    "power-user": [Statement("deny", _USER_ADMIN, ["*"]), Statement("allow", ["*"], ["*"])],
}


def resource_name(workspace: str | None = None, environment: str | None = None,
                  module: str | None = None, name: str | None = None) -> str:
    """The resource string a policy pattern is matched against, e.g.
    ``workspace:acme:environment:prod:ai-resource:chat``; ``role:NAME``, ``user:ID``."""
    parts: list[str] = []
    if workspace is not None:
        parts += ["workspace", workspace]
    if environment is not None:
        parts += ["environment", environment]
    if module is not None:
        parts.append(module)
        if name is not None:
            parts.append(name)
    return ":".join(parts)
