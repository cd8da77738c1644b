"""Soak under faults: steady load on two workers while the broker, the database and the workers
are knocked over on a timetable; prints what was lost, doubled, failed and how long recovery took.

For ``--seconds`` (600 by default; ``--ci``: 120) it runs, against two workers of one consumer
group started on fresh local services (``stream_app.devservices``):

- **events**: a steady rate (``--rate``, events/s) spread over the four input topics
  (bookings, payments, client interactions, supplier activities), each event with its own id,
  sent until the broker acknowledges it (a send that fails is sent again: the topic may then
  hold it twice, which the tables must not count);
- **reports**: one request every ``--report-every`` seconds over HTTP, cycling through report
  types and the five formats, each polled until final;
- **a schedule** firing every minute, delivering its report to a real signed-webhook receiver
  run by this program;
- **HTTP readers** (``--readers`` loops) reading venue metrics; a reader whose worker does not
  answer (refused, 5xx, timeout) asks the other one, as a load balancer would.

Faults, on a timetable proportional to the duration (at 10 %, 25 %, 40 %, 55 % and 70 %):
SIGKILL worker ``b`` and restart it on its folder; restart the Kafka broker (data kept);
restart PostgreSQL (``pg_ctl restart -m fast``); SIGSTOP worker ``a`` for its session timeout
plus 4 s, then SIGCONT; fill the artifact store (a sparse file taking it to
``WEDDING_ARTIFACT_STORE_MAX_BYTES``) for 10 % of the run, then empty it.

At each fault a probe booking is produced and a probe report requested; **recovery** is the
time from the fault (from its end for the pause and the full store) until the probe booking is
read back over HTTP, and until the probe report is completed.

At the end (events stopped, the group's lag on every input topic zero) it prints and checks:

- events produced against events counted, per table, read over HTTP: the expected figures are
  this program's own counts of what it sent (0 lost, 0 counted twice);
- the report success rate: completed / (requested − refused by design), where refused by
  design is a 4xx at submission or "artifact store full" while the store was full; ≥ 99.5 %;
- deliveries per scheduled fire: every minute the schedule was due has one run, each of whose
  reports reached the receiver exactly once;
- HTTP availability and p99 latency per phase (a read is available when either worker
  answered 200);
- the recovery time of each fault.

Exit status 0 when every check holds, 1 otherwise. Usage::

    python -m loadtests.soak [--seconds 600] [--ci] [--rate 40] [--readers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from loadtests.common import settings_of
from stream_app.db.migrate import migrate
from stream_app.db.tenancy import Organization, Venue, upsert_organization, upsert_venue
from stream_app.delivery.webhook import verify_signature
from stream_app.devservices import kafka, manager, postgres
from stream_app.devservices.common import free_ports
from stream_app.devservices.manager import ServiceSettings
from stream_app.devservices.workers import WorkerProcess, start_worker
from stream_app.lag import wait_for_lag_zero
from stream_app.settings import Settings
from stream_app.topics import (
    CLIENT_INTERACTIONS,
    DEAD_LETTER,
    INPUT_TOPICS,
    LATE_EVENTS,
    PAYMENT_EVENTS,
    SUPPLIER_ACTIVITIES,
    WEDDING_BOOKINGS,
    ensure_topics,
)
from stream_app.web.auth import issue_token

ORG = "soak-org"
GROUP = "wedding-soak"
VENUES = [f"hall-{i}" for i in range(6)]
PROBE_VENUE = "probe-hall"
BOOKINGS = [f"bk-{i}" for i in range(6)]
CLIENTS = [f"client-{i}" for i in range(6)]
SUPPLIERS = [f"sup-{i}" for i in range(6)]
SCHEDULE_ID = "soak-every-minute"
HOOK_SECRET = "soak-webhook-secret-0123456789"
SESSION_TIMEOUT_S = 6
STORE_MAX_BYTES = 1 << 30
REPORT_TYPES = ("monthly_booking_summary", "venue_occupancy", "compliance")
FORMATS = ("csv", "json", "excel", "pdf", "powerpoint")
STORE_FULL = "artifact store full"
REPORT_TIMEOUT_S = 240.0
SUCCESS_TARGET = 0.995
BUCKET_S = 2.0


# ---------------------------------------------------------------------------------------------
# the record of what happened


@dataclass
class Phase:
    """A stretch of the run between two timetable entries (``end`` None while it lasts)."""

    name: str
    start: float
    end: float | None = None


@dataclass
class Record:
    """Everything the soak measured (monotonic times)."""

    phases: list[Phase] = field(default_factory=list)
    reads: list[tuple[float, float, bool]] = field(default_factory=list)
    """(time, seconds, available) per HTTP read."""
    expected: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    """table → entity → events sent (counted once each)."""
    resent: int = 0
    booking_days: Counter[str] = field(default_factory=Counter)
    """service date → bookings sent for it (one date per 2 s of the run, probes excluded)."""
    reports: dict[str, str] = field(default_factory=dict)
    """report id → outcome: completed, refused, store_full, failed: <cause>, lost."""
    store_full_window: tuple[float, float] | None = None
    recoveries: list[tuple[str, float | None, float | None]] = field(default_factory=list)
    """(fault, seconds to the probe booking read back, seconds to the probe report done)."""
    post_errors: int = 0

    def phase_at(self, t: float) -> str:
        """The name of the phase running at ``t``."""
        for p in reversed(self.phases):
            if p.start <= t:
                return p.name
        return self.phases[0].name if self.phases else "-"

    def begin(self, name: str) -> None:
        """Start phase ``name`` now (ending the previous one)."""
        now = time.monotonic()
        if self.phases:
            self.phases[-1].end = now
        self.phases.append(Phase(name, now))


# ---------------------------------------------------------------------------------------------
# services and workers


@dataclass
class Cluster:
    """The services, the two workers and how to restart each."""

    state: Path
    services: ServiceSettings
    settings: Settings
    workers: dict[str, WorkerProcess]

    def spawn(self, name: str, port: int | None = None) -> WorkerProcess:
        """Start worker ``name`` of the soak's group on its own folder (and ``port``)."""
        worker = start_worker(
            kafka_bootstrap=self.services.kafka_bootstrap,
            postgres_dsn=self.services.postgres_dsn,
            data_dir=self.state / "workers" / name,
            log_path=self.state / "logs" / f"{name}.log",
            artifact_dir=self.settings.artifact_dir,
            app_id=GROUP,
            web_port=port,
            redis_url=self.services.redis_url,
            dev_mode=True,
            unlimited_rates=True,
            extra_env={
                "WEDDING_GROUP_INSTANCE_ID": f"{GROUP}-{name}",
                "WEDDING_SESSION_TIMEOUT_S": str(SESSION_TIMEOUT_S),
                "WEDDING_SCHEDULER_INTERVAL_S": "2",
                "WEDDING_ALLOW_PRIVATE_TARGETS": "1",
                "WEDDING_DELIVERY_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8",
                "WEDDING_ARTIFACT_STORE_MAX_BYTES": str(STORE_MAX_BYTES),
            },
        )
        self.workers[name] = worker
        return worker

    @property
    def urls(self) -> list[str]:
        """The workers' base URLs."""
        return [w.url for w in self.workers.values()]

    def stop(self) -> None:
        """Stop both workers (SIGCONT first: a paused process cannot take SIGTERM)."""
        for w in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.process.pid, signal.SIGCONT)
            w.stop(timeout_s=40)


