-- Report processing: priority lanes, retries, cancellation, the report cache, performance.
-- Time: timestamptz (UTC); durations in milliseconds; sizes in bytes.

ALTER TABLE reports
    ADD COLUMN priority        text NOT NULL DEFAULT 'normal'
                               CHECK (priority IN ('low', 'normal', 'high', 'critical')),
    ADD COLUMN cache_strategy  text NOT NULL DEFAULT 'use_cache'
                               CHECK (cache_strategy IN ('use_cache', 'refresh', 'skip')),
    ADD COLUMN cache_key       text,          -- sha256 of the canonical request (stream_app.reports.cache)
    ADD COLUMN cache           jsonb,         -- {level, key, age_s, source_report_id}
    ADD COLUMN data_versions   jsonb,         -- {stream: version} read by the generation
    ADD COLUMN performance     jsonb,         -- query/processing/rendering/total ms, memory, cpu
    ADD COLUMN metadata        jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN attempts        integer NOT NULL DEFAULT 0,
    ADD COLUMN attempt_errors  jsonb NOT NULL DEFAULT '[]',  -- [{attempt, error, at}]
    ADD COLUMN generated_at    timestamptz,
    ADD COLUMN data_size_bytes bigint,
    ADD COLUMN data_rows       bigint;

-- level 3 of the cache: the latest completed generation of a canonical request
CREATE INDEX reports_cache_key ON reports (organization_id, cache_key, generated_at DESC)
    WHERE status = 'completed' AND cache_key IS NOT NULL;

-- Data versions for cache invalidation: bumped by the report cache's invalidation agent for
-- every metric update of an (organisation, stream); a cached report is stale when a version
-- it read has moved.
CREATE TABLE report_data_versions (
    organization_id text NOT NULL,
    stream          text NOT NULL,
    version         bigint NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, stream)
);
