-- Rollups (pre-aggregations, Cube's model): stream_app/aggregation/rollups.py.
--
-- rollups: one definition per row (dataset, dimensions, optional time dimension and grain,
--   additive measures), the zone its time buckets were computed in, whether it is built.
-- rollup_rows: the pre-aggregated figures; one row per (time bucket, dimension values).
--   period is the first local day of the bucket ('-infinity' for rows whose time field is
--   NULL and for rollups without a time dimension); dims holds the dimension values as text in
--   the order of the definition's dimensions, measures the measures in the order of its
--   measures as exact numerics (cents stay cents; dates as days after 2000-01-01, timestamps
--   as microseconds after the epoch).
-- rollup_dirty: (rollup, bucket) pairs whose history changed since they were computed. The
--   statement-level triggers below add them from the transition tables of every insert,
--   update and delete of a history table; the engine recomputes those buckets before it
--   answers from the rollup (stream_app.aggregation.rollup_store.refresh).
-- All three carry organization_id, so db/policies.sql gives them row-level security.

CREATE TABLE rollups (
    organization_id text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    id              bigint GENERATED ALWAYS AS IDENTITY,
    dataset         text NOT NULL,
    definition      jsonb NOT NULL,        -- the rollup as created (canonical form)
    time_field      text,                  -- NULL: no time dimension
    time_type       text CHECK (time_type IN ('date', 'timestamp')),
    grain           text CHECK (grain IN ('day', 'week', 'month', 'year')),
    time_zone       text,                  -- the zone of the built buckets; NULL: not built
    built_at        timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id)
);
CREATE INDEX rollups_dataset ON rollups (organization_id, dataset);

CREATE TABLE rollup_rows (
    organization_id text NOT NULL,
    rollup_id       bigint NOT NULL,
    period          date NOT NULL,
    dims            text[] NOT NULL,
    measures        numeric[] NOT NULL,
    PRIMARY KEY (organization_id, rollup_id, period, dims),
    FOREIGN KEY (organization_id, rollup_id) REFERENCES rollups ON DELETE CASCADE
);

CREATE TABLE rollup_dirty (
    organization_id text NOT NULL,
    rollup_id       bigint NOT NULL,
    period          date NOT NULL,
    PRIMARY KEY (organization_id, rollup_id, period),
    FOREIGN KEY (organization_id, rollup_id) REFERENCES rollups ON DELETE CASCADE
);

-- Marks the buckets of every rollup of the changed table whose rows the statement touched.
-- SECURITY INVOKER: a tenant's statement sees (RLS) and marks its own rollups only.
CREATE FUNCTION wedding_rollup_mark_dirty() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
    r record;
    bucket text;
    src text;
    orgs text[];
BEGIN
    -- Only the rollups of organisations present in the changed rows: one owner's bulk load
    -- (BYPASSRLS) must not scan its rows once per rollup of every other organisation.
    EXECUTE CASE TG_OP
        WHEN 'INSERT' THEN 'SELECT array_agg(DISTINCT organization_id) FROM wedding_rollup_new'
        WHEN 'DELETE' THEN 'SELECT array_agg(DISTINCT organization_id) FROM wedding_rollup_old'
        ELSE 'SELECT array_agg(DISTINCT o) FROM (SELECT organization_id FROM wedding_rollup_new'
             ' UNION SELECT organization_id FROM wedding_rollup_old) AS changed(o)' END
    INTO orgs;
    IF orgs IS NULL THEN
        RETURN NULL;
    END IF;
    FOR r IN SELECT ro.organization_id, ro.id, ro.time_field, ro.time_type, ro.grain,
                    ro.time_zone
               FROM public.rollups ro
              WHERE ro.dataset = TG_TABLE_NAME AND ro.time_zone IS NOT NULL
                AND ro.organization_id = ANY (orgs)
    LOOP
        IF r.time_field IS NULL THEN
            bucket := '''-infinity''::date';
        ELSIF r.time_type = 'timestamp' THEN
            bucket := format('coalesce(date_trunc(%L, (%I AT TIME ZONE %L))::date, ''-infinity'')',
                             r.grain, r.time_field, r.time_zone);
        ELSE
            bucket := format('coalesce(date_trunc(%L, %I)::date, ''-infinity'')',
                             r.grain, r.time_field);
        END IF;
        FOREACH src IN ARRAY CASE TG_OP WHEN 'INSERT' THEN ARRAY['wedding_rollup_new']
                                        WHEN 'DELETE' THEN ARRAY['wedding_rollup_old']
                                        ELSE ARRAY['wedding_rollup_new', 'wedding_rollup_old'] END
        LOOP
            EXECUTE format(
                'INSERT INTO public.rollup_dirty (organization_id, rollup_id, period)'
                ' SELECT DISTINCT $1, $2, %s FROM %I WHERE organization_id = $1'
                ' ON CONFLICT DO NOTHING', bucket, src)
            USING r.organization_id, r.id;
        END LOOP;
    END LOOP;
    RETURN NULL;
END $$;

-- TRUNCATE has no transition tables: the table's rollups become unbuilt (rebuilt on use).
CREATE FUNCTION wedding_rollup_truncated() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    UPDATE public.rollups SET time_zone = NULL, built_at = NULL WHERE dataset = TG_TABLE_NAME;
    RETURN NULL;
END $$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['bookings', 'payments', 'feedback', 'weddings', 'clients'] LOOP
        EXECUTE format('CREATE TRIGGER wedding_rollup_dirty_ins AFTER INSERT ON %I'
                       ' REFERENCING NEW TABLE AS wedding_rollup_new'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION wedding_rollup_mark_dirty()', t);
        EXECUTE format('CREATE TRIGGER wedding_rollup_dirty_upd AFTER UPDATE ON %I'
                       ' REFERENCING NEW TABLE AS wedding_rollup_new OLD TABLE AS wedding_rollup_old'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION wedding_rollup_mark_dirty()', t);
        EXECUTE format('CREATE TRIGGER wedding_rollup_dirty_del AFTER DELETE ON %I'
                       ' REFERENCING OLD TABLE AS wedding_rollup_old'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION wedding_rollup_mark_dirty()', t);
        EXECUTE format('CREATE TRIGGER wedding_rollup_dirty_trunc AFTER TRUNCATE ON %I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION wedding_rollup_truncated()', t);
    END LOOP;
END $$;
