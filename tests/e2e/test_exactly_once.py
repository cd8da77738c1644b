"""Every event counted exactly once in the tables through re-sends on the topic (10 % of the
events sent again, at later offsets), a worker killed with SIGKILL mid-stream and restarted on
its own folder (local state kept, only the changelog's tail replayed), and a rebalance from
one worker to two. Expected totals are computed from the produced events."""

from __future__ import annotations

import asyncio
import os
import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import rocksdict
from aiokafka import AIOKafkaProducer

from stream_app.devservices.workers import WorkerProcess
from stream_app.lag import consumer_lag, wait_for_lag_zero
from stream_app.settings import Settings
from stream_app.topics import WEDDING_BOOKINGS
from tests.conftest import WorkerFactory
from tests.e2e.helpers import auth, read_topic

pytestmark = [pytest.mark.slow, pytest.mark.recovery]
VENUES = [f"v{i}" for i in range(8)]
Totals = dict[tuple[str, str], tuple[int, int, int]]


def make_events(org: str, n: int, seed: int) -> tuple[list[tuple[bytes, bytes]], Totals]:
    """``n`` distinct events (bookings, some cancelled) with 10 % of them re-sent later on the
    topic (at new offsets, spread over the rest of the stream), and the totals per
    (venue, month) counting each event id once."""
    rng = random.Random(seed)
    messages: list[tuple[bytes, bytes]] = []
    resends: list[tuple[bytes, bytes]] = []
    acc: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    made = 0
    while made < n:
        venue = rng.choice(VENUES)
        day = date(2026, rng.randint(1, 12), rng.randint(1, 28))
        amount = rng.randint(0, 5_000_00)
        base = {
            "schema_version": 1,
            "organization_id": org,
            "booking_id": f"b{made}",
            "venue_id": venue,
            "service_date": day.isoformat(),
            "amount_minor": amount,
            "currency": "EUR",
            "occurred_at": "2026-01-01T10:00:00Z",
        }
        key = f"{org}/{venue}".encode()
        kinds = ["booking_created"] + (["booking_cancelled"] if rng.random() < 0.3 else [])
        for kind in kinds:
            value = orjson.dumps({**base, "event_id": f"{org}-{made}-{kind}", "event_type": kind})
            messages.append((key, value))
            if rng.random() < 0.10:
                resends.append((key, value))
            a = acc[(venue, day.isoformat()[:7])]
            if kind == "booking_created":
                a[0] += 1
                a[2] += amount
            else:
                a[1] += 1
                a[2] -= amount
        made += 1
    for resend in resends:  # each re-send somewhere after its first
        first = messages.index(resend)
        messages.insert(rng.randint(first + 1, len(messages)), resend)
    return messages, {k: (v[0], v[1], v[2]) for k, v in acc.items()}


