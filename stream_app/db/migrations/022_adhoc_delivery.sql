-- Ad-hoc delivery (issue 12): a report request's own `delivery` goes through the same queue
-- and log as a schedule run's. Such a delivery has no run and no schedule; every queued
-- delivery is keyed by (organization_id, report_id) (report ids are unique per organisation,
-- a scheduled report belongs to one run) and names the source that ordered it.
ALTER TABLE delivery_queue ADD COLUMN source text NOT NULL DEFAULT 'schedule';
ALTER TABLE delivery_queue ALTER COLUMN run_id DROP NOT NULL;
ALTER TABLE delivery_queue ALTER COLUMN schedule_id DROP NOT NULL;
ALTER TABLE delivery_queue DROP CONSTRAINT delivery_queue_run_id_report_id_key;
ALTER TABLE delivery_queue ADD CONSTRAINT delivery_queue_report_once
    UNIQUE (organization_id, report_id);                 -- one pending delivery per report

ALTER TABLE delivery_log ALTER COLUMN schedule_id DROP NOT NULL;
CREATE INDEX delivery_log_org_report ON delivery_log (organization_id, report_id, id);
