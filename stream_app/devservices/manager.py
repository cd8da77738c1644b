"""Start, stop and inspect the local Kafka broker, PostgreSQL cluster and Redis as one unit.

What runs is recorded in ``<state_dir>/services.json``. ``up`` is idempotent: services that
are running (process alive and port answering) are kept with their settings, the others are
started fresh on new free ports with their data wiped. Calls on the same state folder are
serialised by a lock file, so concurrent ``up`` calls start each service once.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stream_app.db.roles import APP_ROLE, OWNER_ROLE, SYSTEM_ROLE, as_role
from stream_app.devservices import kafka, postgres, redis
from stream_app.devservices.common import ServiceError, file_lock

__all__ = [
    "ServiceError",
    "ServiceSettings",
    "ServiceStatus",
    "default_state_dir",
    "down",
    "status",
    "up",
]

_STATE_FILE = "services.json"
_LOCK_FILE = "services.lock"


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    """Where the running services are and how to reach them.

    Attributes:
        kafka_bootstrap: ``127.0.0.1:PORT`` of the broker.
        postgres_dsn: ``postgresql://postgres@127.0.0.1:PORT/wedding``, the cluster's
            superuser: for the tests' fixtures and ``init`` on these throw-away services only;
            the roles' DSNs are :attr:`app_dsn`, :attr:`system_dsn` and :attr:`owner_dsn`.
        kafka_pid / postgres_pid: process ids of the broker's JVM and of the postmaster.
        kafka_log / postgres_log: the services' log files.
        started_at: when the newer of the two was started (UTC).
        redis_url / redis_pid / redis_log: the rate-limit store (``redis://127.0.0.1:PORT``;
            empty in a ``services.json`` written before it existed).
    """

    kafka_bootstrap: str
    postgres_dsn: str
    kafka_pid: int
    postgres_pid: int
    kafka_log: Path
    postgres_log: Path
    started_at: datetime
    redis_url: str = ""
    redis_pid: int = 0
    redis_log: Path = Path()

    def to_json(self) -> dict[str, Any]:
        """Return the settings as JSON-ready values (paths and the time as strings)."""
        raw = dataclasses.asdict(self)
        return {
            key: value.isoformat() if isinstance(value, datetime) else
            str(value) if isinstance(value, Path) else value
            for key, value in raw.items()
        }  # fmt: skip

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ServiceSettings:
        """Build settings from :meth:`to_json` output.

        Raises:
            KeyError, ValueError, TypeError: ``raw`` is not such output.
        """
        return cls(
            kafka_bootstrap=str(raw["kafka_bootstrap"]),
            postgres_dsn=str(raw["postgres_dsn"]),
            kafka_pid=int(raw["kafka_pid"]),
            postgres_pid=int(raw["postgres_pid"]),
            kafka_log=Path(raw["kafka_log"]),
            postgres_log=Path(raw["postgres_log"]),
            started_at=datetime.fromisoformat(raw["started_at"]).astimezone(UTC),
            redis_url=str(raw.get("redis_url", "")),
            redis_pid=int(raw.get("redis_pid", 0)),
            redis_log=Path(raw.get("redis_log", "")),
        )

    @property
    def app_dsn(self) -> str:
        """The application role's DSN (``POSTGRES_DSN`` of a worker)."""
        return as_role(self.postgres_dsn, APP_ROLE)

    @property
    def system_dsn(self) -> str:
        """The system role's DSN (``POSTGRES_SYSTEM_DSN``)."""
        return as_role(self.postgres_dsn, SYSTEM_ROLE)

    @property
    def owner_dsn(self) -> str:
        """The owner role's DSN (``POSTGRES_OWNER_DSN``: migrations, registration, loads)."""
        return as_role(self.postgres_dsn, OWNER_ROLE)

    @property
    def kafka_instance(self) -> kafka.KafkaInstance:
        """The broker part of the settings."""
        return kafka.KafkaInstance(self.kafka_bootstrap, self.kafka_pid, self.kafka_log)

    @property
    def postgres_instance(self) -> postgres.PostgresInstance:
        """The PostgreSQL part of the settings."""
        return postgres.PostgresInstance(self.postgres_dsn, self.postgres_pid, self.postgres_log)

    @property
    def redis_instance(self) -> redis.RedisInstance | None:
        """The rate-limit store part of the settings (None when never started)."""
        if not self.redis_url:
            return None
        return redis.RedisInstance(self.redis_url, self.redis_pid, self.redis_log)


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """What :func:`status` found.

    Attributes:
        kafka_running / postgres_running: whether each service's process is alive and its
            port answers.
        settings: the last recorded settings, or ``None`` when nothing was ever started here.
    """

    kafka_running: bool
    postgres_running: bool
    settings: ServiceSettings | None
    redis_running: bool = False

    @property
    def all_running(self) -> bool:
        """Whether every service runs."""
        return self.kafka_running and self.postgres_running and self.redis_running


