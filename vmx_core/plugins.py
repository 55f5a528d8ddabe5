"""The plugin manager: every plugin, built-in or third-party, arrives through entry points.

``VMX_DISABLE_PLUGINS`` is a comma-separated list of entry-point names to skip (``*`` skips
every entry point, for a locked-down embedding that registers its plugins by hand).
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

import pluggy
from attrs import define, field, frozen

from vmx_core import hookspecs
from vmx_core.errors import PluginError

if TYPE_CHECKING:
    from vmx_core.capacity.store import CapacityStore
    from vmx_core.providers import Provider
    from vmx_core.routing.rules import RuleFunctions
    from vmx_core.security.ciphers import CipherKind

ENTRY_POINT_GROUP = "vmx"

hookimpl = pluggy.HookimplMarker("vmx")


@frozen
class PluginInfo:
    name: str
    module: str
    version: str | None
    hooks: tuple[str, ...]


def disabled_plugins(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    raw = (environ if environ is not None else os.environ).get("VMX_DISABLE_PLUGINS", "")
    return frozenset(p.strip() for p in raw.split(",") if p.strip())


@define
class Plugins:
    """The loaded plugins: a pluggy manager plus what ``/-/plugins`` reports about them."""

    pm: pluggy.PluginManager
    versions: dict[str, str] = field(factory=dict)

    @classmethod
    def load(
        cls,
        extra: Iterable[object] = (),
        *,
        entry_points: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> Plugins:
        """Every enabled entry point of group ``vmx``, then ``extra`` (objects or modules)."""
        pm = pluggy.PluginManager("vmx")
        pm.add_hookspecs(hookspecs)
        plugins = cls(pm)
        from vmx_core.audit import plugin as builtin_audit
        from vmx_core.capacity import stores as builtin_capacity_stores
        from vmx_core.routing import functions as builtin_rule_functions
        from vmx_core.security import credentials as builtin_ciphers

        # Core features use the same hooks as plugins, but are not optional.
        pm.register(builtin_rule_functions, name="vmx.rule-functions")
        pm.register(builtin_audit, name="vmx.audit")
        pm.register(builtin_capacity_stores, name="vmx.capacity-stores")
        pm.register(builtin_ciphers, name="vmx.ciphers")
        disabled = disabled_plugins(environ)
        if entry_points and "*" not in disabled:
            eps = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
            for ep in eps:
                if ep.name in disabled or pm.has_plugin(ep.name):
                    continue
                try:
                    plugin = ep.load()
                except Exception as exc:  # a broken third-party package must say who it is
                    raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
                pm.register(plugin, name=ep.name)
                if ep.dist is not None:
                    plugins.versions[ep.name] = ep.dist.version
        for i, plugin in enumerate(extra):
            if pm.is_registered(plugin):
                continue
            name = getattr(plugin, "name", None) or getattr(plugin, "__name__", None)
            pm.register(plugin, name=str(name or f"{type(plugin).__name__}-{i}"))
        return plugins

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def describe(self) -> list[PluginInfo]:
        """What ``/-/plugins`` shows: names, modules, versions and implemented hooks only."""
        infos = []
        for name, plugin in sorted(self.pm.list_name_plugin(), key=lambda np: str(np[0])):
            if plugin is None:
                continue
            hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(plugin) or ()))
            module = getattr(plugin, "__name__", None) or type(plugin).__module__
            infos.append(
                PluginInfo(name=str(name), module=str(module), version=self.versions.get(str(name)), hooks=hooks)
            )
        return infos

    def rule_functions(self) -> RuleFunctions:
        from vmx_core.routing.rules import RuleFunctions

        merged: dict[str, Any] = {}
        for mapping in reversed(self.pm.hook.vmx_register_rule_functions()):
            merged.update(mapping or {})
        return RuleFunctions.from_mapping(merged)

    def capacity_store(self, uri: str) -> CapacityStore:
        """The store for ``storage.capacity``: the first plugin that answers the URI."""
        store = self.pm.hook.vmx_capacity_store(uri=uri)
        if store is None:
            raise PluginError(f"storage.capacity: no plugin provides a capacity store for {uri.split('://')[0]}://")
        return cast("CapacityStore", store)

    def credential_ciphers(self) -> dict[str, CipherKind]:
        """Every registered cipher kind by name; a plugin's wins over a built-in of the same
        name (built-ins are ``trylast``, so they come last in pluggy's order)."""
        found: dict[str, CipherKind] = {}
        for kind in collect(self.pm.hook.vmx_register_credential_ciphers()):
            found.setdefault(kind.name, kind)
        return found

    def providers(self) -> dict[str, Provider]:
        """Every registered provider by name; a name registered twice is an error."""
        found: dict[str, Provider] = {}
        for provider in collect(self.pm.hook.vmx_register_providers()):
            if provider.name in found and found[provider.name] is not provider:
                raise PluginError(f"two plugins register the provider {provider.name!r}")
            found[provider.name] = provider
        return found


def collect(results: Iterable[Any]) -> list[Any]:
    """Flatten the list-of-lists a non-firstresult hook returns, skipping ``None``."""
    out: list[Any] = []
    for item in results:
        if item is None:
            continue
        if isinstance(item, list | tuple):
            out.extend(item)
        else:
            out.append(item)
    return out
