"""Queued retries and fair delivery slots (issue 9, attack 3), with real webhook receivers and
the real delivery worker (:class:`stream_app.delivery.worker.DeliveryWorker`)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import pytest_asyncio
from aiohttp import web

from stream_app.delivery.api import LinkSigner
from stream_app.delivery.dispatch import DeliveryConfig
from stream_app.delivery.egress import EgressPolicy
from stream_app.delivery.email import SmtpConfig
from stream_app.delivery.targets import ApiTarget, RetryPolicy, WebhookTarget
from stream_app.delivery.worker import DeliveryWorker
from stream_app.schedules.deliveries import ScheduleDeliveries
from stream_app.schedules.model import Schedule
from tests.delivery.conftest import delivered_per_report, queue_size, running
from tests.schedules.builders import per_org
from tests.serving import serving

SECRET = "whsec-0123456789-abcdefghij"
ATTACK_RETRY = RetryPolicy(max_attempts=10, base_backoff_s=3600, max_backoff_s=86400)


@dataclass
class Receiver:
    """A webhook endpoint answering ``status`` after ``delay_s`` (or the next of ``delays``);
    notes arrivals in order."""

    status: int = 200
    delay_s: float = 0.0
    delays: list[float] = field(default_factory=list)
    arrivals: list[tuple[float, str]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.arrivals.append((time.monotonic(), str(body["organization_id"])))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delays.pop(0) if self.delays else self.delay_s)
        finally:
            self.in_flight -= 1
        return web.Response(status=self.status, text=f"scripted {self.status}")

    def reports(self) -> Counter[str]:
        return Counter(org for _, org in self.arrivals)


ReceiverFactory = Callable[..., Any]


@pytest_asyncio.fixture
async def receivers() -> AsyncIterator[ReceiverFactory]:
    """Start webhook receivers on 127.0.0.1: ``await make(status, delay_s)`` → (recv, url)."""
    async with AsyncExitStack() as running:

        async def make(status: int = 200, delay_s: float = 0.0) -> tuple[Receiver, str]:
            recv = Receiver(status=status, delay_s=delay_s)
            port = await running.enter_async_context(serving({"/hook": recv.handle}))
            return recv, f"http://127.0.0.1:{port}/hook"

        yield make


def hook(url: str, name: str, retry: RetryPolicy) -> Callable[[str], Schedule]:
    return per_org(
        name,
        date_range="previous_week",
        delivery=WebhookTarget(url=url, secret=SECRET, timeout_s=10),
        retry=retry,
    )


def config(signer: LinkSigner, egress: EgressPolicy, slots: int = 4) -> DeliveryConfig:
    return DeliveryConfig(
        smtp=SmtpConfig(host="127.0.0.1", port=25, sender="reports@wedding.test"),
        signer=signer,
        egress=egress,
        slots=slots,
        poll_s=0.05,
        lease_s=60,
    )


WorkerMaker = Callable[..., DeliveryWorker]


@pytest.fixture
def delivery_worker(
    db: asyncpg.Pool, signer: LinkSigner, artifact_root: Path, loopback: EgressPolicy
) -> WorkerMaker:
    """Factory: ``delivery_worker(pool=db, *, slots=4, **kwargs)``, a :class:`DeliveryWorker`
    with the tests' signer, egress policy and artifact store (``kwargs``: ``worker_id``,
    ``clock``)."""

    def make(pool: asyncpg.Pool | None = None, *, slots: int = 4, **kwargs: Any) -> DeliveryWorker:
        return DeliveryWorker(
            pool or db,
            config(signer, loopback, slots=slots),
            artifact_root,
            sources=(ScheduleDeliveries(),),
            **kwargs,
        )

    return make


async def run_status(db: asyncpg.Pool, run_id: int) -> str:
    async with db.acquire() as conn:
        status: str = await conn.fetchval("SELECT status FROM schedule_runs WHERE id = $1", run_id)
    return status


async def status_is(db: asyncpg.Pool, run_id: int, expected: str) -> bool:
    return await run_status(db, run_id) == expected


async def wait_for(predicate: Callable[[], Any], timeout_s: float) -> float:
    """Poll ``predicate`` (sync or async) until true; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    raise TimeoutError(f"not true within {timeout_s} s")