async def start_cluster(state: Path) -> Cluster:
    """Fresh services, topics, migrations, the soak's organisation and two ready workers."""
    services = await asyncio.to_thread(manager.up, state)
    settings = settings_of(services, state, redis=True)
    await ensure_topics(settings.kafka_bootstrap, settings.topic_partitions)
    await migrate(settings.postgres_dsn)
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(ORG, "Soak Weddings", "UTC", "EUR"))
        for v in [*VENUES, PROBE_VENUE]:
            await upsert_venue(conn, ORG, Venue(v, v.title(), capacity=3))
    finally:
        await conn.close()
    cluster = Cluster(state, services, settings, {})
    for name in ("a", "b"):
        cluster.spawn(name)
    for w in cluster.workers.values():
        await w.wait_ready(timeout_s=180)
    return cluster


def headers(settings: Settings) -> dict[str, str]:
    """A bearer token of the soak's organisation (one hour)."""
    token = issue_token(settings.jwt_secret, user_id="soak", organization_id=ORG, ttl_seconds=3600)
    return {"Authorization": f"Bearer {token}"}


async def call(
    session: aiohttp.ClientSession,
    urls: list[str],
    method: str,
    path: str,
    *,
    timeout_s: float = 5.0,
    **kwargs: Any,
) -> tuple[int, Any]:
    """One HTTP call answered by the first worker of ``urls`` (in a random order) that gives
    neither a refused connection, a timeout nor a 5xx; ``(0, None)`` when none does."""
    for base in random.sample(urls, len(urls)):
        try:
            async with session.request(
                method, base + path, timeout=aiohttp.ClientTimeout(total=timeout_s), **kwargs
            ) as r:
                if r.status >= 500:
                    continue
                body = await r.json(content_type=None)
                return r.status, body
        except (aiohttp.ClientError, TimeoutError, ValueError):
            continue
    return 0, None


# ---------------------------------------------------------------------------------------------
# load


