-- The audit log becomes append-only and hash-chained per organisation (issue 9, item 7).
-- Each row carries its organisation's sequence number (1, 2, 3, ...), the previous row's hash
-- and the SHA-256 of its own canonical content; the rule and the writer are in
-- stream_app/db/audit_events.py, the check is `wedding-engine audit verify`.
-- Time: timestamptz (UTC). Hashes: lowercase hex SHA-256.

-- Rows written before this migration carry no chain (and some no organisation). They are
-- kept as they were, unchained, in audit_log_legacy, which only the owner can read. Its
-- organisation column is named recorded_organization_id so that the tenant grants given to
-- every table with an organization_id column do not reach it.
CREATE TABLE audit_log_legacy AS
    SELECT id, organization_id AS recorded_organization_id, actor, action, target, details, at
    FROM audit_log;
REVOKE ALL ON audit_log_legacy FROM PUBLIC;
REVOKE ALL ON audit_log_legacy FROM wedding_tenant;
DELETE FROM audit_log;

-- System-wide events use the reserved organisation id '(system)' (outside the id rule of
-- every tenant, so no tenant can be named so): organization_id is never NULL.
ALTER TABLE audit_log
    ALTER COLUMN organization_id SET NOT NULL,
    ADD COLUMN seq       bigint NOT NULL CHECK (seq >= 1),
    ADD COLUMN prev_hash text NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    ADD COLUMN row_hash  text NOT NULL CHECK (row_hash ~ '^[0-9a-f]{64}$'),
    ADD COLUMN outcome   text NOT NULL DEFAULT 'ok'
                         CHECK (outcome IN ('ok', 'refused', 'failed')),
    ADD CONSTRAINT audit_log_chain UNIQUE (organization_id, seq);

-- Append-only for everyone: no role may UPDATE, DELETE or TRUNCATE it, and a trigger refuses
-- those statements even to the owner (who can still disable it: that is what the chain's
-- hashes are for).
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM wedding_tenant;
GRANT SELECT, INSERT ON audit_log TO wedding_tenant;
GRANT USAGE ON SEQUENCE audit_log_id_seq TO wedding_tenant;

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Row-level security, as in 001: the tenant role reads and appends only the rows of the
-- organisation named in app.organization_id.
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_log TO wedding_tenant
    USING (organization_id = current_setting('app.organization_id', true))
    WITH CHECK (organization_id = current_setting('app.organization_id', true));
