"""Who is calling the management API, and what they may do."""

from __future__ import annotations

from collections.abc import Mapping

from attrs import frozen

from vmx_core.config.models import PolicyStatement as Statement
from vmx_core.errors import PermissionDenied
from vmx_core.security.policies import SEEDED_ROLES, Decision, evaluate


@frozen
class Principal:
    """An authenticated caller: the admin token, or an OIDC identity."""

    id: str
    kind: str  # "admin" | "oidc"
    roles: frozenset[str]
    #: Workspaces this caller is limited to; ``None`` means every workspace.
    workspaces: frozenset[str] | None = None

    def may_see_workspace(self, workspace: str) -> bool:
        return self.workspaces is None or workspace in self.workspaces


ADMIN = Principal("admin-token", "admin", frozenset({"admin"}))


def role_statements(defined: Mapping[str, list[Statement]], names: frozenset[str]) -> dict[str, list[Statement]]:
    """The statements of each named role (seeded ones first); unknown names grant nothing."""
    out: dict[str, list[Statement]] = {}
    for name in sorted(names):
        if name in SEEDED_ROLES:
            out[name] = SEEDED_ROLES[name]
        elif name in defined:
            out[name] = defined[name]
    return out


def authorize(principal: Principal, defined: Mapping[str, list[Statement]], action: str, resource: str,
              workspace: str | None) -> Decision:
    """Raise :class:`PermissionDenied` unless ``principal`` may do ``action`` on ``resource``.

    ``workspace`` is the workspace the object lives in (``None`` for roles and users): a
    caller limited to some workspaces can never reach another one's objects, nor the global
    ones, whatever their roles say."""
    if principal.workspaces is not None and (workspace is None or workspace not in principal.workspaces):
        raise PermissionDenied(f"{action} on {resource} is outside your workspaces")
    decision = evaluate(role_statements(defined, principal.roles), action, resource)
    if not decision.allowed:
        raise PermissionDenied(f"{action} on {resource} is not allowed by your roles")
    return decision
