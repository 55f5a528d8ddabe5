-- The audit trail (DESIGN §11).  Timestamps are UTC text 'YYYY-MM-DDTHH:MM:SS.ffffffZ',
-- which sorts like time; JSON columns hold JSON text.
CREATE TABLE IF NOT EXISTS request_audit (
    id TEXT PRIMARY KEY,
    timestamp TEXT NOT NULL,
    workspace TEXT NOT NULL,
    environment TEXT NOT NULL,
    resource TEXT,
    connection TEXT,
    provider TEXT,
    model TEXT,
    api_key_id TEXT,
    format TEXT NOT NULL,
    stream INTEGER NOT NULL,
    status_code INTEGER NOT NULL,
    error_code TEXT,
    error_message TEXT,
    attempts TEXT NOT NULL DEFAULT '[]',
    routing_rule TEXT,
    correlation_id TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    total_tokens INTEGER,
    cached_tokens INTEGER,
    cache_creation_tokens INTEGER,
    reasoning_tokens INTEGER,
    cost REAL,
    duration_ms REAL NOT NULL,
    ttft_ms REAL,
    upstream_ms REAL NOT NULL,
    gate_ms REAL NOT NULL,
    routing_ms REAL NOT NULL,
    source_ip TEXT
);
--;
CREATE INDEX IF NOT EXISTS request_audit_tenant_time
    ON request_audit (workspace, environment, timestamp);
--;
CREATE INDEX IF NOT EXISTS request_audit_correlation
    ON request_audit (workspace, environment, correlation_id);
--;
CREATE TABLE IF NOT EXISTS request_audit_payload (
    id TEXT PRIMARY KEY,
    timestamp TEXT NOT NULL,
    client_body TEXT,
    upstream_body TEXT,
    response_body TEXT
);
