"""The in-process config store behind ``storage.config: file``.

It starts from the file; management API changes live in memory until the process stops (or
SIGHUP reloads the file, which replaces them).  Same versions, ETags and checks as the
database store, so the API behaves alike on both.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

from attrs import define, field

from vmx_core.errors import Conflict, NotFound, PreconditionFailed
from vmx_core.store.base import Check, Expect
from vmx_core.store.objects import Key, Stored


def precondition(current: Stored | None, key: Key, expect: Expect) -> None:
    """Shared by both stores: 404 / 409 / 412 before anything is written."""
    if expect.exists is True and current is None:
        raise NotFound(f"{key.kind} {key.name or key.environment} not found")
    if expect.exists is False and current is not None:
        raise Conflict(f"{key.kind} {key.name!r} already exists")
    if expect.version is not None and (current is None or current.version != expect.version):
        raise PreconditionFailed("If-Match does not match the current version: read it again and retry")


def applied(rows: dict[Key, Stored], key: Key, body: dict[str, Any] | None, version: int) -> dict[Key, Stored]:
    out = {k: v for k, v in rows.items() if body is not None or not k.under(key)}
    if body is not None:
        out[key] = Stored(key, copy.deepcopy(body), version)
    return out


@define
class MemoryStore:
    kind: str = "memory"
    version: int = 0
    _rows: dict[Key, Stored] = field(factory=dict)
    _lock: asyncio.Lock = field(factory=asyncio.Lock)
    _changed: asyncio.Condition | None = None

    async def start(self) -> None:
        self._changed = asyncio.Condition()

    async def snapshot(self) -> tuple[int, list[Stored]]:
        return self.version, list(self._rows.values())

    async def get(self, key: Key) -> Stored | None:
        return self._rows.get(key)

    async def write(self, key: Key, body: dict[str, Any] | None, expect: Expect, check: Check,
                    actor: str) -> Stored | None:
        async with self._lock:
            precondition(self._rows.get(key), key, expect)
            rows = applied(self._rows, key, body, self.version + 1)
            check(list(rows.values()))
            self._rows, self.version = rows, self.version + 1
        await self._notify()
        return self._rows.get(key)

    async def replace_all(self, rows: list[tuple[Key, dict[str, Any]]], check: Check, actor: str) -> int:
        async with self._lock:
            new = {k: Stored(k, copy.deepcopy(b), self.version + 1) for k, b in rows}
            check(list(new.values()))
            self._rows, self.version = new, self.version + 1
        await self._notify()
        return self.version

    async def _notify(self) -> None:
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()

    async def changes(self) -> AsyncIterator[int]:
        assert self._changed is not None, "start() the store first"
        seen = self.version
        while True:
            async with self._changed:
                await self._changed.wait_for(lambda seen=seen: self.version != seen)  # type: ignore[misc]
            seen = self.version
            yield seen

    async def aclose(self) -> None:
        return None
