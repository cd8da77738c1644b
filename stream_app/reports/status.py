"""A report's status changes: the message, its publication, its audit record.

Part of the reports layer. Every change goes to ``realtime-metrics-updates`` and
``report-results`` (:func:`publish_status`, through a :data:`Send`: the worker's producer by
default, any Kafka producer in a process without a worker); the changes the report pipeline
makes are audited by :func:`audit_status` inside the caller's transaction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from stream_app.db import audit_events
from stream_app.reports.audit_details import REPORT_AGENT_ACTOR, status_details
from stream_app.schemas.base import encode_event
from stream_app.schemas.reports import ReportRequest
from stream_app.schemas.updates import ReportStatus, ReportStatusName
from stream_app.topology import (
    report_cache_topic,
    report_lane_topics,
    report_requests_topic,
    report_results_topic,
    report_updates_topic,
)

Send = Callable[[str, bytes, bytes], Awaitable[None]]
"""``send(topic, key, value)``: produce one message and wait for the broker's acknowledgement
(raises the producer's error, e.g. ``aiokafka.errors.KafkaError``)."""

_WORKER_TOPICS = {
    t.get_topic_name(): t
    for t in (
        report_requests_topic,
        report_results_topic,
        report_updates_topic,
        report_cache_topic,
        *report_lane_topics.values(),
    )
}


async def worker_send(topic: str, key: bytes, value: bytes) -> None:
    """:data:`Send` through this worker's faust producer (a report topic of
    :mod:`stream_app.topology`).

    Raises:
        KeyError: ``topic`` is not a report topic.
    """
    fut = await _WORKER_TOPICS[topic].send(key=key, value=value)
    await fut


async def publish_status(status: ReportStatus, send: Send = worker_send) -> None:
    """Publish a status change on both status topics and wait for the broker's acks."""
    key = f"{status.organization_id}/{status.report_id}".encode()
    value = encode_event(status)
    await asyncio.gather(
        send(report_updates_topic.get_topic_name(), key, value),
        send(report_results_topic.get_topic_name(), key, value),
    )


def report_status(
    req: ReportRequest, status: ReportStatusName, started: float, **extra: Any
) -> ReportStatus:
    """The status message of ``req``'s report, now; ``processing_ms`` counts from
    ``started`` (a :func:`time.perf_counter` reading); ``extra``: further fields of
    :class:`~stream_app.schemas.updates.ReportStatus`."""
    return ReportStatus(
        kind="report_status",
        report_id=req.report_id,
        organization_id=req.organization_id,
        report_type=req.report_type,
        status=status,
        at=datetime.now(UTC),
        processing_ms=(time.perf_counter() - started) * 1000,
        priority=req.priority,
        **extra,
    )


async def audit_status(
    conn: asyncpg.Connection,
    req: ReportRequest,
    status: str,
    *,
    formats: list[str] | None = None,
    attempts: int = 0,
) -> None:
    """Record a status change made by the report pipeline (in the caller's transaction)."""
    await audit_events.record(
        conn,
        req.organization_id,
        REPORT_AGENT_ACTOR,
        "report.status",
        req.report_id,
        status_details(status, req.report_type, formats=formats, attempts=attempts),
        outcome="failed" if status == "failed" else "ok",
    )
