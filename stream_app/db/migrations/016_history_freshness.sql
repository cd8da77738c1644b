-- Freshness from PostgreSQL itself (issue 10, item 3): any change to an organisation's history
-- moves its data version 'history' in report_data_versions, however the change was made (the
-- operator's loads and COPY, a hand-written UPDATE in psql, a GDPR erasure, an organisation's
-- new time zone, a venue's new name). Every cached report depends on it
-- (stream_app.reports.cache.current_versions), so no cached copy outlives its inputs.
--
-- How: statement-level AFTER triggers with transition tables (one bump per statement and
-- organisation, by the number of rows it changed there, an updated row counting twice: its
-- image before and after; a statement that changed nothing bumps nothing, nor does an UPDATE
-- of at most 10,000 rows that rewrote them to the values they had; a larger UPDATE counts
-- every row without comparing, as comparing sorts both images).
-- The trigger functions are SECURITY DEFINER of the owner (which has BYPASSRLS): the statement
-- may run as wedding_tenant inside a tenant transaction (row-level security lets it see only
-- its own organisation's rows, so its transition tables hold only those), as the owner (loads),
-- or as a superuser; the function's search_path is fixed and every name in it qualified.
-- Trigger and function names start with wedding_fresh_ (the rollup triggers are others').

CREATE FUNCTION wedding_fresh_bump_rows() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO public.report_data_versions AS v (organization_id, stream, version)
        SELECT n.organization_id, 'history', count(*) FROM wedding_fresh_new n
         GROUP BY n.organization_id ORDER BY n.organization_id
        ON CONFLICT (organization_id, stream) DO UPDATE
            SET version = v.version + EXCLUDED.version, updated_at = now();
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO public.report_data_versions AS v (organization_id, stream, version)
        SELECT o.organization_id, 'history', count(*) FROM wedding_fresh_old o
         GROUP BY o.organization_id ORDER BY o.organization_id
        ON CONFLICT (organization_id, stream) DO UPDATE
            SET version = v.version + EXCLUDED.version, updated_at = now();
    ELSIF (SELECT count(*) FROM wedding_fresh_new) > 10000 THEN
        -- a bulk UPDATE: every row image counts, not compared (comparing sorts them all)
        INSERT INTO public.report_data_versions AS v (organization_id, stream, version)
        SELECT c.org, 'history', count(*) FROM (
            SELECT n.organization_id FROM wedding_fresh_new n
            UNION ALL SELECT o.organization_id FROM wedding_fresh_old o
        ) AS c(org)
         GROUP BY c.org ORDER BY c.org
        ON CONFLICT (organization_id, stream) DO UPDATE
            SET version = v.version + EXCLUDED.version, updated_at = now();
    ELSE  -- UPDATE: rows whose content changed, counted under their old and new organisation
        INSERT INTO public.report_data_versions AS v (organization_id, stream, version)
        SELECT c.org, 'history', count(*) FROM (
            (SELECT n.organization_id, n::text FROM wedding_fresh_new n
             EXCEPT ALL SELECT o.organization_id, o::text FROM wedding_fresh_old o)
            UNION ALL
            (SELECT o.organization_id, o::text FROM wedding_fresh_old o
             EXCEPT ALL SELECT n.organization_id, n::text FROM wedding_fresh_new n)
        ) AS c(org, content)
         GROUP BY c.org ORDER BY c.org
        ON CONFLICT (organization_id, stream) DO UPDATE
            SET version = v.version + EXCLUDED.version, updated_at = now();
    END IF;
    RETURN NULL;
END $$;

-- the organizations table: the organisation is its id (its zone, name and currency are printed
-- or decide the months of every report)
CREATE FUNCTION wedding_fresh_bump_organizations() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO public.report_data_versions AS v (organization_id, stream, version)
        SELECT n.id, 'history', count(*) FROM wedding_fresh_new n GROUP BY n.id ORDER BY n.id
        ON CONFLICT (organization_id, stream) DO UPDATE
            SET version = v.version + EXCLUDED.version, updated_at = now();
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO public.report_data_versions AS v (organization_id, stream, version)
        SELECT o.id, 'history', count(*) FROM wedding_fresh_old o GROUP BY o.id ORDER BY o.id
        ON CONFLICT (organization_id, stream) DO UPDATE
            SET version = v.version + EXCLUDED.version, updated_at = now();
    ELSE
        INSERT INTO public.report_data_versions AS v (organization_id, stream, version)
        SELECT c.org, 'history', count(*) FROM (
            (SELECT n.id, n::text FROM wedding_fresh_new n
             EXCEPT ALL SELECT o.id, o::text FROM wedding_fresh_old o)
            UNION ALL
            (SELECT o.id, o::text FROM wedding_fresh_old o
             EXCEPT ALL SELECT n.id, n::text FROM wedding_fresh_new n)
        ) AS c(org, content)
         GROUP BY c.org ORDER BY c.org
        ON CONFLICT (organization_id, stream) DO UPDATE
            SET version = v.version + EXCLUDED.version, updated_at = now();
    END IF;
    RETURN NULL;
END $$;

-- TRUNCATE has no transition table: every organisation's version moves (only the owner can)
CREATE FUNCTION wedding_fresh_bump_all() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO public.report_data_versions AS v (organization_id, stream, version)
    SELECT g.id, 'history', 1 FROM public.organizations g ORDER BY g.id
    ON CONFLICT (organization_id, stream) DO UPDATE
        SET version = v.version + 1, updated_at = now();
    RETURN NULL;
END $$;

-- only triggers call them (a trigger's function is not checked for EXECUTE when it fires)
REVOKE ALL ON FUNCTION wedding_fresh_bump_rows() FROM PUBLIC;
REVOKE ALL ON FUNCTION wedding_fresh_bump_organizations() FROM PUBLIC;
REVOKE ALL ON FUNCTION wedding_fresh_bump_all() FROM PUBLIC;

-- The history: every table a report, the validation or an aggregation reads. Not history:
-- reports, schedules, runs, deliveries, tokens, keys, the audit log, retention bookkeeping.
DO $$
DECLARE
    t text;
    fn text;
BEGIN
    FOREACH t IN ARRAY ARRAY['organizations', 'venues', 'venue_closures', 'suppliers',
                             'clients', 'weddings', 'bookings', 'payments', 'feedback',
                             'offices', 'catering_menus', 'catering_ingredients',
                             'catering_menu_items', 'catering_events', 'catering_usage',
                             'gdpr_requests'] LOOP
        IF to_regclass(format('public.%I', t)) IS NULL THEN
            CONTINUE;
        END IF;
        fn := CASE WHEN t = 'organizations' THEN 'wedding_fresh_bump_organizations'
                   ELSE 'wedding_fresh_bump_rows' END;
        EXECUTE format(
            'CREATE TRIGGER wedding_fresh_ins AFTER INSERT ON public.%I'
            ' REFERENCING NEW TABLE AS wedding_fresh_new'
            ' FOR EACH STATEMENT EXECUTE FUNCTION public.%I()', t, fn);
        EXECUTE format(
            'CREATE TRIGGER wedding_fresh_upd AFTER UPDATE ON public.%I'
            ' REFERENCING OLD TABLE AS wedding_fresh_old NEW TABLE AS wedding_fresh_new'
            ' FOR EACH STATEMENT EXECUTE FUNCTION public.%I()', t, fn);
        EXECUTE format(
            'CREATE TRIGGER wedding_fresh_del AFTER DELETE ON public.%I'
            ' REFERENCING OLD TABLE AS wedding_fresh_old'
            ' FOR EACH STATEMENT EXECUTE FUNCTION public.%I()', t, fn);
        EXECUTE format(
            'CREATE TRIGGER wedding_fresh_trunc AFTER TRUNCATE ON public.%I'
            ' FOR EACH STATEMENT EXECUTE FUNCTION public.wedding_fresh_bump_all()', t);
    END LOOP;
END $$;
