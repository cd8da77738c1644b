"""Helpers of the end-to-end tests: HTTP calls with tokens, topic reads, independent figures."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stream_app.crypto.keyring import KeyRing
from stream_app.reports.artifacts import open_artifact
from stream_app.settings import Settings
from stream_app.web.auth import issue_token
from tests.hotel_csv import read_csv


def expected_monthly_from_csv(path: Path) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(venue, YYYY-MM) → (bookings, cancellations, revenue cents), straight from the CSV
    (:func:`tests.hotel_csv.read_csv`): a row is a booking in its arrival month; a cancelled
    row is also a cancellation; revenue is the amount of the rows not cancelled."""
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for b in read_csv(path):
        acc = out[(b.venue, f"{b.arrival:%Y-%m}")]
        acc[0] += 1
        if b.cancelled:
            acc[1] += 1
        else:
            acc[2] += b.amount
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


async def db_rows(settings: Settings, sql: str, *args: object) -> list[asyncpg.Record]:
    """The rows of ``sql`` on a connection of its own to the workers' database (as the
    superuser of the tests: no tenant scope)."""
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        return rows
    finally:
        await conn.close()


async def db_value(settings: Settings, sql: str, *args: object) -> Any:
    """The first column of the first row of ``sql`` (None without rows), as :func:`db_rows`."""
    rows = await db_rows(settings, sql, *args)
    return rows[0][0] if rows else None


def report_body(date_from: str, date_to: str, **fields: Any) -> dict[str, Any]:
    """A report request as the HTTP API takes it: the monthly booking summary in csv of
    ``date_from`` to ``date_to`` (ISO dates, inclusive); ``fields`` added or replaced."""
    return {
        "report_type": "monthly_booking_summary",
        "date_from": date_from,
        "date_to": date_to,
        "output_formats": ["csv"],
        **fields,
    }


def schedule_body(**fields: Any) -> dict[str, Any]:
    """A schedule as the HTTP API takes it: the previous month's booking summary in csv at
    08:00 on the first of each month, fetched through the API; ``fields`` added or replaced."""
    return {
        "report_type": "monthly_booking_summary",
        "date_range": "previous_month",
        "output_formats": ["csv"],
        "cron": "0 8 1 * *",
        "delivery": {"method": "api"},
        **fields,
    }


def bearer(
    settings: Settings,
    org: str,
    user: str = "tester",
    role: str = "admin",
    venues: list[str] | None = None,
) -> str:
    """A 10-minute token of ``user`` in ``org`` with ``role`` (scoped to ``venues`` if given)."""
    return issue_token(
        settings.jwt_secret,
        user_id=user,
        organization_id=org,
        ttl_seconds=600,
        role=role,
        venues=venues,
    )


def auth(settings: Settings, org: str, user: str = "tester", **scope: Any) -> dict[str, str]:
    """The ``Authorization`` header of :func:`bearer` (``scope``: its ``role`` and ``venues``)."""
    return {"Authorization": f"Bearer {bearer(settings, org, user, **scope)}"}


async def request_report_http(
    base_url: str, settings: Settings, org: str, body: dict[str, Any], timeout_s: float = 120
) -> dict[str, Any]:
    """POST a report request, then poll its status until it is final; return the status body."""
    async with (
        aiohttp.ClientSession(base_url) as s,
        s.post(f"/orgs/{org}/reports", json=body, headers=auth(settings, org)) as r,
    ):
        assert r.status == 202, await r.text()
        accepted = await r.json()
    return await wait_final(base_url, settings, org, accepted["report_id"], timeout_s)


async def wait_final(
    base_url: str, settings: Settings, org: str, report_id: str, timeout_s: float = 120
) -> dict[str, Any]:
    """Poll ``GET /orgs/{org}/reports/{report_id}`` until the status is final; its body.

    Raises:
        TimeoutError: not final within ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(base_url) as s:
        while time.monotonic() < deadline:
            async with s.get(f"/orgs/{org}/reports/{report_id}", headers=auth(settings, org)) as r:
                if r.status == 200:
                    status: dict[str, Any] = await r.json()
                    if status["status"] in ("completed", "failed", "cancelled"):
                        return status
            await asyncio.sleep(0.25)
    raise TimeoutError(f"report {report_id} not final in {timeout_s} s")


async def venue_periods(
    base_url: str, settings: Settings, org: str, venue: str, grain: str, lo: str, hi: str
) -> list[dict[str, Any]]:
    """The ``periods`` of ``GET /orgs/{org}/venues/{venue}/metrics`` from ``lo`` to ``hi`` per
    ``grain`` (``day`` or ``month``), asserting a 200."""
    async with (
        aiohttp.ClientSession(base_url) as s,
        s.get(
            f"/orgs/{org}/venues/{venue}/metrics",
            params={"grain": grain, "from": lo, "to": hi},
            headers=auth(settings, org),
        ) as r,
    ):
        body = await r.json()
        assert r.status == 200, body
    periods: list[dict[str, Any]] = body["periods"]
    return periods


async def download(base_url: str, settings: Settings, org: str, url: str) -> bytes:
    async with (
        aiohttp.ClientSession(base_url) as s,
        s.get(url, headers=auth(settings, org)) as r,
    ):
        assert r.status == 200, await r.text()
        return await r.read()


async def read_artifact(settings: Settings, org: str, rel_path: str) -> bytes:
    """The decrypted bytes of a stored artifact (the files on disk are encrypted), read with
    the master key of this process's environment (the tests' development key)."""
    pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=2)
    try:
        reader = await open_artifact(settings.artifact_dir, org, rel_path, KeyRing(pool))
        return reader.read_all()
    finally:
        await pool.close()


async def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every record currently in ``topic`` (all partitions, from the start to the end)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics([topic])
        finally:
            await admin.close()
        parts = sorted(p["partition"] for p in described[0]["partitions"])
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            batch = await consumer.getmany(timeout_ms=1000)
            for recs in batch.values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()


async def send(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> None:
    """Produce ``(key, value)`` messages to ``topic`` in order (``acks=all``); return once every
    one is written."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


def booking_created(
    org: str,
    event_id: str,
    booking_id: str,
    venue: str,
    day: str,
    amount: int,
    currency: str,
    occurred_at: str = "2026-01-01T12:00:00Z",
) -> tuple[bytes, bytes]:
    """A ``booking_created`` event of ``wedding-bookings`` as (key, JSON value), keyed by
    organisation and venue; occurred at ``occurred_at`` (default 2026-01-01 12:00 UTC), for
    service date ``day``."""
    doc = {
        "schema_version": 1,
        "event_id": event_id,
        "organization_id": org,
        "occurred_at": occurred_at,
        "event_type": "booking_created",
        "booking_id": booking_id,
        "venue_id": venue,
        "service_date": day,
        "amount_minor": amount,
        "currency": currency,
    }
    return f"{org}/{venue}".encode(), orjson.dumps(doc)
