"""Payments, client interactions and supplier activities: agents, tables, dead letter, HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from stream_app.devservices.workers import WorkerProcess
from stream_app.lag import wait_for_lag_zero
from stream_app.settings import Settings
from stream_app.topics import (
    CLIENT_INTERACTIONS,
    DEAD_LETTER,
    PAYMENT_EVENTS,
    REALTIME_METRICS_UPDATES,
    SUPPLIER_ACTIVITIES,
)
from tests.e2e.helpers import auth, read_topic

ORG = "streams-test-org"
T0 = datetime(2026, 3, 31, 22, 0, tzinfo=UTC)


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def base(n: str, minutes: int) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "event_id": f"st-{n}",
        "organization_id": ORG,
        "occurred_at": at(minutes),
    }


def pay(
    n: str, kind: str, amount: int, currency: str, supplier: str | None, minutes: int
) -> dict[str, Any]:
    return {
        **base(n, minutes),
        "event_type": kind,
        "payment_id": f"pay-{n}",
        "booking_id": "bk1",
        "amount_minor": amount,
        "currency": currency,
        "supplier_id": supplier,
    }


PAYMENTS = [
    pay("p1", "payment_received", 100_00, "EUR", "s1", 0),
    pay("p2", "payment_received", 50_00, "USD", "s1", 10),
    pay("p3", "refund_issued", 20_00, "EUR", None, 150),  # April in UTC
    pay("p4", "payment_received", 30_00, "EUR", "s1", 160),
]
BAD_PAYMENT = {**pay("p5", "payment_received", 1, "EUX", None, 0)}


def interaction(n: str, kind: str, minutes: int, score: int | None = None) -> dict[str, Any]:
    return {**base(n, minutes), "event_type": kind, "client_id": "c1", "score": score}


INTERACTIONS = [
    interaction("i1", "inquiry", 0),
    interaction("i2", "response", 3),  # 180 s after the inquiry
    interaction("i3", "response", 60),
    interaction("i4", "rating", 70, 4),
    interaction("i5", "rating", 71, 5),
    interaction("i6", "nps", 72, 9),
    interaction("i7", "nps", 73, 3),
]


def activity(n: str, kind: str, minutes: int, due: int | None, person: str) -> dict[str, Any]:
    return {
        **base(n, minutes),
        "event_type": kind,
        "supplier_id": "sup1",
        "task_id": f"task-{n}",
        "due_at": None if due is None else at(due),
        "person_id": person,
    }


ACTIVITIES = [
    activity("a1", "task_assigned", 0, 100, "p1"),
    activity("a2", "task_completed", 90, 100, "p1"),  # March (UTC), on time
    activity("a3", "delivery_made", 130, 100, "p2"),  # April, late
    activity("a4", "task_completed", 140, None, "p2"),  # April, no due date
]
BAD_ACTIVITY = {
    k: v for k, v in activity("a5", "task_assigned", 0, None, "p1").items() if k != "task_id"
}


async def test_three_streams_fold_dead_letter_and_read_back(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    sends: list[tuple[str, bytes, bytes]] = []
    sends += [(PAYMENT_EVENTS, f"{ORG}/bk1".encode(), orjson.dumps(e)) for e in PAYMENTS]
    sends.append((PAYMENT_EVENTS, f"{ORG}/bk1".encode(), orjson.dumps(PAYMENTS[0])))  # duplicate
    bad_payment = orjson.dumps(BAD_PAYMENT)
    sends.append((PAYMENT_EVENTS, f"{ORG}/bk1".encode(), bad_payment))
    sends += [(CLIENT_INTERACTIONS, f"{ORG}/c1".encode(), orjson.dumps(e)) for e in INTERACTIONS]
    bad_interaction = orjson.dumps(interaction("i8", "inquiry", 5))
    sends.append((CLIENT_INTERACTIONS, f"{ORG}/c2".encode(), bad_interaction))  # wrong key
    sends += [(SUPPLIER_ACTIVITIES, f"{ORG}/sup1".encode(), orjson.dumps(e)) for e in ACTIVITIES]
    bad_activity = orjson.dumps(BAD_ACTIVITY)
    sends.append((SUPPLIER_ACTIVITIES, f"{ORG}/sup1".encode(), bad_activity))

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for topic, key, value in sends:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()
    for topic in (PAYMENT_EVENTS, CLIENT_INTERACTIONS, SUPPLIER_ACTIVITIES):
        await wait_for_lag_zero(settings.kafka_bootstrap, "wedding-tests", topic, 300)

    dead = {rec.value: rec for rec in await read_topic(settings.kafka_bootstrap, DEAD_LETTER)}
    for value, topic, field in (
        (bad_payment, PAYMENT_EVENTS, "$.currency"),
        (bad_interaction, CLIENT_INTERACTIONS, "key"),
        (bad_activity, SUPPLIER_ACTIVITIES, "$.task_id"),
    ):
        assert value in dead, f"not dead-lettered: {value!r}"
        headers = dict(dead[value].headers)
        assert headers["dlq.source.topic"] == topic.encode()
        assert headers["dlq.field"] == field.encode()

    months = {"from": "2026-03", "to": "2026-04"}
    async with aiohttp.ClientSession(main_worker.url) as s:

        async def get_ok(path: str, params: dict[str, str] | None = None) -> Any:
            async with s.get(path, params=params, headers=auth(settings, ORG)) as r:
                assert r.status == 200, await r.text()
                return await r.json()

        payments = await get_ok(f"/orgs/{ORG}/bookings/bk1/payments", months)
        client = await get_ok(f"/orgs/{ORG}/clients/c1/interactions")
        supplier = await get_ok(f"/orgs/{ORG}/suppliers/sup1/activity", months)
        async with s.get(
            f"/orgs/{ORG}/clients/c1/interactions", headers=auth(settings, "other")
        ) as r:
            assert r.status == 403

    # payments: 100 EUR + 30 EUR and 50 USD paid, 20 EUR refunded; the duplicate not counted
    assert payments["total"] == {
        "payments": 3,
        "refunds": 1,
        "paid_minor": {"EUR": 130_00, "USD": 50_00},
        "refunded_minor": {"EUR": 20_00},
    }
    march, april = payments["months"]
    assert march["by_supplier"] == {
        "s1": {
            "payments": 2,
            "refunds": 0,
            "collected_minor": {"EUR": 100_00, "USD": 50_00},
            "refunded_minor": {},
        }
    }
    assert april["by_supplier"] == {
        "s1": {
            "payments": 1,
            "refunds": 0,
            "collected_minor": {"EUR": 30_00},
            "refunded_minor": {},
        },
        "-": {"payments": 0, "refunds": 1, "collected_minor": {}, "refunded_minor": {"EUR": 20_00}},
    }

    # interactions: 1 inquiry, 2 responses, first one 3 minutes later; ratings 4 and 5; NPS 9, 3
    assert (client["inquiries"], client["responses"]) == (1, 2)
    assert client["first_response_seconds"] == 180
    assert client["ratings"] == {"4": 1, "5": 1}
    assert client["average_rating_milli"] == 4500
    assert client["nps"] == {"9": 1, "3": 1}
    assert client["nps_score"] == 0  # 50 % promoters − 50 % detractors

    m3, m4 = supplier["months"]
    assert (m3["tasks_assigned"], m3["tasks_completed"], m3["on_time"], m3["late"]) == (1, 1, 1, 0)
    assert m3["per_person"] == {"p1": {"task_assigned": 1, "task_completed": 1}}
    assert (m4["tasks_completed"], m4["deliveries_made"], m4["late"], m4["no_due"]) == (1, 1, 1, 1)
    assert m4["per_person"] == {"p2": {"delivery_made": 1, "task_completed": 1}}

    # realtime-metrics-updates: the last generic update of each row carries the row's values
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for rec in await read_topic(settings.kafka_bootstrap, REALTIME_METRICS_UPDATES):
        doc = orjson.loads(rec.value)
        if doc.get("kind") == "generic_metric_update" and doc["organization_id"] == ORG:
            latest[(doc["metric"], doc["key"], doc["window"]["period"])] = doc["new"]
    assert latest[("booking_payments", "bk1", "all")] == payments["total"]
    assert latest[("supplier_activity", "sup1", "2026-04")]["late"] == 1
    assert latest[("client_interactions", "c1", "all")]["first_response_seconds"] == 180
