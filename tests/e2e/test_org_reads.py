"""Two workers, four partitions: per-entity reads answered by either worker (forwarded to the
owner of the entity's partition), and the organisation summaries gathered from both.

Every expected figure is computed here, in plain Python, from the events the test produced.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from stream_app.devservices.workers import WorkerProcess
from stream_app.partitioning import partition_for
from stream_app.settings import Settings
from stream_app.topics import CLIENT_INTERACTIONS, PAYMENT_EVENTS, SUPPLIER_ACTIVITIES
from tests.conftest import WorkerFactory
from tests.e2e.helpers import auth

pytestmark = pytest.mark.slow
GROUP = "wedding-org-read-tests"
ORG = "reads-org"
T0 = datetime(2026, 1, 30, 21, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture(scope="module")
async def two_workers(
    settings: Settings, worker_factory: WorkerFactory
) -> AsyncIterator[tuple[WorkerProcess, WorkerProcess]]:
    """Two workers of a group of their own, each holding some of the four partitions."""
    assert settings.topic_partitions >= 4
    env = {"WEDDING_OFFSET_RESET": "latest", "WEDDING_SCHEDULING": "0"}
    a = worker_factory.start(GROUP, "a", **env)
    b = worker_factory.start(GROUP, "b", **env)
    await a.wait_ready(timeout_s=120)
    await b.wait_ready(timeout_s=120)
    stable = 0
    for _ in range(120):
        parts_a = await a.wait_ready()
        parts_b = await b.wait_ready()
        split = bool(parts_a and parts_b)
        whole = sorted(parts_a + parts_b) == list(range(settings.topic_partitions))
        stable = stable + 1 if split and whole else 0
        if stable >= 3:
            break
        await asyncio.sleep(1)
    assert stable >= 3, (parts_a, parts_b)
    try:
        yield a, b
    finally:
        # a second consumer group would also answer later tests' report requests
        a.stop()
        b.stop()


async def partitions_of(worker: WorkerProcess) -> set[int]:
    return set(await worker.wait_ready())


async def produce(
    settings: Settings, sends: list[tuple[str, str, dict[str, Any]]]
) -> dict[TopicPartition, int]:
    """Send ``(topic, key, event)``; return the last offset written per partition."""
    last: dict[TopicPartition, int] = {}
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for topic, key, doc in sends:
            meta = await producer.send_and_wait(topic, orjson.dumps(doc), key=key.encode())
            tp = TopicPartition(topic, meta.partition)
            last[tp] = max(last.get(tp, -1), meta.offset)
    finally:
        await producer.stop()
    return last


async def wait_committed(
    settings: Settings, last: dict[TopicPartition, int], timeout_s: float = 180
) -> None:
    """Wait until the group has committed past every offset in ``last``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = await admin.list_consumer_group_offsets(GROUP, partitions=list(last))
            if all(tp in done and done[tp].offset > off for tp, off in last.items()):
                return
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    raise TimeoutError(f"group {GROUP} did not commit {last} in {timeout_s} s")


async def get(
    worker: WorkerProcess, settings: Settings, path: str, org: str = ORG, **params: str
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(worker.url) as s,
        s.get(path, params=params, headers=auth(settings, org)) as r,
    ):
        return r.status, await r.json()


# ---------------------------------------------------------------------------------------------
# per-entity reads through either worker


def base(n: str, minutes: int, org: str = ORG) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "event_id": f"rd-{org}-{n}",
        "organization_id": org,
        "occurred_at": at(minutes).isoformat(),
    }


BOOKINGS = [f"bk-{i}" for i in range(8)]
CLIENTS = [f"cl-{i}" for i in range(8)]
SUPPLIERS = [f"sp-{i}" for i in range(8)]


def payment_events() -> list[dict[str, Any]]:
    return [
        {
            **base(f"p{i}-{j}", 60 * j + i),
            "event_type": "refund_issued" if j == 2 else "payment_received",
            "payment_id": f"pay-{i}-{j}",
            "booking_id": booking,
            "amount_minor": 1000 * (i + 1) + 7 * j,
            "currency": "EUR" if (i + j) % 2 else "GBP",
            "supplier_id": f"sp-{j}",
        }
        for i, booking in enumerate(BOOKINGS)
        for j in range(i % 3 + 1)
    ]


def interaction_events() -> list[dict[str, Any]]:
    out = []
    for i, client in enumerate(CLIENTS):
        out.append({**base(f"i{i}-q", 10 * i), "event_type": "inquiry", "client_id": client})
        if i % 2 == 0:
            out.append(
                {**base(f"i{i}-r", 10 * i + i + 1), "event_type": "response", "client_id": client}
            )
        out.append(
            {
                **base(f"i{i}-s", 300),
                "event_type": "rating",
                "client_id": client,
                "score": i % 5 + 1,
            }
        )
    return out


