-- The tenant of a transaction is entered at its top level only (found by the attack tests):
-- entered inside a savepoint, ROLLBACK TO SAVEPOINT undid the tenant_scope row (and the
-- SET LOCAL ROLE) and a second wedding_enter_tenant() could then name another organisation.
-- A row written in a subtransaction carries the subtransaction's xid as xmin, not the
-- top-level one, so the function checks the row it wrote and refuses otherwise; the error
-- aborts the savepoint with it. Entered at the top level, no later savepoint can undo it.

CREATE OR REPLACE FUNCTION wedding_enter_tenant(org text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    entered text;
    top_level boolean;
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
    SELECT xmin = pg_current_xact_id()::xid INTO top_level FROM public.tenant_scope
     WHERE backend_pid = pg_backend_pid();
    IF NOT top_level THEN
        RAISE EXCEPTION 'a tenant scope is entered at the top level of a transaction, not in a'
            ' savepoint' USING ERRCODE = '42501';
    END IF;
END $$;
REVOKE ALL ON FUNCTION wedding_enter_tenant(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wedding_enter_tenant(text) TO wedding_app;