class EventSource:
    """Makes the events of the four topics and sends each until it is acknowledged."""

    def __init__(self, bootstrap: str, record: Record) -> None:
        self.bootstrap = bootstrap
        self.record = record
        self.n = 0
        self.t0 = time.monotonic()
        self.pending: set[asyncio.Task[None]] = set()
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Start the producer."""
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",  # not idempotent: aiokafka's idempotent producer wedges on
            linger_ms=5,  # OutOfOrderSequence after a broker restart; repeats are ours to count
            request_timeout_ms=10_000,
        )
        await self.producer.start()

    async def stop(self) -> None:
        """Wait for every send, then stop the producer."""
        while self.pending:
            await asyncio.gather(*list(self.pending))
        if self.producer is not None:
            await self.producer.stop()

    def bucket(self) -> int:
        """The day of 2027 a booking made now is for: one day per 2 s since the start (so a
        lost booking tells when it was produced)."""
        return min(364, int((time.monotonic() - self.t0) / BUCKET_S))

    def _event(self, kind: int, now: datetime) -> tuple[str, str, str, dict[str, Any]]:
        """(topic, table, entity, document) of event number ``self.n`` of kind ``kind``."""
        i = self.n
        base = {
            "schema_version": 1,
            "event_id": f"soak-{i}",
            "organization_id": ORG,
            "occurred_at": now.isoformat().replace("+00:00", "Z"),
        }
        if kind == 0:
            venue = VENUES[i % len(VENUES)]
            doc = {
                **base,
                "event_type": "booking_created",
                "booking_id": f"sb-{i}",
                "venue_id": venue,
                "service_date": (date(2027, 1, 1) + timedelta(days=self.bucket())).isoformat(),
                "amount_minor": 10_000 + i % 997,
                "currency": "EUR",
            }
            return WEDDING_BOOKINGS, "bookings", venue, doc
        if kind == 1:
            booking = BOOKINGS[i % len(BOOKINGS)]
            doc = {
                **base,
                "event_type": "payment_received",
                "payment_id": f"sp-{i}",
                "booking_id": booking,
                "amount_minor": 1_000 + i % 97,
                "currency": "EUR",
                "supplier_id": None,
            }
            return PAYMENT_EVENTS, "payments", booking, doc
        if kind == 2:
            client = CLIENTS[i % len(CLIENTS)]
            doc = {**base, "event_type": "inquiry", "client_id": client, "score": None}
            return CLIENT_INTERACTIONS, "interactions", client, doc
        supplier = SUPPLIERS[i % len(SUPPLIERS)]
        doc = {
            **base,
            "event_type": "task_assigned",
            "supplier_id": supplier,
            "task_id": f"st-{i}",
            "due_at": None,
            "person_id": "p1",
        }
        return SUPPLIER_ACTIVITIES, "suppliers", supplier, doc

    def emit(self, kind: int | None = None, venue: str | None = None) -> None:
        """Queue one event (of the next kind in turn, or ``kind``; a booking of ``venue``)."""
        now = datetime.now(UTC)
        topic, table, entity, doc = self._event(self.n % 4 if kind is None else kind, now)
        if venue is not None:
            doc["venue_id"] = entity = venue
        self.n += 1
        self.record.expected[table][entity] += 1
        if table == "bookings" and venue is None:
            self.record.booking_days[str(doc["service_date"])] += 1
        key = f"{ORG}/{entity}".encode()
        task = asyncio.create_task(self._send(topic, key, orjson.dumps(doc)))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _send(self, topic: str, key: bytes, value: bytes) -> None:
        assert self.producer is not None
        first = True
        while True:
            if not first:
                self.record.resent += 1
            first = False
            try:
                fut = await self.producer.send(topic, value, key=key)
                await asyncio.wait_for(fut, 30)
                return
            except Exception:  # noqa: BLE001 - the broker is away: send it again
                await asyncio.sleep(1.0)

    async def run(self, rate: float, stop: asyncio.Event) -> None:
        """Emit ``rate`` events per second until ``stop`` is set."""
        t0 = time.monotonic()
        sent = 0
        while not stop.is_set():
            due = int((time.monotonic() - t0) * rate)
            while sent < due:
                self.emit()
                sent += 1
            await asyncio.sleep(0.05)


async def read_loop(
    cluster: Cluster, record: Record, stop: asyncio.Event, session: aiohttp.ClientSession
) -> None:
    """Read a venue's months until ``stop``; record each read's latency and availability."""
    h = headers(cluster.settings)
    while not stop.is_set():
        venue = random.choice(VENUES)
        t = time.monotonic()
        status, _ = await call(
            session,
            cluster.urls,
            "GET",
            f"/orgs/{ORG}/venues/{venue}/metrics",
            params={"grain": "month", "from": "2027-01", "to": "2027-12"},
            headers=h,
        )
        record.reads.append((t, time.monotonic() - t, status == 200))
        await asyncio.sleep(0.05)


async def request_report(
    cluster: Cluster, session: aiohttp.ClientSession, body: dict[str, Any]
) -> tuple[str | None, int]:
    """POST a report request (failing over between the workers, retried for 60 s); return
    (report id, 202) or (None, the refusing status; 0 when no worker accepted it)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, answer = await call(
            session,
            cluster.urls,
            "POST",
            f"/orgs/{ORG}/reports",
            json=body,
            headers=headers(cluster.settings),
        )
        if status == 202:
            return str(answer["report_id"]), 202
        if 400 <= status < 500 and status != 429:
            return None, status
        await asyncio.sleep(1.0)
    return None, 0


