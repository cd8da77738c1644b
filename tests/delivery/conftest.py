"""Fixtures of the delivery tests: an artifact store, a link signer, and a factory for a claimed
run with its stored report (``db`` and ``new_org`` are the root conftest's)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from stream_app.crypto.keyring import KeyRing
from stream_app.delivery.api import LinkSigner
from stream_app.delivery.base import DeliveryMethod, DeliveryResult
from stream_app.delivery.egress import EgressPolicy, parse_allow_networks
from stream_app.delivery.log import DeliveryLogEntry, fetch_run_log
from stream_app.delivery.webhook import WebhookMethod
from stream_app.delivery.worker import DeliveryWorker
from stream_app.reports.artifacts import ArtifactStore
from stream_app.schedules.deliveries import deliver_run as deliver
from stream_app.schedules.model import Schedule
from stream_app.schedules.store import ClaimedRun, claim_due_runs, create_schedule, mark_submitted
from stream_app.schemas.updates import ArtifactLink, ReportStatus

T0 = datetime(2031, 1, 6, 9, 0, 30, tzinfo=UTC)
"""Schedules are created at T0 with cron ``0 * * * *`` and claimed at 10:00:01 UTC."""
LINK_SECRET = "test-link-secret-0123456789abcdefghijklmnop"
LOOPBACK = EgressPolicy(allow_networks=parse_allow_networks("127.0.0.0/8, ::1/128"))
"""The tests' receivers listen on loopback, which deliveries refuse unless allowed."""
CSV_BYTES = b"venue_id,bookings,revenue_minor,currency\r\nv1,3,450000,GBP\r\nv2,1,99999,GBP\r\n"
JSON_BYTES = b'{"rows":[{"venue_id":"v1","bookings":3},{"venue_id":"v2","bookings":1}]}'
DELIVERED_AT_THE_THIRD_ATTEMPT = [
    (1, "retrying", True),
    (2, "retrying", True),
    (3, "delivered", False),
]
"""``(attempt, outcome, retriable)`` of each logged attempt when two retriable refusals come
before the delivery."""


@asynccontextmanager
async def running(*workers: DeliveryWorker) -> AsyncIterator[None]:
    """Run each worker's loop (:meth:`DeliveryWorker.run`) until the block ends; then stop
    them and wait for their loops to return."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


@pytest.fixture
async def other_pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A second pool (1-4 connections) on the delivery tests' database: a second worker's."""
    async with asyncpg.create_pool(pg_dsn, min_size=1, max_size=4) as pool:
        yield pool


async def delivered_per_report(db: asyncpg.Pool, org: str) -> Counter[str]:
    """How many ``delivered`` attempts the delivery log holds per report of ``org``."""
    rows = await db.fetch(
        "SELECT report_id FROM delivery_log WHERE organization_id = $1 AND outcome = 'delivered'",
        org,
    )
    return Counter(r["report_id"] for r in rows)


async def queue_size(db: asyncpg.Pool, org: str) -> int:
    """How many deliveries of ``org`` wait in ``delivery_queue``."""
    count = await db.fetchval("SELECT count(*) FROM delivery_queue WHERE organization_id = $1", org)
    assert isinstance(count, int)
    return count


@pytest.fixture
def artifact_root(tmp_path: Path) -> Path:
    """An empty artifact store folder."""
    root = tmp_path / "artifacts"
    root.mkdir()
    return root


@pytest.fixture
def signer() -> LinkSigner:
    """The link signer of the tests (base URL https://reports.example.test)."""
    return LinkSigner(secret=LINK_SECRET, base_url="https://reports.example.test")


MakeRun = Callable[..., Awaitable[tuple[ClaimedRun, list[ReportStatus]]]]


