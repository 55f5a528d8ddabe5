-- The audit trail (DESIGN §11), partitioned by day on "timestamp".  The primary key must
-- include the partition key; (id, timestamp) still makes replays idempotent because a row's
-- timestamp never changes.  Partitions are created on demand by the writer and dropped by
-- retention (vmx_core/audit/postgres.py).
CREATE TABLE IF NOT EXISTS request_audit (
    id uuid NOT NULL,
    "timestamp" timestamptz NOT NULL,
    workspace text NOT NULL,
    environment text NOT NULL,
    resource text,
    connection text,
    provider text,
    model text,
    api_key_id text,
    format text NOT NULL,
    stream boolean NOT NULL,
    status_code integer NOT NULL,
    error_code text,
    error_message text,
    attempts jsonb NOT NULL DEFAULT '[]',
    routing_rule text,
    correlation_id text,
    metadata jsonb NOT NULL DEFAULT '{}',
    prompt_tokens integer,
    completion_tokens integer,
    total_tokens integer,
    cached_tokens integer,
    cache_creation_tokens integer,
    reasoning_tokens integer,
    cost numeric(20, 10),
    duration_ms double precision NOT NULL,
    ttft_ms double precision,
    upstream_ms double precision NOT NULL,
    gate_ms double precision NOT NULL,
    routing_ms double precision NOT NULL,
    source_ip text,
    PRIMARY KEY (id, "timestamp")
) PARTITION BY RANGE ("timestamp");
--;
-- The usage API filters on tenant + time first, then groups by a dimension.
CREATE INDEX IF NOT EXISTS request_audit_tenant_time
    ON request_audit (workspace, environment, "timestamp");
--;
CREATE INDEX IF NOT EXISTS request_audit_tenant_resource_time
    ON request_audit (workspace, environment, resource, "timestamp");
--;
CREATE INDEX IF NOT EXISTS request_audit_correlation
    ON request_audit (workspace, environment, correlation_id);
--;
CREATE INDEX IF NOT EXISTS request_audit_metadata
    ON request_audit USING gin (metadata jsonb_path_ops);
--;
CREATE TABLE IF NOT EXISTS request_audit_payload (
    id uuid NOT NULL,
    "timestamp" timestamptz NOT NULL,
    client_body jsonb,
    upstream_body jsonb,
    response_body jsonb,
    PRIMARY KEY (id, "timestamp")
) PARTITION BY RANGE ("timestamp");