async def final_status(
    cluster: Cluster, session: aiohttp.ClientSession, report_id: str, timeout_s: float
) -> dict[str, Any] | None:
    """Poll a report until it is final; its status body, or None after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    h = headers(cluster.settings)
    while time.monotonic() < deadline:
        status, body = await call(
            session, cluster.urls, "GET", f"/orgs/{ORG}/reports/{report_id}", headers=h
        )
        if status == 200 and body["status"] in ("completed", "failed", "cancelled"):
            return dict(body)
        await asyncio.sleep(1.0)
    return None


def report_body(n: int) -> dict[str, Any]:
    """The ``n``-th report request: types and formats in turn, the cache skipped."""
    return {
        "report_type": REPORT_TYPES[n % len(REPORT_TYPES)],
        "date_from": "2027-01-01",
        "date_to": "2027-03-31",
        "output_formats": [FORMATS[n % len(FORMATS)]],
        "cache_strategy": "skip",
    }


async def one_report(
    cluster: Cluster, record: Record, session: aiohttp.ClientSession, n: int
) -> tuple[str, float]:
    """Request report ``n``, wait for it, record its outcome; (outcome, seconds taken)."""
    t0 = time.monotonic()
    report_id, status = await request_report(cluster, session, report_body(n))
    if report_id is None:
        outcome = "refused" if status else "not accepted"
        record.reports[f"post-{n}"] = outcome
        return outcome, time.monotonic() - t0
    done = await final_status(cluster, session, report_id, REPORT_TIMEOUT_S)
    if done is None:
        outcome = "lost: not final"
    elif done["status"] == "completed":
        outcome = "completed"
    elif STORE_FULL in str(done.get("error")):
        outcome = "store_full"
    else:
        outcome = f"{done['status']}: {done.get('error')}"
    record.reports[report_id] = outcome
    return outcome, time.monotonic() - t0


async def report_loop(
    cluster: Cluster,
    record: Record,
    stop: asyncio.Event,
    session: aiohttp.ClientSession,
    every_s: float,
    tasks: list[asyncio.Task[tuple[str, float]]],
) -> None:
    """Request one report every ``every_s`` seconds until ``stop`` (tasks kept in ``tasks``)."""
    for n in itertools.count():
        if stop.is_set():
            return
        tasks.append(asyncio.create_task(one_report(cluster, record, session, n)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


# ---------------------------------------------------------------------------------------------
# the schedule and its receiver


class Receiver:
    """A signed-webhook endpoint counting the deliveries of each report id."""

    def __init__(self) -> None:
        self.deliveries: Counter[str] = Counter()
        self.bad_signatures = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        """Verify the signature, count the delivery, answer 204."""
        body = await request.read()
        ok = verify_signature(
            HOOK_SECRET,
            request.headers.get("X-Wedding-Timestamp", ""),
            body,
            request.headers.get("X-Wedding-Signature", ""),
        )
        if not ok:
            self.bad_signatures += 1
            return web.Response(status=401)
        self.deliveries[str(orjson.loads(body)["report_id"])] += 1
        return web.Response(status=204)

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        port = free_ports(1)[0]
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        """Stop listening."""
        if self.runner is not None:
            await self.runner.cleanup()


async def create_schedule(cluster: Cluster, session: aiohttp.ClientSession, url: str) -> None:
    """A schedule firing every minute, delivering a CSV to the receiver at ``url``."""
    body = {
        "schedule_id": SCHEDULE_ID,
        "report_type": "monthly_booking_summary",
        "date_range": "last_n_days:30",
        "output_formats": ["csv"],
        "cron": "* * * * *",
        "time_zone": "UTC",
        "min_interval_seconds": 0,
        "delivery": {"method": "webhook", "url": url, "secret": HOOK_SECRET},
        "retry": {"max_attempts": 5, "base_backoff_s": 2, "max_backoff_s": 10},
    }
    status, answer = await call(
        session,
        cluster.urls,
        "POST",
        f"/orgs/{ORG}/schedules",
        json=body,
        headers=headers(cluster.settings),
    )
    if status != 201:
        raise RuntimeError(f"schedule not created: {status} {answer}")


async def schedule_runs(cluster: Cluster, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
    """The schedule's runs, read over HTTP."""
    status, body = await call(
        session,
        cluster.urls,
        "GET",
        f"/orgs/{ORG}/schedules/{SCHEDULE_ID}/runs",
        headers=headers(cluster.settings),
        params={"limit": "500"},
    )
    if status != 200:
        raise RuntimeError(f"runs not readable: {status} {body}")
    return list(body["runs"])


# ---------------------------------------------------------------------------------------------
# faults


