"""Report processing against the real broker, database and worker: lanes, retries, cancel, cache.

Bookings are produced to ``wedding-bookings`` for organisations of these tests; every figure
is compared with a plain-Python sum over the events produced here.
"""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from stream_app.client import cancel_report, request_report_and_wait
from stream_app.db.tenancy import Organization, Venue, upsert_organization, upsert_venue
from stream_app.devservices.workers import WorkerProcess
from stream_app.settings import Settings
from stream_app.topics import DEAD_LETTER, REPORT_LANES, REPORT_RESULTS, WEDDING_BOOKINGS
from tests.e2e.helpers import (
    auth,
    db_rows,
    download,
    read_topic,
    request_report_http,
    send,
)

ORG = "proc-org"
VENUES = ("v1", "v2")
Booking = tuple[str, str, date, int, bool]  # booking id, venue, service date, cents, cancelled


def bookings_of(seed: int, n: int) -> list[Booking]:
    """``n`` bookings in 2026-01..2026-03, spread over both venues (deterministic)."""
    out: list[Booking] = []
    for i in range(n):
        venue = VENUES[(i * 7 + seed) % 2]
        day = date(2026, 1 + (i * 5 + seed) % 3, 1 + (i * 11 + seed) % 28)
        out.append((f"b{seed}-{i}", venue, day, 10_000 + 137 * i, i % 4 == 0))
    return out


def events_of(org: str, bookings: list[Booking]) -> list[tuple[bytes, bytes]]:
    msgs = []
    for bid, venue, day, cents, cancelled in bookings:
        kinds = ["booking_created"] + (["booking_cancelled"] if cancelled else [])
        for kind in kinds:
            doc = {
                "schema_version": 1,
                "event_id": f"{org}-{bid}-{kind}",
                "organization_id": org,
                "occurred_at": "2025-12-01T12:00:00+00:00",
                "event_type": kind,
                "booking_id": bid,
                "venue_id": venue,
                "service_date": day.isoformat(),
                "amount_minor": cents,
                "currency": "EUR",
            }
            msgs.append((f"{org}/{venue}".encode(), orjson.dumps(doc)))
    return msgs