@pytest.fixture
def make_run(
    db: asyncpg.Pool, new_org: Callable[..., Awaitable[str]], artifact_root: Path
) -> MakeRun:
    """Create a schedule (``build(org_id)``), claim and submit its 10:00 run, store each planned
    report's files (csv, json; ``rows`` data rows each) and return the run and one
    ``completed`` status per planned report."""

    async def make(
        build: Callable[[str], Schedule], *, rows: int = 2, org: str | None = None
    ) -> tuple[ClaimedRun, list[ReportStatus]]:
        org = org or await new_org()
        schedule = build(org)
        async with db.acquire() as conn:
            await create_schedule(conn, schedule, T0)
            (run,) = await claim_due_runs(conn, T0 + timedelta(minutes=59, seconds=31))
            await mark_submitted(conn, run.run_id)  # as the scheduler tick does
        store = ArtifactStore(artifact_root)
        key = await KeyRing(db).current(org)  # master key: WEDDING_DEV_MODE (tests/conftest.py)
        statuses = []
        for planned in run.reports:
            links: list[ArtifactLink] = []
            for fmt, data in (("csv", CSV_BYTES), ("json", JSON_BYTES)):
                if fmt not in schedule.output_formats:
                    continue
                name = f"{schedule.report_type}.{fmt}"
                with store.write(org, planned.report_id, name, fmt, key=key) as (writer, out):
                    writer.write(data)
                    writer.rows = rows
                links.extend(out)
            statuses.append(
                ReportStatus(
                    kind="report_status",
                    report_id=planned.report_id,
                    organization_id=org,
                    report_type=schedule.report_type,
                    status="completed",
                    at=T0 + timedelta(hours=1, seconds=5),
                    artifacts=links,
                )
            )
        return run, statuses

    return make


@pytest.fixture
def report_bytes() -> dict[str, bytes]:
    """The bytes ``make_run`` stores per format."""
    return {"csv": CSV_BYTES, "json": JSON_BYTES}


@pytest.fixture
def loopback() -> EgressPolicy:
    """The egress policy of the tests: loopback allowed (the receivers listen there)."""
    return LOOPBACK


@pytest.fixture
def webhook(signer: LinkSigner, loopback: EgressPolicy) -> WebhookMethod:
    """The webhook method of the tests (loopback receivers allowed)."""
    return WebhookMethod(signer, loopback)


class Deliverer:
    """Delivery attempts of the tests' runs, against :func:`db` and :func:`artifact_root`, and
    what they left in PostgreSQL, read back with plain SQL or the delivery log's reader."""

    def __init__(self, db: asyncpg.Pool, artifact_root: Path) -> None:
        self.db = db
        self.artifact_root = artifact_root

    async def __call__(
        self, run: ClaimedRun, status: ReportStatus, method: DeliveryMethod, **kwargs: Any
    ) -> DeliveryResult:
        """One attempt (:func:`stream_app.delivery.dispatch.deliver`; ``kwargs`` passed on)."""
        return await deliver(self.db, run, status, self.artifact_root, method, **kwargs)

    async def with_retries(
        self, run: ClaimedRun, status: ReportStatus, method: DeliveryMethod
    ) -> tuple[DeliveryResult, list[float]]:
        """Make the attempts the delivery queue would make, each as soon as it is due.

        Returns:
            The last attempt's result and the waits (seconds) the queue rows asked for
            between attempts, read from ``delivery_queue`` (not from the code under test's
            answer).
        """
        waits: list[float] = []
        attempt = 1
        while True:
            now = datetime.now(UTC)
            result = await self(run, status, method, attempt=attempt, now=now)
            if result.outcome != "retrying":
                return result, waits
            async with self.db.acquire() as conn:
                row = await conn.fetchrow(
                    "SELECT attempt, due_at FROM delivery_queue"
                    " WHERE run_id = $1 AND report_id = $2",
                    run.run_id,
                    status.report_id,
                )
            assert row is not None and row["attempt"] == attempt + 1
            assert (await self.run_row(run.run_id))[0] == "retrying"
            waits.append(round((row["due_at"] - now).total_seconds(), 6))
            attempt += 1

    async def log(self, run_id: int) -> list[DeliveryLogEntry]:
        """Every logged attempt of the run, in order."""
        async with self.db.acquire() as conn:
            return await fetch_run_log(conn, run_id)

    async def run_row(self, run_id: int) -> tuple[str, str | None]:
        """The run's ``status`` and ``error`` in ``schedule_runs``."""
        async with self.db.acquire() as conn:
            [row] = await conn.fetch(  # exactly one run of this id
                "SELECT status, error FROM schedule_runs WHERE id = $1", run_id
            )
        return row["status"], row["error"]


@pytest.fixture
def delivering(db: asyncpg.Pool, artifact_root: Path) -> Deliverer:
    """:class:`Deliverer` on the test's database and artifact store."""
    return Deliverer(db, artifact_root)
