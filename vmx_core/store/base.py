"""What a config store provides, and the two ways ``storage.config`` can be set."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from attrs import frozen

from vmx_core.store.objects import Key, Stored

#: Called with every row as it would be after a write; raises ConfigError to refuse it.
Check = Callable[[list[Stored]], None]


@frozen
class Expect:
    """A write's preconditions: ``exists`` (True: update, False: create, None: either) and
    ``version`` (``If-Match``: the object's current version, or None for any)."""

    exists: bool | None = None
    version: int | None = None


class ConfigStore(Protocol):
    """Objects with versions; every method raises :class:`~vmx_core.errors.ConfigStoreError`
    for storage failures, :class:`~vmx_core.errors.PreconditionFailed` (412),
    :class:`~vmx_core.errors.Conflict` (409) or :class:`~vmx_core.errors.NotFound` for a
    write whose expectation does not hold, and ``ConfigError`` from ``check``."""

    kind: str

    async def start(self) -> None: ...

    async def snapshot(self) -> tuple[int, list[Stored]]:
        """The current version and every row, read consistently."""

    async def get(self, key: Key) -> Stored | None: ...

    async def write(self, key: Key, body: dict[str, Any] | None, expect: Expect, check: Check,
                    actor: str) -> Stored | None:
        """Create/replace (``body``) or delete (``None``, with everything under it) one object,
        atomically with ``check`` seeing the result; returns the stored row (None on delete)."""

    async def replace_all(self, rows: list[tuple[Key, dict[str, Any]]], check: Check, actor: str) -> int:
        """Replace every object at once (``vmx import``); returns the new version."""

    def changes(self) -> AsyncIterator[int]:
        """Versions committed by anyone (this process included), as they happen."""

    async def aclose(self) -> None: ...
