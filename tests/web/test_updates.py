"""``GET /orgs/{org}/updates`` against a real worker and a real ``realtime-metrics-updates``.

Messages are produced to the topic in its wire schema (:mod:`stream_app.schemas.updates`), each
with a marker (``new.bookings``), so what every stream must show is known before it is read.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream_app.db.tenancy import Organization, Venue, upsert_organization, upsert_venue
from stream_app.devservices.workers import WorkerProcess
from stream_app.settings import Settings
from stream_app.topics import REALTIME_METRICS_UPDATES
from stream_app.web.auth import issue_token
from stream_app.web.errors import ApiError
from stream_app.web.updates_filter import UpdateFilter
from stream_app.web.updates_hub import Gap, UpdatesHub, bound_resume
from stream_app.web.updates_ids import EventIds
from tests.conftest import WorkerFactory

A, B, SLOW, GAP = "upd-a", "upd-b", "upd-slow", "upd-gap"
Event = tuple[str, str, dict[str, Any]]
"""(id, event name, decoded data)."""
OPAQUE = re.compile(r"[A-Za-z0-9_-]{80}")
"""An event id as a client sees it on a topic of 4 partitions (sealed, base64url)."""


def event_ids(settings: Settings, org: str) -> EventIds:
    """The worker's sealing of ``org``'s event ids (the tests hold its secret: they open ids
    to check the positions behind them, and seal positions a client could not forge)."""
    return EventIds(settings.jwt_secret, org, REALTIME_METRICS_UPDATES)


def token(
    settings: Settings, org: str, venues: list[str] | None = None, role: str = "viewer"
) -> str:
    return issue_token(
        settings.jwt_secret,
        user_id="dash",
        organization_id=org,
        ttl_seconds=600,
        role=role,
        venues=venues,
    )


def metric_update(org: str, venue: str, marker: int, **extra: Any) -> dict[str, Any]:
    """A ``metric_update`` as the bookings agent publishes it; ``marker`` is ``new.bookings``."""
    values = {"bookings": marker, "cancellations": 0, "revenue_minor": {"EUR": marker * 100}}
    return {
        "kind": "metric_update",
        "metric": "venue_bookings",
        "organization_id": org,
        "key": venue,
        "window": {"grain": "month", "period": "2016-07"},
        "old": {"bookings": 0, "cancellations": 0, "revenue_minor": {}},
        "new": values,
        "event_time": "2016-07-01T10:00:00+00:00",
        "published_at": "2026-12-05T10:00:00+00:00",
        "events": 1,
        **extra,
    }


@pytest.fixture(scope="module")
async def orgs(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        for org in (A, B, SLOW, GAP):
            await upsert_organization(conn, Organization(org, org, "Europe/Lisbon", "EUR"))
            for v in ("v1", "v2", "v3", "v4"):
                await upsert_venue(conn, org, Venue(v, v, 10))
    finally:
        await conn.close()


@pytest.fixture
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
    await p.start()
    yield p
    await p.stop()


async def produce(p: AIOKafkaProducer, docs: list[dict[str, Any]]) -> None:
    """Send ``docs`` keyed ``<organization_id>/<entity>`` (or ``_key``'s organisation)."""
    for doc in docs:
        entity = doc.get("key") or doc.get("report_id")
        if "_key" in doc:
            doc = dict(doc)
            await p.send(REALTIME_METRICS_UPDATES, orjson.dumps(doc), key=doc.pop("_key").encode())
            continue
        await p.send(
            REALTIME_METRICS_UPDATES,
            orjson.dumps(doc),
            key=f"{doc['organization_id']}/{entity}".encode(),
        )
    await p.flush()


class Stream:
    """An open event stream read line by line (the SSE wire format, parsed by hand)."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self.ready_id = ""

    async def next(self, wait_s: float = 10.0) -> Event:
        fields: dict[str, str] = {}
        while True:
            line = await asyncio.wait_for(self.resp.content.readline(), wait_s)
            if not line:
                raise EOFError("stream closed")
            text = line.decode().rstrip("\n")
            if text.startswith(":"):
                continue
            if text == "":
                if "data" in fields:
                    return (
                        fields.get("id", ""),
                        fields.get("event", "message"),
                        orjson.loads(fields["data"]),
                    )
                continue
            name, _, value = text.partition(": ")
            fields[name] = value

    async def drain(self, idle_s: float = 2.5) -> list[Event]:
        """Every event until ``idle_s`` seconds pass without one."""
        out: list[Event] = []
        while True:
            try:
                out.append(await self.next(idle_s))
            except TimeoutError:
                return out


async def open_stream(
    s: aiohttp.ClientSession,
    org: str,
    tok: str,
    *,
    query: dict[str, str] | None = None,
    header: bool = True,
    last_id: str | None = None,
) -> Stream:
    headers = {"Authorization": f"Bearer {tok}"} if header else {}
    params = dict(query or {})
    if not header:
        params["access_token"] = tok
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    resp = await s.get(f"/orgs/{org}/updates", headers=headers, params=params)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    stream = Stream(resp)
    ready_id, name, data = await stream.next(30)
    assert name == "ready"
    assert OPAQUE.fullmatch(ready_id) and data == {"id": ready_id}
    stream.ready_id = ready_id
    return stream


async def until_marker(stream: Stream, marker: int, timeout_s: float = 30.0) -> list[Event]:
    """Events of ``stream`` up to the metric update carrying ``marker`` (a replay can read
    many other tenants' messages before it), then every event until 1 s passes without one."""
    out: list[Event] = []
    while marker not in markers(out):
        out.append(await stream.next(timeout_s))
    return out + await stream.drain(1.0)


def markers(events: list[Event]) -> list[int]:
    return sorted(int(d["new"]["bookings"]) for _, n, d in events if n == "metric_update")


async def test_tenants_scopes_and_filters(
    main_worker: WorkerProcess, settings: Settings, orgs: None, producer: AIOKafkaProducer
) -> None:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(main_worker.url, timeout=timeout) as s:
        # refusals first: no token, another tenant's token, a venue outside the scope, bad input
        async with s.get(f"/orgs/{A}/updates") as r:
            assert (r.status, (await r.json())["error"]["field"]) == (401, "Authorization")
        async with s.get(f"/orgs/{A}/updates", params={"access_token": token(settings, B)}) as r:
            assert (r.status, (await r.json())["error"]["field"]) == (403, "organization_id")
        scoped = token(settings, A, venues=["v1"])
        async with s.get(f"/orgs/{A}/updates", params={"access_token": scoped, "venue": "v2"}) as r:
            assert (r.status, (await r.json())["error"]["field"]) == (403, "venue")
        async with s.get(
            f"/orgs/{A}/updates", params={"access_token": scoped, "metric": "Bad-Name"}
        ) as r:
            assert (r.status, (await r.json())["error"]["field"]) == (400, "metric")
        # a venue the organisation has not registered: a stream that would stay empty
        async with s.get(
            f"/orgs/{A}/updates",
            params={"access_token": token(settings, A), "venue": "v1,studio-london"},
        ) as r:
            error = (await r.json())["error"]
            assert (r.status, error["field"]) == (400, "venue")
            assert "unknown venue(s) ['studio-london'] in organisation" in error["reason"]
        async with s.get(
            f"/orgs/{A}/updates",
            params={"access_token": scoped},
            headers={"Last-Event-ID": "zz"},
        ) as r:
            assert (r.status, (await r.json())["error"]["field"]) == (400, "Last-Event-ID")

        a_all = await open_stream(s, A, token(settings, A))
        b_all = await open_stream(s, B, token(settings, B), header=False)  # EventSource's way
        a_scoped = await open_stream(s, A, scoped, header=False)
        v2_rows = {"venue": "v2", "metric": "venue_bookings"}
        a_v2 = await open_stream(s, A, token(settings, A), query=v2_rows)
        a_reports = await open_stream(s, A, token(settings, A), query={"metric": "report_status"})
        generic = {
            "kind": "generic_metric_update",
            "metric": "booking_payments",
            "organization_id": A,
            "key": "b1",
            "window": {"grain": "all", "period": "all"},
            "old": {},
            "new": {"paid_minor": {"EUR": 500}},
            "event_time": "2016-07-01T10:00:00+00:00",
            "published_at": "2026-12-05T10:00:00+00:00",
            "events": 1,
        }
        report = {
            "kind": "report_status",
            "report_id": "upd-r1",
            "organization_id": A,
            "report_type": "monthly_booking_summary",
            "status": "completed",
            "at": "2026-12-05T10:00:00+00:00",
        }
        await produce(
            producer,
            [
                metric_update(A, "v1", 1, final=True),  # a field this worker does not know
                metric_update(A, "v2", 2),
                metric_update(B, "v1", 3),
                metric_update(B, "v2", 4),
                generic,
                report,
                # a body of tenant A under B's key, and one of B under A's: shown to nobody
                {**metric_update(A, "v1", 5), "_key": f"{B}/v1"},
                {**metric_update(B, "v1", 6), "_key": f"{A}/v1"},
            ],
        )
        got_a = await a_all.drain()
        assert markers(got_a) == [1, 2]
        assert next(d for _, n, d in got_a if n == "metric_update" and d["key"] == "v1")["final"]
        assert sorted(n for _, n, _ in got_a) == sorted(
            ["metric_update", "metric_update", "generic_metric_update", "report_status"]
        )
        got_b = await b_all.drain(0.5)
        assert markers(got_b) == [3, 4] and len(got_b) == 2  # never one of A's
        got_scoped = await a_scoped.drain(0.5)
        # v1 only; no booking-keyed row, no report not limited to v1
        assert markers(got_scoped) == [1] and len(got_scoped) == 1
        got_v2 = await a_v2.drain(0.5)
        assert markers(got_v2) == [2] and len(got_v2) == 1
        got_reports = await a_reports.drain(0.5)
        assert [(n, d["report_id"]) for _, n, d in got_reports] == [("report_status", "upd-r1")]
        for st in (a_all, b_all, a_scoped, a_v2, a_reports):
            st.resp.close()


async def test_last_event_id_resumes_with_exactly_the_missed_updates(
    main_worker: WorkerProcess, settings: Settings, orgs: None, producer: AIOKafkaProducer
) -> None:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    tok = token(settings, A)
    venues = ["v1", "v2", "v3", "v4"]  # spread over partitions
    async with aiohttp.ClientSession(main_worker.url, timeout=timeout) as s:
        first = await open_stream(s, A, tok)
        await produce(producer, [metric_update(A, venues[i % 4], 100 + i) for i in range(6)])
        seen = [await first.next() for _ in range(6)]
        assert markers(seen) == list(range(100, 106))
        assert all(OPAQUE.fullmatch(event_id) for event_id, _, _ in seen)
        last_id = seen[-1][0]
        first.resp.close()
        # missed while away, with another tenant's traffic in between
        await produce(
            producer,
            [metric_update(A, venues[i % 4], 200 + i) for i in range(8)]
            + [metric_update(B, "v1", 900)],
        )
        await asyncio.sleep(1.0)
        again = await open_stream(s, A, tok, last_id=last_id)
        replayed = [await again.next() for _ in range(8)]
        assert markers(replayed) == list(range(200, 208))
        # then live, with nothing twice
        await produce(producer, [metric_update(A, "v3", 300)])
        rest = await again.drain()
        assert markers(rest) == [300]
        again.resp.close()
        # the query parameter (a client that keeps the id itself) resumes the same way
        headers = {"Authorization": f"Bearer {tok}"}
        params = {"last_event_id": replayed[-1][0]}
        async with s.get(f"/orgs/{A}/updates", headers=headers, params=params) as r:
            resumed = Stream(r)
            assert (await resumed.next(30))[1] == "ready"
            assert markers(await until_marker(resumed, 300)) == [300]


async def test_an_id_reveals_no_other_tenants_activity_and_opens_only_on_its_stream(
    main_worker: WorkerProcess, settings: Settings, orgs: None, producer: AIOKafkaProducer
) -> None:
    """The finding: A's ready id was the shared topic's offsets, so it moved when B produced.
    Now A's ids before and after B's 10 updates look alike (same length and alphabet, never
    twice the same) though the positions sealed in them moved by exactly B's 10 messages; A's
    own events' ids do not name the offsets either; an id of B's stream (B's own, or A's
    position sealed for B) is a 400 on A's stream, naming the field it came in."""
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    tok_a, tok_b = token(settings, A), token(settings, B)
    ids_a = event_ids(settings, A)
    async with aiohttp.ClientSession(main_worker.url, timeout=timeout) as s:
        b_watch = await open_stream(s, B, tok_b)  # B's own stream, to know B's 10 have passed
        a_first = await open_stream(s, A, tok_a)
        sent = await produce_at(producer, [metric_update(B, f"v{i % 4 + 1}", i) for i in range(10)])
        assert markers(await until_marker(b_watch, 9)) == list(range(10))
        a_again = await open_stream(s, A, tok_a)
        before, after = a_first.ready_id, a_again.ready_id
        assert before != after and len(before) == len(after) == 80
        moved = {p: o - ids_a.open(before).get(p, 0) for p, o in ids_a.open(after).items()}
        for p, _, _ in sent:  # B's messages moved the sealed position (other tenants' may too)
            assert moved[p] >= sum(1 for q, _, _ in sent if q == p)
        # B's own ids do not open on A's stream, by header or query parameter
        b_id = b_watch.ready_id
        for headers, params, field in (
            (
                {"Last-Event-ID": b_id},
                {},
                "Last-Event-ID",
            ),
            ({}, {"last_event_id": b_id}, "last_event_id"),
        ):
            async with s.get(
                f"/orgs/{A}/updates",
                headers={"Authorization": f"Bearer {tok_a}", **headers},
                params=params,
            ) as r:
                body = await r.json()
                assert (r.status, body["error"]["code"], body["error"]["field"]) == (
                    400,
                    "invalid_field",
                    field,
                )
        # nor does A's very position sealed for B; sealed for A it does
        position = ids_a.open(after)
        foreign = event_ids(settings, B).seal(position)
        params = {"last_event_id": foreign}
        async with s.get(
            f"/orgs/{A}/updates", headers={"Authorization": f"Bearer {tok_a}"}, params=params
        ) as r:
            assert (r.status, (await r.json())["error"]["field"]) == (400, "last_event_id")
        own = await open_stream(s, A, tok_a, last_id=ids_a.seal(position))
        for st in (b_watch, a_first, a_again, own):
            st.resp.close()


async def produce_at(p: AIOKafkaProducer, docs: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
    """Send ``docs`` (keyed ``<organization_id>/<key>``); their (partition, offset, marker)."""
    sent = [
        await p.send(
            REALTIME_METRICS_UPDATES,
            orjson.dumps(doc),
            key=f"{doc['organization_id']}/{doc['key']}".encode(),
        )
        for doc in docs
    ]
    await p.flush()
    out = []
    for fut, doc in zip(sent, docs, strict=True):
        meta = await fut
        out.append((meta.partition, meta.offset, int(doc["new"]["bookings"])))
    return out


def test_the_replay_bound_cuts_exactly_what_is_further_back_than_it() -> None:
    """``bound_resume``: a position exactly ``max_back`` behind the end is kept, one more
    behind is moved to end − max_back; partitions ahead of the end or unknown to it are kept."""
    resume = {0: 80, 1: 79, 2: 0, 3: 500, 4: 7}
    end = {0: 100, 1: 100, 2: 15, 3: 400}
    bounded, gaps = bound_resume(resume, end, 20)
    assert bounded == {0: 80, 1: 80, 2: 0, 3: 500, 4: 7}
    assert gaps == [Gap(1, 79, 80)]
    assert bound_resume({0: 0, 1: 0}, {0: 50, 1: 50}, 20)[1] == [Gap(0, 0, 30), Gap(1, 0, 30)]


async def test_a_resume_further_back_than_the_replay_bound_starts_with_a_gap(
    worker_factory: WorkerFactory,
    own_workers: None,
    settings: Settings,
    orgs: None,
    producer: AIOKafkaProducer,
) -> None:
    """A position more than ``WEDDING_UPDATES_REPLAY_MAX`` messages behind a partition's end
    is read back from (end − bound) only, after an ``event: gap`` that names no offset (its id
    is the position resumed from, sealed); one within the bound gets every message after it
    and no gap. The positions resumed from are sealed by the test, which holds the secret."""
    bound = 20
    # a new consumer group from the latest offsets: from the earliest, it would fold every
    # earlier test's events and publish their updates while this test reads the topic
    worker = worker_factory.start(
        "updates-gap",
        "one",
        WEDDING_SCHEDULING="0",
        WEDDING_OFFSET_RESET="latest",
        WEDDING_UPDATES_REPLAY_MAX=str(bound),
    )
    await worker.wait_ready(timeout_s=120, min_partitions=4)
    # GAP's updates over 8 keys (more than the bound on some partitions), B's in between
    docs = [metric_update(GAP, f"v{i % 8}", i) for i in range(160)]
    docs[::10] = [metric_update(B, f"v{i % 8}", 10_000 + i) for i in range(0, 160, 10)]
    sent = await produce_at(producer, docs)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    tok = token(settings, GAP)
    ids = event_ids(settings, GAP)
    async with aiohttp.ClientSession(worker.url, timeout=timeout) as s:
        # the first stream starts the reader at the end: its ready id is every partition's end
        async with s.get(f"/orgs/{GAP}/updates", headers={"Authorization": f"Bearer {tok}"}) as r:
            ready_id, name, _ = await Stream(r).next(30)
            assert name == "ready"
            end = ids.open(ready_id)
        assert sum(end.values()) >= len(docs)
        first = {p: max(0, o - bound) for p, o in end.items()}
        cut = {p: o for p, o in end.items() if o > bound}
        assert cut
        assert any(m < 10_000 and o < first[p] for p, o, m in sent)  # the bound cuts some

        # Other tests' workers may publish to the shared topic meanwhile (report statuses),
        # so a partition's end at each resume is at or after ``end``: what the stream cut is
        # read from its gap event, and every expected message is GAP's own.
        def after(firsts: dict[int, int]) -> list[int]:
            return sorted(m for p, o, m in sent if m < 10_000 and o >= firsts.get(p, 0))

        # from offset 0 everywhere: a gap on every partition longer than the bound
        zero = ids.seal(dict.fromkeys(end, 0))
        resumed = await open_stream(s, GAP, tok, last_id=zero)
        events = await resumed.drain(5.0)
        resumed.resp.close()
        gap_id, name, gap = events[0]
        assert name == "gap"
        # what the client needs (re-read), no partition or offset
        assert set(gap) == {"kind", "max_replay", "detail"}
        assert (gap["kind"], gap["max_replay"]) == ("gap", bound)
        assert "re-read" in gap["detail"]
        assert gap_id == resumed.ready_id and OPAQUE.fullmatch(gap_id)
        cut_at = {p: o for p, o in ids.open(gap_id).items() if o > 0}
        assert set(cut) <= set(cut_at)
        for p, o in cut_at.items():
            assert o >= end[p] - bound
        assert ids.open(gap_id) == {p: cut_at.get(p, 0) for p in end}
        assert [n for _, n, _ in events[1:]] == ["metric_update"] * len(after(cut_at))
        assert markers(events[1:]) == after(cut_at)

        def resumed_from(
            stream: Stream, events: list[Event], start: dict[int, int]
        ) -> tuple[dict[int, int], list[Event]]:
            """Where a resume from ``start`` was read back from (the position its ready and
            gap ids seal: ``start`` moved up on the partitions the bound cut), and the events
            after the gap."""
            if not events or events[0][1] != "gap":
                assert ids.open(stream.ready_id) == start
                return start, events
            assert events[0][0] == stream.ready_id
            read_from = ids.open(events[0][0])
            assert set(read_from) == set(start)
            assert all(read_from[p] >= start[p] for p in start)
            assert any(read_from[p] > start[p] for p in start)
            return read_from, events[1:]

        # within the bound: everything after it (no gap, unless other tests' workers moved a
        # partition's end more than ``slack`` meanwhile: the exact bound is tested apart)
        slack = 5
        inside = {p: max(0, o - bound + slack) for p, o in end.items()}
        within = await open_stream(s, GAP, tok, last_id=ids.seal(inside))
        start, events = resumed_from(within, await within.drain(5.0), inside)
        within.resp.close()
        assert [n for _, n, _ in events] == ["metric_update"] * len(after(start))
        assert markers(events) == after(start)
        assert after(start)  # the check saw messages

        # further back than the bound on one partition: a gap, read back from (end − bound)
        p0 = min(cut)
        beyond = {p: (o - bound - 1 if p == p0 else o - bound + slack) for p, o in end.items()}
        again = await open_stream(s, GAP, tok, last_id=ids.seal(beyond))
        events = await again.drain(5.0)
        again.resp.close()
        assert events[0][1] == "gap"
        start, events = resumed_from(again, events, beyond)
        assert start[p0] >= end[p0] - bound > beyond[p0]
        assert markers(events) == after(start)


async def test_an_organisation_replays_at_most_its_share_at_once(
    worker_factory: WorkerFactory,
    own_workers: None,
    settings: Settings,
    orgs: None,
    producer: AIOKafkaProducer,
) -> None:
    """With ``WEDDING_UPDATES_MAX_REPLAYS=1``, while one of GAP's resumed streams is reading
    back (held still at a report status whose venues it must look up, the ``reports`` table
    locked), another resume of GAP is refused (429 ``too_many_replays``, ``Retry-After``);
    GAP's stream without a resume, and B's resume, are served at once."""
    # from the latest offsets: from the earliest it would run every earlier test's report
    # requests, and their queries would wait on the locked ``reports`` table too
    worker = worker_factory.start(
        "updates-replays",
        "one",
        WEDDING_SCHEDULING="0",
        WEDDING_OFFSET_RESET="latest",
        WEDDING_UPDATES_MAX_REPLAYS="1",
    )
    await worker.wait_ready(timeout_s=120, min_partitions=4)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    tok = token(settings, GAP)
    locker = await asyncpg.connect(settings.postgres_dsn)
    watcher = await asyncpg.connect(settings.postgres_dsn)

    async def blocked() -> int:
        """The stream's report look-ups waiting for the lock on ``reports`` (other tests'
        workers read ``reports`` too, e.g. their report sweeps)."""
        return int(
            await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock'"
                " AND query ILIKE '%data_filters%FROM reports%'"  # the stream's scope look-up
            )
        )

    async with aiohttp.ClientSession(worker.url, timeout=timeout) as s:
        probe = await open_stream(s, GAP, tok)  # a live stream: sees GAP's status below
        resume = probe.ready_id  # the reader's position: the end
        status = {
            "kind": "report_status",
            "report_id": "upd-gap-r1",
            "organization_id": GAP,
            "report_type": "monthly_booking_summary",
            "status": "completed",
            "at": "2026-12-05T10:00:00+00:00",
        }
        await produce(producer, [status, metric_update(B, "v1", 7)])
        # the worker's reader has passed GAP's status before the resumed stream below joins,
        # so that status is in its replay (else the replay is empty, its turn given back at
        # once, and the status reaches it live: the test's race, 2 runs of 3 on a quiet
        # machine)
        seen = [await probe.next(30)]
        while seen[-1][1] != "report_status":
            seen.append(await probe.next(30))
        probe.resp.close()
        lock = locker.transaction()
        await lock.start()
        try:
            await locker.execute("LOCK TABLE reports IN ACCESS EXCLUSIVE MODE")
            scoped = token(settings, GAP, venues=["v1"], role="analyst")
            held = await open_stream(s, GAP, scoped, last_id=resume)
            for _ in range(100):  # up to 10 s for its replay to reach the report's look-up
                if await blocked() >= 1:
                    break
                await asyncio.sleep(0.1)
            assert await blocked() == 1

            started = time.monotonic()
            headers = {"Authorization": f"Bearer {tok}", "Last-Event-ID": resume}
            async with s.get(f"/orgs/{GAP}/updates", headers=headers) as r:
                assert r.status == 429, r.status  # (a 200 would be a stream: not read)
                error = (await r.json())["error"]
                refused = (r.status, error["code"], error["field"], r.headers["Retry-After"])
            assert refused == (429, "too_many_replays", "organization_id", "3")
            assert time.monotonic() - started >= 1.9  # it waited for a turn first

            live = await open_stream(s, GAP, tok)  # no resume: no replay slot needed
            # B's resume from the same position (an id of GAP's stream would not open on B's)
            b_resume = event_ids(settings, B).seal(event_ids(settings, GAP).open(resume))
            other = await open_stream(s, B, token(settings, B), last_id=b_resume)
            assert markers(await until_marker(other, 7)) == [7]
            for st in (live, other):
                st.resp.close()
        finally:
            await lock.rollback()
            await watcher.close()
            await locker.close()
        # the held replay ends (the report is not one of v1's), and gives its turn back
        assert await held.drain(1.0) == []
        held.resp.close()
        again = await open_stream(s, GAP, tok, last_id=resume)
        # other tests' workers may have published meanwhile: the replay reads past their
        # messages (a gap first if more than the bound) before it reaches GAP's status
        seen = [await again.next(30)]
        while seen[-1][1] == "gap":
            seen.append(await again.next(30))
        seen += await again.drain(1.0)
        assert [n for _, n, _ in seen if n != "gap"] == ["report_status"]
        again.resp.close()


async def _dropped_total(s: aiohttp.ClientSession) -> float:
    async with s.get("/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith("wedding_updates_dropped_total "):
                return float(line.split()[1])
    return 0.0


async def raw_stream(
    url: str, org: str, tok: str, *, last_id: str | None = None, small_buffer: bool = False
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A stream of ``org`` on a socket of the test's own, read up to its ``ready`` event (200
    checked); ``small_buffer``: a 4 KiB receive buffer, for a client that stops reading."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if small_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=2**20)
    resume = "" if last_id is None else f"\r\nLast-Event-ID: {last_id}"
    writer.write(
        f"GET /orgs/{org}/updates HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {tok}"
        f"{resume}\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"event: ready"), 30)
    assert head.startswith(b"HTTP/1.1 200")
    return reader, writer


async def test_a_slow_client_is_dropped_and_a_fast_one_is_not(
    main_worker: WorkerProcess, settings: Settings, orgs: None, producer: AIOKafkaProducer
) -> None:
    total = 30_000  # ~20 MB of events: more than the socket buffers and the 1000-event queue
    tok = token(settings, SLOW)
    reader, writer = await raw_stream(main_worker.url, SLOW, tok, small_buffer=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(main_worker.url, timeout=timeout) as s:
        before = await _dropped_total(s)
        fast = await open_stream(s, SLOW, tok)

        async def read_all() -> int:
            """Count the fast stream's updates as they arrive, reading whole chunks (a client
            parsing line by line in this process, beside the producer, fell 1,000 behind on a
            busy CI machine: then it was slow, and the worker was right to drop it)."""
            marker = b"event: metric_update\n"
            n, tail = 0, b""
            while n < total:
                chunk = await asyncio.wait_for(fast.resp.content.readany(), 60)
                if not chunk:
                    raise EOFError("the fast stream was closed")
                data = tail + chunk
                n += data.count(marker)
                # keep what could be the start of a marker split across two chunks (shorter
                # than the marker, and the marker cannot overlap itself: nothing counts twice)
                tail = data[-(len(marker) - 1) :]
            return n

        reading = asyncio.create_task(read_all())
        # the slow client reads nothing while the updates are produced (~2,500 a second)
        for start in range(0, total, 500):
            await produce(
                producer, [metric_update(SLOW, "v1", i) for i in range(start, start + 500)]
            )
            await asyncio.sleep(0.2)
        assert await asyncio.wait_for(reading, 120) == total
        assert await _dropped_total(s) == before + 1
        fast.resp.close()
    # the slow connection was closed by the worker: reading it ends before all the events
    received = 0
    while True:
        chunk = await asyncio.wait_for(reader.read(1 << 16), 30)
        if not chunk:
            break
        received += chunk.count(b"event: metric_update")
    assert received < total
    writer.close()


async def test_a_stopping_worker_ends_its_streams_cleanly_and_soon(
    worker_factory: WorkerFactory, settings: Settings
) -> None:
    """A SIGTERM ends the open streams at once (the client sees a clean end and reconnects
    elsewhere): the worker does not wait for them (a keep-alive period was 15 s)."""
    worker = worker_factory.start("updates-stop", "one", WEDDING_SCHEDULING="0")
    await worker.wait_ready(timeout_s=120, min_partitions=4)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(worker.url, timeout=timeout) as s:
        stream = await open_stream(s, A, token(settings, A))
        started = time.monotonic()
        code = await asyncio.to_thread(worker.stop, 60)
        took = time.monotonic() - started
        rest = await asyncio.wait_for(stream.resp.content.read(), 10)  # a clean end of body
    assert code == 0
    assert took < 8, took
    assert rest == b""


async def test_a_stream_over_the_organisations_cap_is_refused_naming_it(
    settings: Settings,
) -> None:
    """429 ``too_many_streams`` names what is full, like every refusal (an attacker's
    finding: no field); a real hub on the session's broker, a cap of one stream."""
    hub = UpdatesHub(settings.kafka_bootstrap, REALTIME_METRICS_UPDATES, 10, 1)
    filt = UpdateFilter("cap-org", None, True, None, None)
    try:
        first, _ = await hub.subscribe(filt, None, lambda: None)
        with pytest.raises(ApiError) as refused:
            await hub.subscribe(filt, None, lambda: None)
        error = orjson.loads(refused.value.response().text or "")["error"]
        assert (refused.value.status, error["code"], error["field"]) == (
            429,
            "too_many_streams",
            "organization_id",
        )
        # another organisation has its own cap
        other, _ = await hub.subscribe(
            UpdateFilter("cap-other", None, True, None, None), None, lambda: None
        )
        hub.unsubscribe(first)
        hub.unsubscribe(other)
    finally:
        await hub.stop()


async def test_a_stream_whose_client_left_gives_its_slot_back_within_seconds(
    worker_factory: WorkerFactory, settings: Settings
) -> None:
    """A trial user's finding: with the organisation at its cap, a client that went away
    held its slot until the next keep-alive write (15 s), so a browser reconnecting after
    ``retry: 3000`` got 429, on which ``EventSource`` gives up. Now an idle stream notices its
    client left within ``GONE_CHECK_S`` (1 s): the reconnection is served."""
    worker = worker_factory.start(
        "updates-gone", "one", WEDDING_SCHEDULING="0", WEDDING_UPDATES_MAX_CLIENTS="1"
    )
    await worker.wait_ready(timeout_s=120, min_partitions=4)
    tok = token(settings, A)
    _, writer = await raw_stream(worker.url, A, tok)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(worker.url, timeout=timeout) as s:
        headers = {"Authorization": f"Bearer {tok}"}
        async with s.get(f"/orgs/{A}/updates", headers=headers) as full:
            assert full.status == 429  # the first stream holds the organisation's one slot
            assert (await full.json())["error"]["code"] == "too_many_streams"
        writer.close()  # the first client goes away, sending nothing more
        await writer.wait_closed()
        left = time.monotonic()
        statuses = []
        while True:
            async with s.get(f"/orgs/{A}/updates", headers=headers) as again:
                statuses.append(again.status)
                if again.status == 200:
                    break
            assert time.monotonic() - left < 10, statuses  # the keep-alive would take 15 s
            await asyncio.sleep(0.25)
    assert time.monotonic() - left < 3, statuses


async def test_a_resumed_stream_that_stops_reading_gives_its_replay_slot_back(
    worker_factory: WorkerFactory,
    own_workers: None,
    settings: Settings,
    orgs: None,
    producer: AIOKafkaProducer,
) -> None:
    """A second attacker round: a viewer's resumed stream that stopped reading during its
    read-back held its organisation's replay slot for as long as it stayed connected, and
    every other resume of the organisation (an admin's dashboard too) was a 429, on which
    ``EventSource`` gives up. Now a read-back write waits at most ``REPLAY_WRITE_S`` (10 s):
    the stream is cut and the slot freed."""
    worker = worker_factory.start(
        "updates-stuck-replay",
        "one",
        WEDDING_SCHEDULING="0",
        WEDDING_OFFSET_RESET="latest",
        WEDDING_UPDATES_MAX_REPLAYS="1",
        WEDDING_UPDATES_REPLAY_MAX="100000",
    )
    await worker.wait_ready(timeout_s=120, min_partitions=4)
    tok = token(settings, SLOW)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(worker.url, timeout=timeout) as s:
        async with s.get(f"/orgs/{SLOW}/updates", headers={"Authorization": f"Bearer {tok}"}) as r:
            resume, name, _ = await Stream(r).next(30)
            assert name == "ready"
        pad = "x" * 2_000  # ~16 MB of read-back: more than the socket buffers hold
        await produce(producer, [metric_update(SLOW, "v1", n, note=pad) for n in range(8_000)])
        await producer.flush()
        # then never read again
        _, writer = await raw_stream(worker.url, SLOW, tok, last_id=resume, small_buffer=True)
        headers = {"Authorization": f"Bearer {tok}", "Last-Event-ID": resume}
        async with s.get(f"/orgs/{SLOW}/updates", headers=headers) as r:
            assert r.status == 429  # the stuck read-back holds the one slot
        stuck = time.monotonic()
        statuses = []
        while True:
            async with s.get(f"/orgs/{SLOW}/updates", headers=headers) as r:
                statuses.append(r.status)
                if r.status == 200:
                    break
            assert time.monotonic() - stuck < 40, statuses  # it was held for ever
        writer.close()
    assert statuses[-1] == 200 and time.monotonic() - stuck >= 5, statuses
