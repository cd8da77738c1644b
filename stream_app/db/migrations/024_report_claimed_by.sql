-- Which worker process holds a `processing` report (set by its claim). A worker whose try
-- met a PostgreSQL restart after claiming takes its own claim back on the next try at once
-- (stream_app/reports/lanes.py), and only while it is still its own: another worker that
-- took the report over meanwhile (heartbeat older than REPORT_STALE_AFTER_S) holds it.
ALTER TABLE reports ADD COLUMN claimed_by text;
