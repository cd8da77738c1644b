"""Two workers, four partitions: per-entity reads answered by either worker (forwarded to the
owner of the entity's partition), and the organisation summaries gathered from both.

Every expected figure is computed here, in plain Python, from the events the test produced.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from stream_app.db.tenancy import Organization, upsert_organization
from stream_app.devservices.workers import WorkerProcess
from stream_app.queries.partitions import partition_for
from stream_app.settings import Settings
from stream_app.topics import (
    CLIENT_INTERACTIONS,
    DEAD_LETTER,
    PAYMENT_EVENTS,
    SUPPLIER_ACTIVITIES,
    WEDDING_BOOKINGS,
)
from stream_app.web.auth import issue_token
from tests.conftest import WorkerFactory
from tests.e2e.helpers import auth, read_topic

pytestmark = pytest.mark.slow
GROUP = "wedding-org-read-tests"
ORG = "reads-org"
T0 = datetime(2026, 1, 30, 21, 0, tzinfo=UTC)
AUTH_FAILURE_LIMIT = 5
"""The workers' ``WEDDING_AUTH_FAILURE_LIMIT``, per minute (a client address's bad tokens)."""
LOCKOUT_RECHECK_S = 1.0
"""``stream_app.web.ratelimit.LOCKOUT_RECHECK_S`` (not imported: it would build the app here)."""


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture(scope="module")
async def two_workers(
    settings: Settings, worker_factory: WorkerFactory
) -> AsyncIterator[tuple[WorkerProcess, WorkerProcess]]:
    """Two workers of a group of their own, each holding some of the four partitions."""
    assert settings.topic_partitions >= 4
    await start_group_at_the_end(settings)
    env = {
        "WEDDING_OFFSET_RESET": "latest",
        "WEDDING_SCHEDULING": "0",
        "WEDDING_AUTH_FAILURE_LIMIT": f"{AUTH_FAILURE_LIMIT}/minute",
    }
    # one after the other: the first creates the changelog topics, so the rebalance the second
    # one causes assigns every changelog (faust leaves out of an assignment a changelog topic
    # created while it is computed)
    a = worker_factory.start(GROUP, "a", **env)
    await a.wait_ready(timeout_s=120, min_partitions=settings.topic_partitions)
    b = worker_factory.start(GROUP, "b", **env)
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


async def start_group_at_the_end(settings: Settings) -> None:
    """Commit the current end of every topic for the group, so its workers read exactly what
    this module produces (not every earlier test's events), with no race between their
    "latest" position and the first events produced."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if not t.startswith("__")]
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    tps = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=GROUP, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for attempt in range(60):  # a new broker's group coordinator takes a moment
            try:
                await consumer.commit({tp: off for tp, off in ends.items()})
                break
            except KafkaError:
                if attempt == 59:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await consumer.stop()


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
            PRODUCED[topic] += 1
    finally:
        await producer.stop()
    return last


OUTCOME_LINE = re.compile(
    r'^wedding_events_outcome_total\{outcome="[a-z_]+",topic="([a-z-]+)"\} (\S+)$'
)


async def folded_per_topic(workers: tuple[WorkerProcess, ...]) -> Counter[str]:
    """Events the workers have folded (any outcome: counted, late, duplicate, dead-lettered),
    per topic, from their Prometheus counters."""
    out: Counter[str] = Counter()
    for w in workers:
        async with aiohttp.ClientSession(w.url) as s, s.get("/metrics") as r:
            for line in (await r.text()).splitlines():
                m = OUTCOME_LINE.match(line)
                if m:
                    out[m.group(1)] += int(float(m.group(2)))
    return out


async def wait_folded(workers: tuple[WorkerProcess, ...], timeout_s: float = 180) -> None:
    """Wait until the workers have folded every event this module produced.

    Processing is observed through the workers' outcome counters (incremented after a batch's
    rows are written), not through committed offsets: a faust commit left in flight by the
    rebalance the second worker causes can hold the group's commits back (seen in about one
    run in five here), while the events are folded all the same.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        done = await folded_per_topic(workers)
        if all(done[t] >= n for t, n in PRODUCED.items()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"folded {dict(done)} of {dict(PRODUCED)} in {timeout_s} s")
        await asyncio.sleep(0.5)


PRODUCED: Counter[str] = Counter()
"""Events this module produced, per topic (the group reads nothing else)."""


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
    # a booked event with a score is malformed: dead-lettered naming $.score, not folded
    bad_booked = {**base("bad-booked", 5), "event_type": "booked", "client_id": "cl-0", "score": 5}
    sends.append((CLIENT_INTERACTIONS, f"{ORG}/cl-0", bad_booked))
    await produce(settings, sends)
    await wait_folded(two_workers)
    dead = [
        r
        for r in await read_topic(settings.kafka_bootstrap, DEAD_LETTER)
        if r.value == orjson.dumps(bad_booked)
    ]
    assert dead, "the booked event with a score was not dead-lettered"
    assert dict(dead[0].headers)["dlq.field"] == b"$.score"

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
            assert (body["bookings"], body["booked_at"]) == (0, None)
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
                if row["period"] not in want_months:
                    assert row["tasks_assigned"] + row["tasks_completed"] == 0
                    continue
                want = want_months[row["period"]]
                assert {k: row[k] for k in want if k != "per_person"} == {
                    k: v for k, v in want.items() if k != "per_person"
                }
                assert row["per_person"] == {p: dict(c) for p, c in want["per_person"].items()}
    # each worker answered some reads of partitions it does not hold (forwarded)
    assert remote_reads[a.url] > 0 and remote_reads[b.url] > 0, remote_reads


# ---------------------------------------------------------------------------------------------
# organisation summaries gathered from both workers

SUM_ORG = "summary-org"  # America/New_York: its months differ from UTC months near midnight
OTHER = "summary-other"  # same entity ids, other figures: must never show in SUM_ORG's sums
ZONE = ZoneInfo("America/New_York")
S0 = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)  # 2025-12-31 22:00 in New York


def sbase(org: str, n: str, t: datetime) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "event_id": f"sm-{org}-{n}",
        "organization_id": org,
        "occurred_at": t.isoformat(),
    }


def summary_interactions(org: str, scale: int) -> list[dict[str, Any]]:
    """Clients with inquiries spread over Dec 2025 – Mar 2026 (New York), varied response
    delays, conversions, direct bookings, ratings and NPS answers. ``scale`` varies the
    figures between organisations."""
    out: list[dict[str, Any]] = []

    def add(n: str, kind: str, client: str, t: datetime, **extra: Any) -> None:
        out.append({**sbase(org, n, t), "event_type": kind, "client_id": client, **extra})

    for i in range(24):
        client = f"cl-{i}"
        inquiry = S0 + timedelta(days=4 * i + (i % 3) * scale, hours=i % 5)
        if i % 6 != 5:  # clients 5, 11, 17, 23 never inquire
            add(f"{i}-q", "inquiry", client, inquiry)
            if i % 4 == 0:
                add(f"{i}-q2", "inquiry", client, inquiry + timedelta(hours=30))
        if i % 3 != 2:
            add(f"{i}-r", "response", client, inquiry + timedelta(seconds=97 * (i + 1) * scale))
        if i % 7 == 1:  # a response before the inquiry does not answer it
            add(f"{i}-r0", "response", client, inquiry - timedelta(hours=2))
        if i % 4 == 1:
            add(
                f"{i}-b",
                "booked",
                client,
                inquiry + timedelta(days=i % 9, hours=7),
                inquiry_id=f"inq-{i}",
                supplier_id="venue-1",
            )
        if i % 5 == 0:  # a direct booking (before any inquiry, or no inquiry at all)
            add(f"{i}-d", "booked", client, inquiry - timedelta(days=3))
        if i % 2 == 0:
            add(f"{i}-s", "rating", client, inquiry + timedelta(days=20), score=(i * scale) % 5 + 1)
        add(f"{i}-n", "nps", client, inquiry + timedelta(days=21), score=(i * 3 + scale) % 11)
    return out


def percentile(values: list[int], p: int) -> int | None:
    """Nearest rank: the value at rank ceil(p/100 × n) of the sorted values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(p * len(ordered) / 100)
    return ordered[max(rank, 1) - 1]


def figures(values: list[int]) -> dict[str, int | None]:
    return {
        "count": len(values),
        "median": percentile(values, 50),
        "p90": percentile(values, 90),
        "mean": sum(values) // len(values) if values else None,
    }


def expected_interactions_summary(events: list[dict[str, Any]], months: list[str]) -> Any:
    """The summary, computed from the events by the definitions (not by the code under test)."""
    by_client: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_client[e["client_id"]].append(e)

    def t(e: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(e["occurred_at"])

    def month(x: datetime) -> str:
        return x.astimezone(ZONE).strftime("%Y-%m")

    cohort: dict[str, dict[str, Any]] = {
        m: {"clients": 0, "frs": [], "dtb": [], "converted": 0} for m in months
    }
    direct: Counter[str] = Counter()
    ratings: Counter[int] = Counter()
    nps: Counter[int] = Counter()
    for evs in by_client.values():
        inquiries = [t(e) for e in evs if e["event_type"] == "inquiry"]
        responses = [t(e) for e in evs if e["event_type"] == "response"]
        booked = [t(e) for e in evs if e["event_type"] == "booked"]
        ratings.update(e["score"] for e in evs if e["event_type"] == "rating")
        nps.update(e["score"] for e in evs if e["event_type"] == "nps")
        first = min(inquiries) if inquiries else None
        for b in booked:
            if (first is None or b < first) and month(b) in cohort:
                direct[month(b)] += 1
        if first is None or month(first) not in cohort:
            continue
        c = cohort[month(first)]
        c["clients"] += 1
        answering = [r for r in responses if r >= first]
        if answering:
            c["frs"].append(int((min(answering) - first).total_seconds()))
        converting = [b for b in booked if b >= first]
        if converting:
            c["converted"] += 1
            c["dtb"].append((min(converting) - first).days)

    def rate(num: int, den: int) -> dict[str, int | None]:
        return {
            "numerator": num,
            "denominator": den,
            "basis_points": num * 10000 // den if den else None,
        }

    def block(c: dict[str, Any], d: int) -> dict[str, Any]:
        return {
            "clients": c["clients"],
            "responded": len(c["frs"]),
            "first_response_seconds": figures(c["frs"]),
            "converted": c["converted"],
            "conversion_rate": rate(c["converted"], c["clients"]),
            "days_to_book": figures(c["dtb"]),
            "direct_bookings": d,
        }

    everything = {
        "clients": sum(c["clients"] for c in cohort.values()),
        "frs": [x for c in cohort.values() for x in c["frs"]],
        "dtb": [x for c in cohort.values() for x in c["dtb"]],
        "converted": sum(c["converted"] for c in cohort.values()),
    }
    answers = sum(nps.values())
    promoters = sum(n for s, n in nps.items() if s >= 9)
    detractors = sum(n for s, n in nps.items() if s <= 6)
    score = abs(100 * (promoters - detractors)) // answers
    return {
        "cohorts": [{"month": m, **block(cohort[m], direct[m])} for m in months],
        "totals": block(everything, sum(direct.values())),
        "ratings": {
            "distribution": {str(s): ratings[s] for s in sorted(ratings)},
            "count": sum(ratings.values()),
            "average_milli": sum(s * n for s, n in ratings.items()) * 1000 // sum(ratings.values()),
        },
        "nps": {
            "distribution": {str(s): nps[s] for s in sorted(nps)},
            "answers": answers,
            "promoters": promoters,
            "detractors": detractors,
            "score": score if promoters >= detractors else -score,
        },
    }


def summary_payments(org: str, scale: int) -> list[dict[str, Any]]:
    return [
        {
            **sbase(org, f"pay-{i}-{j}", S0 + timedelta(days=i, hours=j)),
            "event_type": "refund_issued" if (i + j) % 4 == 3 else "payment_received",
            "payment_id": f"pay-{i}-{j}",
            "booking_id": f"bk-{i}",
            "amount_minor": (1234 * (i + 1) + 17 * j) * scale,
            "currency": ("EUR", "GBP", "USD")[(i + j * scale) % 3],
            "supplier_id": f"sp-{j}",
        }
        for i in range(10)
        for j in range(i % 3 + 1)
    ]


def summary_bookings(org: str, scale: int) -> list[dict[str, Any]]:
    out = []
    for i in range(10):
        doc = {
            **sbase(org, f"bk-{i}", S0 + timedelta(days=i)),
            "event_type": "booking_created",
            "booking_id": f"bk-{i}",
            "venue_id": f"venue-{i % 4}",
            "service_date": (S0 + timedelta(days=90 + 11 * i)).date().isoformat(),
            "amount_minor": 50_000 * (i + 1) * scale,
            "currency": ("EUR", "GBP")[i % 2],
        }
        out.append(doc)
        if i % 4 == 2:
            out.append(
                {
                    **doc,
                    **sbase(org, f"bk-{i}-x", S0 + timedelta(days=i + 5)),
                    "event_type": "booking_cancelled",
                }
            )
    return out


def expected_payments_summary(
    payments: list[dict[str, Any]], bookings: list[dict[str, Any]]
) -> dict[str, Any]:
    collected: Counter[str] = Counter()
    refunded: Counter[str] = Counter()
    booked: Counter[str] = Counter()
    for e in payments:
        (collected if e["event_type"] == "payment_received" else refunded)[e["currency"]] += e[
            "amount_minor"
        ]
    for e in bookings:
        sign = 1 if e["event_type"] == "booking_created" else -1
        booked[e["currency"]] += sign * e["amount_minor"]
    currencies = sorted(set(collected) | set(refunded) | set(booked))
    return {
        "bookings_with_payments": len({e["booking_id"] for e in payments}),
        "payments": sum(e["event_type"] == "payment_received" for e in payments),
        "refunds": sum(e["event_type"] == "refund_issued" for e in payments),
        "currencies": {
            c: {
                "collected_minor": collected[c],
                "refunded_minor": refunded[c],
                "booked_minor": booked[c],
                "outstanding_minor": booked[c] - collected[c] + refunded[c],
            }
            for c in currencies
        },
    }


def summary_activities(org: str, scale: int) -> list[dict[str, Any]]:
    out = []
    for i in range(30):
        t = S0 + timedelta(days=3 * i, hours=(i * 5) % 24)
        due = None if i % 7 == 6 else t + timedelta(hours=((i // 3) % 3 - 1) * 10 * scale)
        out.append(
            {
                **sbase(org, f"act-{i}", t),
                "event_type": ("task_assigned", "task_completed", "delivery_made")[i % 3],
                "supplier_id": f"sp-{i % 4}",
                "task_id": f"task-{i}",
                "due_at": None if due is None else due.isoformat(),
                "person_id": None if i % 5 == 4 else f"person-{i % 3}",
            }
        )
    return out


def expected_suppliers_summary(events: list[dict[str, Any]], months: list[str]) -> Any:
    counter_of = {
        "task_assigned": "tasks_assigned",
        "task_completed": "tasks_completed",
        "delivery_made": "deliveries_made",
    }
    fields = ("tasks_assigned", "tasks_completed", "deliveries_made", "on_time", "late", "no_due")
    rows: dict[str, dict[str, Any]] = {}
    suppliers: dict[str, set[str]] = defaultdict(set)
    for m in months:
        rows[m] = {"period": m, "suppliers": 0, **dict.fromkeys(fields, 0), "per_person": {}}
    for e in events:
        occurred = datetime.fromisoformat(e["occurred_at"])
        m = occurred.astimezone(ZONE).strftime("%Y-%m")  # the organisation's calendar month
        if m not in rows:
            continue
        r = rows[m]
        suppliers[m].add(e["supplier_id"])
        r[counter_of[e["event_type"]]] += 1
        if e["event_type"] != "task_assigned":
            if e["due_at"] is None:
                r["no_due"] += 1
            elif occurred > datetime.fromisoformat(e["due_at"]):
                r["late"] += 1
            else:
                r["on_time"] += 1
        person = r["per_person"].setdefault(e["person_id"] or "-", {})
        person[e["event_type"]] = person.get(e["event_type"], 0) + 1
    for m, found in suppliers.items():
        rows[m]["suppliers"] = len(found)
    totals: dict[str, Any] = {"supplier_months": 0, **dict.fromkeys(fields, 0), "per_person": {}}
    for r in rows.values():
        totals["supplier_months"] += r["suppliers"]
        for f in fields:
            totals[f] += r[f]
        for p, counts in r["per_person"].items():
            acc = totals["per_person"].setdefault(p, {})
            for k, n in counts.items():
                acc[k] = acc.get(k, 0) + n
    return {"months": [rows[m] for m in months], "totals": totals}


async def test_organisation_summaries_gathered_from_both_workers(
    settings: Settings, two_workers: tuple[WorkerProcess, WorkerProcess]
) -> None:
    a, b = two_workers
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(SUM_ORG, "Summary", str(ZONE), "EUR"))
        await upsert_organization(conn, Organization(OTHER, "Other", "Asia/Tokyo", "JPY"))
    finally:
        await conn.close()

    events: dict[str, dict[str, list[dict[str, Any]]]] = {}
    sends: list[tuple[str, str, dict[str, Any]]] = []
    for org, scale in ((SUM_ORG, 1), (OTHER, 7)):
        ev = {
            "interactions": summary_interactions(org, scale),
            "payments": summary_payments(org, scale),
            "bookings": summary_bookings(org, scale),
            "activities": summary_activities(org, scale),
        }
        events[org] = ev
        sends += [(CLIENT_INTERACTIONS, f"{org}/{e['client_id']}", e) for e in ev["interactions"]]
        sends += [(PAYMENT_EVENTS, f"{org}/{e['booking_id']}", e) for e in ev["payments"]]
        sends += [(WEDDING_BOOKINGS, f"{org}/{e['venue_id']}", e) for e in ev["bookings"]]
        sends += [(SUPPLIER_ACTIVITIES, f"{org}/{e['supplier_id']}", e) for e in ev["activities"]]
        # a redelivered copy of a few events changes nothing
        sends += [
            (CLIENT_INTERACTIONS, f"{org}/{e['client_id']}", e) for e in ev["interactions"][:5]
        ]
    last = await produce(settings, sends)
    assert len({tp.partition for tp in last}) == settings.topic_partitions  # every partition
    await wait_folded(two_workers)

    mine = events[SUM_ORG]
    months = ["2025-12", "2026-01", "2026-02", "2026-03", "2026-04"]
    want_interactions = expected_interactions_summary(mine["interactions"], months)
    want_payments = expected_payments_summary(mine["payments"], mine["bookings"])
    want_suppliers = expected_suppliers_summary(mine["activities"], months)
    # the data exercise what they should
    assert want_interactions["totals"]["converted"] > 0
    assert want_interactions["totals"]["direct_bookings"] > 0
    assert len(want_payments["currencies"]) == 3
    assert any(r["late"] and r["on_time"] and r["no_due"] for r in want_suppliers["months"])

    answers = []
    for worker in (a, b):
        status, inter = await get(
            worker,
            settings,
            f"/orgs/{SUM_ORG}/interactions/summary",
            SUM_ORG,
            **{"from": months[0], "to": months[-1]},
        )
        assert status == 200, inter
        assert inter["time_zone"] == str(ZONE)
        assert {k: inter[k] for k in want_interactions} == want_interactions
        status, pay = await get(worker, settings, f"/orgs/{SUM_ORG}/payments/summary", SUM_ORG)
        assert status == 200, pay
        assert {k: pay[k] for k in want_payments} == want_payments
        status, sup = await get(
            worker,
            settings,
            f"/orgs/{SUM_ORG}/suppliers/summary",
            SUM_ORG,
            **{"from": months[0], "to": months[-1]},
        )
        assert status == 200, sup
        assert {k: sup[k] for k in want_suppliers} == want_suppliers
        answers.append((inter, pay, sup))
    assert answers[0] == answers[1]

    # tenant isolation: the other organisation's own figures are its own, and differ
    other = events[OTHER]
    status, pay_other = await get(a, settings, f"/orgs/{OTHER}/payments/summary", OTHER)
    assert status == 200, pay_other
    assert (
        pay_other["currencies"]
        == expected_payments_summary(other["payments"], other["bookings"])["currencies"]
    )
    assert pay_other["currencies"] != want_payments["currencies"]
    status, body = await get(a, settings, f"/orgs/{OTHER}/payments/summary", SUM_ORG)
    assert status == 403 and body["error"]["field"] == "organization_id"


@pytest.mark.parametrize(
    ("path", "params", "code", "field"),
    [
        ("interactions/summary", {"from": "2026-13", "to": "2026-12"}, "invalid_field", "from"),
        ("interactions/summary", {"from": "2026-01", "to": "2026-1"}, "invalid_field", "to"),
        ("interactions/summary", {"from": "2026-03", "to": "2026-01"}, "invalid_field", "to"),
        ("interactions/summary", {"from": "2026-01"}, "missing_field", "to"),
        ("interactions/summary", {"to": "2026-01"}, "missing_field", "from"),
        ("interactions/summary", {"from": "1800-01", "to": "1800-02"}, "invalid_field", "from"),
        (
            "interactions/summary",
            {"from": "2026-01", "to": "2026-02", "x": "1"},
            "invalid_field",
            "x",
        ),
        ("interactions/summary", {"from": "2000-01", "to": "2099-12"}, "range_too_large", "to"),
        ("suppliers/summary", {"from": "abc", "to": "2026-02"}, "invalid_field", "from"),
        ("suppliers/summary", {"from": "2026-02", "to": "2026-00"}, "invalid_field", "to"),
        ("payments/summary", {"from": "2026-01"}, "invalid_field", "from"),
    ],
)
async def test_summary_bad_parameters_are_named(
    settings: Settings,
    two_workers: tuple[WorkerProcess, WorkerProcess],
    path: str,
    params: dict[str, str],
    code: str,
    field: str,
) -> None:
    """Each bad parameter is a 400 naming the field, with the reason's code."""
    got, body = await get(two_workers[0], settings, f"/orgs/{SUM_ORG}/{path}", SUM_ORG, **params)
    assert (got, body["error"]["code"], body["error"]["field"]) == (400, code, field), body


async def test_summary_tokens_and_unknown_organisation(
    settings: Settings, two_workers: tuple[WorkerProcess, WorkerProcess]
) -> None:
    a, _ = two_workers
    months = {"from": "2026-01", "to": "2026-02"}
    async with aiohttp.ClientSession(a.url) as s:
        async with s.get(f"/orgs/{SUM_ORG}/payments/summary") as r:
            assert r.status == 401
            assert (await r.json())["error"]["field"] == "Authorization"
        bad = {"Authorization": "Bearer not-a-token"}
        async with s.get(f"/orgs/{SUM_ORG}/suppliers/summary", params=months, headers=bad) as r:
            assert r.status == 401
        forged = issue_token(
            "another-secret-0123456789abcdef0123456789",
            user_id="x",
            organization_id=SUM_ORG,
            ttl_seconds=60,
        )
        async with s.get(
            f"/orgs/{SUM_ORG}/interactions/summary",
            params=months,
            headers={"Authorization": f"Bearer {forged}"},
        ) as r:
            assert r.status == 401
    status, body = await get(
        a, settings, "/orgs/no-such-org/interactions/summary", "no-such-org", **months
    )
    assert (status, body["error"]["code"], body["error"]["field"]) == (
        404,
        "not_found",
        "organization_id",
    )


# ---------------------------------------------------------------------------------------------
# the bad-token lockout of the workers' own address (last: it locks 127.0.0.1 out for a minute)

LOCKED = "127.0.0.1"
"""The address the workers call each other from (``WEDDING_WEB_HOST``), locked out here."""
CLIENT = "127.0.0.9"
"""The client's own address (any of 127/8 reaches loopback), not locked out."""


async def get_from(
    worker: WorkerProcess, path: str, headers: dict[str, str], source: str
) -> tuple[int, Any]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(worker.url, connector=connector) as s,
        s.get(path, headers=headers) as r,
    ):
        return r.status, await r.json()


async def test_forwarded_reads_pass_the_lockout_of_the_workers_address(
    settings: Settings, two_workers: tuple[WorkerProcess, WorkerProcess]
) -> None:
    """Bad tokens from the workers' own address lock it out for clients, not for the workers'
    forwarded reads (an attacker's finding: one anonymous client made every tenant's reads of
    the other worker's partitions, and so their reports, fail)."""
    a, b = two_workers
    bookings = [f"lk-{i}" for i in range(8)]
    events = [
        {
            **base(f"lk{i}", i),
            "event_type": "payment_received",
            "payment_id": f"lk-pay-{i}",
            "booking_id": booking,
            "amount_minor": 5000 + 11 * i,
            "currency": "EUR",
        }
        for i, booking in enumerate(bookings)
    ]
    await produce(settings, [(PAYMENT_EVENTS, f"{ORG}/{e['booking_id']}", e) for e in events])
    await wait_folded(two_workers)
    bad = {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.bad"}
    statuses = [
        (await get_from(a if i % 2 else b, f"/orgs/{ORG}/payments/summary", bad, LOCKED))[0]
        for i in range(AUTH_FAILURE_LIMIT + 1)
    ]
    assert statuses[-1] == 429 and set(statuses[:-1]) <= {401, 429}, statuses
    await asyncio.sleep(LOCKOUT_RECHECK_S + 0.2)  # in force on both workers
    good = auth(settings, ORG)
    for worker in (a, b):  # a client of that address is refused, bad token or good
        for headers in (bad, good):
            status, body = await get_from(worker, f"/orgs/{ORG}/payments/summary", headers, LOCKED)
            assert (status, body["error"]["code"], body["error"]["field"]) == (
                429,
                "rate_limited",
                "Authorization",
            ), body
    held_by_b = await partitions_of(b)
    owned_by_b = [
        bk
        for bk in bookings
        if partition_for(f"{ORG}/{bk}".encode(), settings.topic_partitions) in held_by_b
    ]
    assert owned_by_b, "no booking on worker b's partitions"
    for booking in owned_by_b:  # asked of worker a, which forwards to b from 127.0.0.1
        i = bookings.index(booking)
        status, body = await get_from(a, f"/orgs/{ORG}/bookings/{booking}/payments", good, CLIENT)
        assert status == 200, body
        assert body["total"]["paid_minor"] == {"EUR": 5000 + 11 * i}
        assert body["total"]["payments"] == 1
    # the lockout still holds for a client of that address
    status, body = await get_from(b, f"/orgs/{ORG}/payments/summary", bad, LOCKED)
    assert (status, body["error"]["field"]) == (429, "Authorization"), body


async def test_a_clients_forwarded_header_is_ignored(
    settings: Settings, two_workers: tuple[WorkerProcess, WorkerProcess]
) -> None:
    """An attacker's finding: a client sending the workers' ``X-Wedding-Forwarded`` header got
    a false 503 ``rebalancing`` from the worker not holding the partition (telling it which
    worker does); only a worker-to-worker token's header counts, a client's read is
    forwarded as any other."""
    a, b = two_workers
    bookings = [f"fw-{i}" for i in range(8)]
    events = [
        {
            **base(f"fw{i}", i),
            "event_type": "payment_received",
            "payment_id": f"fw-pay-{i}",
            "booking_id": booking,
            "amount_minor": 7000 + 13 * i,
            "currency": "EUR",
        }
        for i, booking in enumerate(bookings)
    ]
    await produce(settings, [(PAYMENT_EVENTS, f"{ORG}/{e['booking_id']}", e) for e in events])
    await wait_folded(two_workers)
    headers = {**auth(settings, ORG, role="viewer"), "X-Wedding-Forwarded": "1"}
    forwarded = 0
    for worker in (a, b):
        held = await partitions_of(worker)
        for i, booking in enumerate(bookings):
            p = partition_for(f"{ORG}/{booking}".encode(), settings.topic_partitions)
            forwarded += p not in held
            status, body = await get_from(
                worker, f"/orgs/{ORG}/bookings/{booking}/payments", headers, CLIENT
            )
            assert status == 200, body
            assert body["total"]["paid_minor"] == {"EUR": 7000 + 13 * i}
        for venue in (f"fw-venue-{i}" for i in range(8)):  # some held by the other worker
            status, body = await get_from(
                worker,
                f"/orgs/{ORG}/venues/{venue}/metrics?from=2026-01&to=2026-02",
                headers,
                CLIENT,
            )
            assert status == 200, body
            assert body["venue_id"] == venue
    assert forwarded > 0  # each booking was asked of the worker not holding it too
