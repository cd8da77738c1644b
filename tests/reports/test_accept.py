"""One accept path: whatever the entry (HTTP, a producer of ``report-requests``, the CLI, the
scheduler), a request is recorded once and audited once, and sent to its priority lane.

Each test counts, in PostgreSQL, the ``reports`` rows and the ``report.requested`` audit
records of its report id after the entry was used twice for the same request (a client's
retry, a redelivered message, a re-submitted schedule run): exactly one of each, with the
entry as the audit record's channel.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import msgspec
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, MessageSizeTooLargeError
from faust.exceptions import ProducerSendError

from stream_app.client import request_report_and_wait
from stream_app.db.tenancy import Organization, Venue, upsert_organization, upsert_venue
from stream_app.devservices.workers import WorkerProcess
from stream_app.lag import wait_for_lag_zero
from stream_app.reports.accept import (
    NotPublishedError,
    ReportIdTakenError,
    accept,
    kafka_cause,
    refused_for_size,
    validate,
)
from stream_app.reports.cache import cache_key, message_key
from stream_app.reports.lanes import REQUEUED_BY
from stream_app.schedules.runner import run_scheduler_tick
from stream_app.schedules.store import create_schedule
from stream_app.schemas.base import encode_event
from stream_app.schemas.reports import ReportRequest, new_report_request
from stream_app.settings import Settings
from stream_app.topics import REPORT_LANES, REPORT_REQUESTS, REPORT_RESULTS
from tests.e2e.helpers import auth, read_topic, request_report_http
from tests.schedules import builders

ORG = "accept-org"
BODY: dict[str, Any] = {
    "report_type": "monthly_booking_summary",
    "date_from": "2026-01-01",
    "date_to": "2026-01-31",
    "output_formats": ["csv"],
}


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the test database with the organisation ``accept-org`` and one venue."""
    p = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=4)
    assert p is not None
    async with p.acquire() as conn:
        await upsert_organization(conn, Organization(ORG, "Accept", "Europe/Paris", "EUR"))
        await upsert_venue(conn, ORG, Venue("hall", "Hall", 2))
    yield p
    await p.close()


async def recorded(pool: asyncpg.Pool, report_id: str) -> tuple[int, list[dict[str, Any]]]:
    """``(reports rows, details of the report.requested audit records)`` of ``report_id``."""
    async with pool.acquire() as conn:
        rows = await conn.fetchval(
            "SELECT count(*) FROM reports WHERE organization_id = $1 AND id = $2", ORG, report_id
        )
        audits = await conn.fetch(
            "SELECT details::text AS details FROM audit_log WHERE organization_id = $1"
            " AND action = 'report.requested' AND target = $2",
            ORG,
            report_id,
        )
    return int(rows), [json.loads(a["details"]) for a in audits]


async def test_http_request_is_recorded_and_audited_once(
    settings: Settings, main_worker: WorkerProcess, pool: asyncpg.Pool
) -> None:
    body = {**BODY, "report_id": "acc-http"}
    status = await request_report_http(main_worker.url, settings, ORG, body)
    assert status["status"] == "completed", status
    async with (
        aiohttp.ClientSession(main_worker.url) as s,
        s.post(f"/orgs/{ORG}/reports", json=body, headers=auth(settings, ORG)) as r,
    ):  # the client's retry of the same request
        assert r.status == 409
        assert (await r.json())["error"]["field"] == "$.report_id"
    rows, audits = await recorded(pool, "acc-http")
    assert rows == 1
    assert [a["channel"] for a in audits] == ["http"]


