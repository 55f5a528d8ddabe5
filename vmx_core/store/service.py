"""Keeping a gateway in step with its config store.

:class:`ConfigService` owns the store chosen by ``storage.config`` (``file``: a
:class:`MemoryStore` seeded from the file; ``database``: Postgres), composes the file's own
sections with the store's objects into one :class:`VmxConfig`, and reloads the gateway on
every version it has not applied yet.  A change that cannot be applied (it does not validate,
a credential does not decrypt) is logged and the gateway keeps serving the config it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import structlog
from attrs import define, field

from vmx_core.config.convert import structure, unstructure
from vmx_core.config.loader import load_config
from vmx_core.config.models import VmxConfig
from vmx_core.config.validate import validate
from vmx_core.errors import ConfigError, ConfigStoreError, CredentialError
from vmx_core.store.base import ConfigStore
from vmx_core.store.memory import MemoryStore
from vmx_core.store.objects import Stored, rows_of, tree_of

if TYPE_CHECKING:
    from vmx_core.gateway import Gateway

log = structlog.get_logger("vmx.config")

#: The config sections that live in the store; the rest always comes from the file.
STORED_SECTIONS = ("workspaces", "roles", "users")


def open_store(config: VmxConfig) -> ConfigStore:
    if config.storage.config == "file":
        return MemoryStore()
    if config.storage.config == "database":
        uri = config.storage.audit
        if not uri.startswith(("postgresql://", "postgres://")):
            raise ConfigError("storage.config: database needs storage.audit to be a postgresql:// URI",
                              "$.storage.config")
        from vmx_core.store.postgres import PostgresConfigStore

        return PostgresConfigStore(uri)
    raise ConfigError(f"must be file or database, not {config.storage.config!r}", "$.storage.config")


@define
class ConfigService:
    gateway: Gateway
    store: ConfigStore
    #: The file's own sections (server, storage, encryption...), as a config-file mapping.
    _base: dict[str, Any] = field(factory=dict)
    applied: int = -1
    _task: asyncio.Task[None] | None = None
    _applied_event: asyncio.Condition = field(factory=asyncio.Condition)

    @classmethod
    def for_gateway(cls, gateway: Gateway) -> ConfigService:
        service = cls(gateway, open_store(gateway.config))
        service.rebase(gateway.config)
        return service

    def rebase(self, config: VmxConfig) -> None:
        raw = unstructure(config)
        self._base = {k: v for k, v in raw.items() if k not in STORED_SECTIONS}

    @property
    def base_config(self) -> VmxConfig:
        return structure({**self._base, **{k: {} for k in STORED_SECTIONS}}, VmxConfig)

    def compose(self, rows: Iterable[Stored]) -> VmxConfig:
        """The file's sections plus the store's objects, structured and validated.  Store
        content is never ``${VAR}``-expanded: a management API user must not be able to read
        the gateway's environment through it."""
        config = structure({**self._base, **tree_of(rows)}, VmxConfig)
        plugins = self.gateway.plugins
        validate(config, plugins.providers(), plugins.rule_functions())
        return config

    async def start(self) -> None:
        await self.store.start()
        if isinstance(self.store, MemoryStore):
            await self.store.replace_all(list(rows_of(self.gateway.config)), lambda rows: None, "file")
            self.applied = self.store.version
        else:
            await self.sync()
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def sync(self) -> None:
        """Apply the store's current version if it is newer than the applied one."""
        version, rows = await self.store.snapshot()
        if version <= self.applied:
            return
        await self.gateway.reload(self.compose(rows))
        await self._mark(version)

    async def _mark(self, version: int) -> None:
        async with self._applied_event:
            self.applied = max(self.applied, version)
            self._applied_event.notify_all()

    async def wait_applied(self, version: int) -> None:
        """Return once ``version`` (or a later one) is live in this process."""
        async with self._applied_event:
            await self._applied_event.wait_for(lambda: self.applied >= version)

    async def _watch(self) -> None:
        async for version in self.store.changes():
            if version <= self.applied:
                continue
            try:
                await self.sync()
            except (ConfigError, ConfigStoreError, CredentialError) as exc:
                # Keep serving the last good config; say why the new one was refused.
                log.error("config_reload_failed", version=version, error=str(exc))

    async def reload_file(self, path: str | os.PathLike[str]) -> None:
        """SIGHUP with ``storage.config: file``: the file replaces the whole config,
        including changes made through the management API since the start."""
        plugins = self.gateway.plugins
        config = load_config(path, providers=plugins.providers(), rule_functions=plugins.rule_functions())
        self.rebase(config)
        version = await self.store.replace_all(list(rows_of(config)), lambda rows: None, "sighup")
        await self.gateway.reload(config)
        await self._mark(version)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.store.aclose()