async def produce(bootstrap: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futs = [await producer.send(WEDDING_BOOKINGS, v, key=k) for k, v in messages]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def read_totals(worker: WorkerProcess, settings: Settings, org: str) -> Totals:
    """Month totals per venue read over HTTP; each month also checked against its day rows."""
    out: Totals = {}
    async with aiohttp.ClientSession(worker.url) as s:
        for venue in VENUES:
            by_grain: dict[str, list[dict[str, object]]] = {}
            for grain, lo, hi in (
                ("month", "2026-01", "2026-12"),
                ("day", "2026-01-01", "2026-12-31"),
            ):
                for _ in range(120):  # a worker restoring its tables answers 503: retry
                    async with s.get(
                        f"/orgs/{org}/venues/{venue}/metrics",
                        headers=auth(settings, org),
                        params={"grain": grain, "from": lo, "to": hi},
                    ) as r:
                        body = await r.json()
                        status = r.status
                    if status != 503:
                        break
                    await asyncio.sleep(0.5)
                assert status == 200, body
                by_grain[grain] = body["periods"]
            days: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
            for p in by_grain["day"]:
                d = days[str(p["period"])[:7]]
                d[0] += int(p["bookings"])  # type: ignore[call-overload]
                d[1] += int(p["cancellations"])  # type: ignore[call-overload]
                d[2] += int(p["revenue_minor"].get("EUR", 0))  # type: ignore[attr-defined]
            for p in by_grain["month"]:
                if p["bookings"] or p["cancellations"]:
                    month = (
                        int(p["bookings"]),  # type: ignore[call-overload]
                        int(p["cancellations"]),  # type: ignore[call-overload]
                        int(p["revenue_minor"].get("EUR", 0)),  # type: ignore[attr-defined]
                    )
                    out[(venue, str(p["period"]))] = month
                    assert month == tuple(days[str(p["period"])]), (
                        venue,
                        p["period"],
                        "month != Σ days",
                    )
    return out


async def wait_until_partly_done(bootstrap: str, group: str, total: int) -> None:
    """Wait until the group has committed some but not all of the ``total`` new messages."""
    for _ in range(600):
        lag = await consumer_lag(bootstrap, group, WEDDING_BOOKINGS)
        if lag < total * 0.8:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the worker made no progress")


ENV = {
    "WEDDING_OFFSET_RESET": "latest",
    "WEDDING_SCHEDULING": "0",
    "WEDDING_SESSION_TIMEOUT_S": "6",
    "WEDDING_STALL_REPORT_S": "30",  # faust logs why a partition makes no progress
    "WEDDING_DEBUG": "1",  # GET /debug/consumer: faust's offset bookkeeping
    "WEDDING_STREAM_WAIT_EMPTY": os.environ.get("WEDDING_STREAM_WAIT_EMPTY", "0"),
}


async def print_offset_bookkeeping(*workers: WorkerProcess) -> None:
    """Print each worker's ``/debug/consumer`` (faust's offsets, commit in flight, producer
    buffer): what a stalled group needs to be diagnosed from the test's output."""
    for worker in workers:
        try:
            async with aiohttp.ClientSession(worker.url) as s, s.get("/debug/consumer") as r:
                print("offset bookkeeping of", worker.url, await r.text())
        except aiohttp.ClientError as exc:
            print("offset bookkeeping of", worker.url, "unavailable:", exc)


def partition_databases(table_dir: Path) -> Iterator[tuple[str, Any]]:
    """``(folder name, database)`` of every RocksDB partition of a table folder, each opened
    read-only (the worker has stopped) and closed after its turn."""
    for db_dir in sorted(table_dir.parent.glob(table_dir.name + "-*.db")):
        db = rocksdict.Rdict(
            str(db_dir),
            options=rocksdict.Options(raw_mode=True),
            access_type=rocksdict.AccessType.read_only(),
        )
        try:
            yield db_dir.name, db
        finally:
            db.close()


def persisted_offsets(table_dir: Path) -> dict[str, int]:
    """The changelog offset stored in each RocksDB partition of a table folder (faust's
    ``__faust\\0offset__`` key), opened read-only after the worker died."""
    out: dict[str, int] = {}
    for name, db in partition_databases(table_dir):
        raw = db.get(b"__faust\x00offset__")
        if raw is not None:
            out[name] = int(raw)
    return out


def dedupe_rows(table_dir: Path) -> dict[str, list[int]]:
    """The dedupe records (``~e/`` keys) of every RocksDB partition of a table folder,
    opened read-only after the worker stopped."""
    out: dict[str, list[int]] = {}
    for _, db in partition_databases(table_dir):
        for key, value in db.items(from_key=b'"~e/'):
            assert isinstance(key, bytes) and isinstance(value, bytes)  # raw mode
            if not key.startswith(b'"~e/'):
                break
            out[key[1:-1].decode()] = orjson.loads(value)
    return out


async def one_worker_part_way(
    settings: Settings,
    worker_factory: WorkerFactory,
    org: str,
    group: str,
    name: str,
    seed: int,
    **env: str,
) -> tuple[WorkerProcess, Totals]:
    """Start worker ``name`` alone in ``group`` (``ENV`` and ``env``), produce 12,000 booking
    events of ``org`` (``seed``) and return once part of them is folded: (the worker, the
    expected totals)."""
    worker = worker_factory.start(group, name, **{**ENV, **env})
    await worker.wait_ready(timeout_s=120, min_partitions=4)
    messages, expected = make_events(org, 12_000, seed=seed)
    await produce(settings.kafka_bootstrap, messages)
    await wait_until_partly_done(settings.kafka_bootstrap, group, len(messages))
    return worker, expected


async def restart_and_check(
    settings: Settings, worker_factory: WorkerFactory, group: str, org: str, expected: Totals
) -> None:
    """Start worker ``first`` of ``group`` again on its folder, wait until it has folded every
    event, check ``org``'s totals against ``expected`` and stop it cleanly."""
    second = worker_factory.start(group, "first", **ENV)
    await second.wait_ready(timeout_s=120, min_partitions=4)
    await wait_for_lag_zero(settings.kafka_bootstrap, group, WEDDING_BOOKINGS, 240)
    assert await read_totals(second, settings, org) == expected
    assert second.stop() == 0


@pytest.mark.usefixtures("own_workers")
async def test_sigkill_mid_stream_then_recovery_from_the_changelog(
    settings: Settings, worker_factory: WorkerFactory, state_dir: Path
) -> None:
    org, group = "crash-org", "wedding-crash-tests"
    first, expected = await one_worker_part_way(settings, worker_factory, org, group, "first", 7)
    assert first.kill() == -9
    tables = state_dir / "workers" / group / "first" / "v1" / "tables"
    # the killed worker's local state is a prefix of its changelog, with the changelog offset
    # it reached: the restarted worker keeps it and replays only the tail after that offset
    persisted = persisted_offsets(tables / "venue-bookings")
    assert persisted and all(o >= 0 for o in persisted.values()), persisted
    await restart_and_check(settings, worker_factory, group, org, expected)
    # the dedupe records travel packed in the changelog (no record per event) and the local
    # records are exactly those the packed records stand for: one per distinct event
    changelog = await read_topic(settings.kafka_bootstrap, f"{group}-venue-bookings-changelog")
    assert not [r for r in changelog if r.key.startswith(b'"~e/')]
    packed = [r for r in changelog if r.key.startswith(b'"~d/') and r.value is not None]
    assert packed
    from_changelog = {
        f"~e/{digest}": [offset, arrival]
        for r in packed
        for digest, offset, arrival in orjson.loads(r.value)["e"]
    }
    local = dedupe_rows(tables / "venue-bookings")
    assert local == from_changelog
    distinct = {orjson.loads(v)["event_id"] for _, v in make_events(org, 12_000, seed=7)[0]}
    assert len(local) == len(distinct)


@pytest.mark.usefixtures("own_workers")
async def test_an_upgrade_to_packed_dedupe_records_mid_stream(
    settings: Settings, worker_factory: WorkerFactory, state_dir: Path
) -> None:
    """The rolling upgrade of README's "Upgrading": a worker writing a changelog record per
    dedupe record (``WEDDING_DEDUPE_PACKED=0``, what the release before wrote) is killed part
    way; its successor packs them. Totals exact through the re-sends on both sides of the
    switch; the changelog holds both forms and the partition's packed-since offsets, and the
    successor's local records are those of both forms."""
    org, group = "upgrade-org", "wedding-upgrade-tests"
    first, expected = await one_worker_part_way(
        settings, worker_factory, org, group, "first", 13, WEDDING_DEDUPE_PACKED="0"
    )
    assert first.kill() == -9
    await restart_and_check(settings, worker_factory, group, org, expected)
    changelog = await read_topic(settings.kafka_bootstrap, f"{group}-venue-bookings-changelog")
    one_each = {
        r.key[1:-1].decode(): (r.partition, orjson.loads(r.value))
        for r in changelog
        if r.key.startswith(b'"~e/') and r.value is not None
    }
    packed = {
        f"~e/{digest}": [offset, arrival]
        for r in changelog
        if r.key.startswith(b'"~d/') and r.value is not None
        for digest, offset, arrival in orjson.loads(r.value)["e"]
    }
    since = {
        r.partition: orjson.loads(r.value)["since"]
        for r in changelog
        if r.key == b'"~c/packed-since"'
    }
    # a partition's packing begins with the successor's first new event there (the first
    # worker may have folded all of a partition before it was killed, faster than it
    # committed: then the successor writes no record there, packed or not; CI saw 2 of 4)
    packed_partitions = {
        r.partition for r in changelog if r.key.startswith(b'"~d/') and r.value is not None
    }
    assert one_each and packed and since
    assert packed_partitions == set(since), (packed_partitions, since)
    # what the first worker wrote one by one is below where its partition's packing began
    assert all(p not in since or o < since[p] for p, (o, _) in one_each.values())
    tables = state_dir / "workers" / group / "first" / "v1" / "tables"
    local = dedupe_rows(tables / "venue-bookings")
    assert local == {**{k: v for k, (_, v) in one_each.items()}, **packed}
    distinct = {orjson.loads(v)["event_id"] for _, v in make_events(org, 12_000, seed=13)[0]}
    assert len(local) == len(distinct)


@pytest.mark.usefixtures("own_workers")
async def test_rebalance_from_one_worker_to_two(
    settings: Settings, worker_factory: WorkerFactory
) -> None:
    org, group = "rebalance-org", "wedding-rebalance-tests"
    one, expected = await one_worker_part_way(settings, worker_factory, org, group, "one", 11)
    two = worker_factory.start(group, "two", **ENV)
    await two.wait_ready(timeout_s=120)
    try:
        await wait_for_lag_zero(settings.kafka_bootstrap, group, WEDDING_BOOKINGS, 240)
    except TimeoutError:
        await print_offset_bookkeeping(one, two)
        raise
    owned_one, owned_two = await one.wait_ready(), await two.wait_ready()
    assert sorted(owned_one + owned_two) == [0, 1, 2, 3] and owned_one and owned_two
    # either worker answers for every venue, wherever its rows now live
    assert await read_totals(one, settings, org) == expected
    assert await read_totals(two, settings, org) == expected
