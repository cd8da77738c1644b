-- Encryption at rest (stream_app/crypto): per-organisation data keys, wrapped by the master key.
-- A row is one version of an organisation's 256-bit data key, sealed with AES-256-GCM under the
-- master key identified by master_key_id (associated data: organisation and version). Versions
-- are never deleted by rotation: files sealed with an old version stay readable.
CREATE TABLE organization_data_keys (
    organization_id text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    version         integer NOT NULL CHECK (version >= 1),
    wrapped_key     bytea NOT NULL,
    master_key_id   text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    rewrapped_at    timestamptz,
    PRIMARY KEY (organization_id, version)
);

-- Row-level security, as in 002: the tenant role sees and writes only the rows of the
-- organisation named in app.organization_id (keys are created and re-wrapped in tenant scope).
ALTER TABLE organization_data_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON organization_data_keys TO wedding_tenant
    USING (organization_id = current_setting('app.organization_id', true));
GRANT SELECT, INSERT ON organization_data_keys TO wedding_tenant;
GRANT UPDATE (wrapped_key, master_key_id, rewrapped_at) ON organization_data_keys TO wedding_tenant;