async def test_failing_tenant_does_not_stop_another_tenants_delivery(
    db: asyncpg.Pool,
    make_run: Any,
    new_org: Any,
    receivers: ReceiverFactory,
    delivery_worker: WorkerMaker,
) -> None:
    """Attack 3: four of A's schedules post to webhooks answering 503 with retries of up to
    ten attempts an hour apart. B's delivery to a working webhook still goes out at once,
    and A's runs wait in the queue (``retrying``, due an hour later), not in a slot."""
    failing, failing_url = await receivers(status=503)
    working, working_url = await receivers(status=200)
    org_a = await new_org()
    a_runs = []
    for n in range(4):
        run, statuses = await make_run(hook(failing_url, f"a{n}", ATTACK_RETRY), org=org_a)
        a_runs.append((run, statuses[0]))
    b_run, (b_status,) = await make_run(hook(working_url, "b", RetryPolicy()))
    worker = delivery_worker()
    async with running(worker):
        started = datetime.now(UTC)
        for _, status in a_runs:
            assert await worker.enqueue_report(status)
        assert await worker.enqueue_report(b_status)
        took = await wait_for(lambda: status_is(db, b_run.run_id, "delivered"), 10)
        await wait_for(lambda: len(failing.arrivals) == 4, 10)
        await asyncio.sleep(0.3)  # a retry slept or re-sent at once would show here
    assert took < 5, f"B waited {took:.1f} s"
    assert working.reports() == Counter({b_status.organization_id: 1})
    assert failing.reports() == Counter({org_a: 4})  # one attempt each, none repeated yet
    assert worker.slots.in_use == 0  # nothing holds a slot while waiting for its retry
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT run_id, attempt, due_at, claimed_until FROM delivery_queue"
            " WHERE organization_id = $1 ORDER BY run_id",
            org_a,
        )
        log = await conn.fetch(
            "SELECT outcome, detail FROM delivery_log WHERE organization_id = $1", org_a
        )
    assert [r["run_id"] for r in rows] == sorted(run.run_id for run, _ in a_runs)
    for r in rows:
        assert r["attempt"] == 2 and r["claimed_until"] is None
        wait = (r["due_at"] - started).total_seconds()
        assert 3600 <= wait < 3600 + 10  # base_backoff_s after the first attempt
    for run, _ in a_runs:
        assert await run_status(db, run.run_id) == "retrying"
    assert len(log) == 4
    assert all(r["outcome"] == "retrying" and "attempt 2 due at" in r["detail"] for r in log)


async def test_retry_is_attempted_when_due_and_not_before(
    db: asyncpg.Pool, make_run: Any, receivers: ReceiverFactory, delivery_worker: WorkerMaker
) -> None:
    recv, url = await receivers(status=503)
    run, (status,) = await make_run(hook(url, "due", ATTACK_RETRY))
    now = [datetime(2031, 1, 6, 10, 0, 5, tzinfo=UTC)]
    worker = delivery_worker(clock=lambda: now[0])
    assert await worker.enqueue_report(status)
    assert await worker.tick() == 1
    await worker.drain()
    assert len(recv.arrivals) == 1 and await run_status(db, run.run_id) == "retrying"
    now[0] += timedelta(seconds=3599)
    assert await worker.tick() == 0  # not due yet
    now[0] += timedelta(seconds=1)
    recv.status = 200
    assert await worker.tick() == 1
    await worker.drain()
    assert len(recv.arrivals) == 2 and await run_status(db, run.run_id) == "delivered"
    async with db.acquire() as conn:
        log = await conn.fetch(
            "SELECT attempt, outcome FROM delivery_log WHERE run_id = $1 ORDER BY id", run.run_id
        )
        left = await conn.fetchval(
            "SELECT count(*) FROM delivery_queue WHERE run_id = $1", run.run_id
        )
    assert [(r["attempt"], r["outcome"]) for r in log] == [(1, "retrying"), (2, "delivered")]
    assert left == 0


