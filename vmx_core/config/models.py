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
    #: Older libsodium keys still accepted for reading, while `vmx rotate-key` moves values.
    previous_keys: list[Secret] = field(factory=list)
    key_id: str | None = None
    region: str | None = None
    #: A KMS endpoint other than AWS's (a VPC endpoint; a local KMS in tests).
    endpoint_url: str | None = None
    #: How long an unwrapped KMS data key stays in memory.
    data_key_ttl_s: int = 300


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
    #: How long the writer waits for more rows after the first of a batch.
    batch_wait_ms: int = 25
    #: Most bytes of a streamed answer kept in ``request_audit_payload`` (the rest is dropped
    #: and the stored answer says ``truncated``).
    max_stream_payload_bytes: int = 1_048_576
    #: provider -> model -> price, replacing entries of the shipped table (prices.json).
    prices: dict[str, dict[str, ModelPrice]] = field(factory=dict)


@frozen
class TelemetryConfig:
    #: ``vmx`` metadata keys copied onto metrics and spans as ``vmx.metadata.KEY``; only these,
    #: because every distinct value makes a new time series.
    metadata_attributes: list[str] = field(factory=list)


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
    description: str | None = None


@frozen
class WorkspaceConfig:
    environments: dict[str, EnvironmentConfig] = field(factory=dict)
    description: str | None = None


@frozen
class PolicyStatement:
    """One statement of a role policy (DESIGN §12): anchored globs, deny overrides allow."""

    effect: Literal["allow", "deny"]
    actions: list[str] = field(factory=list)
    resources: list[str] = field(factory=list)


@frozen
class RoleConfig:
    statements: list[PolicyStatement] = field(factory=list)
    description: str | None = None


@frozen
class UserConfig:
    """Role assignments of one identity (an OIDC ``sub`` or ``email``)."""

    roles: list[str] = field(factory=list)
    #: Workspaces the user is a member of; when set, the user is limited to them.
    workspaces: list[str] | None = None
    description: str | None = None


@frozen
class OidcConfig:
    issuer: str
    audience: str
    #: Default: discovered from ``{issuer}/.well-known/openid-configuration``.
    jwks_uri: str | None = None
    #: Dotted path of the claim holding role names (``realm_access.roles`` on Keycloak).
    roles_claim: str = "roles"
    #: Roles every valid token gets, on top of its claim and its /v1/user assignment.
    default_roles: list[str] = field(factory=list)
    algorithms: list[str] = field(factory=lambda: ["RS256", "ES256", "PS256", "EdDSA"])
    jwks_cache_s: int = 300
    leeway_s: int = 30


@frozen
class ManagementConfig:
    oidc: OidcConfig | None = None


@frozen
class VmxConfig:
    server: ServerConfig = field(factory=ServerConfig)
    storage: StorageConfig = field(factory=StorageConfig)
    encryption: EncryptionConfig | None = None
    limits: LimitsConfig = field(factory=LimitsConfig)
    audit: AuditConfig = field(factory=AuditConfig)
    capacity: CapacitySettings = field(factory=CapacitySettings)
    telemetry: TelemetryConfig = field(factory=TelemetryConfig)
    management: ManagementConfig = field(factory=ManagementConfig)
    roles: dict[str, RoleConfig] = field(factory=dict)
    users: dict[str, UserConfig] = field(factory=dict)
    workspaces: dict[str, WorkspaceConfig] = field(factory=dict)
