"""The built-in audit sink, registered through the same ``vmx_register_audit_sinks`` hook that
third-party sinks use.  ``storage.audit`` picks the database; ``none`` turns it off."""

from __future__ import annotations

from pathlib import Path

from vmx_core.audit.prices import PriceTable
from vmx_core.audit.queue import QueueSink
from vmx_core.audit.redact import Redactor
from vmx_core.audit.spool import Spool
from vmx_core.audit.store import open_store
from vmx_core.config.models import VmxConfig
from vmx_core.plugins import hookimpl

DISABLED = ("none", "")


@hookimpl(trylast=True)
def vmx_register_audit_sinks(config: VmxConfig) -> list[QueueSink]:
    uri = config.storage.audit
    if uri in DISABLED:
        return []
    return [QueueSink(
        store=open_store(uri),
        spool=Spool.open(spool_dir(config)),
        max_queue=config.audit.queue_size,
        batch_size=config.audit.batch_size,
        batch_wait=config.audit.batch_wait_ms / 1000,
        retention_days=config.audit.retention_days,
        pricer=PriceTable.load(config.audit.prices).cost,
        redactor=None if config.audit.payloads == "none"
        else Redactor.from_config(config.audit.payloads, config.audit.redact_paths),
    )]


def spool_dir(config: VmxConfig) -> Path:
    """``audit.spool_dir``, else next to a SQLite file, else ``./vmx-audit-spool``."""
    if config.audit.spool_dir:
        return Path(config.audit.spool_dir)
    uri = config.storage.audit
    if uri.startswith("sqlite://"):
        path = uri.removeprefix("sqlite://").removeprefix("/")
        if path and path != ":memory:":
            return Path(path + ".spool")
    return Path("vmx-audit-spool")
