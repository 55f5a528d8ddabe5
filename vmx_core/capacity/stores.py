"""The built-in capacity stores, registered through ``vmx_capacity_store`` like a plugin's.

``trylast``: a plugin answering the same URI scheme replaces them.
"""

from __future__ import annotations

from typing import Any

from vmx_core.plugins import hookimpl


@hookimpl(trylast=True)
def vmx_capacity_store(uri: str) -> Any:
    scheme = uri.split("://", 1)[0]
    if scheme == "memory":
        from vmx_core.capacity.memory import MemoryStore

        return MemoryStore()
    if scheme in ("redis", "rediss", "redis+cluster"):
        from vmx_core.capacity.redis import RedisStore

        return RedisStore.from_uri(uri)
    return None