def activity_events() -> list[dict[str, Any]]:
    out = []
    for i, supplier in enumerate(SUPPLIERS):
        for j in range(i % 4 + 1):
            kind = ("task_assigned", "task_completed", "delivery_made")[j % 3]
            out.append(
                {
                    **base(f"a{i}-{j}", 100 * j),
                    "event_type": kind,
                    "supplier_id": supplier,
                    "task_id": f"task-{i}-{j}",
                    "due_at": at(150).isoformat(),
                    "person_id": f"person-{j % 2}",
                }
            )
    return out


def expected_payments(events: list[dict[str, Any]], booking: str) -> dict[str, Any]:
    total: dict[str, Any] = {"payments": 0, "refunds": 0, "paid_minor": {}, "refunded_minor": {}}
    for e in events:
        if e["booking_id"] != booking:
            continue
        if e["event_type"] == "payment_received":
            total["payments"] += 1
            field = "paid_minor"
        else:
            total["refunds"] += 1
            field = "refunded_minor"
        total[field][e["currency"]] = total[field].get(e["currency"], 0) + e["amount_minor"]
    return total


def expected_client(events: list[dict[str, Any]], client: str) -> dict[str, Any]:
    mine = [e for e in events if e["client_id"] == client]
    inq = min(
        datetime.fromisoformat(e["occurred_at"]) for e in mine if e["event_type"] == "inquiry"
    )
    resp = [datetime.fromisoformat(e["occurred_at"]) for e in mine if e["event_type"] == "response"]
    answering = [r for r in resp if r >= inq]
    scores = [e["score"] for e in mine if e["event_type"] == "rating"]
    return {
        "inquiries": sum(e["event_type"] == "inquiry" for e in mine),
        "responses": len(resp),
        "first_response_seconds": (
            int((min(answering) - inq).total_seconds()) if answering else None
        ),
        "ratings": {str(s): n for s, n in Counter(scores).items()},
        "average_rating_milli": sum(scores) * 1000 // len(scores),
    }


def expected_activity(events: list[dict[str, Any]], supplier: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["supplier_id"] != supplier:
            continue
        month = e["occurred_at"][:7]  # UTC timestamps: the UTC month
        m = out.setdefault(
            month,
            {
                "tasks_assigned": 0,
                "tasks_completed": 0,
                "deliveries_made": 0,
                "on_time": 0,
                "late": 0,
                "per_person": defaultdict(Counter),
            },
        )
        m[
            {"task_assigned": "tasks_assigned", "task_completed": "tasks_completed"}.get(
                e["event_type"], "deliveries_made"
            )
        ] += 1
        if e["event_type"] != "task_assigned":
            m["late" if e["occurred_at"] > e["due_at"] else "on_time"] += 1
        m["per_person"][e["person_id"]][e["event_type"]] += 1
    return out


async def test_entity_reads_are_answered_by_either_worker(
    settings: Settings, two_workers: tuple[WorkerProcess, WorkerProcess]
) -> None:
    a, b = two_workers
    payments, interactions, activities = payment_events(), interaction_events(), activity_events()
    sends = [(PAYMENT_EVENTS, f"{ORG}/{e['booking_id']}", e) for e in payments]
    sends += [(CLIENT_INTERACTIONS, f"{ORG}/{e['client_id']}", e) for e in interactions]
    sends += [(SUPPLIER_ACTIVITIES, f"{ORG}/{e['supplier_id']}", e) for e in activities]
    await wait_committed(settings, await produce(settings, sends))

    owned = {a.url: await partitions_of(a), b.url: await partitions_of(b)}
    remote_reads: Counter[str] = Counter()
    for worker in (a, b):
        for booking in BOOKINGS:
            p = partition_for(f"{ORG}/{booking}".encode(), settings.topic_partitions)
            remote_reads[worker.url] += p not in owned[worker.url]
            status, body = await get(worker, settings, f"/orgs/{ORG}/bookings/{booking}/payments")
            assert status == 200, body
            assert body["total"] == expected_payments(payments, booking)
        for client in CLIENTS:
            status, body = await get(worker, settings, f"/orgs/{ORG}/clients/{client}/interactions")
            assert status == 200, body
            want = expected_client(interactions, client)
            assert {k: body[k] for k in want} == want
        for supplier in SUPPLIERS:
            status, body = await get(
                worker,
                settings,
                f"/orgs/{ORG}/suppliers/{supplier}/activity",
                **{"from": "2026-01", "to": "2026-02"},
            )
            assert status == 200, body
            want_months = expected_activity(activities, supplier)
            for row in body["months"]:
                want = want_months.get(row["period"])
                if want is None:
                    assert row["tasks_assigned"] + row["tasks_completed"] == 0
                    continue
                assert {k: row[k] for k in want if k != "per_person"} == {
                    k: v for k, v in want.items() if k != "per_person"
                }
                assert row["per_person"] == {p: dict(c) for p, c in want["per_person"].items()}
    # each worker answered some reads of partitions it does not hold (forwarded)
    assert remote_reads[a.url] > 0 and remote_reads[b.url] > 0, remote_reads
