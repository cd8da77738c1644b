"""Every faust topic and table of the worker, declared once.

(struct-reports: only the reports section is written on this branch; the stream topics and
tables are struct-topo's, joined above it at merge.)
"""

from __future__ import annotations

from typing import Any

from stream_app.app import app, rocksdb_options, settings
from stream_app.schemas.reports import PRIORITIES
from stream_app.topics import (
    REALTIME_METRICS_UPDATES,
    REPORT_CACHE_TOPIC,
    REPORT_LANES,
    REPORT_REQUESTS,
    REPORT_RESULTS,
)

# ---------------------------------------------------------------------------------------------
# reports: requests, priority lanes, status changes, the report cache (stream_app/reports)

_REPORT_RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}
"""Report topics carry JSON bytes, decoded by the report code (:mod:`stream_app.schemas`)."""

report_requests_topic = app.topic(
    REPORT_REQUESTS, partitions=settings.topic_partitions, **_REPORT_RAW
)
"""``report-requests``: requests from any producer, keyed ``organization_id/report_id``; the
router accepts each (:mod:`stream_app.reports.route`)."""
report_lane_topics = {
    p: app.topic(REPORT_LANES[p], partitions=settings.topic_partitions, **_REPORT_RAW)
    for p in PRIORITIES
}
"""Priority → ``report-requests-<priority>``: accepted requests, keyed
``organization_id/<cache key>`` (:mod:`stream_app.reports.lanes`)."""
report_results_topic = app.topic(
    REPORT_RESULTS, partitions=settings.topic_partitions, **_REPORT_RAW
)
"""``report-results``: every status change of a report (delivery reads the final ones)."""
report_updates_topic = app.topic(
    REALTIME_METRICS_UPDATES, partitions=settings.topic_partitions, **_REPORT_RAW
)
"""``realtime-metrics-updates`` as the reports write to it: their status changes."""
report_cache_topic = app.topic(
    REPORT_CACHE_TOPIC, partitions=settings.topic_partitions, **_REPORT_RAW
)
"""``report-cache``: entries (and tombstones) of the report cache's level 2."""
report_cache_table = app.Table(
    "report-cache",
    default=None,
    partitions=settings.topic_partitions,
    options=rocksdb_options(settings),
)
"""The report cache's level 2 (:mod:`stream_app.reports.cache`), written by
:func:`stream_app.agents.report_cache.cache_writer`."""