async def probe_recovery(
    cluster: Cluster,
    record: Record,
    source: EventSource,
    session: aiohttp.ClientSession,
    name: str,
    since: float,
) -> None:
    """Send a probe booking and request a probe report now; record the seconds from ``since``
    until the booking is read back and until the report is completed (None: not within 300 s).
    """
    before = source.record.expected["bookings"][PROBE_VENUE]
    source.emit(kind=0, venue=PROBE_VENUE)

    async def booking_seen() -> float | None:
        h = headers(cluster.settings)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            status, body = await call(
                session,
                cluster.urls,
                "GET",
                f"/orgs/{ORG}/venues/{PROBE_VENUE}/metrics",
                params={"grain": "month", "from": "2027-01", "to": "2027-12"},
                headers=h,
            )
            if status == 200 and sum(p["bookings"] for p in body["periods"]) > before:
                return time.monotonic() - since
            await asyncio.sleep(0.25)
        return None

    async def report_done() -> float | None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            report_id, _ = await request_report(cluster, session, report_body(0))
            if report_id is not None:
                done = await final_status(cluster, session, report_id, deadline - time.monotonic())
                if done is not None and done["status"] == "completed":
                    return time.monotonic() - since
            await asyncio.sleep(1.0)
        return None

    seen, done = await asyncio.gather(booking_seen(), report_done())
    record.recoveries.append((name, seen, done))


async def fault_kill(cluster: Cluster) -> None:
    """SIGKILL worker b and restart it on its folder and port."""
    old = cluster.workers["b"]
    old.kill()
    cluster.spawn("b", port=old.web_port)


async def fault_kafka(cluster: Cluster) -> None:
    """Restart the broker, data kept."""
    instance = cluster.services.kafka_instance
    again = await asyncio.to_thread(kafka.restart, instance, cluster.state)
    cluster.services = _with(cluster.services, kafka_pid=again.pid)


async def fault_postgres(cluster: Cluster) -> None:
    """Restart PostgreSQL (every connection dropped)."""
    instance = cluster.services.postgres_instance
    again = await asyncio.to_thread(postgres.restart, instance, cluster.state)
    cluster.services = _with(cluster.services, postgres_pid=again.pid)


def _with(s: ServiceSettings, **changes: int) -> ServiceSettings:
    raw = s.to_json()
    raw.update(changes)
    return ServiceSettings.from_json(raw)


async def fault_pause(cluster: Cluster) -> None:
    """SIGSTOP worker a past its session timeout, then SIGCONT."""
    pid = cluster.workers["a"].process.pid
    os.kill(pid, signal.SIGSTOP)
    await asyncio.sleep(SESSION_TIMEOUT_S + 4)
    os.kill(pid, signal.SIGCONT)


def filler_path(cluster: Cluster) -> Path:
    """The file that fills the artifact store."""
    return cluster.settings.artifact_dir / ".soak-filler"


async def fault_fill(cluster: Cluster, record: Record, hold_s: float) -> None:
    """Fill the artifact store to its limit for ``hold_s`` seconds (a sparse file), then empty
    it again."""
    path = filler_path(cluster)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.truncate(STORE_MAX_BYTES)
    t0 = time.monotonic()
    await asyncio.sleep(hold_s)
    path.unlink()
    record.store_full_window = (t0, time.monotonic() + REPORT_TIMEOUT_S)


# ---------------------------------------------------------------------------------------------
# the run


@dataclass
class Outcome:
    """The figures printed at the end and whether each check held."""

    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        """Print ``what`` as passed or failed."""
        self.lines.append(f"  [{'ok' if ok else 'FAIL'}] {what}")
        if not ok:
            self.failures.append(what)


async def counted(cluster: Cluster, session: aiohttp.ClientSession) -> dict[str, Counter[str]]:
    """Events counted by each table, per entity, read over HTTP."""
    h = headers(cluster.settings)
    today = datetime.now(UTC).date()
    months = {"from": (today - timedelta(days=40)).isoformat()[:7], "to": today.isoformat()[:7]}
    out: dict[str, Counter[str]] = defaultdict(Counter)

    async def get(path: str, params: dict[str, str] | None = None) -> Any:
        for _ in range(120):
            status, body = await call(
                session, cluster.urls, "GET", path, headers=h, params=params or {}, timeout_s=15
            )
            if status == 200:
                return body
            await asyncio.sleep(0.5)
        raise RuntimeError(f"{path}: no answer 200 ({status} {body})")

    for venue in [*VENUES, PROBE_VENUE]:
        body = await get(
            f"/orgs/{ORG}/venues/{venue}/metrics",
            {"grain": "month", "from": "2027-01", "to": "2027-12"},
        )
        out["bookings"][venue] = sum(int(p["bookings"]) for p in body["periods"])
    for booking in BOOKINGS:
        body = await get(f"/orgs/{ORG}/bookings/{booking}/payments", months)
        out["payments"][booking] = int(body["total"]["payments"])
    for client in CLIENTS:
        body = await get(f"/orgs/{ORG}/clients/{client}/interactions")
        out["interactions"][client] = int(body["inquiries"])
    for supplier in SUPPLIERS:
        body = await get(f"/orgs/{ORG}/suppliers/{supplier}/activity", months)
        out["suppliers"][supplier] = sum(int(m["tasks_assigned"]) for m in body["months"])
    return out


