"""A loaded config turned into live objects: provider clients, key index, resources.

A :class:`Runtime` is immutable once built; a reload builds a new one and swaps it in, and
requests that started on the old one finish on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from attrs import define, field, frozen

from vmx_core.capacity.gate import Gate
from vmx_core.capacity.memory import MemoryStore
from vmx_core.capacity.store import CapacityStore
from vmx_core.config.convert import structure
from vmx_core.config.models import ConnectionConfig, ResourceConfig, VmxConfig
from vmx_core.errors import ConfigError
from vmx_core.providers import ConnectionSpec, Provider, ProviderClient
from vmx_core.routing.breaker import CircuitBreaker
from vmx_core.routing.health import ConnectionHealth
from vmx_core.routing.rules import RuleFunctions, RuleSet
from vmx_core.security.apikeys import ApiKey


@define
class Connection:
    name: str
    provider: Provider
    client: ProviderClient
    config: ConnectionConfig


@frozen
class Tenant:
    """One workspace/environment."""

    workspace: str
    environment: str
    connections: Mapping[str, Connection]
    resources: Mapping[str, ResourceConfig]
    #: Compiled routing rules of each resource that has any.
    rules: Mapping[str, RuleSet]


@define(eq=False)  # a service: identity, and hashable for the gateway's retired set
class Runtime:
    config: VmxConfig
    tenants: dict[tuple[str, str], Tenant] = field(factory=dict)
    #: sha256 hex -> key, for every environment: one dict lookup authenticates a request.
    keys: dict[str, ApiKey] = field(factory=dict)
    functions: RuleFunctions = field(factory=lambda: RuleFunctions({}, {}))
    health: ConnectionHealth = field(factory=ConnectionHealth)
    breaker: CircuitBreaker = field(factory=CircuitBreaker)
    gate: Gate = field(factory=lambda: Gate(MemoryStore()))
    #: Requests (and streams) still running on this runtime, and whether a reload replaced
    #: it: a retired runtime closes its upstream sessions when the count reaches zero.
    in_flight: int = 0
    retired: bool = False
    #: (workspace, environment, connection, model) -> monotonic time until which the model's
    #: provider is not asked to count tokens (it said it cannot; ``pipeline.count``).
    count_unsupported: dict[tuple[str, str, str, str], float] = field(factory=dict)

    @classmethod
    def build(
        cls,
        config: VmxConfig,
        providers: Mapping[str, Provider],
        functions: RuleFunctions | None = None,
        health: ConnectionHealth | None = None,
        breaker: CircuitBreaker | None = None,
        capacity_store: CapacityStore | None = None,
    ) -> Runtime:
        rt = cls(
            config,
            functions=functions or RuleFunctions({}, {}),
            health=health or ConnectionHealth(),
            breaker=breaker or CircuitBreaker(),
            # The store outlives reloads (the Gateway owns it); the limits index is per config.
            gate=Gate.build(config, capacity_store or MemoryStore()),
        )
        for ws_name, ws in config.workspaces.items():
            for env_name, env in ws.environments.items():
                conns: dict[str, Connection] = {}
                for name, conn in env.connections.items():
                    provider = providers.get(conn.provider)
                    if provider is None:
                        path = f"$.workspaces.{ws_name}.environments.{env_name}.connections.{name}.provider"
                        raise ConfigError(f"unknown provider {conn.provider!r}", path)
                    options = structure(
                        conn.options,
                        provider.options_type,
                        path=f"$.workspaces.{ws_name}.environments.{env_name}.connections.{name}.options",
                    )
                    spec = ConnectionSpec(
                        workspace=ws_name,
                        environment=env_name,
                        name=name,
                        provider=conn.provider,
                        credentials=conn.credentials,
                        options=options,
                    )
                    conns[name] = Connection(name, provider, provider.connect(spec), conn)
                base = f"$.workspaces.{ws_name}.environments.{env_name}.resources"
                rules = {
                    name: RuleSet.compile(res.routing, rt.functions, f"{base}.{name}.routing")
                    for name, res in env.resources.items()
                    if res.routing
                }
                rt.tenants[(ws_name, env_name)] = Tenant(ws_name, env_name, conns, dict(env.resources), rules)
                for key_name, key_cfg in env.api_keys.items():
                    key = ApiKey.from_config(ws_name, env_name, key_name, key_cfg)
                    rt.keys[key.sha256] = key
        return rt

    async def aclose(self) -> None:
        clients = [c.client for t in self.tenants.values() for c in t.connections.values()]
        await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
