-- The tenant of a transaction, set once and never switched inside it.
--
-- Row-level security used to compare organization_id with the setting app.organization_id,
-- which any statement in the transaction can change (set_config). Now the policies read
-- wedding_current_tenant(), which returns the organisation recorded for this backend and this
-- transaction id by wedding_enter_tenant(). Only the application role may call that function,
-- and a second call naming another organisation in the same transaction is refused. Both are
-- SECURITY DEFINER functions of the owner: nobody else can read or write tenant_scope.
-- The policies themselves are (re)applied to every tenant table by db/policies.sql, which
-- stream_app.db.migrate runs after the numbered migrations.

CREATE UNLOGGED TABLE tenant_scope (
    backend_pid     integer PRIMARY KEY,      -- pg_backend_pid() of the session
    xact            xid8 NOT NULL,            -- the transaction the tenant was entered in
    organization_id text NOT NULL
);
REVOKE ALL ON tenant_scope FROM PUBLIC;

CREATE FUNCTION wedding_enter_tenant(org text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    entered text;
BEGIN
    IF org IS NULL OR org = '' THEN
        RAISE EXCEPTION 'organization_id: a tenant scope needs a non-empty organisation id'
            USING ERRCODE = '22023';
    END IF;
    SELECT organization_id INTO entered FROM public.tenant_scope
     WHERE backend_pid = pg_backend_pid() AND xact = pg_current_xact_id();
    IF entered IS NOT NULL THEN
        IF entered <> org THEN
            RAISE EXCEPTION 'the tenant of this transaction is % and cannot be changed', entered
                USING ERRCODE = '42501';
        END IF;
        RETURN;
    END IF;
    INSERT INTO public.tenant_scope (backend_pid, xact, organization_id)
    VALUES (pg_backend_pid(), pg_current_xact_id(), org)
    ON CONFLICT (backend_pid)
        DO UPDATE SET xact = EXCLUDED.xact, organization_id = EXCLUDED.organization_id;
END $$;

CREATE FUNCTION wedding_current_tenant() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT organization_id FROM public.tenant_scope
     WHERE backend_pid = pg_backend_pid() AND xact = pg_current_xact_id_if_assigned()
$$;

REVOKE ALL ON FUNCTION wedding_enter_tenant(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wedding_enter_tenant(text) TO wedding_app;
REVOKE ALL ON FUNCTION wedding_current_tenant() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wedding_current_tenant() TO wedding_tenant, wedding_system;
