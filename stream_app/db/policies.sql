-- Row-level security and grants of every tenant table, (re)applied by stream_app.db.migrate
-- after the numbered migrations, so a table added by any migration is covered the same way.
-- Idempotent. Roles: stream_app/db/roles.py. The tenant function: migration 007.
--
-- Every table of the public schema with an organization_id column (and organizations itself):
--   ENABLE and FORCE ROW LEVEL SECURITY (FORCE: the owner is held by the policies too unless it
--   has BYPASSRLS, which only the operator's owner login has);
--   policy tenant_isolation for wedding_tenant: USING and WITH CHECK organization_id =
--   the tenant of the transaction (a row of another organisation is neither read nor written);
--   wedding_tenant gets SELECT, INSERT, UPDATE, DELETE, except on audit_log (SELECT, INSERT:
--   append-only), schedule_runs and gdpr_requests (no DELETE) and organizations (SELECT: registration is the
--   operator's).
-- The system role gets a policy and grants on the tables its cross-tenant work needs, nothing
-- else (no grant on clients, bookings, payments, feedback, ...).

DO $$
DECLARE
    t text;
BEGIN
    FOR t IN
        SELECT c.relname FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'organization_id'
                             AND NOT a.attisdropped
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname <> 'tenant_scope'
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON %I', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I TO wedding_tenant'
            ' USING (organization_id = (SELECT wedding_current_tenant()))'
            ' WITH CHECK (organization_id = (SELECT wedding_current_tenant()))', t);
        EXECUTE format('REVOKE ALL ON %I FROM wedding_tenant, wedding_app, wedding_system', t);
        IF t = 'audit_log' THEN
            EXECUTE format('GRANT SELECT, INSERT ON %I TO wedding_tenant', t);
        ELSIF t IN ('schedule_runs', 'gdpr_requests') THEN  -- records: settled, never removed
            EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I TO wedding_tenant', t);
        ELSE
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO wedding_tenant', t);
        END IF;
    END LOOP;
END $$;

ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE organizations FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS tenant_isolation ON organizations;
CREATE POLICY tenant_isolation ON organizations TO wedding_tenant
    USING (id = (SELECT wedding_current_tenant()));
REVOKE ALL ON organizations FROM wedding_tenant, wedding_app, wedding_system;
GRANT SELECT ON organizations TO wedding_tenant;

-- The system role: (table, privileges) of its cross-tenant work; tables not (yet) created
-- are skipped.
DO $$
DECLARE
    grant_row record;
BEGIN
    FOR grant_row IN
        SELECT * FROM (VALUES
            ('organizations', 'SELECT'),
            ('schedules', 'SELECT, UPDATE'),
            ('schedule_runs', 'SELECT, INSERT, UPDATE'),
            ('delivery_log', 'SELECT, INSERT'),
            ('delivery_queue', 'SELECT, INSERT, UPDATE, DELETE'),
            ('reports', 'SELECT, UPDATE'),
            ('report_data_versions', 'SELECT, INSERT, UPDATE'),
            ('retention_rules', 'SELECT'),
            ('audit_log', 'SELECT, INSERT')
        ) AS g(tbl, privs)
    LOOP
        IF to_regclass(format('public.%I', grant_row.tbl)) IS NULL THEN
            CONTINUE;
        END IF;
        EXECUTE format('DROP POLICY IF EXISTS system_access ON %I', grant_row.tbl);
        EXECUTE format(
            'CREATE POLICY system_access ON %I TO wedding_system USING (true) WITH CHECK (true)',
            grant_row.tbl);
        EXECUTE format('GRANT %s ON %I TO wedding_system', grant_row.privs, grant_row.tbl);
    END LOOP;
END $$;

-- The system role reads which master key wraps each organisation's data keys (a worker's
-- readiness check: stream_app.crypto.keys.master_key_coverage), never the wrapped keys.
DO $$ BEGIN
    IF to_regclass('public.organization_data_keys') IS NOT NULL THEN
        DROP POLICY IF EXISTS system_access ON organization_data_keys;
        CREATE POLICY system_access ON organization_data_keys FOR SELECT TO wedding_system
            USING (true);
        GRANT SELECT (organization_id, version, master_key_id) ON organization_data_keys
            TO wedding_system;
    END IF;
END $$;

GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO wedding_tenant, wedding_system;
REVOKE ALL ON tenant_scope FROM PUBLIC;
-- the retention job's claim of an interval (no organisation: one row per interval)
DO $$ BEGIN
    IF to_regclass('public.retention_runs') IS NOT NULL THEN
        GRANT SELECT, INSERT, UPDATE ON retention_runs TO wedding_system;
    END IF;
END $$;
-- a worker checks at start that the schema is current (stream_app.db.migrate)
GRANT SELECT ON schema_migrations TO wedding_app;
