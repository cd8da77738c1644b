-- Delivery security (issue 9): retries queued with their due time instead of slept inside a
-- delivery slot, download links that can be revoked per report and per schedule, and the
-- links a delivery handed out (so `api` delivery can show them in the run and report status).
-- Time: timestamptz (UTC).

-- A run with a delivery waiting for its next attempt is 'retrying' (see delivery_queue).
ALTER TABLE schedule_runs DROP CONSTRAINT schedule_runs_status_check;
ALTER TABLE schedule_runs ADD CONSTRAINT schedule_runs_status_check
    CHECK (status IN ('claimed', 'submitted', 'retrying', 'delivered', 'skipped', 'failed'));

-- One row per report of a run that still has to be delivered. Workers claim due rows with
-- FOR UPDATE SKIP LOCKED and a lease (claimed_until), so two workers never send one twice;
-- a worker that dies mid-attempt leaves a lease that expires and another worker takes over.
CREATE TABLE delivery_queue (
    id              bigserial PRIMARY KEY,
    organization_id text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    run_id          bigint NOT NULL REFERENCES schedule_runs(id) ON DELETE CASCADE,
    schedule_id     text NOT NULL,
    report_id       text NOT NULL,
    attempt         integer NOT NULL CHECK (attempt >= 1),   -- number of the next attempt
    due_at          timestamptz NOT NULL,                     -- not attempted before this
    status          jsonb NOT NULL,                           -- the report's final status
    claimed_by      text,
    claimed_until   timestamptz,                              -- lease of the attempt under way
    last_error      text,
    enqueued_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, report_id)                                -- one pending delivery per report
);
CREATE INDEX delivery_queue_due ON delivery_queue (due_at);
CREATE INDEX delivery_queue_org_due ON delivery_queue (organization_id, due_at);

-- Links issued at or before revoked_at for this report / schedule are refused at download.
-- No foreign key to organizations: the row is written by a trigger while an organisation's
-- schedules are deleted, its organisation possibly with them.
CREATE TABLE download_link_revocations (
    organization_id text NOT NULL,
    scope           text NOT NULL CHECK (scope IN ('report', 'schedule')),
    target_id       text NOT NULL,
    revoked_at      timestamptz NOT NULL,
    revoked_by      text NOT NULL,
    PRIMARY KEY (organization_id, scope, target_id)
);

-- The signed download links a delivery handed out (a link is a credential: tenant-scoped).
CREATE TABLE download_links (
    id              text PRIMARY KEY,                         -- the link token's jti
    organization_id text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    report_id       text NOT NULL,
    schedule_id     text,
    run_id          bigint REFERENCES schedule_runs(id) ON DELETE SET NULL,
    method          text NOT NULL,
    format          text NOT NULL,
    url             text NOT NULL,
    issued_at       timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL
);
CREATE INDEX download_links_report ON download_links (organization_id, report_id);
CREATE INDEX download_links_run ON download_links (run_id);

-- Deleting a schedule revokes every link it handed out.
CREATE FUNCTION revoke_schedule_links() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO download_link_revocations (organization_id, scope, target_id, revoked_at, revoked_by)
    VALUES (OLD.organization_id, 'schedule', OLD.id, clock_timestamp(), 'schedule.deleted')
    ON CONFLICT (organization_id, scope, target_id) DO UPDATE
        SET revoked_at = GREATEST(download_link_revocations.revoked_at, EXCLUDED.revoked_at),
            revoked_by = EXCLUDED.revoked_by;
    RETURN OLD;
END $$;
CREATE TRIGGER schedules_revoke_links AFTER DELETE ON schedules
    FOR EACH ROW EXECUTE FUNCTION revoke_schedule_links();

-- Row-level security, as in 002: the tenant role sees only its organisation's rows.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['delivery_queue', 'download_link_revocations', 'download_links'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I TO wedding_tenant USING '
            '(organization_id = current_setting(''app.organization_id'', true))', t);
        EXECUTE format('GRANT SELECT ON %I TO wedding_tenant', t);
    END LOOP;
END $$;
-- revoking (HTTP) and deleting a schedule (its trigger) write revocations as the tenant
GRANT INSERT, UPDATE ON download_link_revocations TO wedding_tenant;
