-- A queued report's request reached its priority lane (Kafka acknowledged it) at routed_at.
-- The recovery sweep (stream_app/reports/recovery.py) sends round again a queued report that
-- was never routed; a routed one is waiting its turn in the lane and is left alone for a while
-- (recovery.ROUTED_STALE_S). Before, every queued report older than 30 s was
-- sent again: a tenant's flood of 400 requests became 861 lane messages and held the others.
ALTER TABLE reports ADD COLUMN routed_at timestamptz;