def default_state_dir() -> Path:
    """Return ``WEDDING_STATE_DIR``, else ``<cwd>/.state``, as an absolute path."""
    configured = os.environ.get("WEDDING_STATE_DIR")
    return (Path(configured) if configured else Path.cwd() / ".state").absolute()


def _load(state_dir: Path) -> ServiceSettings | None:
    try:
        raw = json.loads((state_dir / _STATE_FILE).read_text(encoding="utf-8"))
        return ServiceSettings.from_json(raw)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ServiceError(f"services: cannot read {state_dir / _STATE_FILE}: {exc}") from exc


def _save(state_dir: Path, settings: ServiceSettings) -> None:
    path = state_dir / _STATE_FILE
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(settings.to_json(), indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)


def up(state_dir: Path | None = None) -> ServiceSettings:
    """Make sure the broker and the cluster run, starting whichever does not.

    Args:
        state_dir: the state folder; :func:`default_state_dir` when ``None``.

    Returns:
        The settings of the running services (the recorded ones when both already ran).

    Raises:
        ServiceError: a service could not be fetched or started.
    """
    state_dir = (state_dir or default_state_dir()).absolute()
    state_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(state_dir / _LOCK_FILE):
        current = _load(state_dir)
        broker = current.kafka_instance if current else None
        cluster = current.postgres_instance if current else None
        kafka_ok = broker is not None and kafka.is_running(broker)
        if cluster is not None:  # restarted outside these tools: the same cluster, a new pid
            cluster = postgres.running_instance(state_dir, cluster) or cluster
        postgres_ok = cluster is not None and postgres.is_running(cluster)
        store = current.redis_instance if current else None
        redis_ok = store is not None and redis.is_running(store)
        if current is not None and kafka_ok and postgres_ok and redis_ok:
            if cluster is not None and cluster.pid != current.postgres_pid:
                current = dataclasses.replace(current, postgres_pid=cluster.pid)
                _save(state_dir, current)
            return current
        if broker is None or not kafka_ok:
            if broker is not None:
                kafka.stop(broker.pid)  # maybe alive but not answering: a stuck broker
            broker = kafka.start(state_dir)
        if cluster is not None and not postgres_ok and kafka_ok and postgres.has_cluster(state_dir):
            # stopped or crashed while the broker ran on: its data goes with the broker's (the
            # workers' tables, the tenants' reports), so start it again rather than empty
            cluster = postgres.resume(state_dir, cluster.port)
        elif cluster is None or not postgres_ok:
            cluster = postgres.start(state_dir)
        if store is None or not redis_ok:
            if store is not None:
                redis.stop(store.pid)
            store = redis.start(state_dir)
        settings = ServiceSettings(
            kafka_bootstrap=broker.bootstrap,
            postgres_dsn=cluster.dsn,
            kafka_pid=broker.pid,
            postgres_pid=cluster.pid,
            kafka_log=broker.log_path,
            postgres_log=cluster.log_path,
            started_at=datetime.now(UTC),
            redis_url=store.url,
            redis_pid=store.pid,
            redis_log=store.log_path,
        )
        _save(state_dir, settings)
        return settings


def down(state_dir: Path | None = None) -> list[str]:
    """Stop the services; nothing running is fine. Their data stays until the next ``up``.

    Args:
        state_dir: the state folder; :func:`default_state_dir` when ``None``.

    Returns:
        What was stopped, e.g. ``["kafka (pid 4242)", "redis (pid 4250)", "postgres (pid
        4245)"]``; empty when nothing was running.

    Raises:
        ServiceError: a service would not stop.
    """
    state_dir = (state_dir or default_state_dir()).absolute()
    if not state_dir.is_dir():
        return []
    stopped: list[str] = []
    with file_lock(state_dir / _LOCK_FILE):
        current = _load(state_dir)
        if current is not None:
            if kafka.stop(current.kafka_pid):
                stopped.append(f"kafka (pid {current.kafka_pid})")
            if current.redis_pid and redis.stop(current.redis_pid):
                stopped.append(f"redis (pid {current.redis_pid})")
        postmaster = postgres.stop(state_dir)
        if postmaster is not None:
            stopped.append(f"postgres (pid {postmaster})")
    return stopped


def status(state_dir: Path | None = None) -> ServiceStatus:
    """Report whether each service runs.

    Args:
        state_dir: the state folder; :func:`default_state_dir` when ``None``.

    Returns:
        Each service's state and the last recorded settings.

    Raises:
        ServiceError: ``services.json`` exists but cannot be read.
    """
    state_dir = (state_dir or default_state_dir()).absolute()
    current = _load(state_dir)
    if current is None:
        return ServiceStatus(kafka_running=False, postgres_running=False, settings=None)
    return ServiceStatus(
        kafka_running=kafka.is_running(current.kafka_instance),
        postgres_running=postgres.running_instance(state_dir, current.postgres_instance)
        is not None,
        settings=current,
        redis_running=(
            current.redis_instance is not None and redis.is_running(current.redis_instance)
        ),
    )
