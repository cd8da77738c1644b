"""Every faust topic and table of the stream agents, declared once on the app.

The agents (:mod:`stream_app.agents`) consume and fill what is declared here; the HTTP layer
and the queries (:mod:`stream_app.queries`) read the same tables from here, never from an
agent module. Names and partition counts come from :mod:`stream_app.topics` and the settings;
declaring a topic or table registers it with the faust app (its changelog is created when a
worker starts), nothing is sent or read on import.

Tables are co-partitioned with their input topic (same partition count, key
``organization_id/<entity>``), so a row is fed by one input partition in offset order.
"""

from __future__ import annotations

from typing import Any

from stream_app.app import app, rocksdb_options, settings
from stream_app.schemas.reports import PRIORITIES
from stream_app.topics import (
    CLIENT_INTERACTION_TOTALS,
    CLIENT_INTERACTIONS,
    DEAD_LETTER,
    PAYMENT_EVENTS,
    REALTIME_METRICS_UPDATES,
    REPORT_CACHE_TOPIC,
    REPORT_LANES,
    REPORT_REQUESTS,
    REPORT_RESULTS,
    SUPPLIER_ACTIVITIES,
    WEDDING_BOOKINGS,
    compacted_changelog_configs,
)

RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}
"""Options of a topic carried as raw bytes (decoded by the code that reads it)."""

INPUT_TOPIC: dict[str, Any] = {
    **RAW,
    # at most two fetched batches wait for the agent: while they wait, the consumer's fetch
    # buffer keeps filling, and the next fetch returns it as one larger batch. A deeper
    # queue of small batches (faust's default holds 4,096 items) let a trickle of events
    # queue up as hundreds of tiny batches, each paying the per-batch round trips: at
    # 1,000 events/s the median latency was 6-7 s.
    "maxsize": 2,
}
"""Options of an input topic's channel: raw bytes (decoded by the batch loop,
:mod:`stream_app.agents.batch`), a short queue of fetched batches."""


def _input(name: str) -> Any:
    # built from the app's Topic class: ``App.topic()`` drops its ``maxsize`` argument
    # (faust-streaming 0.11), so the channel's queue would be faust's default 4,096 items
    topic_class: Any = app.conf.Topic
    return topic_class(app, topics=(name,), partitions=settings.topic_partitions, **INPUT_TOPIC)


def _table(name: str, **extra: Any) -> Any:
    return app.Table(
        name,
        default=None,
        partitions=settings.topic_partitions,
        options=rocksdb_options(settings),
        **extra,
    )


# --- input topics ---------------------------------------------------------------------------
bookings_topic = _input(WEDDING_BOOKINGS)
payments_topic = _input(PAYMENT_EVENTS)
interactions_topic = _input(CLIENT_INTERACTIONS)
suppliers_topic = _input(SUPPLIER_ACTIVITIES)

dead_letter_topic = app.topic(DEAD_LETTER, partitions=settings.topic_partitions, **RAW)
"""Where an event that cannot be processed goes, with the reason
(:mod:`stream_app.agents.deadletter`)."""

# --- tables ---------------------------------------------------------------------------------
venue_bookings = _table("venue-bookings")
"""Venue totals per service day/month and event-time windows, fed by ``wedding-bookings``
(:mod:`stream_app.tables.bookings`); key ``org/venue/grain/period``."""

booking_payments_table = _table("booking-payments")
"""Payment totals per booking, fed by ``payment-events`` (:mod:`stream_app.tables.payments`)."""

client_interactions_table = _table(
    CLIENT_INTERACTION_TOTALS,
    extra_topic_configs=compacted_changelog_configs(settings.changelog_max_compaction_lag_ms),
)
"""Interaction totals per client, fed by ``client-interactions``
(:mod:`stream_app.tables.interactions`). Its rows are keyed by client, so its changelog is
compacted within a bounded lag: an erased client's tombstones remove it (GDPR Art. 17)."""

supplier_activity_table = _table("supplier-activity")
"""Activity per supplier and month, fed by ``supplier-activities``
(:mod:`stream_app.tables.suppliers`)."""

# --- reports (struct-reports' section: report topics and the report-cache table) ------------

report_requests_topic = app.topic(REPORT_REQUESTS, partitions=settings.topic_partitions, **RAW)
"""``report-requests``: requests from any producer, keyed ``organization_id/report_id``; the
router accepts each (:mod:`stream_app.reports.route`)."""
report_lane_topics = {
    p: app.topic(REPORT_LANES[p], partitions=settings.topic_partitions, **RAW) for p in PRIORITIES
}
"""Priority → ``report-requests-<priority>``: accepted requests, keyed
``organization_id/<cache key>`` (:mod:`stream_app.reports.lanes`)."""
report_results_topic = app.topic(REPORT_RESULTS, partitions=settings.topic_partitions, **RAW)
"""``report-results``: every status change of a report (delivery reads the final ones)."""
report_updates_topic = app.topic(
    REALTIME_METRICS_UPDATES, partitions=settings.topic_partitions, **RAW
)
"""``realtime-metrics-updates`` as the reports write to it: their status changes."""
report_cache_topic = app.topic(REPORT_CACHE_TOPIC, partitions=settings.topic_partitions, **RAW)
"""``report-cache``: entries (and tombstones) of the report cache's level 2."""
report_cache_table = app.Table(
    "report-cache",
    default=None,
    partitions=settings.topic_partitions,
    options=rocksdb_options(settings),
)
"""The report cache's level 2 (:mod:`stream_app.reports.cache`), written by
:func:`stream_app.agents.report_cache.cache_writer`."""
