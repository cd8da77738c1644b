"""Event-time windows through a real worker: calendar windows in the organisation's zone
(a +05:30 zone), tumbling hours, a late event sent to ``late-events`` and counted."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from stream_app.db.tenancy import Organization, upsert_organization
from stream_app.devservices.workers import WorkerProcess
from stream_app.lag import wait_for_lag_zero
from stream_app.settings import Settings
from stream_app.topics import LATE_EVENTS, WEDDING_BOOKINGS
from tests.e2e.helpers import auth, read_topic, venue_periods

ORG = "windows-test-org"
ZONE = "Asia/Kolkata"
KEY = f"{ORG}/hall".encode()
GRACE_S = 3600  # the worker's default WEDDING_GRACE_S

# event times in produce order; the last is 4 h 20 min behind the organisation's watermark
TIMES = [
    datetime(2026, 5, 1, 18, 45, tzinfo=UTC),
    datetime(2026, 5, 1, 20, 0, tzinfo=UTC),
    datetime(2026, 5, 1, 23, 10, tzinfo=UTC),
    datetime(2026, 5, 1, 18, 50, tzinfo=UTC),
]


def event(n: int, at: datetime) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "event_id": f"win-{n}",
            "organization_id": ORG,
            "occurred_at": at.isoformat().replace("+00:00", "Z"),
            "event_type": "booking_created",
            "booking_id": f"b-{n}",
            "venue_id": "hall",
            "service_date": "2026-12-12",
            "amount_minor": 1000 * (n + 1),
            "currency": "INR",
        }
    )


async def late_counter(base_url: str) -> float:
    async with aiohttp.ClientSession(base_url) as s, s.get("/metrics") as r:
        text = await r.text()
    m = re.search(
        r'wedding_late_events_total\{grain="event_hour",topic="wedding-bookings"\} (\S+)', text
    )
    return float(m.group(1)) if m else 0.0


async def periods(base: str, settings: Settings, grain: str, lo: str, hi: str) -> dict[str, int]:
    found = await venue_periods(base, settings, ORG, "hall", grain, lo, hi)
    return {p["period"]: p["bookings"] for p in found}


async def test_windows_in_the_zone_and_a_late_event(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(ORG, "Windows test", ZONE, "INR"))
    finally:
        await conn.close()
    before = await late_counter(main_worker.url)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for n, at in enumerate(TIMES):
            await producer.send_and_wait(WEDDING_BOOKINGS, event(n, at), key=KEY)
    finally:
        await producer.stop()
    await wait_for_lag_zero(settings.kafka_bootstrap, "wedding-tests", WEDDING_BOOKINGS, 300)

    # independent expectations: the watermark before each event, hour ends plus grace
    on_time_hours: Counter[str] = Counter()
    local_days: Counter[str] = Counter()
    late: list[int] = []
    mark: datetime | None = None
    for n, at in enumerate(TIMES):
        hour_start = at.replace(minute=0, second=0, microsecond=0)
        if mark is not None and (mark - hour_start).total_seconds() >= 3600 + GRACE_S:
            late.append(n)
        else:
            on_time_hours[hour_start.strftime("%Y-%m-%dT%H")] += 1
        local_days[at.astimezone(ZoneInfo(ZONE)).date().isoformat()] += 1
        mark = at if mark is None else max(mark, at)
    assert late == [3]

    hours = await periods(main_worker.url, settings, "event_hour", "2026-05-01T18", "2026-05-01T23")
    assert {h: c for h, c in hours.items() if c} == dict(on_time_hours)
    days = await periods(main_worker.url, settings, "event_day", "2026-05-01", "2026-05-02")
    assert days == {"2026-05-01": local_days["2026-05-01"], "2026-05-02": local_days["2026-05-02"]}
    utc_days = await periods(main_worker.url, settings, "event_day_utc", "2026-05-01", "2026-05-01")
    assert utc_days == {"2026-05-01": 4}
    # the service-date month counts every event, the late one too
    month = await periods(main_worker.url, settings, "month", "2026-12", "2026-12")
    assert month == {"2026-12": 4}

    copies = [r for r in await read_topic(settings.kafka_bootstrap, LATE_EVENTS) if r.key == KEY]
    assert [orjson.loads(r.value)["event_id"] for r in copies] == ["win-3"]
    headers = dict(copies[0].headers)
    assert headers["late.grains"] == b"event_hour"
    assert headers["late.source.topic"] == WEDDING_BOOKINGS.encode()
    assert await late_counter(main_worker.url) == before + 1


async def test_bad_window_labels_are_400_naming_the_field(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    async with aiohttp.ClientSession(main_worker.url) as s:
        for params, field in [
            ({"grain": "event_hour", "from": "2026-05-01", "to": "2026-05-01T03"}, "from"),
            ({"grain": "event_week", "from": "2026-W10", "to": "2026-W09"}, "to"),
            ({"grain": "fortnight", "from": "2026-05-01", "to": "2026-05-02"}, "grain"),
        ]:
            async with s.get(
                f"/orgs/{ORG}/venues/hall/metrics", params=params, headers=auth(settings, ORG)
            ) as r:
                body = await r.json()
                assert r.status == 400, body
                assert body["error"]["field"] == field, body


async def test_closed_windows_publish_their_final_value_once(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    """After :func:`test_windows_in_the_zone_and_a_late_event` (same organisation), the
    watermark (23:10) has closed the hours 18:00 and 20:00 (end + 1 h grace <= 23:10) and no
    other window: exactly one ``"final": true`` update each, with the on-time count."""
    await wait_for_lag_zero(settings.kafka_bootstrap, "wedding-tests", WEDDING_BOOKINGS, 300)
    mark = max(TIMES)
    expected: dict[tuple[str, str], int] = {}
    for at in TIMES[:3]:  # the on-time events (the fourth is late for its hour)
        start = at.replace(minute=0, second=0, microsecond=0)
        if (mark - start).total_seconds() >= 3600 + GRACE_S:
            label = start.strftime("%Y-%m-%dT%H")
            expected[("event_hour", label)] = expected.get(("event_hour", label), 0) + 1
    assert expected == {("event_hour", "2026-05-01T18"): 1, ("event_hour", "2026-05-01T20"): 1}
    updates = [
        orjson.loads(r.value)
        for r in await read_topic(settings.kafka_bootstrap, "realtime-metrics-updates")
        if r.key == KEY
    ]
    finals = [u for u in updates if u.get("kind") == "metric_update" and u.get("final")]
    got = {(u["window"]["grain"], u["window"]["period"]): u["new"]["bookings"] for u in finals}
    assert got == expected
    assert len(finals) == len(expected)  # once each
    # early updates of the same windows came before, without the flag
    early = [u for u in updates if u.get("kind") == "metric_update" and not u.get("final")]
    assert {("event_hour", "2026-05-01T18"), ("event_hour", "2026-05-01T20")} <= {
        (u["window"]["grain"], u["window"]["period"]) for u in early
    }
