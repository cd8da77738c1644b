-- Query monitoring (stream_app.db.monitoring): one row per timed tenant query (aggregations,
-- report queries), written in the query's own tenant transaction, kept for 7 days (older rows
-- of an organisation are deleted when it records new ones). No SQL text, no parameters and
-- no plan: a kind, a dataset (or report type), a fingerprint of the statement and its time.
CREATE TABLE query_log (
    organization_id text NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    kind            text NOT NULL,          -- aggregation, report
    dataset         text NOT NULL,          -- the aggregation dataset or the report type
    query_id        text NOT NULL,          -- first 12 hex digits of sha256(statement)
    duration_ms     double precision NOT NULL CHECK (duration_ms >= 0),
    rows            bigint NOT NULL CHECK (rows >= 0),
    slow            boolean NOT NULL,       -- at or above WEDDING_SLOW_QUERY_S
    started_at      timestamptz NOT NULL
);
CREATE INDEX query_log_org_started ON query_log (organization_id, started_at);
