"""Prometheus metrics of a worker, served at ``/metrics``.

Names follow Prometheus conventions (``_total`` counters, base units: seconds, bytes).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)


class StampHistogram(Collector):
    """A labelled Prometheus histogram of ages, observed a batch of timestamps at a time.

    prometheus_client's ``Histogram.observe`` takes one value per call, with a lock and a
    walk of the buckets in Python: observing each event of a backlog batch was 3.6 % of a
    worker's CPU (py-spy, ``bench_million``). Here a batch's timestamps are sorted once and
    each bucket's count found by bisection. Exposed exactly as a ``Histogram`` of seconds
    (``<name>_bucket{le=...}``, ``<name>_count``, ``<name>_sum``), without ``_created``.

    Args:
        name / documentation / labelnames: as for ``prometheus_client.Histogram``.
        buckets: upper bounds in seconds, ascending (``+Inf`` is added).
        registry: where to register.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = tuple(sorted(buckets))
        self._series: dict[tuple[str, ...], list[float]] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def observe_ages(self, labels: Sequence[str], stamps_ms: Sequence[int], now_ms: float) -> None:
        """Observe ``now_ms - stamp`` in seconds for each of ``stamps_ms`` (milliseconds
        since the epoch); a stamp after ``now_ms`` counts as 0 s (as ``max(0, age)``)."""
        if not stamps_ms:
            return
        stamps = sorted(stamps_ms)
        n = len(stamps)
        # an age <= bound <=> stamp >= now - bound
        cumulative = [n - bisect.bisect_left(stamps, now_ms - b * 1000) for b in self.bounds]
        past = bisect.bisect_right(stamps, now_ms)
        total = (past * now_ms - sum(stamps[:past])) / 1000
        with self._lock:
            series = self._series.setdefault(tuple(labels), [0.0] * (len(self.bounds) + 2))
            for i, c in enumerate(cumulative):
                series[i] += c
            series[-2] += n
            series[-1] += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        """The histogram family with one series per label set observed so far."""
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            series = {k: list(v) for k, v in self._series.items()}
        for labels, values in series.items():
            buckets = [(repr(float(b)), values[i]) for i, b in enumerate(self.bounds)]  # as Go's
            buckets.append(("+Inf", values[-2]))
            family.add_metric(list(labels), buckets, sum_value=values[-1])
        yield family

    def describe(self) -> Iterator[HistogramMetricFamily]:
        """The family without samples (the registry checks names on registration)."""
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)


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
DELIVERY_ATTEMPTS = Counter(
    "wedding_delivery_attempts_total",
    "Delivery attempts recorded, by method (email, webhook, sftp, api) and outcome (delivered,"
    " retrying, failed, skipped); no organisation label.",
    ["method", "outcome"],
    registry=REGISTRY,
)
for _method in ("email", "webhook", "sftp", "api"):  # series at 0 from the start
    for _outcome in ("delivered", "retrying", "failed", "skipped"):
        DELIVERY_ATTEMPTS.labels(_method, _outcome)
HTTP_CONNECTIONS_REFUSED = Counter(
    "wedding_http_connections_refused_total",
    "HTTP connections closed at once because a connection cap was reached"
    " (reason: per_address, total).",
    ["reason"],
    registry=REGISTRY,
)
RATE_LIMIT_STORE_FAILURES = Counter(
    "wedding_ratelimit_store_failures_total",
    "Requests let through unlimited because the rate-limit store (Redis) failed.",
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
END_TO_END_SECONDS = StampHistogram(
    "wedding_end_to_end_latency_seconds",
    "From an event's Kafka timestamp (producer create time) to the publication of the metric"
    " updates it caused.",
    ["topic"],
    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    REGISTRY,
)
CONSUMER_LAG = Gauge(
    "wedding_consumer_lag_messages",
    "Messages of an input partition not yet read by this worker (highwater - next offset),"
    " sampled after each batch.",
    ["topic", "partition"],
    registry=REGISTRY,
)
FOLD_CRASHES = Counter(
    "wedding_fold_crashes_total",
    "Fold agents stopped by an error (faust restarts them on the same batch; a poison event"
    " is dead-lettered instead, see stream_app/agents/poison.py). Alert on any increase.",
    ["topic"],
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
REPORT_ORG_HELD = Gauge(
    "wedding_report_org_held_max",
    "Most reports one organisation generates at once on this worker, all lanes together"
    " (at most WEDDING_ORG_REPORTS)",
    registry=REGISTRY,
)
REPORT_LANE_ORGS = Gauge(
    "wedding_report_lane_organisations",
    "Organisations generating reports in a lane on this worker right now",
    ["lane"],
    registry=REGISTRY,
)
