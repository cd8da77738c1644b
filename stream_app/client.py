"""A small client: publish a report request to Kafka and wait for its final status.

Used by the CLI, the demo, the tests and the benchmarks. It reads ``report-results`` from the
end (subscribing before it publishes, so the answer cannot be missed).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, date, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream_app.schemas.base import decode_event, encode_event
from stream_app.schemas.reports import ReportRequest
from stream_app.schemas.updates import ReportStatus
from stream_app.settings import Settings
from stream_app.topics import REPORT_REQUESTS, REPORT_RESULTS

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
) -> ReportStatus:
    """Request a report and return its final status (completed, failed or cancelled).

    Raises:
        msgspec.ValidationError / ValueError: the request is invalid (raised before sending).
        TimeoutError: no final status within ``timeout_s`` seconds.
    """
    req = ReportRequest(
        schema_version=1,
        report_id=report_id or str(uuid.uuid4()),
        organization_id=organization_id,
        user_id=user_id,
        report_type=report_type,
        date_from=date_from,
        date_to=date_to,
        output_formats=output_formats,
        requested_at=datetime.now(UTC),
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
