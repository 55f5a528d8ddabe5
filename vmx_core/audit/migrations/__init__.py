"""Versioned schema migrations, shipped as package data: ``<dialect>/NNNN_name.sql``.

Each file is applied once, in version order, inside one transaction that also records it in
``vmx_schema_migrations``; every statement is itself idempotent (``IF NOT EXISTS``), so a
migration interrupted half-way or run against a hand-made schema converges.
"""

from __future__ import annotations

import re
from importlib import resources

from attrs import frozen

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@frozen
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The file split on lines holding only ``--;`` (SQLite executes one at a time)."""
        return [s.strip() for s in re.split(r"^--;\s*$", self.sql, flags=re.M) if s.strip()]


def migrations(dialect: str) -> list[Migration]:
    folder = resources.files(__name__).joinpath(dialect)
    found = []
    for entry in folder.iterdir():
        m = _FILE.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    return sorted(found, key=lambda mig: mig.version)