async def test_kafka_request_is_recorded_and_audited_once(
    settings: Settings, main_worker: WorkerProcess, pool: asyncpg.Pool
) -> None:
    req = new_report_request(
        ORG,
        "producer-1",
        "monthly_booking_summary",
        datetime(2026, 1, 1, tzinfo=UTC).date(),
        datetime(2026, 1, 31, tzinfo=UTC).date(),
        ["json"],
        report_id="acc-kafka",
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for _ in range(2):  # the same message twice: a redelivery
            await producer.send_and_wait(
                REPORT_REQUESTS, encode_event(req), key=f"{ORG}/acc-kafka".encode()
            )
    finally:
        await producer.stop()
    await wait_for_lag_zero(settings.kafka_bootstrap, "wedding-tests", REPORT_REQUESTS, 120)

    async def final() -> str | None:
        async with pool.acquire() as conn:
            return await conn.fetchval(  # type: ignore[no-any-return]
                "SELECT status FROM reports WHERE organization_id = $1 AND id = 'acc-kafka'", ORG
            )

    for _ in range(200):
        if await final() in ("completed", "failed"):
            break
        await asyncio.sleep(0.3)
    assert await final() == "completed"
    rows, audits = await recorded(pool, "acc-kafka")
    assert rows == 1
    assert [(a["channel"], a["output_formats"]) for a in audits] == [("kafka", ["json"])]


async def test_cli_request_is_recorded_and_audited_once(
    settings: Settings, main_worker: WorkerProcess, pool: asyncpg.Pool
) -> None:
    kwargs: dict[str, Any] = {
        "organization_id": ORG,
        "report_type": "monthly_booking_summary",
        "date_from": datetime(2026, 2, 1, tzinfo=UTC).date(),
        "date_to": datetime(2026, 2, 28, tzinfo=UTC).date(),
        "output_formats": ["csv"],
        "user_id": "cli:tester",
        "report_id": "acc-cli",
    }
    first = await request_report_and_wait(settings, **kwargs)
    assert first.status == "completed"
    with pytest.raises(TimeoutError):  # sent again: already final, so nothing more happens
        await request_report_and_wait(settings, timeout_s=3, **kwargs)
    rows, audits = await recorded(pool, "acc-cli")
    assert rows == 1
    assert [a["channel"] for a in audits] == ["kafka"]


async def test_scheduled_request_is_recorded_and_audited_once(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    schedule = builders.schedule(
        ORG, "acc-schedule", created_by="planner-1", cron="0 8 1 * *", time_zone="Europe/Paris"
    )
    async with pool.acquire() as conn:
        await create_schedule(conn, schedule, datetime(2031, 3, 20, tzinfo=UTC))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    sent: list[ReportRequest] = []

    async def send(topic: str, key: bytes, value: bytes) -> None:
        await producer.send_and_wait(topic, value, key=key)

    async def submit(request: ReportRequest) -> None:  # as stream_app.agents.scheduler does
        if request.organization_id != ORG:
            # another test module's schedule in this database is due in 2031 too: refusing its
            # request leaves its run claimed (the runner's rule), and only ours is submitted
            raise RuntimeError(f"not this test's schedule ({request.organization_id})")
        raw = encode_event(request)
        await accept(validate(raw), raw, channel="schedule", pool=pool, send=send)
        sent.append(request)

    try:
        (run,) = await run_scheduler_tick(pool, datetime(2031, 4, 1, 6, 0, 5, tzinfo=UTC), submit)
        [planned] = run.reports
        await submit(sent[0])  # a re-submitted run: the same request again
        changed = encode_event(msgspec.structs.replace(sent[0], output_formats=["json"]))
        with pytest.raises(ReportIdTakenError):  # the id re-used for another request
            await accept(validate(changed), changed, channel="schedule", pool=pool, send=send)
    finally:
        await producer.stop()
    rows, audits = await recorded(pool, planned.report_id)
    assert rows == 1
    assert [(a["channel"], a["date_from"]) for a in audits] == [("schedule", "2031-03-01")]
    # sent to its lane keyed by organisation and cache key, after its queued status; the
    # re-submission is sent on too unless a running worker finished the report meanwhile
    # (copies a running worker put back in the lane carry its app id, and are not sends)
    lane_key = message_key(ORG, cache_key(sent[0]))
    lane = [
        orjson.loads(r.value)["report_id"]
        for r in await read_topic(settings.kafka_bootstrap, REPORT_LANES["normal"])
        if r.key == lane_key and REQUEUED_BY not in dict(r.headers or [])
    ]
    assert lane in ([planned.report_id], [planned.report_id] * 2)
    async with pool.acquire() as conn:  # the lane acknowledged it: the sweep leaves it be
        routed = await conn.fetchval(
            "SELECT routed_at IS NOT NULL FROM reports WHERE organization_id = $1 AND id = $2",
            ORG,
            planned.report_id,
        )
    assert routed is True
    statuses = [
        orjson.loads(r.value)["status"]
        for r in await read_topic(settings.kafka_bootstrap, REPORT_RESULTS)
        if r.key == f"{ORG}/{planned.report_id}".encode()
    ]
    assert statuses[0] == "queued" and 1 <= statuses.count("queued") <= len(lane)


async def test_request_kafka_refuses_for_its_size_is_failed_with_the_cause(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    # valid (one known venue, repeated) but over the producer's 1 MiB message limit
    req = new_report_request(
        ORG,
        "user-1",
        "monthly_booking_summary",
        datetime(2026, 1, 1, tzinfo=UTC).date(),
        datetime(2026, 1, 31, tzinfo=UTC).date(),
        ["csv"],
        report_id="acc-too-large",
        data_filters={"venue_id": ["hall"] * 200_000},
    )
    raw = encode_event(req)
    assert len(raw) > 1_048_576
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()

    async def send(topic: str, key: bytes, value: bytes) -> None:
        await producer.send_and_wait(topic, value, key=key)

    try:
        with pytest.raises(NotPublishedError) as refused:
            await accept(validate(raw), raw, channel="http", pool=pool, send=send, interactive=True)
    finally:
        await producer.stop()
    assert refused.value.too_large is True
    assert "MessageSizeTooLargeError" in refused.value.reason
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT status, error FROM reports WHERE organization_id = $1 AND id = $2",
            ORG,
            "acc-too-large",
        )
    assert row is not None
    assert row["status"] == "failed"  # not left queued for the sweep to retry for ever
    assert "MessageSizeTooLargeError" in row["error"]


def test_a_size_refusal_is_recognised_through_fausts_wrapper() -> None:
    # the worker's producer (faust) raises ProducerSendError from the client's error
    try:
        try:
            raise MessageSizeTooLargeError("The message is 1131491 bytes")
        except KafkaError as exc:
            raise ProducerSendError(f"Error while sending: {exc!r}") from exc
    except ProducerSendError as wrapped:
        assert isinstance(kafka_cause(wrapped), MessageSizeTooLargeError)
        assert refused_for_size(wrapped) is True
    assert refused_for_size(ProducerSendError("no transaction producer")) is False
    assert refused_for_size(KafkaConnectionError("broker away")) is False
