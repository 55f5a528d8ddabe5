"""The configuration as attrs values (DESIGN §7).

Every class is ``@frozen``: a loaded config is an immutable snapshot, so a live reload swaps
one object for another and in-flight requests keep the one they started with.  Field names
are the YAML keys; the converter in :mod:`vmx_core.config.convert` rejects any other key.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from attrs import field, frozen

from vmx_core.secrets import Secret

Period = Literal["minute", "hour", "day", "week", "month", "lifetime"]
Dimension = Literal["source-ip", "metadata"]
PayloadMode = Literal["none", "redacted", "full"]
OnStoreError = Literal["allow", "deny"]


@frozen
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1


@frozen
class StorageConfig:
    audit: str = "sqlite:///./vmx-audit.db"
    capacity: str = "memory://"
    config: str = "file"


@frozen
class EncryptionConfig:
    provider: str = "libsodium"
    key: Secret | None = None
    key_id: str | None = None
    region: str | None = None


@frozen
class LimitsConfig:
    max_body_bytes: int = 20 * 1024 * 1024
    max_timeout_ms: int = 600_000


@frozen
class ModelPrice:
    """USD per million tokens; unset cache/reasoning prices default to input/output."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None


@frozen
class AuditConfig:
    payloads: PayloadMode = "none"
    redact_paths: list[str] = field(factory=list)
    retention_days: int | None = None
    #: Where rows wait while the audit database is unreachable (default: next to a SQLite
    #: file, else ``./vmx-audit-spool``).
    spool_dir: str | None = None
    #: Rows held in memory before overflow goes to the spool.
    queue_size: int = 10_000
    #: Most rows written in one batch.
    batch_size: int = 2_000
    #: provider -> model -> price, replacing entries of the shipped table (prices.json).
    prices: dict[str, dict[str, ModelPrice]] = field(factory=dict)


@frozen
class CapacitySettings:
    count_cached_tokens: bool = True
    on_store_error: OnStoreError = "allow"


@frozen
class CapacityLimit:
    period: Period
    requests: int | None = None
    tokens: int | None = None
    dimension: Dimension | None = None
    dimension_field: str | None = None


@frozen
class ModelRef:
    """A concrete model on a concrete connection, plus per-call settings."""

    connection: str
    model: str
    timeout_ms: int | None = None
    max_retries: int = 0
    default_args: dict[str, Any] = field(factory=dict)


@frozen
class SplitChoice:
    weight: float
    then: ModelRef


@frozen
class RoutingRule:
    """One routing rule (DESIGN §8).  ``when`` is a CEL string or an ``{all|any: [...]}`` tree."""

    name: str
    when: Any = None
    traffic: float | None = None
    then: ModelRef | None = None
    action: Literal["block"] | None = None
    split: list[SplitChoice] | None = None


@frozen
class CircuitBreakerConfig:
    threshold: float = 50.0
    window_s: int = 60
    min_requests: int = 10
    cooldown_s: int = 30


@frozen
class ResourceConfig:
    model: ModelRef
    routing: list[RoutingRule] = field(factory=list)
    fallback: list[ModelRef] = field(factory=list)
    secondary_models: list[ModelRef] = field(factory=list)
    capacity: list[CapacityLimit] = field(factory=list)
    fallback_on: list[int] = field(factory=list)
    default_max_tokens: int | None = None
    stream_idle_timeout_ms: int = 60_000
    circuit_breaker: CircuitBreakerConfig | None = None
    description: str | None = None


@frozen
class ConnectionConfig:
    provider: str
    credentials: dict[str, Secret] = field(factory=dict)
    options: dict[str, Any] = field(factory=dict)
    capacity: list[CapacityLimit] = field(factory=list)
    description: str | None = None


@frozen
class ApiKeyConfig:
    """An API key scoped to one environment.  Only its SHA-256 is kept once loaded."""

    key_sha256: str | None = None
    key: Secret | None = None
    resources: list[str] = field(factory=list)
    capacity: list[CapacityLimit] = field(factory=list)
    allow_overrides: list[str] = field(factory=list)
    enabled: bool = True
    expires_at: dt.datetime | None = None
    description: str | None = None


@frozen
class PoolConfig:
    """A prioritization pool (DESIGN §10): a share of each connection's minute token budget."""

    name: str
    rank: int
    min_reservation: float
    max_reservation: float
    resources: list[str] = field(factory=list)
    #: How long a request over the pool's share may wait for it (DESIGN's ``pools.max_wait_ms``).
    max_wait_ms: int = 0


@frozen
class EnvironmentConfig:
    connections: dict[str, ConnectionConfig] = field(factory=dict)
    resources: dict[str, ResourceConfig] = field(factory=dict)
    api_keys: dict[str, ApiKeyConfig] = field(factory=dict)
    pools: list[PoolConfig] = field(factory=list)


@frozen
class WorkspaceConfig:
    environments: dict[str, EnvironmentConfig] = field(factory=dict)


@frozen
class VmxConfig:
    server: ServerConfig = field(factory=ServerConfig)
    storage: StorageConfig = field(factory=StorageConfig)
    encryption: EncryptionConfig | None = None
    limits: LimitsConfig = field(factory=LimitsConfig)
    audit: AuditConfig = field(factory=AuditConfig)
    capacity: CapacitySettings = field(factory=CapacitySettings)
    workspaces: dict[str, WorkspaceConfig] = field(factory=dict)
