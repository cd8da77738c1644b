"""The Faust application: broker, RocksDB store, web server and the settings that shape them.

Importing this module creates ``app`` from the environment (see :mod:`stream_app.settings`);
importing :mod:`stream_app.worker` also registers every agent, table and HTTP view on it.
Neither patches faust: a worker process applies :func:`stream_app.runtime.install` when it
starts (``wedding-engine worker``).

Processing guarantee: at-least-once delivery from Kafka, made exactly-once *in the tables*:
each row keeps the input offset it has applied up to (tables are co-partitioned with their
input, so a row is fed by one partition in offset order) and a re-sent event is recognised by
its dedupe record (:mod:`stream_app.agents.batch`). Kafka transactions (``exactly_once``)
would hide every table change until the next commit (every 2.8 s by default) and so put a
floor under the latency of live metrics.

The consumer is faust's, with batch delivery for the input topics
(:mod:`stream_app.runtime.consumer`, transport ``weddingkafka``): a fold agent receives what
one fetch returned for a partition as one item.
"""

from __future__ import annotations

from typing import Any

import faust

from stream_app.settings import Settings, load_settings

settings: Settings = load_settings()


def rocksdb_options(s: Settings) -> dict[str, Any]:
    """RocksDB options for one table, a fresh dict each call (faust mutates the one it gets).

    faust-streaming's defaults open a 2 GiB block cache, a 500 MiB compressed block cache and
    3 × 64 MiB write buffers *per partition*; with 4 tables × 4 partitions that is a budget no
    2-core worker has. These values give at most ~(16 + 2 × 16) MiB per opened partition.
    """
    return {
        "block_cache_size": s.rocksdb_block_cache_bytes,
        "block_cache_compressed_size": 0,
        "write_buffer_size": s.rocksdb_write_buffer_bytes,
        "max_write_buffer_number": 2,
        "max_open_files": 256,
    }


def web_options(s: Settings) -> dict[str, Any]:
    """faust's web server options: on, at ``s.web_host``/``s.web_port`` (bound to
    ``s.web_bind``), without faust's own pages.

    faust's /table blueprint serves raw table contents to anyone: off. So are its graph,
    stats and metrics pages; our own /metrics serves Prometheus.
    """
    return {
        "web_enabled": True,
        "web_host": s.web_host,
        "web_port": s.web_port,
        "web_bind": s.web_bind,
        "web_tables_enabled": False,
        "web_graph_enabled": False,
        "web_stats_enabled": False,
        "web_metrics_enabled": False,
    }


app = faust.App(
    settings.app_id,
    broker=f"kafka://{settings.kafka_bootstrap}",
    broker_consumer=f"weddingkafka://{settings.kafka_bootstrap}",
    broker_max_poll_records=settings.batch_max_events,
    consumer_max_fetch_size=settings.fetch_partition_bytes,
    store="rocksdb://",
    datadir=str(settings.data_dir),
    topic_partitions=settings.topic_partitions,
    topic_replication_factor=1,
    table_standby_replicas=0,
    processing_guarantee="at_least_once",
    consumer_auto_offset_reset=settings.offset_reset,
    producer_linger_ms=1,
    broker_session_timeout=settings.session_timeout_s,
    consumer_group_instance_id=settings.group_instance_id or None,
    broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
    stream_wait_empty=settings.stream_wait_empty,
    stream_processing_timeout=settings.stall_report_s,
    broker_commit_livelock_soft_timeout=settings.stall_report_s,
    broker_commit_interval=settings.commit_interval_s,
    **web_options(settings),
)
