"""A report request's own delivery (:mod:`stream_app.delivery.adhoc`) through the delivery
worker, against a real aiohttp webhook that checks the HMAC signature itself: sealed secrets
opened only to send, the order read from the recorded request (not from the message), and
two workers each consuming the status twice sending each report once."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import orjson
import pytest_asyncio
from aiohttp import web

from stream_app.crypto.keyring import KeyRing
from stream_app.db import reports as report_db
from stream_app.db.tenancy import tenant_transaction
from stream_app.delivery.adhoc import (
    AdhocDeliveries,
    RequestDelivery,
    delivery_summary,
    seal_request_delivery,
)
from stream_app.delivery.api import LinkSigner
from stream_app.delivery.dispatch import DeliveryConfig
from stream_app.delivery.egress import EgressPolicy
from stream_app.delivery.email import SmtpConfig
from stream_app.delivery.targets import RetryPolicy, WebhookTarget
from stream_app.delivery.worker import DeliveryWorker
from stream_app.reports.artifacts import ArtifactStore
from stream_app.schemas.updates import ArtifactLink, ReportStatus
from tests.delivery.conftest import queue_size, running
from tests.serving import serving

SECRET = "adhoc-secret-0123456789abcdef"
CSV = b"venue_id,bookings\r\nv1,3\r\n"


class Hook:
    """A webhook endpoint that keeps each body whose signature checks out (else 401)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict[str, Any]] = []
        self.delivery_keys: list[str] = []
        self.bad = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        stamp = request.headers["X-Wedding-Timestamp"]
        mac = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256)
        if request.headers["X-Wedding-Signature"] != f"sha256={mac.hexdigest()}":
            self.bad += 1
            return web.Response(status=401)
        self.bodies.append(orjson.loads(body))
        self.delivery_keys.append(request.headers["X-Wedding-Delivery"])
        return web.Response(status=self.status)


@pytest_asyncio.fixture
async def hook() -> AsyncIterator[tuple[Hook, str]]:
    rec = Hook()
    async with serving({"/hook": rec.handle}) as port:
        yield rec, f"http://127.0.0.1:{port}/hook"


MakeReport = Callable[..., Awaitable[ReportStatus]]


@pytest_asyncio.fixture
async def make_report(db: asyncpg.Pool, artifact_root: Path) -> MakeReport:
    """Record a completed report of ``org`` whose request carries ``delivery`` (sealed as the
    HTTP API seals it), store its CSV file and return its ``completed`` status. The report id
    is ``report_id`` when given, else a fresh one."""

    async def make(
        org: str, delivery: RequestDelivery | None, report_id: str | None = None
    ) -> ReportStatus:
        report_id = report_id or f"adhoc-{uuid.uuid4().hex[:10]}"
        key = await KeyRing(db).current(org)
        request: dict[str, Any] = {
            "schema_version": 1,
            "report_id": report_id,
            "organization_id": org,
            "user_id": "admin-1",
            "report_type": "monthly_booking_summary",
            "date_from": "2026-01-01",
            "date_to": "2026-01-31",
            "output_formats": ["csv"],
            "requested_at": datetime.now(UTC).isoformat(),
        }
        if delivery is not None:
            request["delivery"] = seal_request_delivery(delivery, key, report_id)
        async with db.acquire() as conn:
            await report_db.insert_queued(
                conn,
                report_id=report_id,
                organization_id=org,
                user_id="admin-1",
                report_type="monthly_booking_summary",
                request=request,
            )
        with ArtifactStore(artifact_root).write(
            org, report_id, "monthly_booking_summary.csv", "csv", key=key
        ) as (writer, out):
            writer.write(CSV)
            writer.rows = 1
        links: list[ArtifactLink] = list(out)
        return ReportStatus(
            kind="report_status",
            report_id=report_id,
            organization_id=org,
            report_type="monthly_booking_summary",
            status="completed",
            at=datetime.now(UTC),
            artifacts=links,
        )

    return make