async def test_no_tenant_holds_more_than_its_share_of_slots(
    db: asyncpg.Pool,
    make_run: Any,
    new_org: Any,
    receivers: ReceiverFactory,
    delivery_worker: WorkerMaker,
) -> None:
    """Attack s4-2: A has six deliveries to receivers that answer after 4 s; even alone it
    holds at most max(1, 4 // 2) = 2 of the 4 slots, so B's webhook and api deliveries,
    queued while A's are in flight, go out at once (not after A's receivers answer)."""
    slow, slow_url = await receivers(status=200, delay_s=4.0)
    fast, fast_url = await receivers(status=200)
    org_a = await new_org()
    a_statuses = []
    for n in range(6):
        _, statuses = await make_run(hook(slow_url, f"s{n}", RetryPolicy()), org=org_a)
        a_statuses.append(statuses[0])
    org_b = await new_org()
    b_run, (b_status,) = await make_run(hook(fast_url, "b", RetryPolicy()), org=org_b)
    api_run, (api_status,) = await make_run(
        per_org("bapi", date_range="previous_week", delivery=ApiTarget()), org=org_b
    )
    worker = delivery_worker(slots=4)
    for status in a_statuses:
        await worker.enqueue_report(status)
    assert await worker.tick() == 2  # alone, A still takes only half the slots
    assert worker.slots.held(org_a) == 2
    async with running(worker):
        await wait_for(lambda: slow.in_flight == 2, 5)
        await worker.enqueue_report(b_status)
        await worker.enqueue_report(api_status)
        took = await wait_for(
            lambda: all_delivered(db, b_run.run_id, api_run.run_id), 3.0
        )  # A's receivers answer after 4 s: B did not wait for them
        assert slow.max_in_flight == 2  # A never held more than its cap
        assert worker.slots.held(org_a) == 2
        assert fast.reports() == Counter({org_b: 1})
    assert took < 3.0


async def test_api_delivery_needs_no_network_slot(
    db: asyncpg.Pool,
    make_run: Any,
    new_org: Any,
    receivers: ReceiverFactory,
    delivery_worker: WorkerMaker,
) -> None:
    """With 2 slots both held by slow webhooks (one of A, one of B), B's api delivery (no
    network) still goes out at once: it takes no slot."""
    slow, slow_url = await receivers(status=200, delay_s=4.0)
    org_a, org_b = await new_org(), await new_org()
    _, (a_status,) = await make_run(hook(slow_url, "a", RetryPolicy()), org=org_a)
    _, (b_status,) = await make_run(hook(slow_url, "b", RetryPolicy()), org=org_b)
    api_run, (api_status,) = await make_run(
        per_org("bapi", date_range="previous_week", delivery=ApiTarget()), org=org_b
    )
    worker = delivery_worker(slots=2)
    await worker.enqueue_report(a_status)
    await worker.enqueue_report(b_status)
    assert await worker.tick() == 2
    assert worker.slots.in_use == 2
    async with running(worker):
        await wait_for(lambda: slow.in_flight == 2, 5)
        await worker.enqueue_report(api_status)
        took = await wait_for(lambda: status_is(db, api_run.run_id, "delivered"), 3.0)
        assert worker.slots.in_use == 2  # the webhooks still hold both slots
        assert slow.in_flight == 2
    assert took < 3.0


async def all_delivered(db: asyncpg.Pool, *run_ids: int) -> bool:
    return all([await status_is(db, run_id, "delivered") for run_id in run_ids])


async def test_two_workers_never_send_one_delivery_twice(
    db: asyncpg.Pool,
    other_pool: asyncpg.Pool,
    make_run: Any,
    new_org: Any,
    receivers: ReceiverFactory,
    delivery_worker: WorkerMaker,
) -> None:
    recv, url = await receivers(status=200, delay_s=0.05)
    org = await new_org()
    statuses = []
    for n in range(12):
        _, st = await make_run(hook(url, f"x{n}", RetryPolicy()), org=org)
        statuses.append(st[0])
    one = delivery_worker(worker_id="one")
    two = delivery_worker(other_pool, worker_id="two")
    for status in statuses:  # both consumed the same messages (a rebalance redelivery)
        await one.enqueue_report(status)
        await two.enqueue_report(status)
    async with running(one, two):
        await wait_for(lambda: len(recv.arrivals) >= 12, 20)
        await asyncio.sleep(0.5)
    assert len(recv.arrivals) == 12
    assert await delivered_per_report(db, org) == Counter(s.report_id for s in statuses)
    assert await queue_size(db, org) == 0
