"""Prometheus metrics of a worker, served at ``/metrics``.

Names follow Prometheus conventions (``_total`` counters, base units: seconds, bytes).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_IN = Counter(
    "wedding_events_in_total", "Events read from an input topic.", ["topic"], registry=REGISTRY
)
EVENTS_OUTCOME = Counter(
    "wedding_events_outcome_total",
    "Events by outcome: counted, late (counted, but too late for an event-time window),"
    " duplicate (a re-send within the dedupe horizon), redelivered (the same message again,"
    " already in every row), dead_lettered.",
    ["topic", "outcome"],
    registry=REGISTRY,
)
CHANGELOG_INTERLEAVED = Counter(
    "wedding_changelog_interleaved_total",
    "Batches whose changelog records did not follow the partition's persisted offset (another"
    " worker wrote there meanwhile): written locally without moving the persisted offset (see"
    " stream_app.runtime.state.WriteBehindTable.write_local).",
    ["table"],
    registry=REGISTRY,
)
STALE_CHANGELOG_RECORDS = Counter(
    "wedding_changelog_stale_records_total",
    "Changelog records skipped while a table was restored because the local row already"
    " held a later input offset (a write from a worker that had lost the partition; see"
    " stream_app.runtime.restore).",
    ["table"],
    registry=REGISTRY,
)
EXPIRED_RESENDS = Counter(
    "wedding_dedupe_expired_resends_total",
    "Events re-sent (same event_id, a new offset) more than WEDDING_DEDUPE_HORIZON_S after"
    " their first arrival: counted again (see stream_app.tables.dedupe).",
    ["topic"],
    registry=REGISTRY,
)
FINAL_WINDOWS = Counter(
    "wedding_final_windows_total",
    "Event-time windows closed by the watermark whose final value was published.",
    ["topic", "grain"],
    registry=REGISTRY,
)
METRIC_UPDATES_PUBLISHED = Counter(
    "wedding_metric_updates_published_total",
    "Messages published to realtime-metrics-updates.",
    registry=REGISTRY,
)
METRIC_UPDATES_FAILED = Counter(
    "wedding_metric_updates_failed_total",
    "Messages to realtime-metrics-updates whose delivery failed.",
    registry=REGISTRY,
)
REPORTS = Counter(
    "wedding_reports_total",
    "Reports by final status.",
    ["report_type", "status"],
    registry=REGISTRY,
)
REPORT_SECONDS = Histogram(
    "wedding_report_generation_seconds",
    "Wall time from a report request being read to its completed status.",
    ["report_type"],
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
HTTP_REQUESTS = Counter(
    "wedding_http_requests_total",
    "HTTP requests by route and status.",
    ["route", "status"],
    registry=REGISTRY,
)
REPORT_CACHE = Counter(
    "wedding_report_cache_total",
    "Report cache lookups by level (l1, l2, l3, in_flight) and outcome (hit, miss).",
    ["level", "outcome"],
    registry=REGISTRY,
)
REPORT_GENERATIONS = Counter(
    "wedding_report_generations_total",
    "Report generation attempts actually run (cache hits excluded), by type and outcome.",
    ["report_type", "outcome"],
    registry=REGISTRY,
)
LATE_EVENTS = Counter(
    "wedding_late_events_total",
    "Events too late for a closed event-time window, per window grain.",
    ["topic", "grain"],
    registry=REGISTRY,
)
END_TO_END_SECONDS = Histogram(
    "wedding_end_to_end_latency_seconds",
    "From an event's Kafka timestamp (producer create time) to the publication of the metric"
    " updates it caused.",
    ["topic"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CONSUMER_LAG = Gauge(
    "wedding_consumer_lag_messages",
    "Messages of an input partition not yet read by this worker (highwater - next offset),"
    " sampled after each batch.",
    ["topic", "partition"],
    registry=REGISTRY,
)
STREAM_REWINDS = Counter(
    "wedding_stream_rewinds_total",
    "Input partitions sought back to their committed offset because messages after it were"
    " never delivered to the stream (see stream_app/runtime/consumer.py).",
    ["topic"],
    registry=REGISTRY,
)
SCHEDULE_RUNS_TIMED_OUT = Counter(
    "wedding_schedule_runs_timed_out_total",
    "Scheduled runs marked failed because a report was not done within the run timeout"
    " (WEDDING_SCHEDULE_RUN_TIMEOUT_S after submission).",
    registry=REGISTRY,
)
REPORT_LANE_ORG_HELD = Gauge(
    "wedding_report_lane_org_held_max",
    "Most slots of a report lane one organisation holds on this worker right now",
    ["lane"],
    registry=REGISTRY,
)
REPORT_LANE_ORGS = Gauge(
    "wedding_report_lane_organisations",
    "Organisations generating reports in a lane on this worker right now",
    ["lane"],
    registry=REGISTRY,
)
