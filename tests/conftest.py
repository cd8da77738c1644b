"""Session fixtures: a real Kafka broker and PostgreSQL cluster, topics, migrations, workers.

The services are started by the project's own launcher (``stream_app.devservices``) in a
state folder of their own, so a developer's running services are left alone. Workers are real
``wedding-engine worker`` processes.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from stream_app.db.migrate import migrate
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


@pytest.fixture(scope="session")
async def settings(services: ServiceSettings, state_dir: Path) -> Settings:
    """Settings pointing at the session's services, with topics created and migrations applied."""
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