def expected(bookings: list[Booking]) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(venue, YYYY-MM) → (bookings, cancellations, revenue cents) over Jan–Mar 2026."""
    acc: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for v in VENUES:
        for m in ("2026-01", "2026-02", "2026-03"):
            acc[(v, m)]
    for _, venue, day, cents, cancelled in bookings:
        row = acc[(venue, day.isoformat()[:7])]
        row[0] += 1
        if cancelled:
            row[1] += 1
        else:
            row[2] += cents
    return {k: (v[0], v[1], v[2]) for k, v in acc.items()}


def csv_figures(body: bytes) -> dict[tuple[str, str], tuple[int, int, int]]:
    rows = csv.DictReader(io.StringIO(body.decode("utf-8-sig")))
    return {
        (r["venue_id"], r["month"]): (
            int(r["bookings"]),
            int(r["cancellations"]),
            int(r["revenue_minor"]),
        )
        for r in rows
    }


async def produce(settings: Settings, msgs: list[tuple[bytes, bytes]]) -> None:
    await send(settings.kafka_bootstrap, WEDDING_BOOKINGS, msgs)


async def folded_bookings(worker: WorkerProcess, settings: Settings, org: str) -> int:
    total = 0
    async with aiohttp.ClientSession(worker.url) as s:
        for v in VENUES:
            url = f"/orgs/{org}/venues/{v}/metrics?grain=month&from=2026-01&to=2026-03"
            async with s.get(url, headers=auth(settings, org)) as r:
                body = await r.json()
                if r.status != 200:  # e.g. 503 while the worker restores its tables
                    return -1
                total += sum(p["bookings"] for p in body["periods"])
    return total


async def wait_until(check: Any, timeout_s: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(what)


async def setup_org(settings: Settings, org: str) -> None:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(org, org.title(), "Europe/Lisbon", "EUR"))
        for v in VENUES:
            await upsert_venue(conn, org, Venue(v, f"Venue {v}", 2))
    finally:
        await conn.close()


async def org_with_bookings(
    settings: Settings, worker: WorkerProcess, org: str, seed: int, n: int
) -> list[Booking]:
    """Organisation ``org`` with ``n`` bookings (of ``seed``) folded into ``worker``'s tables
    (waits up to 90 s); the bookings."""
    await setup_org(settings, org)
    bookings = bookings_of(seed, n)
    await produce(settings, events_of(org, bookings))

    async def folded() -> bool:
        return await folded_bookings(worker, settings, org) == n

    await wait_until(folded, 90, f"{n} bookings folded")
    return bookings


async def data_version(settings: Settings, org: str, stream: str = "bookings") -> int:
    rows = await db_rows(
        settings,
        "SELECT version FROM report_data_versions WHERE organization_id = $1 AND stream = $2",
        org,
        stream,
    )
    return int(rows[0]["version"]) if rows else 0


async def metric(worker: WorkerProcess, name: str, labels: str) -> float:
    async with aiohttp.ClientSession(worker.url) as s, s.get("/metrics") as r:
        text = await r.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(p in line for p in labels.split(",") if p):
            total += float(line.rsplit(" ", 1)[1])
    return total


BASE_BODY: dict[str, Any] = {
    "report_type": "monthly_booking_summary",
    "date_from": "2026-01-01",
    "date_to": "2026-03-31",
    "output_formats": ["csv", "json"],
    "data_filters": {"venue_id": ["v1", "v2"]},
}


@pytest.fixture(scope="module")
async def proc_org(settings: Settings, main_worker: WorkerProcess) -> AsyncIterator[list[Booking]]:
    """``proc-org`` with 40 bookings folded into the worker's tables, and its bookings data
    version settled (the worker records it shortly after the rows are readable: a report
    cached before that would be stale at once, and the next request a miss)."""
    bookings = await org_with_bookings(settings, main_worker, ORG, 1, 40)
    seen, since = await data_version(settings, ORG), time.monotonic()
    deadline = since + 30.0
    while time.monotonic() - since < 2.0 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        now = await data_version(settings, ORG)
        if now != seen or now == 0:
            seen, since = now, time.monotonic()
    yield bookings


def by_format(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["format"]: a for a in status["artifacts"]}


async def test_cache_hits_key_order_invalidation_and_skip(
    settings: Settings, main_worker: WorkerProcess, proc_org: list[Booking]
) -> None:
    url = main_worker.url
    first = await request_report_http(url, settings, ORG, BASE_BODY)
    assert first["status"] == "completed", first
    assert first["cache"]["level"] == "miss"
    assert first["attempts"] == 1
    body = await download(url, settings, ORG, by_format(first)["csv"]["download_url"])
    assert csv_figures(body) == expected(proc_org)
    perf = first["performance"]
    assert perf["total_ms"] >= perf["rendering_ms"] > 0 and perf["query_ms"] > 0
    assert perf["peak_memory_bytes"] >= 0 and perf["cpu_ms"] > 0
    assert first["data_size"] == {
        "bytes": sum(a["size_bytes"] for a in first["artifacts"]),
        "rows": 6,
    }

    second = await request_report_http(url, settings, ORG, BASE_BODY)
    assert second["cache"]["level"] == "l1", second
    assert second["cache"]["source_report_id"] == first["report_id"]
    assert second["cache"]["key"] == first["cache"]["key"]
    for fmt, link in by_format(second).items():
        assert link["sha256"] == by_format(first)[fmt]["sha256"]
        got = await download(url, settings, ORG, link["download_url"])
        assert len(got) == link["size_bytes"]
    assert second["generated_at"] == first["generated_at"]

    # the same request written in another key order, filter values and formats reversed
    reordered = {
        "output_formats": ["json", "csv"],
        "data_filters": {"venue_id": ["v2", "v1"]},
        "date_to": "2026-03-31",
        "report_type": "monthly_booking_summary",
        "date_from": "2026-01-01",
    }
    third = await request_report_http(url, settings, ORG, reordered)
    assert third["cache"]["level"] == "l1" and third["cache"]["key"] == first["cache"]["key"]
    assert {f: a["sha256"] for f, a in by_format(third).items()} == {
        f: a["sha256"] for f, a in by_format(first).items()
    }

    skipped = await request_report_http(url, settings, ORG, {**BASE_BODY, "cache_strategy": "skip"})
    assert skipped["cache"]["level"] == "skipped" and skipped["cache"]["source_report_id"] is None
    assert skipped["attempts"] == 1

    # a new booking of the organisation: the cached copy is stale
    before = await data_version(settings, ORG)
    history = await data_version(settings, ORG, "history")  # PostgreSQL's own (migration 016)
    assert history > 0  # the organisation and its venues were written
    assert first["metadata"]["data_versions"] == {"bookings": before, "history": history}
    extra = [("late-1", "v1", date(2026, 2, 14), 99_999, False)]
    await produce(settings, events_of(ORG, extra))

    async def bumped() -> bool:
        return await data_version(settings, ORG) > before

    await wait_until(bumped, 60, "data version bumped")
    fourth = await request_report_http(url, settings, ORG, BASE_BODY)
    assert fourth["cache"]["level"] == "miss", fourth
    body = await download(url, settings, ORG, by_format(fourth)["csv"]["download_url"])
    assert csv_figures(body) == expected(proc_org + extra)
    assert csv_figures(body)[("v1", "2026-02")] != expected(proc_org)[("v1", "2026-02")]


async def test_identical_concurrent_requests_generate_once(
    settings: Settings, main_worker: WorkerProcess, proc_org: list[Booking]
) -> None:
    body = {**BASE_BODY, "date_from": "2026-01-02", "output_formats": ["pdf", "csv"]}
    before = await metric(main_worker, "wedding_report_generations_total", 'outcome="completed"')
    statuses = await asyncio.gather(
        *[request_report_http(main_worker.url, settings, ORG, body) for _ in range(6)]
    )
    after = await metric(main_worker, "wedding_report_generations_total", 'outcome="completed"')
    assert after - before == 1
    levels = sorted(s["cache"]["level"] for s in statuses)
    # one generation; the others joined it or hit the cache (a request whose lookup reaches
    # PostgreSQL just after the leader completed hits level 3)
    assert levels.count("miss") == 1 and all(
        lv in ("miss", "in_flight", "l1", "l2", "l3") for lv in levels
    )
    assert len({by_format(s)["csv"]["sha256"] for s in statuses}) == 1


async def test_critical_overtakes_a_low_backlog_and_a_queued_cancel_never_starts(
    settings: Settings, main_worker: WorkerProcess, proc_org: list[Booking]
) -> None:
    heavy = {
        **BASE_BODY,
        "date_from": "2017-01-01",
        "date_to": "2026-12-31",
        "output_formats": ["pdf", "excel", "powerpoint", "csv", "json"],
        "cache_strategy": "skip",
    }
    h = auth(settings, ORG)
    async with aiohttp.ClientSession(main_worker.url) as s:

        async def post(body: dict[str, Any]) -> str:
            async with s.post(f"/orgs/{ORG}/reports", json=body, headers=h) as r:
                assert r.status == 202, await r.text()
                return str((await r.json())["report_id"])

        lows = [await post({**heavy, "priority": "low"}) for _ in range(12)]
        victim = await post({**heavy, "priority": "low"})
        async with s.post(f"/orgs/{ORG}/reports/{victim}/cancel", headers=h) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["status"] == "cancelled"
        # a repeated cancel (a retry after a 503) answers the same 200, not a 409
        async with s.post(f"/orgs/{ORG}/reports/{victim}/cancel", headers=h) as r:
            assert r.status == 200, await r.text()
            assert await r.json() == {"report_id": victim, "status": "cancelled"}
        critical = await post({**heavy, "priority": "critical", "date_to": "2026-12-30"})
        ids = [*lows, victim, critical]

        async def all_final() -> bool:
            rows = await db_rows(settings, "SELECT status FROM reports WHERE id = ANY($1)", ids)
            return len(rows) == 14 and all(
                r["status"] in ("completed", "failed", "cancelled") for r in rows
            )

        await wait_until(all_final, 240, "backlog drained")
        rows = {
            r["id"]: r
            for r in await db_rows(
                settings,
                "SELECT id, status, attempts, updated_at, priority FROM reports WHERE id = ANY($1)",
                ids,
            )
        }
        assert rows[critical]["status"] == "completed" and rows[critical]["priority"] == "critical"
        assert all(rows[i]["status"] == "completed" for i in lows)
        done_critical = rows[critical]["updated_at"]
        lows_after = sum(rows[i]["updated_at"] > done_critical for i in lows)
        print(f"lows finished after the critical one: {lows_after} of {len(lows)}")
        # at most the two low actors' reports (plus the one each took next) can finish first
        assert lows_after >= 8, (lows_after, [rows[i]["updated_at"] for i in lows])

        # the cancelled one never started: no attempt, no processing status, no files
        assert rows[victim]["status"] == "cancelled" and rows[victim]["attempts"] == 0
        results = [
            orjson.loads(rec.value)
            for rec in await read_topic(settings.kafka_bootstrap, REPORT_RESULTS)
            if rec.key == f"{ORG}/{victim}".encode()
        ]
        assert "processing" not in [d["status"] for d in results]
        assert results[-1]["status"] == "cancelled"
        assert not (settings.artifact_dir / ORG / victim).exists()
        async with s.post(f"/orgs/{ORG}/reports/{critical}/cancel", headers=h) as r:
            assert r.status == 409
            assert (await r.json())["error"] == {
                "code": "conflict",
                "reason": "report is already completed; it cannot be cancelled",
                "field": "status",
            }


RETRY_ORG = "proc-retry-org"


async def test_retriable_failure_is_retried_then_dead_lettered_and_a_running_cancel_stops(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    bookings = await org_with_bookings(settings, main_worker, RETRY_ORG, 5, 10)
    # a file where the organisation's artifact folder belongs: the store cannot write (OSError)
    blocker = settings.artifact_dir / RETRY_ORG
    shutil.rmtree(blocker, ignore_errors=True)
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"not a folder")
    body = {**BASE_BODY, "cache_strategy": "skip"}
    h = auth(settings, RETRY_ORG)

    async def errors_of(report_id: str) -> list[dict[str, Any]]:
        rows = await db_rows(
            settings, "SELECT attempt_errors FROM reports WHERE id = $1", report_id
        )
        return list(orjson.loads(rows[0]["attempt_errors"])) if rows else []

    async with aiohttp.ClientSession(main_worker.url) as s:

        async def post() -> str:
            async with s.post(f"/orgs/{RETRY_ORG}/reports", json=body, headers=h) as r:
                assert r.status == 202, await r.text()
                return str((await r.json())["report_id"])

        # 1. two failed attempts, then the store is repaired: the third attempt completes
        healed = await post()

        async def two_failures() -> bool:
            return len(await errors_of(healed)) == 2

        await wait_until(two_failures, 30, "two failed attempts")
        blocker.unlink()

        async def final(report_id: str) -> dict[str, Any]:
            out: dict[str, Any] = {}

            async def done() -> bool:
                async with s.get(f"/orgs/{RETRY_ORG}/reports/{report_id}", headers=h) as r:
                    out.update(await r.json())
                return out["status"] in ("completed", "failed", "cancelled")

            await wait_until(done, 60, f"report {report_id} final")
            return out

        st = await final(healed)
        assert st["status"] == "completed" and st["attempts"] == 3, st
        assert [e["attempt"] for e in st["attempt_errors"]] == [1, 2]
        assert all("Error" in e["error"] for e in st["attempt_errors"])
        csv_link = by_format(st)["csv"]["download_url"]
        got = await download(main_worker.url, settings, RETRY_ORG, csv_link)
        assert csv_figures(got) == expected(bookings)

        # 2. the store stays broken: failed after three attempts, with a dead-letter record
        shutil.rmtree(blocker)
        blocker.write_bytes(b"not a folder")
        doomed = await post()
        st = await final(doomed)
        assert st["status"] == "failed" and st["attempts"] == 3, st
        assert st["error"].startswith("failed after 3 attempts: "), st["error"]
        assert len(st["attempt_errors"]) == 3
        dead = [
            rec
            for rec in await read_topic(settings.kafka_bootstrap, DEAD_LETTER)
            if rec.key == f"{RETRY_ORG}/{doomed}".encode() or doomed.encode() in (rec.value or b"")
        ]
        assert len(dead) == 1
        headers = dict(dead[0].headers)
        assert headers["dlq.source.topic"] == REPORT_LANES["normal"].encode()
        assert headers["dlq.reason"].decode().startswith("$: failed after 3 attempts")

        # 3. a running report (between attempts) cancelled from outside its worker (the
        # client writes PostgreSQL; the worker's watchdog stops it)
        running = await post()

        async def first_failure() -> bool:
            return len(await errors_of(running)) == 1

        await wait_until(first_failure, 30, "first failed attempt")
        assert await cancel_report(settings, RETRY_ORG, running) == "cancelled"
        await asyncio.sleep(settings.report_cancel_poll_s * 2 + 2 * settings.report_retry_base_s)
        blocker.unlink()
        await asyncio.sleep(3 * settings.report_retry_base_s)
        rows = await db_rows(
            settings, "SELECT status, attempts FROM reports WHERE id = $1", running
        )
        assert rows[0]["status"] == "cancelled" and rows[0]["attempts"] == 1
        assert len(await errors_of(running)) == 1
        assert not (settings.artifact_dir / RETRY_ORG / running).exists()
        statuses = [
            orjson.loads(rec.value)["status"]
            for rec in await read_topic(settings.kafka_bootstrap, REPORT_RESULTS)
            if rec.key == f"{RETRY_ORG}/{running}".encode()
        ]
        assert statuses == ["queued", "processing", "cancelled"]


async def test_a_non_retriable_cause_fails_at_once(
    settings: Settings, main_worker: WorkerProcess, proc_org: list[Booking]
) -> None:
    # the HTTP entry refuses an unknown venue at once; a request produced to Kafka (the CLI's
    # way) is accepted, and its report fails at the first attempt with the cause
    body = {**BASE_BODY, "data_filters": {"venue_id": ["v1", "nowhere"]}}
    async with (
        aiohttp.ClientSession(main_worker.url) as s,
        s.post(f"/orgs/{ORG}/reports", json=body, headers=auth(settings, ORG)) as r,
    ):
        assert (r.status, (await r.json())["error"]["field"]) == (400, "$.data_filters.venue_id")
    final = await request_report_and_wait(
        settings,
        organization_id=ORG,
        report_type=body["report_type"],
        date_from=date.fromisoformat(body["date_from"]),
        date_to=date.fromisoformat(body["date_to"]),
        output_formats=list(body["output_formats"]),
        data_filters={"venue_id": ["v1", "nowhere"]},
    )
    async with (
        aiohttp.ClientSession(main_worker.url) as s,
        s.get(f"/orgs/{ORG}/reports/{final.report_id}", headers=auth(settings, ORG)) as r,
    ):
        st = await r.json()
    assert st["status"] == "failed" and st["attempts"] == 1, st
    assert st["error"] == "data_filters.venue_id: unknown venue(s) ['nowhere']"
    assert [e["attempt"] for e in st["attempt_errors"]] == [1]
    dead = [
        rec
        for rec in await read_topic(settings.kafka_bootstrap, DEAD_LETTER)
        if st["report_id"].encode() in (rec.value or b"")
    ]
    assert dead == []
