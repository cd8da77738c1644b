"""A worker started as in production applies the runtime patches and folds events with them,
and ``GET /debug/consumer`` reads faust's offset bookkeeping through
:mod:`stream_app.runtime.introspect`."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from stream_app.lag import partition_lag, wait_for_lag_zero
from stream_app.settings import Settings
from stream_app.topics import PAYMENT_EVENTS
from stream_app.web.auth import issue_token
from tests.conftest import WorkerFactory
from tests.e2e.helpers import auth


def payment(org: str, n: str, amount_minor: int) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "event_id": f"{org}-{n}",
        "organization_id": org,
        "occurred_at": "2026-03-10T12:00:00+00:00",
        "event_type": "payment_received",
        "payment_id": f"pay-{n}",
        "booking_id": "bk1",
        "amount_minor": amount_minor,
        "currency": "EUR",
        "supplier_id": "s1",
    }


async def debug_consumer(url: str, settings: Settings, org: str) -> dict[str, Any]:
    """``GET /debug/consumer`` as an administrator (``debug:read``)."""
    token = issue_token(
        settings.jwt_secret, user_id="rt-admin", organization_id=org, ttl_seconds=600, role="admin"
    )
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(url) as s, s.get("/debug/consumer", headers=headers) as r:
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        return body


async def test_a_worker_installs_the_runtime_folds_and_reports_its_offsets(
    settings: Settings, worker_factory: WorkerFactory
) -> None:
    group = f"runtime-{uuid.uuid4().hex[:8]}"
    org = f"rt-{uuid.uuid4().hex[:8]}"
    worker = worker_factory.start(group, "w", WEDDING_DEBUG="1", WEDDING_SCHEDULING="0")
    try:
        await worker.wait_ready(timeout_s=120, min_partitions=4)
        events = [payment(org, "p1", 100_00), payment(org, "p2", 50_00)]
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for e in [*events, events[0]]:  # the first one twice: folded once
                await producer.send_and_wait(
                    PAYMENT_EVENTS, orjson.dumps(e), key=f"{org}/bk1".encode()
                )
        finally:
            await producer.stop()
        await wait_for_lag_zero(settings.kafka_bootstrap, group, PAYMENT_EVENTS, 180)

        async with (
            aiohttp.ClientSession(worker.url) as s,
            s.get(
                f"/orgs/{org}/bookings/bk1/payments",
                params={"from": "2026-03", "to": "2026-03"},
                headers=auth(settings, org),
            ) as r,
        ):
            assert r.status == 200, await r.text()
            payments = await r.json()
        assert payments["total"]["payments"] == 2
        assert payments["total"]["paid_minor"] == {"EUR": 150_00}

        # the broker's view of the group, read without faust: (end offset, committed offset)
        lag = await partition_lag(settings.kafka_bootstrap, group, PAYMENT_EVENTS)
        expected = {f"{PAYMENT_EVENTS}/{p}": done for p, (_end, done) in lag.items() if done}
        assert expected, "the group committed nothing on the payments topic"
        deadline = time.monotonic() + 30  # faust records a commit when the broker answers
        while True:
            state = await debug_consumer(worker.url, settings, org)
            seen = {
                tp: part["committed"]
                for tp, part in state["partitions"].items()
                if tp.startswith(f"{PAYMENT_EVENTS}/") and part["committed"]
            }
            if seen == expected or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert seen == expected
        assert state["runtime_installed"] is True
        # faust's consumer thread runs on the worker's loop: no thread hop per fetch
        assert state["consumer_on_worker_loop"] is True
        assert state["prefetch_backoff_ms"] == 5  # WEDDING_PREFETCH_BACKOFF_MS (aiokafka: 100)
        assert state["producer_buffer_in_flight"] == 0
    finally:
        worker.stop()
