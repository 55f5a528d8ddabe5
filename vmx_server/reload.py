"""SIGHUP reloads the config file (the file store's live reload).

The new file is loaded and validated completely before anything changes; a file with errors is
logged with every error's path and the running config stays in place.  The swap itself is
``Gateway.reload``: atomic, with requests in flight finishing on the config they started with.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import structlog

from vmx_core import Gateway
from vmx_core.config.loader import load_config
from vmx_core.errors import ConfigError

log = structlog.get_logger("vmx.server")


async def reload_from_file(gateway: Gateway, path: Path) -> bool:
    plugins = gateway.plugins
    try:
        config = load_config(path, providers=plugins.providers(), rule_functions=plugins.rule_functions())
        await gateway.reload(config)
    except ConfigError as exc:
        log.error("config_reload_failed", path=str(path), errors=[f"{p}: {m}" for p, m in exc.errors])
        return False
    log.info("config_reloaded", path=str(path))
    return True


def install_sighup(gateway: Gateway, path: Path) -> None:
    """Reload ``path`` on every SIGHUP; reloads run one at a time, in signal order."""
    loop = asyncio.get_running_loop()
    lock = asyncio.Lock()
    pending: set[asyncio.Task[bool]] = set()

    async def reload_once() -> bool:
        async with lock:
            return await reload_from_file(gateway, path)

    def on_hup() -> None:
        task = loop.create_task(reload_once())
        pending.add(task)
        task.add_done_callback(pending.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