async def counted_days(cluster: Cluster, session: aiohttp.ClientSession) -> Counter[str]:
    """Bookings counted per service date of 2027 (all soak venues but the probe's)."""
    h = headers(cluster.settings)
    out: Counter[str] = Counter()
    for venue in VENUES:
        status, body = await call(
            session,
            cluster.urls,
            "GET",
            f"/orgs/{ORG}/venues/{venue}/metrics",
            params={"grain": "day", "from": "2027-01-01", "to": "2027-12-31"},
            headers=h,
            timeout_s=30,
        )
        if status != 200:
            raise RuntimeError(f"day reads of {venue}: {status} {body}")
        for p in body["periods"]:
            out[str(p["period"])] += int(p["bookings"])
    return out


async def distinct_in_topics(
    bootstrap: str, partitions: int, topics: tuple[str, ...] = INPUT_TOPICS, *, ids: bool = True
) -> dict[str, int]:
    """Per topic: distinct ``event_id`` of the soak's organisation held from its start to its
    end (``ids``), else its number of records."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: dict[str, int] = {}
    try:
        for topic in topics:
            parts = range(partitions)
            tps = [TopicPartition(topic, p) for p in parts]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            seen: set[bytes] = set()
            records = 0
            while any([await consumer.position(tp) < ends[tp] for tp in tps]):
                batch = await consumer.getmany(*tps, timeout_ms=1000)
                for recs in batch.values():
                    for rec in recs:
                        records += 1
                        if ids and rec.value:
                            doc = orjson.loads(rec.value)
                            if doc.get("organization_id") == ORG:
                                seen.add(str(doc.get("event_id")).encode())
            out[topic] = len(seen) if ids else records
    finally:
        await consumer.stop()
    return out


def p99(values: list[float]) -> float:
    """The 99th percentile (nearest rank) of ``values``; 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def soak(
    state: Path, seconds: float, rate: float, readers: int, report_every_s: float
) -> Outcome:
    """Run the soak (module docstring) in ``state``; return its figures and checks."""
    record = Record()
    out = Outcome()
    receiver = Receiver()
    await receiver.start()
    cluster = await start_cluster(state)
    source = EventSource(cluster.services.kafka_bootstrap, record)
    await source.start()
    stop = asyncio.Event()
    report_tasks: list[asyncio.Task[tuple[str, float]]] = []
    probes: list[asyncio.Task[None]] = []
    connector = aiohttp.TCPConnector(limit=200, force_close=False)
    session = aiohttp.ClientSession(connector=connector)
    try:
        await create_schedule(cluster, session, receiver.url)
        created = datetime.now(UTC)
        record.begin("steady")
        t0 = time.monotonic()
        loops = [
            asyncio.create_task(source.run(rate, stop)),
            asyncio.create_task(
                report_loop(cluster, record, stop, session, report_every_s, report_tasks)
            ),
            *(
                asyncio.create_task(read_loop(cluster, record, stop, session))
                for _ in range(readers)
            ),
        ]

        async def at(fraction: float) -> None:
            await asyncio.sleep(max(0.0, t0 + fraction * seconds - time.monotonic()))

        async def fault(
            fraction: float, name: str, inject: Callable[[], Awaitable[None]], from_end: bool
        ) -> None:
            await at(fraction)
            record.begin(name)
            started = time.monotonic()
            print(f"[{started - t0:6.1f} s] fault: {name}", flush=True)
            await inject()
            since = time.monotonic() if from_end else started
            probes.append(
                asyncio.create_task(probe_recovery(cluster, record, source, session, name, since))
            )

        await fault(0.10, "SIGKILL worker b + restart", lambda: fault_kill(cluster), False)
        await fault(0.25, "Kafka broker restart", lambda: fault_kafka(cluster), False)
        await fault(0.40, "PostgreSQL restart", lambda: fault_postgres(cluster), False)
        await fault(
            0.55, f"SIGSTOP worker a {SESSION_TIMEOUT_S + 4} s", lambda: fault_pause(cluster), True
        )
        await fault(
            0.70, "artifact store full", lambda: fault_fill(cluster, record, 0.10 * seconds), True
        )
        await at(0.80)
        record.begin("steady (after)")
        await at(1.0)
        record.begin("drain")
        stop.set()
        await asyncio.gather(*loops)
        ended = datetime.now(UTC)
        await source.stop()
        print(
            f"[{time.monotonic() - t0:6.1f} s] load stopped; waiting for the tables and reports",
            flush=True,
        )
        for topic in INPUT_TOPICS:
            await wait_for_lag_zero(cluster.services.kafka_bootstrap, GROUP, topic, 600)
        results = await asyncio.gather(*report_tasks)
        await asyncio.gather(*probes)
        got = await counted(cluster, session)
        parts = cluster.settings.topic_partitions
        try:
            in_topics = await distinct_in_topics(cluster.services.kafka_bootstrap, parts)
            days = await counted_days(cluster, session)
            side = await distinct_in_topics(
                cluster.services.kafka_bootstrap, parts, (DEAD_LETTER, LATE_EVENTS), ids=False
            )
        except Exception as exc:  # noqa: BLE001 - diagnostics only: the checks still run
            print(f"diagnostics unavailable: {exc!r}", flush=True)
            in_topics = defaultdict(lambda: -1)
            days = Counter(record.booking_days)
            side = defaultdict(lambda: -1)
        # the fires due until 20 s before the load stopped; the last gets up to 60 s more
        last_fire = (ended - timedelta(seconds=20)).replace(second=0, microsecond=0)
        deadline = time.monotonic() + 60
        while True:
            runs = await schedule_runs(cluster, session)
            by_fire = {datetime.fromisoformat(r["fire_time"]): r for r in runs}
            last = by_fire.get(last_fire)
            delivered = last is not None and all(
                receiver.deliveries[rid] for rid in last["report_ids"]
            )
            if delivered or time.monotonic() > deadline:
                break
            await asyncio.sleep(2)
        await asyncio.sleep(3)  # a wrongly doubled delivery gets the time to show itself
        runs = await schedule_runs(cluster, session)
        by_fire = {datetime.fromisoformat(r["fire_time"]): r for r in runs}
        # a run whose report failed is not delivered (by design): keep those reports' causes
        failed_causes: dict[str, str] = {}
        for failed_run in runs:
            if failed_run["status"] == "failed":
                for rid in failed_run["report_ids"]:
                    body = await final_status(cluster, session, rid, 10)
                    failed_causes[rid] = str((body or {}).get("error"))
        record.begin("end")
    finally:
        stop.set()
        await session.close()
        await receiver.stop()
        with contextlib.suppress(FileNotFoundError):
            filler_path(cluster).unlink()
        cluster.stop()
        # a broker restarted by the Kafka fault is not the process services.json records
        await asyncio.to_thread(kafka.stop, cluster.services.kafka_pid)
        await asyncio.to_thread(manager.down, state)

    # events
    out.lines.append(
        f"events: {source.n:,} produced at {rate:g}/s over {seconds:g} s "
        f"({record.resent} sends repeated after a broker error)"
    )
    out.lines.append(
        f"  {'table':<13}{'produced':>10}{'in topic':>10}{'counted':>10}{'lost':>7}{'doubled':>9}"
    )
    topic_of = {
        "bookings": WEDDING_BOOKINGS,
        "payments": PAYMENT_EVENTS,
        "interactions": CLIENT_INTERACTIONS,
        "suppliers": SUPPLIER_ACTIVITIES,
    }
    for table in ("bookings", "payments", "interactions", "suppliers"):
        want, have = record.expected[table], got[table]
        lost = sum(max(0, want[k] - have[k]) for k in want)
        doubled = sum(max(0, have[k] - want[k]) for k in set(have) | set(want))
        out.lines.append(
            f"  {table:<13}{sum(want.values()):>10,}{in_topics[topic_of[table]]:>10,}"
            f"{sum(have.values()):>10,}{lost:>7}{doubled:>9}"
        )
        out.check(lost == 0 and doubled == 0, f"{table}: 0 lost, 0 counted twice")

    out.lines.append(
        f"  (in topic: distinct event ids on the topic; dead-letter records {side[DEAD_LETTER]},"
        f" late-event records {side[LATE_EVENTS]})"
    )
    gaps = sorted(d for d in record.booking_days if days[d] != record.booking_days[d])
    if gaps:
        first = date(2027, 1, 1)
        spans = [
            f"t={(date.fromisoformat(d) - first).days * BUCKET_S:.0f} s:"
            f" {record.booking_days[d] - days[d]:+d}"
            for d in gaps
        ]
        out.lines.append(
            "  bookings missing (+) or extra (-) by production time: " + ", ".join(spans)
        )

    # reports
    outcomes = Counter(o for o, _ in results)
    by_design = outcomes["refused"] + outcomes["store_full"]
    considered = len(results) - by_design
    ok = outcomes["completed"]
    rate_ok = ok / considered if considered else 1.0
    took = sorted(s for o, s in results if o == "completed")
    out.lines.append(
        f"reports: {len(results)} requested, {ok} completed, {outcomes['store_full']} failed "
        f"'{STORE_FULL}' while it was full, {outcomes['refused']} refused at submission; "
        f"success {rate_ok:.2%} of {considered}; p50 {took[len(took) // 2] if took else 0:.1f} s, "
        f"p99 {p99(took):.1f} s from request to completed"
    )
    for outcome, n in outcomes.items():
        if outcome not in ("completed", "store_full", "refused"):
            out.lines.append(f"    {n} × {outcome}")
    out.check(
        rate_ok >= SUCCESS_TARGET,
        f"report success ≥ {SUCCESS_TARGET:.1%} (refused by design excluded)",
    )
    out.check(
        outcomes["store_full"] > 0 or record.store_full_window is None,
        "a report requested while the store was full failed with 'artifact store full'",
    )

    # schedule
    first_fire = (created + timedelta(minutes=1)).replace(second=0, microsecond=0)
    due = []
    t = first_fire
    while t <= last_fire:
        due.append(t)
        t += timedelta(minutes=1)
    per_fire: list[int] = []  # deliveries of each due fire's report (0: no run, or lost)
    fires_ok = bool(due)
    by_design = 0  # fires whose report failed "artifact store full": not delivered, by design
    for fire in due:
        run = by_fire.get(fire)
        ids = list(run["report_ids"]) if run else []
        per_fire.append(sum(receiver.deliveries[i] for i in ids))
        if ids and all(STORE_FULL in failed_causes.get(i, "") for i in ids):
            by_design += 1
            fires_ok = fires_ok and all(receiver.deliveries[i] == 0 for i in ids)
            continue
        fires_ok = fires_ok and bool(ids) and all(receiver.deliveries[i] == 1 for i in ids)
    statuses = Counter(str(by_fire[f]["status"]) for f in due if f in by_fire)
    out.lines.append(
        f"schedule: {len(due)} fires due, runs {dict(statuses)}; deliveries per fire "
        f"{per_fire} ({by_design} not delivered by design: its report failed"
        f" '{STORE_FULL}'); {sum(receiver.deliveries.values())} webhook deliveries, "
        f"{receiver.bad_signatures} bad signatures"
    )
    out.check(
        fires_ok and receiver.bad_signatures == 0,
        "every scheduled fire delivered exactly once",
    )

    # HTTP
    out.lines.append(f"HTTP reads ({readers} readers, failing over between the two workers):")
    out.lines.append(f"  {'phase':<30}{'reads':>7}{'available':>11}{'p50 ms':>8}{'p99 ms':>8}")
    for phase in record.phases:
        end = phase.end if phase.end is not None else float("inf")
        mine = [r for r in record.reads if phase.start <= r[0] < end]
        if not mine:
            continue
        avail = sum(1 for r in mine if r[2]) / len(mine)
        lat = sorted(r[1] * 1000 for r in mine if r[2])
        out.lines.append(
            f"  {phase.name:<30}{len(mine):>7}{avail:>11.2%}"
            f"{lat[len(lat) // 2] if lat else 0:>8.1f}{p99(lat):>8.1f}"
        )
    total_avail = sum(1 for r in record.reads if r[2]) / max(1, len(record.reads))
    # during a fault a worker's partitions can be unreadable by design (a killed worker keeps
    # them under static membership until it is back; a paused one until its session times
    # out): the fault phases are measured above, the check is on the phases without a fault
    calm = [p for p in record.phases if p.name.startswith("steady")]
    outside = [
        r for r in record.reads if any(p.start <= r[0] < (p.end or float("inf")) for p in calm)
    ]
    avail = sum(1 for r in outside if r[2]) / max(1, len(outside))
    out.check(
        avail >= 0.99,
        f"HTTP reads available ≥ 99 % outside the faults ({avail:.2%}; {total_avail:.2%} in all)",
    )

    # recovery
    out.lines.append("recovery (probe booking read back / probe report completed):")
    for name, seen, done in record.recoveries:
        out.lines.append(f"  {name:<30}{_seconds(seen):>10}{_seconds(done):>10}")
        out.check(seen is not None and done is not None, f"recovered from {name}")
    return out


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def main(argv: list[str] | None = None) -> int:
    """Command line (module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the load")
    parser.add_argument("--ci", action="store_true", help="the 120-second mode of CI")
    parser.add_argument("--rate", type=float, default=40.0, help="events per second")
    parser.add_argument("--readers", type=int, default=4, help="concurrent HTTP read loops")
    parser.add_argument("--report-every", type=float, default=2.0, help="seconds between reports")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # stop the services and workers on SIGTERM too
    seconds = 120.0 if args.ci else args.seconds
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the broker's restart is planned
    state = Path(tempfile.gettempdir()) / f"wedding-soak-{os.getpid()}"
    state.mkdir(mode=0o755)
    started = time.monotonic()
    try:
        outcome = asyncio.run(soak(state, seconds, args.rate, args.readers, args.report_every))
    finally:
        if os.environ.get("WEDDING_KEEP_SOAK_STATE") != "1":
            shutil.rmtree(state, ignore_errors=True)
    print(f"soak: {seconds:g} s of load, {time.monotonic() - started:.0f} s in all")
    print("\n".join(outcome.lines))
    if outcome.failures:
        print(f"FAILED: {len(outcome.failures)} check(s): " + "; ".join(outcome.failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
