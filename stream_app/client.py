"""A small client: publish a report request to Kafka and wait for its final status; cancel one.

Used by the CLI, the demo, the tests and the benchmarks. It reads ``report-results`` from the
end (subscribing before it publishes, so the answer cannot be missed).
"""

from __future__ import annotations

import time
import uuid
from datetime import date
from typing import Any, Literal

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream_app.reports.cancelling import cancel_in_db
from stream_app.schemas.base import decode_event, encode_event
from stream_app.schemas.ids import check_id
from stream_app.schemas.reports import new_report_request
from stream_app.schemas.updates import ReportStatus
from stream_app.settings import Settings
from stream_app.topics import REALTIME_METRICS_UPDATES, REPORT_REQUESTS, REPORT_RESULTS

FINAL = frozenset({"completed", "failed", "cancelled"})


async def request_report_and_wait(
    settings: Settings,
    *,
    organization_id: str,
    report_type: str,
    date_from: date,
    date_to: date,
    output_formats: list[str],
    user_id: str = "cli",
    report_id: str | None = None,
    timeout_s: float = 120.0,
    priority: Literal["low", "normal", "high", "critical"] = "normal",
    cache_strategy: Literal["use_cache", "refresh", "skip"] = "use_cache",
    data_filters: dict[str, list[str]] | None = None,
    configuration: dict[str, Any] | None = None,
) -> ReportStatus:
    """Request a report and return its final status (completed, failed or cancelled).

    ``priority``, ``cache_strategy``, ``data_filters`` and ``configuration`` are the request's
    (:class:`~stream_app.schemas.reports.ReportRequest`).

    Raises:
        msgspec.ValidationError / ValueError: the request is invalid (raised before sending).
        TimeoutError: no final status within ``timeout_s`` seconds.
    """
    req = new_report_request(
        organization_id,
        user_id,
        report_type,
        date_from,
        date_to,
        output_formats,
        report_id=check_id("report_id", report_id or str(uuid.uuid4())),
        priority=priority,
        cache_strategy=cache_strategy,
        data_filters=data_filters or {},
        configuration=configuration or {},
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        parts = await producer.partitions_for(REPORT_RESULTS)
        if not parts:
            raise RuntimeError(
                f"topic {REPORT_RESULTS!r} does not exist: run 'wedding-engine init'"
            )
        tps = [TopicPartition(REPORT_RESULTS, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        await producer.send_and_wait(
            REPORT_REQUESTS,
            key=f"{organization_id}/{req.report_id}".encode(),
            value=encode_event(req),
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    if rec.value is None:
                        continue
                    status = decode_event(rec.value, ReportStatus)
                    if status.report_id == req.report_id and status.status in FINAL:
                        return status
        raise TimeoutError(f"report {req.report_id}: no final status within {timeout_s} s")
    finally:
        await producer.stop()
        await consumer.stop()


async def cancel_report(
    settings: Settings, organization_id: str, report_id: str, *, actor: str = "cli"
) -> str | None:
    """Cancel a queued or running report; publish ``cancelled`` when this call cancelled it.

    ``actor`` (who asked) is recorded in the audit log with the cancellation (again for a
    repeated cancel: :func:`stream_app.db.reports.cancel` answers ``cancelled`` for both).

    The worker running it sees the status in PostgreSQL and stops
    (:mod:`stream_app.reports.watchdog`).

    Returns:
        ``"cancelled"``, else the report's final status, or None when there is no such report.
    """
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        outcome, status = await cancel_in_db(conn, organization_id, report_id, actor=actor)
    finally:
        await conn.close()
    if status is None:
        return outcome
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        key = f"{organization_id}/{report_id}".encode()
        for topic in (REALTIME_METRICS_UPDATES, REPORT_RESULTS):
            await producer.send_and_wait(topic, key=key, value=encode_event(status))
    finally:
        await producer.stop()
    return "cancelled"
