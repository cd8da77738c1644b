"""What the benchmarks share: a state folder, the services stack, workers, report requests.

Every benchmark starts its own throw-away services in a fresh state folder and stops them at
the end; the helpers here are that frame, written once:

- :func:`state_folder`: ``<tmp>/<prefix>-<pid>``, removed at the end (unless kept);
- :func:`hotel_csv_main`: the command line of the benchmarks over the hotel CSV;
- :func:`stack`: Kafka, PostgreSQL and Redis up (:mod:`stream_app.devservices.manager`),
  the topics created, the migrations applied, the :class:`~stream_app.settings.Settings` of
  them; everything stopped at the end (:func:`settings_of`: the settings of running services);
- :func:`postgres_only`: a PostgreSQL cluster alone, migrated, for the benchmarks that need
  no broker;
- :func:`bench_worker`: a worker of the stack with its own folder, log and port;
- :func:`bench_request`, :func:`render_file`, :func:`timed_reports`: one report request, one
  rendered file, a series of report requests through a worker;
- :func:`add_organization`: an organisation and its venues in PostgreSQL;
- :func:`topic_reader`: a consumer of one topic that commits nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from stream_app.client import request_report_and_wait
from stream_app.db.migrate import migrate
from stream_app.db.tenancy import Organization, Venue, upsert_organization, upsert_venue
from stream_app.devservices import manager, postgres
from stream_app.devservices.manager import ServiceSettings
from stream_app.devservices.workers import WorkerProcess, start_worker
from stream_app.reports.artifacts import ArtifactStore
from stream_app.reports.model import ReportTable
from stream_app.reports.render import RENDERERS
from stream_app.schemas.reports import ReportRequest, new_report_request
from stream_app.schemas.updates import ArtifactLink
from stream_app.settings import Settings, load_settings
from stream_app.topics import ensure_topics

BENCH_USER = "bench"
"""The user id of the benchmarks' tokens and report requests."""


@contextmanager
def state_folder(prefix: str, *, keep: bool = False) -> Iterator[Path]:
    """A fresh folder ``<tmp>/<prefix>-<pid>`` (mode 0755: the PostgreSQL server's system
    user must reach it), removed with its contents at the end unless ``keep``.

    Raises:
        FileExistsError: the folder exists (a benchmark of this process already runs).
    """
    state = Path(tempfile.gettempdir()) / f"{prefix}-{os.getpid()}"
    state.mkdir(mode=0o755)
    state.chmod(0o755)  # mkdir's mode is masked by the umask
    try:
        yield state
    finally:
        if not keep:
            shutil.rmtree(state, ignore_errors=True)


def hotel_csv_main(
    doc: str | None,
    prefix: str,
    run: Callable[[Path, int, Path], Coroutine[Any, Any, None]],
    *,
    count_option: str,
    count_default: int,
) -> None:
    """The command line of a benchmark over the hotel CSV: ``[path] [<count_option> N]``.

    Runs ``run(path, N, state)`` in a fresh :func:`state_folder` named ``prefix``; ``doc`` (the
    module docstring) gives the help's first line. The path defaults to the shared data set
    beside the repository (``../shared/data/hotel_bookings.csv.gz``).
    """
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("path", nargs="?", default="../shared/data/hotel_bookings.csv.gz")
    parser.add_argument(
        count_option,
        dest="count",
        metavar=count_option.lstrip("-").upper(),
        type=int,
        default=count_default,
    )
    args = parser.parse_args()
    with state_folder(prefix) as state:
        asyncio.run(run(Path(args.path), args.count, state))


@asynccontextmanager
async def stack(
    state: Path, *, partitions: int | None = None, topics: bool = True, redis: bool = False
) -> AsyncIterator[Settings]:
    """Kafka, PostgreSQL and Redis in ``state``, migrated, as :class:`Settings`; stopped at
    the end.

    Args:
        state: the services' state folder (:func:`state_folder`).
        partitions: partitions of the topics created (default ``settings.topic_partitions``).
        topics: create the product's topics (:func:`stream_app.topics.ensure_topics`).
        redis: put the Redis URL into the settings (``settings.redis_url``).

    Yields:
        Settings of the services: the superuser DSN, ``artifact_dir`` = ``state/artifacts``,
        ``data_dir`` = ``state/worker-data``.
    """
    services = await asyncio.to_thread(manager.up, state)
    try:
        s = settings_of(services, state, redis=redis)
        if topics:
            await ensure_topics(s.kafka_bootstrap, partitions or s.topic_partitions)
        await migrate(s.postgres_dsn)
        yield s
    finally:
        await asyncio.to_thread(manager.down, state)


