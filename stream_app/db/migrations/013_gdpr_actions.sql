-- GDPR actions (Art. 15/20 export, Art. 17 erasure) and retention: what a request produced,
-- the per-organisation retention rules and the runs of the retention job.
-- Time: timestamptz (UTC); retention periods in whole days.

-- What an answered request did: for an erasure, the pseudonym that replaced the client id in
-- the rows kept for accounting (random, never derived from the client id); counts of rows
-- exported, deleted, pseudonymised, files and cache entries purged. Never the client's data.
ALTER TABLE gdpr_requests
    ADD COLUMN pseudonym text,
    ADD COLUMN result    jsonb NOT NULL DEFAULT '{}';

-- Per-organisation retention: how many days artifacts (report files), report rows and
-- delivery log rows are kept; NULL keeps them for ever. Applied by the retention job
-- (stream_app.gdpr.retention), at most 100 years.
CREATE TABLE retention_rules (
    organization_id   text PRIMARY KEY REFERENCES organizations(id) ON DELETE CASCADE,
    artifacts_days    integer CHECK (artifacts_days IS NULL OR artifacts_days BETWEEN 1 AND 36500),
    report_rows_days  integer
                      CHECK (report_rows_days IS NULL OR report_rows_days BETWEEN 1 AND 36500),
    delivery_log_days integer
                      CHECK (delivery_log_days IS NULL OR delivery_log_days BETWEEN 1 AND 36500),
    updated_by        text NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- One row per interval of the retention job: the primary key makes exactly one worker claim
-- an interval (as UNIQUE (schedule_id, fire_time) does for schedule runs). Spans tenants.
CREATE TABLE retention_runs (
    slot_start  timestamptz PRIMARY KEY,   -- start of the interval the run stands for
    claimed_by  text NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    counts      jsonb                      -- {organization_id: {artifacts, reports, delivery_log}}
);

-- Row-level security, as in 002: the tenant role sees only the rows of the organisation named
-- in app.organization_id.
ALTER TABLE retention_rules ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON retention_rules TO wedding_tenant
    USING (organization_id = current_setting('app.organization_id', true));
GRANT SELECT ON retention_rules TO wedding_tenant;

-- GDPR actions and retention run inside tenant_transaction (role wedding_tenant, row-level
-- security on the organisation): the tenant role gets exactly the writes they make. A table
-- added later with a client_id column must grant UPDATE (client_id) (or DELETE) to
-- wedding_tenant, or an erasure fails loudly with permission denied (never silently).
GRANT DELETE ON clients, feedback TO wedding_tenant;
GRANT UPDATE (client_id) ON bookings, weddings TO wedding_tenant;
GRANT INSERT, UPDATE (client_id, status, completed_at, result, pseudonym)
    ON gdpr_requests TO wedding_tenant;
GRANT UPDATE (artifacts, cache_key, cache, metadata, updated_at), DELETE
    ON reports TO wedding_tenant;
GRANT DELETE ON delivery_log TO wedding_tenant;
GRANT INSERT, UPDATE ON retention_rules TO wedding_tenant;