def config(signer: LinkSigner, egress: EgressPolicy) -> DeliveryConfig:
    return DeliveryConfig(
        smtp=SmtpConfig(host="127.0.0.1", port=25, sender="reports@wedding.test"),
        signer=signer,
        egress=egress,
        poll_s=0.05,
        lease_s=60,
    )


AdhocWorker = Callable[[asyncpg.Pool, str], DeliveryWorker]
"""``(pool, worker id) -> a delivery worker of report deliveries`` (the test's receiver
reachable on loopback, links signed with the test's signer)."""


@pytest_asyncio.fixture
async def adhoc_worker(
    signer: LinkSigner, loopback: EgressPolicy, artifact_root: Path
) -> AdhocWorker:
    def make(pool: asyncpg.Pool, worker_id: str) -> DeliveryWorker:
        return DeliveryWorker(
            pool,
            config(signer, loopback),
            artifact_root,
            sources=(AdhocDeliveries(),),
            worker_id=worker_id,
        )

    return make


async def wait_for(check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_two_workers_send_each_report_once_with_its_sealed_secret(
    db: asyncpg.Pool,
    other_pool: asyncpg.Pool,
    new_org: Any,
    make_report: MakeReport,
    hook: tuple[Hook, str],
    adhoc_worker: AdhocWorker,
) -> None:
    rec, url = hook
    org = await new_org()
    target = WebhookTarget(url=url, secret=SECRET)
    statuses = [await make_report(org, RequestDelivery(target, RetryPolicy())) for _ in range(5)]
    plain = await make_report(org, None)  # no delivery asked: nothing is sent
    workers = [adhoc_worker(db, "one"), adhoc_worker(other_pool, "two")]
    queued = [await w.enqueue_report(s) for s in [*statuses, plain] for w in workers]
    assert queued.count(True) == 5  # once per report, the plain one never
    async with running(*workers):
        await wait_for(lambda: len(rec.bodies) >= 5, 20)
        for w in workers:  # the same results consumed again after the delivery
            for s in statuses:
                await w.enqueue_report(s)
        await asyncio.sleep(0.6)
    assert rec.bad == 0
    assert sorted(b["report_id"] for b in rec.bodies) == sorted(s.report_id for s in statuses)
    assert {(b["kind"], b["schedule_id"], b["run_id"]) for b in rec.bodies} == {
        ("report", None, None)
    }
    assert all(b["artifacts"][0]["sha256"] == hashlib.sha256(CSV).hexdigest() for b in rec.bodies)
    async with db.acquire() as conn:
        summary = await delivery_summary(conn, org, statuses[0].report_id)
        none = await delivery_summary(conn, org, plain.report_id)
        async with tenant_transaction(conn, org):
            rows = await conn.fetch(
                "SELECT report_id, run_id, schedule_id FROM delivery_log"
                " WHERE organization_id = $1 AND outcome = 'delivered'",
                org,
            )
    assert sorted(r["report_id"] for r in rows) == sorted(s.report_id for s in statuses)
    assert {(r["run_id"], r["schedule_id"]) for r in rows} == {(None, None)}
    assert await queue_size(db, org) == 0
    assert none is None
    summary = summary or {}  # absent: every comparison below fails
    assert (summary.get("method"), summary.get("outcome"), summary.get("error", "absent")) == (
        "webhook",
        "delivered",
        None,
    )
    assert [a["attempt"] for a in summary["attempts"]] == [1]


async def test_two_tenants_same_report_id_get_distinct_idempotency_keys(
    db: asyncpg.Pool,
    new_org: Any,
    make_report: MakeReport,
    hook: tuple[Hook, str],
    adhoc_worker: AdhocWorker,
) -> None:
    """Tenants choose their report ids: A's ``x`` and B's ``x`` sent to one receiver carry
    different ``X-Wedding-Delivery`` keys, so a receiver de-duplicating on it keeps both."""
    rec, url = hook
    org_a, org_b = await new_org(), await new_org()
    shared_id = f"x-{uuid.uuid4().hex[:8]}"
    target = WebhookTarget(url=url, secret=SECRET)
    statuses = [
        await make_report(org, RequestDelivery(target, RetryPolicy()), shared_id)
        for org in (org_a, org_b)
    ]
    worker = adhoc_worker(db, "k")
    assert [await worker.enqueue_report(s) for s in statuses] == [True, True]
    async with running(worker):
        await wait_for(lambda: len(rec.bodies) >= 2, 20)
    assert rec.bad == 0
    assert sorted(rec.delivery_keys) == sorted([f"{org_a}/{shared_id}", f"{org_b}/{shared_id}"])
    assert sorted(b["organization_id"] for b in rec.bodies) == sorted([org_a, org_b])


async def test_a_failed_report_or_one_of_another_tenant_orders_nothing(
    db: asyncpg.Pool, new_org: Any, make_report: MakeReport
) -> None:
    org, other = await new_org(), await new_org()
    status = await make_report(
        org, RequestDelivery(WebhookTarget(url="https://x.test/h", secret=SECRET), RetryPolicy())
    )
    source = AdhocDeliveries()
    async with db.acquire() as conn:
        async with tenant_transaction(conn, org):
            order = await source.order_for(conn, status)
            failed = await source.order_for(conn, msgspec.structs.replace(status, status="failed"))
        async with tenant_transaction(conn, other):  # the same id under another tenant
            foreign = await source.order_for(
                conn, msgspec.structs.replace(status, organization_id=other)
            )
    assert order is not None and order.report_id == status.report_id
    assert isinstance(order.target, WebhookTarget) and order.target.secret != SECRET  # sealed
    assert (order.date_from.isoformat(), order.date_to.isoformat()) == ("2026-01-01", "2026-01-31")
    assert failed is None and foreign is None


async def test_an_invalid_kafka_delivery_is_skipped_naming_the_request_s_full_path(
    db: asyncpg.Pool, new_org: Any
) -> None:
    """A request produced to Kafka directly is not checked by the HTTP API: its bad delivery
    is ``skipped``, the reason naming the field's path in the request (``$.delivery.…``),
    not the path inside the retry object msgspec converted (``$.max_attempts``)."""
    org = await new_org()
    hook = {"method": "webhook", "url": "https://x.test/h", "secret": SECRET}
    cases = {
        "type": ({**hook, "retry": {"max_attempts": "5"}}, "$.delivery.retry.max_attempts: "),
        "range": ({**hook, "retry": {"max_attempts": 50}}, "$.delivery.retry.max_attempts: "),
        "floor": ({**hook, "retry": {"base_backoff_s": 0.2}}, "$.delivery.retry.base_backoff_s: "),
        "target": ({**hook, "timeout_s": "5"}, "$.delivery.timeout_s: "),
        "secret": ({**hook, "secret": "short"}, "$.delivery.secret: "),
        "missing": ({"method": "webhook", "secret": SECRET}, "$.delivery: "),
    }
    reasons: dict[str, str] = {}
    async with db.acquire() as conn:
        for name, (delivery, _) in cases.items():
            report_id = f"kafka-{name}-{uuid.uuid4().hex[:6]}"
            await report_db.insert_queued(
                conn,
                report_id=report_id,
                organization_id=org,
                user_id="admin-1",
                report_type="monthly_booking_summary",
                request={"report_id": report_id, "delivery": delivery},
            )
            async with tenant_transaction(conn, org):
                await conn.execute(
                    "UPDATE reports SET status = 'completed' WHERE organization_id = $1"
                    " AND id = $2",
                    org,
                    report_id,
                )
            summary = await delivery_summary(conn, org, report_id)
            assert summary is not None and summary["outcome"] == "skipped", (name, summary)
            reasons[name] = summary["reason"]
    expected = {
        "type": "Expected `int`, got `str`",
        "range": "must be between 1 and 10",
        "floor": "must be at least 1 second (got 0.2): a failing receiver is not retried faster",
        "target": "Expected `float`, got `str`",
        "secret": "must be at least 16 characters",
        "missing": "Object missing required field `url`",
    }
    assert reasons == {
        name: f"the delivery is invalid: {prefix}{expected[name]}"
        for name, (_, prefix) in cases.items()
    }
