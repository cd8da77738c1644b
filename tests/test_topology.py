"""Every topic and table of the agents, declared once (:mod:`stream_app.topology`).

The names are written out here: a table's name is its changelog's name on the broker, so a
renamed table would start empty on every worker; a table with another partition count than
its input topic would not be co-partitioned with it.
"""

from __future__ import annotations

from typing import Any

from stream_app import topology
from stream_app.app import app, settings

TABLES = {
    "venue-bookings": topology.venue_bookings,
    "booking-payments": topology.booking_payments_table,
    "client-interaction-totals": topology.client_interactions_table,
    "supplier-activity": topology.supplier_activity_table,
    "report-cache": topology.report_cache_table,
}


def name(topic: Any) -> str:
    return str(topic.get_topic_name())


def test_input_topics_are_raw_bytes_on_the_settings_partitions() -> None:
    inputs = {
        name(t): t
        for t in (
            topology.bookings_topic,
            topology.payments_topic,
            topology.interactions_topic,
            topology.suppliers_topic,
        )
    }
    assert sorted(inputs) == [
        "client-interactions",
        "payment-events",
        "supplier-activities",
        "wedding-bookings",
    ]
    for topic in inputs.values():
        assert topic.partitions == settings.topic_partitions
        assert (topic.key_type, topic.value_type) == (bytes, bytes)
        assert (topic.key_serializer, topic.value_serializer) == ("raw", "raw")


def test_each_table_is_registered_once_under_its_name_with_its_changelog() -> None:
    assert sorted(app.tables.keys()) == sorted(TABLES)
    for table_name, table in TABLES.items():
        assert app.tables[table_name] is table
        assert table.partitions == settings.topic_partitions  # co-partitioned with its input
        assert name(table.changelog_topic) == f"{app.conf.id}-{table_name}-changelog"


def test_only_the_client_keyed_table_has_a_bounded_compaction_lag() -> None:
    configs = topology.client_interactions_table.changelog_topic.config
    assert configs["cleanup.policy"] == "compact"
    assert configs["max.compaction.lag.ms"] == str(settings.changelog_max_compaction_lag_ms)
    for table_name, table in TABLES.items():
        if table_name != "client-interaction-totals":
            assert "max.compaction.lag.ms" not in (table.changelog_topic.config or {})


def test_report_topics_one_lane_per_priority() -> None:
    assert {p: name(t) for p, t in topology.report_lane_topics.items()} == {
        "critical": "report-requests-critical",
        "high": "report-requests-high",
        "normal": "report-requests-normal",
        "low": "report-requests-low",
    }
    assert [
        name(t)
        for t in (
            topology.report_requests_topic,
            topology.report_results_topic,
            topology.report_updates_topic,
            topology.report_cache_topic,
            topology.dead_letter_topic,
        )
    ] == [
        "report-requests",
        "report-results",
        "realtime-metrics-updates",
        "report-cache",
        "dead-letter-events",
    ]