def settings_of(services: ServiceSettings, state: Path, *, redis: bool = False) -> Settings:
    """The :class:`Settings` of running ``services`` (superuser DSN), ``artifact_dir`` =
    ``state/artifacts``, ``data_dir`` = ``state/worker-data``; the Redis URL only with
    ``redis``."""
    s = load_settings(
        kafka_bootstrap=services.kafka_bootstrap,
        postgres_dsn=services.postgres_dsn,
        artifact_dir=state / "artifacts",
        data_dir=state / "worker-data",
    )
    return dataclasses.replace(s, redis_url=services.redis_url) if redis else s


@asynccontextmanager
async def topic_reader(
    bootstrap: str, topic: str, *, group_id: str | None = None, offset: str = "earliest"
) -> AsyncIterator[AIOKafkaConsumer]:
    """A started aiokafka consumer of ``topic`` that commits nothing, stopped at the end.

    Args:
        bootstrap: the broker's bootstrap address.
        topic: the topic read.
        group_id: the consumer group (None: no group, partitions are not balanced).
        offset: where a partition without a committed offset starts: ``earliest`` or
            ``latest``.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        auto_offset_reset=offset,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


@contextmanager
def postgres_only(state: Path) -> Iterator[str]:
    """A PostgreSQL cluster in ``state`` alone, migrated; yields its superuser DSN and stops
    it at the end."""
    instance = postgres.start(state)
    try:
        asyncio.run(migrate(instance.dsn))
        yield instance.dsn
    finally:
        postgres.stop(state)


def bench_worker(
    s: Settings,
    state: Path,
    name: str,
    app_id: str,
    *,
    port: int | None = None,
    scheduling: bool = False,
    unlimited_rates: bool = True,
    env: dict[str, str] | None = None,
) -> WorkerProcess:
    """Start worker ``name`` of consumer group ``app_id`` on the services of ``s``.

    Its RocksDB folder is ``state/<name>`` and its log ``state/<name>.log``, so starting the
    same ``name`` again (with its ``port``) restarts the same worker on its local state. It
    runs in development mode with the artifact store of ``s`` and, when ``s`` has one, the
    shared Redis.

    Args:
        port: its HTTP port (default: a free one).
        scheduling: run the schedule runner (off by default: ``WEDDING_SCHEDULING=0``).
        unlimited_rates: rate limits no benchmark reaches
            (:data:`~stream_app.devservices.workers.UNLIMITED_RATES`).
        env: more environment variables (applied last).
    """
    return start_worker(
        dev_mode=True,
        unlimited_rates=unlimited_rates,
        kafka_bootstrap=s.kafka_bootstrap,
        postgres_dsn=s.postgres_dsn,
        data_dir=state / name,
        log_path=state / f"{name}.log",
        artifact_dir=s.artifact_dir,
        app_id=app_id,
        web_port=port,
        redis_url=s.redis_url or None,
        extra_env={**({} if scheduling else {"WEDDING_SCHEDULING": "0"}), **(env or {})},
    )


async def add_organization(dsn: str, org: Organization, venues: list[Venue]) -> None:
    """Create (or update) ``org`` and its ``venues`` in the database at ``dsn``."""
    conn = await asyncpg.connect(dsn)
    try:
        await upsert_organization(conn, org)
        for venue in venues:
            await upsert_venue(conn, org.id, venue)
    finally:
        await conn.close()


def bench_request(
    organization_id: str, report_type: str, date_from: date, date_to: date, formats: list[str]
) -> ReportRequest:
    """A report request of the benchmark user with a fresh id, requested now."""
    return new_report_request(organization_id, BENCH_USER, report_type, date_from, date_to, formats)


async def no_table_reads(*_: Any) -> dict[str, dict[str, Any]]:
    """The table reader of a report context whose report reads PostgreSQL only.

    Raises:
        RuntimeError: always (the report asked for live table rows).
    """
    raise RuntimeError("this report reads PostgreSQL only")


def render_file(
    store: ArtifactStore, table: ReportTable, fmt: str, report_id: str, stem: str
) -> ArtifactLink:
    """Render ``table`` as ``fmt`` into ``store`` (``<stem>.<ext>``, unencrypted) in this
    thread; the file's link (size, rows, checksum)."""
    ext, renderer = RENDERERS[fmt]
    name = f"{stem}.{ext}"
    with store.write(table.organization_id, report_id, name, fmt, key=None) as (writer, out):
        renderer(table, writer)
    return out[0]


async def timed_reports(s: Settings, count: int, **request: Any) -> list[float]:
    """Seconds from request to ``completed`` of ``count`` reports requested one after another
    through the workers of ``s`` (:func:`stream_app.client.request_report_and_wait` with
    ``request``, user :data:`BENCH_USER`).

    Raises:
        RuntimeError: a report did not complete (with its status and error).
    """
    seconds: list[float] = []
    for _ in range(count):
        t = time.perf_counter()
        status = await request_report_and_wait(s, user_id=BENCH_USER, **request)
        if status.status != "completed":
            raise RuntimeError(f"report ended {status.status}: {status.error}")
        seconds.append(time.perf_counter() - t)
    return seconds
