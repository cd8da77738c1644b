-- Tenant-scoped identity: reports, schedules, runs and delivery log rows are keyed by
-- (organization_id, id). Two organisations may use the same report or schedule id; no
-- statement can find another tenant's row by id alone, and a 409 for an id only concerns the
-- caller's own organisation.
-- Also: the tenant role may write the rows that status updates, claims, cancellations and
-- deliveries change inside tenant_transaction (row-level security checks every write).

-- reports: (organization_id, id)
ALTER TABLE reports DROP CONSTRAINT reports_pkey;
ALTER TABLE reports ADD PRIMARY KEY (organization_id, id);

-- schedule_runs leave schedules(id) for schedules(organization_id, id)
ALTER TABLE schedule_runs DROP CONSTRAINT schedule_runs_schedule_id_fkey;
ALTER TABLE schedule_runs DROP CONSTRAINT schedule_runs_schedule_id_fire_time_key;
ALTER TABLE schedules DROP CONSTRAINT schedules_pkey;
ALTER TABLE schedules ADD PRIMARY KEY (organization_id, id);
DROP INDEX IF EXISTS schedules_org;             -- the primary key is that index now
ALTER TABLE schedule_runs
    ADD CONSTRAINT schedule_runs_schedule_fkey FOREIGN KEY (organization_id, schedule_id)
        REFERENCES schedules (organization_id, id) ON DELETE CASCADE,
    ADD CONSTRAINT schedule_runs_fire_once UNIQUE (organization_id, schedule_id, fire_time);
-- a run is found by (organization_id, id); the bigserial id stays its surrogate key
ALTER TABLE schedule_runs ADD CONSTRAINT schedule_runs_org_id UNIQUE (organization_id, id);
-- when the run was submitted (the bound of a run that never completes counts from here)
ALTER TABLE schedule_runs ADD COLUMN submitted_at timestamptz;
CREATE INDEX schedule_runs_stale_submitted ON schedule_runs (submitted_at)
    WHERE status = 'submitted';

-- the delivery log names its run by (organization_id, run_id)
CREATE INDEX delivery_log_org_run ON delivery_log (organization_id, run_id, report_id, id);

-- the writes of the tenant scope (RLS policies of 001/002 apply to them: USING doubles as
-- WITH CHECK, so a row of another organisation can be neither written nor moved into view)
GRANT INSERT, UPDATE, DELETE ON reports TO wedding_tenant;
GRANT UPDATE ON schedule_runs TO wedding_tenant;
GRANT INSERT ON delivery_log TO wedding_tenant;
GRANT USAGE ON SEQUENCE delivery_log_id_seq TO wedding_tenant;
