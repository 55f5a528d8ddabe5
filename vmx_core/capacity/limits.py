"""Which limits apply to a request, and the counters they become.

Levels (DESIGN §10, with VM-X's mistakes fixed): a **connection**'s limits are counted once
for the connection, shared by every resource and key that reaches it; a **resource**'s and an
**API key**'s limits each have their own counters.  A dimension splits one limit into one
counter per value (the caller's IP, or one metadata field).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Literal
from urllib.parse import quote

from attrs import frozen

from vmx_core.capacity.window import Check, Window
from vmx_core.config.models import CapacityLimit

Level = Literal["connection", "resource", "api_key"]
#: How a level is named to a client: never with another tenant's names.
LEVEL_WORDS: Mapping[str, str] = {"connection": "connection", "resource": "resource", "api_key": "API key"}
#: The counter of a dimension value the request does not carry.
MISSING = "-"


def tenant_tag(workspace: str, environment: str) -> str:
    """The hash tag of every key of one environment: an admission touches one environment
    only, so on Redis Cluster all its keys share one slot (and its script may run)."""
    return hashlib.sha1(f"{workspace}/{environment}".encode()).hexdigest()[:16]


@frozen
class Limit:
    """One configured limit at one level, ready to become a counter per dimension value."""

    level: Level
    owner: str
    index: int
    config: CapacityLimit
    window: Window
    prefix: str

    @classmethod
    def of(cls, workspace: str, environment: str, level: Level, owner: str, index: int, config: CapacityLimit) -> Limit:
        prefix = f"vmx:{{{tenant_tag(workspace, environment)}}}:{level}:{quote(owner, safe='')}:{index}:{config.period}"
        return cls(level, owner, index, config, Window.of(config.period), prefix)

    def key(self, source_ip: str | None, metadata: Mapping[str, str]) -> str:
        if self.config.dimension == "source-ip":
            return f"{self.prefix}:ip:{quote(source_ip or MISSING, safe='')}"
        if self.config.dimension == "metadata":
            value = metadata.get(self.config.dimension_field or "", MISSING)
            return f"{self.prefix}:md:{quote(value, safe='')}"
        return self.prefix

    def check(self, source_ip: str | None, metadata: Mapping[str, str], tokens: int) -> Check:
        return Check(
            self.key(source_ip, metadata),
            self.window,
            self.config.requests,
            self.config.tokens,
            1,
            tokens,
        )

    def describe(self) -> str:
        """What a refusal says: the level and the period, not whose limit it is."""
        return f"the {LEVEL_WORDS[self.level]}'s {self.config.period} limit"


def limits_of(workspace: str, environment: str, level: Level, owner: str, configs: Sequence[CapacityLimit]) -> tuple[Limit, ...]:
    return tuple(Limit.of(workspace, environment, level, owner, i, c) for i, c in enumerate(configs))


def needs_tokens(limits: Sequence[Limit]) -> bool:
    return any(lim.config.tokens is not None for lim in limits)
