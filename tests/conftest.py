"""Session fixtures: a real Kafka broker, PostgreSQL cluster and Redis, and the factories every
test takes its resources from.

The services are started once per session by the project's own launcher
(``stream_app.devservices``) in a state folder of their own, so a developer's running services
are left alone. The factories:

- :func:`make_database`: a database of its own on the session's one PostgreSQL cluster, a copy
  of a migrated template (:func:`pg_dsn` is the one the PostgreSQL-only tests share);
- :func:`make_topics`: topics of their own on the session's broker;
- :func:`worker_factory`: real ``wedding-engine worker`` processes;
- :func:`make_org` / :func:`new_org`: organisations (and venues) in the workers' database or in
  :func:`pg_dsn`'s.

Only tests that stop a service run one of their own: tests/e2e/test_outage.py (Kafka and
PostgreSQL stopped under a worker) and tests/web/test_probes.py (PostgreSQL stopped under a
worker); stopping the session's would break every other test's worker.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream_app.db.migrate import migrate
from stream_app.db.tenancy import Organization, Venue, upsert_organization, upsert_venue
from stream_app.devservices import manager
from stream_app.devservices.manager import ServiceSettings
from stream_app.devservices.workers import WorkerProcess, start_worker
from stream_app.settings import Settings, load_settings
from stream_app.topics import ensure_topics

# The tests run with the development master key (stream_app.crypto.keys) unless a test gives
# its own; a deployment never sets this switch. Workers re-read an organisation's newest data
# key every second, so a key rotation reaches new files quickly (tests/e2e/test_encryption.py).
os.environ.setdefault("WEDDING_DEV_MODE", "1")
os.environ.setdefault("WEDDING_DATA_KEY_TTL_S", "1")
# secrets of this test session, not the public development ones: a worker started with
# WEDDING_DEV_MODE=0 (as in a deployment) accepts them, and the session's tokens still work
os.environ.setdefault("WEDDING_JWT_SECRET", secrets.token_urlsafe(32))
os.environ.setdefault("WEDDING_LINK_SECRET", secrets.token_urlsafe(32))

DATA_DIR = Path(
    os.environ.get("WEDDING_TEST_DATA", Path(__file__).parents[1].parent / "shared" / "data")
)
HOTEL_CSV = DATA_DIR / "hotel_bookings.csv.gz"


@pytest.fixture(scope="session")
def state_dir() -> Iterator[Path]:
    """A state folder the unprivileged postgres user can reach (not pytest's 0700 tmp)."""
    path = Path(tempfile.gettempdir()) / f"wedding-tests-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    yield path
    if os.environ.get("WEDDING_KEEP_TEST_STATE") != "1":  # 1: keep logs and data to debug
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def services(state_dir: Path) -> Iterator[ServiceSettings]:
    """Kafka + PostgreSQL for the whole session."""
    found = manager.up(state_dir)
    yield found
    manager.down(state_dir)


async def prepare_settings(services: ServiceSettings, state_dir: Path) -> Settings:
    """Settings pointing at ``services`` (artifacts and worker data under ``state_dir``), with
    the topics created and the migrations applied."""
    s = load_settings(
        kafka_bootstrap=services.kafka_bootstrap,
        postgres_dsn=services.postgres_dsn,
        artifact_dir=state_dir / "artifacts",
        data_dir=state_dir / "worker-data",
        redis_url=services.redis_url,
    )
    await ensure_topics(s.kafka_bootstrap, s.topic_partitions)
    await migrate(s.postgres_dsn)
    return s


@pytest.fixture(scope="session")
async def settings(services: ServiceSettings, state_dir: Path) -> Settings:
    """Settings pointing at the session's services, with topics created and migrations applied."""
    return await prepare_settings(services, state_dir)


class WorkerFactory:
    """Starts worker processes against the session's services; stops them all at the end."""

    def __init__(self, settings: Settings, state_dir: Path) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.workers: list[WorkerProcess] = []

    def start(self, app_id: str, name: str | None = None, **extra_env: str) -> WorkerProcess:
        """A new worker in consumer group ``app_id`` with its own RocksDB folder.

        Rate limits are set out of reach unless ``extra_env`` sets them: the functional tests
        poll and retry freely; tests/e2e/test_rate_limits.py sets its own.
        """
        name = name or uuid.uuid4().hex[:8]
        worker = start_worker(
            kafka_bootstrap=self.settings.kafka_bootstrap,
            postgres_dsn=self.settings.postgres_dsn,
            data_dir=self.state_dir / "workers" / app_id / name,
            log_path=self.state_dir / "logs" / f"{app_id}-{name}.log",
            artifact_dir=self.settings.artifact_dir,
            app_id=app_id,
            extra_env=extra_env,
            redis_url=self.settings.redis_url,
            dev_mode=True,  # the tests sign tokens with the development secret
            unlimited_rates=True,  # tests/e2e/test_rate_limits.py sets its own in extra_env
        )
        self.workers.append(worker)
        return worker

    def stop_all(self) -> None:
        for w in self.workers:
            w.stop()


@pytest.fixture(scope="session")
def worker_factory(settings: Settings, state_dir: Path) -> Iterator[WorkerFactory]:
    factory = WorkerFactory(settings, state_dir)
    yield factory
    factory.stop_all()


@pytest.fixture
def own_workers(worker_factory: WorkerFactory) -> Iterator[None]:
    """Stop the workers a test started when it ends: they run their own consumer group, so
    left running they would also take the later tests' events and report requests."""
    started = len(worker_factory.workers)
    yield
    for worker in worker_factory.workers[started:]:
        worker.stop()


@pytest.fixture(scope="session")
async def main_worker(worker_factory: WorkerFactory) -> AsyncIterator[WorkerProcess]:
    """One worker owning every partition, shared by the end-to-end tests."""
    # schedules are exercised by their own workers (tests/e2e/test_multi_worker_schedules.py)
    worker = worker_factory.start("wedding-tests", "main", WEDDING_SCHEDULING="0")
    await worker.wait_ready(timeout_s=120, min_partitions=4)
    yield worker


@pytest.fixture(scope="session")
def hotel_csv() -> Path:
    if not HOTEL_CSV.is_file():
        pytest.fail(f"the real data set is missing: {HOTEL_CSV} (set WEDDING_TEST_DATA)")
    return HOTEL_CSV


# ---- PostgreSQL: databases copied from a migrated template, on the session's one cluster ----

TEMPLATE_DATABASE = "wedding_template"
"""Migrated once per session; every database of :func:`make_database` is a copy of it."""

DatabaseFactory = Callable[[str], Awaitable[str]]
NewOrg = Callable[..., Awaitable[str]]
OrgFactory = Callable[..., Awaitable[None]]
TopicFactory = Callable[..., Awaitable[list[str]]]


def database_dsn(dsn: str, database: str) -> str:
    """``dsn`` (a libpq URL) naming ``database`` instead of its own."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
async def make_database(services: ServiceSettings) -> AsyncIterator[DatabaseFactory]:
    """Factory: ``await make_database("name")`` returns the superuser DSN of a new database
    ``wedding_<name>_<8 hex>``, a copy of a template migrated once for the session
    (``CREATE DATABASE ... TEMPLATE``: a file copy, instead of every migration again).

    The roles are the cluster's, shared by every database. The databases are left to the
    cluster, which the session throws away.
    """
    admin = await asyncpg.connect(database_dsn(services.postgres_dsn, "postgres"))
    await admin.execute(f"CREATE DATABASE {TEMPLATE_DATABASE}")
    await migrate(database_dsn(services.postgres_dsn, TEMPLATE_DATABASE))

    async def make(name: str) -> str:
        database = f"wedding_{name}_{uuid.uuid4().hex[:8]}"
        for attempt in range(100):  # the migration's backend may take a moment to leave
            try:
                await admin.execute(f"CREATE DATABASE {database} TEMPLATE {TEMPLATE_DATABASE}")
                break
            except asyncpg.ObjectInUseError:
                if attempt == 99:
                    raise
                await asyncio.sleep(0.05)
        return database_dsn(services.postgres_dsn, database)

    try:
        yield make
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def pg_dsn(make_database: DatabaseFactory) -> str:
    """Superuser DSN of the database the PostgreSQL-only tests share (tests/db, tests/reports,
    tests/schedules, tests/delivery): not the workers' ``wedding`` database, so a test that
    claims every due schedule or truncates a table touches no worker's rows."""
    return await make_database("unit")


@pytest.fixture(scope="session")
async def pg_pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A session-wide pool (1-12 connections) on :func:`pg_dsn`."""
    async with asyncpg.create_pool(pg_dsn, min_size=1, max_size=12) as pool:
        yield pool


@pytest.fixture
async def db(pg_pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """:func:`pg_pool`, with every schedule removed after the test (claims are cross-tenant)."""
    yield pg_pool
    async with pg_pool.acquire() as conn:
        await conn.execute("DELETE FROM schedules")


async def register_org(
    conn: asyncpg.Connection,
    org: str,
    *,
    name: str | None = None,
    zone: str = "Europe/Lisbon",
    currency: str = "EUR",
    venues: Iterable[Venue] = (),
) -> None:
    """Create or update organisation ``org`` (named ``name``, else its id) and its venues."""
    await upsert_organization(conn, Organization(org, name or org, zone, currency))
    for venue in venues:
        await upsert_venue(conn, org, venue)


@pytest.fixture
def new_org(pg_pool: asyncpg.Pool) -> NewOrg:
    """Factory: an organisation with a unique id in :func:`pg_dsn`'s database, in the given IANA
    zone (default Europe/London, currency GBP); returns its id."""

    async def create(time_zone: str = "Europe/London") -> str:
        org_id = f"org-{uuid.uuid4().hex[:12]}"
        async with pg_pool.acquire() as conn:
            await register_org(conn, org_id, zone=time_zone, currency="GBP")
        return org_id

    return create


async def add_org(dsn: str, org: str, **fields: Any) -> None:
    """:func:`register_org` on a connection of its own to ``dsn``."""
    conn = await asyncpg.connect(dsn)
    try:
        await register_org(conn, org, **fields)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def make_org(settings: Settings) -> OrgFactory:
    """Factory: ``await make_org(org, name=..., zone=..., currency=..., venues=[Venue(...)])``
    creates or updates an organisation and its venues in the workers' database."""
    return functools.partial(add_org, settings.postgres_dsn)


async def run_cli(settings: Settings, dsn: str, *argv: str) -> tuple[int, str, str]:
    """``wedding-engine ARGV`` in a subprocess logged in to PostgreSQL as ``dsn``, against the
    session's broker: (exit code, stdout, stderr)."""
    env = {**os.environ, "POSTGRES_DSN": dsn, "KAFKA_BOOTSTRAP": settings.kafka_bootstrap}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stream_app.cli",
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# ---- Kafka ----


@pytest.fixture(scope="session")
async def make_topics(settings: Settings) -> TopicFactory:
    """Factory: ``await make_topics(prefix, count=1, partitions=2)`` creates ``count`` topics
    named ``<prefix>-<8 hex>-<n>`` on the session's broker and returns their names (left to
    the broker, which the session throws away)."""

    async def make(prefix: str, count: int = 1, partitions: int = 2) -> list[str]:
        tag = uuid.uuid4().hex[:8]
        names = [f"{prefix}-{tag}-{n}" for n in range(count)]
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
            )
        finally:
            await admin.close()
        return names

    return make
