-- Report schedules, their runs (one per fire time) and the delivery log.
-- Time: timestamptz (UTC). Fire times are computed by the application in the schedule's IANA
-- zone (stream_app.schedules.cron); the database only stores the UTC instants.

CREATE TABLE schedules (
    id                   text PRIMARY KEY,      -- unique across tenants (report ids derive from it)
    organization_id      text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    created_by           text NOT NULL,
    report_type          text NOT NULL,
    date_range           text NOT NULL,         -- previous_month, last_n_days:N, ...
    output_formats       text[] NOT NULL,
    cron                 text NOT NULL,         -- 5 fields, read in time_zone
    time_zone            text NOT NULL,         -- IANA zone (checked by the app)
    delivery_method      text NOT NULL CHECK (delivery_method IN ('email', 'webhook', 'sftp', 'api')),
    delivery_options     jsonb NOT NULL,        -- target settings without secrets
    delivery_secrets     jsonb NOT NULL DEFAULT '{}',  -- webhook secret, SFTP password / key
    retry_max_attempts   integer NOT NULL CHECK (retry_max_attempts BETWEEN 1 AND 10),
    retry_base_backoff_s double precision NOT NULL CHECK (retry_base_backoff_s > 0),
    retry_max_backoff_s  double precision NOT NULL CHECK (retry_max_backoff_s >= retry_base_backoff_s),
    expires_at           timestamptz,
    paused               boolean NOT NULL DEFAULT false,
    skip_if_empty        boolean NOT NULL DEFAULT false,
    min_interval_seconds integer NOT NULL CHECK (min_interval_seconds >= 0),
    recipient_filters    jsonb NOT NULL DEFAULT '[]',
    priority             text NOT NULL DEFAULT 'normal'
                         CHECK (priority IN ('low', 'normal', 'high', 'critical')),
    next_fire_time       timestamptz,           -- first fire time not yet handled; NULL = no more
    last_fire_time       timestamptz,           -- fire time of the latest run
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schedules_due ON schedules (next_fire_time) WHERE NOT paused;
CREATE INDEX schedules_org ON schedules (organization_id, id);

CREATE TABLE schedule_runs (
    id              bigserial PRIMARY KEY,
    schedule_id     text NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    organization_id text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    fire_time       timestamptz NOT NULL,       -- the (latest) fire time this run stands for
    missed_from     timestamptz NOT NULL,       -- earliest fire time folded in (catch-up)
    claimed_at      timestamptz NOT NULL,
    claimed_by      text NOT NULL,
    status          text NOT NULL
                    CHECK (status IN ('claimed', 'submitted', 'delivered', 'skipped', 'failed')),
    cache_strategy  text NOT NULL DEFAULT 'skip',   -- scheduled runs always read fresh data
    date_from       date NOT NULL,
    date_to         date NOT NULL,
    report_ids      text[] NOT NULL,
    reports         jsonb NOT NULL,             -- [{report_id, recipients, filters}]
    error           text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (schedule_id, fire_time)             -- exactly one run per fire time
);
CREATE INDEX schedule_runs_report_ids ON schedule_runs USING gin (report_ids);
CREATE INDEX schedule_runs_stale ON schedule_runs (claimed_at) WHERE status = 'claimed';

CREATE TABLE delivery_log (
    id              bigserial PRIMARY KEY,
    run_id          bigint REFERENCES schedule_runs(id) ON DELETE SET NULL,
    schedule_id     text NOT NULL,
    organization_id text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    report_id       text NOT NULL,
    method          text NOT NULL,
    attempt         integer NOT NULL CHECK (attempt >= 0),   -- 0: no attempt (skipped)
    outcome         text NOT NULL CHECK (outcome IN ('delivered', 'retrying', 'failed', 'skipped')),
    retriable       boolean NOT NULL DEFAULT false,
    detail          text,
    target          text,                        -- recipients, URL, remote path; never secrets
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz NOT NULL
);
CREATE INDEX delivery_log_run ON delivery_log (run_id, report_id, id);
CREATE INDEX delivery_log_org ON delivery_log (organization_id, started_at);

-- Row-level security, as in 001: the tenant role sees (and, for schedules, writes) only the
-- rows of the organisation named in app.organization_id.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['schedules', 'schedule_runs', 'delivery_log'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I TO wedding_tenant USING '
            '(organization_id = current_setting(''app.organization_id'', true))', t);
        EXECUTE format('GRANT SELECT ON %I TO wedding_tenant', t);
    END LOOP;
END $$;
GRANT INSERT, UPDATE, DELETE ON schedules TO wedding_tenant;
