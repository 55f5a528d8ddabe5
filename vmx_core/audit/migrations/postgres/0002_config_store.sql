-- The config store (storage.config: database).  One row per object; every change also lands
-- in vmx_config_change, numbered by the one global version in vmx_config_head, whose row
-- lock serialises writers across every gateway process.
CREATE TABLE IF NOT EXISTS vmx_config_object (
    kind text NOT NULL,
    workspace text NOT NULL DEFAULT '',
    environment text NOT NULL DEFAULT '',
    name text NOT NULL DEFAULT '',
    body jsonb NOT NULL,
    version bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, workspace, environment, name)
);
--;
CREATE TABLE IF NOT EXISTS vmx_config_change (
    version bigint PRIMARY KEY,
    kind text NOT NULL,
    workspace text NOT NULL,
    environment text NOT NULL,
    name text NOT NULL,
    op text NOT NULL,
    body jsonb,
    actor text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
--;
CREATE TABLE IF NOT EXISTS vmx_config_head (
    id integer PRIMARY KEY CHECK (id = 1),
    version bigint NOT NULL
);
--;
INSERT INTO vmx_config_head (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING
