"""Topic names, partition counts and their creation on the broker.

Every topic is created explicitly with ``Settings.topic_partitions`` partitions (the broker runs
with ``auto.create.topics.enable=false``). Message keys are always ``organization_id/entity``
so that a partition never mixes data a tenant may see with a query path that forgets the tenant.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

if TYPE_CHECKING:
    from stream_app.settings import Settings

WEDDING_BOOKINGS = "wedding-bookings"
PAYMENT_EVENTS = "payment-events"
CLIENT_INTERACTIONS = "client-interactions"
SUPPLIER_ACTIVITIES = "supplier-activities"
REPORT_REQUESTS = "report-requests"
REPORT_RESULTS = "report-results"
REALTIME_METRICS_UPDATES = "realtime-metrics-updates"
DEAD_LETTER = "dead-letter-events"
REPORT_LANES: dict[str, str] = {
    p: f"report-requests-{p}" for p in ("critical", "high", "normal", "low")
}
"""Priority lane topics of the report agent (see :mod:`stream_app.reports.lanes`)."""
REPORT_CACHE_TOPIC = "report-cache"
"""Entries of the report cache's level 2 (see :mod:`stream_app.reports.cache`)."""
LATE_EVENTS = "late-events"

INPUT_TOPICS: tuple[str, ...] = (
    WEDDING_BOOKINGS,
    PAYMENT_EVENTS,
    CLIENT_INTERACTIONS,
    SUPPLIER_ACTIVITIES,
)
ALL_TOPICS: tuple[str, ...] = (
    *INPUT_TOPICS,
    REPORT_REQUESTS,
    REPORT_RESULTS,
    REALTIME_METRICS_UPDATES,
    DEAD_LETTER,
    *REPORT_LANES.values(),
    REPORT_CACHE_TOPIC,
    LATE_EVENTS,
)


CLIENT_KEYED_TOPICS: tuple[str, ...] = (
    *INPUT_TOPICS,
    REALTIME_METRICS_UPDATES,
    DEAD_LETTER,
    LATE_EVENTS,
)
"""Topics whose records can carry a client id (in the key or the value) and cannot be edited
in place: they get a bounded retention (GDPR Art. 17, README "GDPR data map")."""

STREAM_OF_METRIC: dict[str, str] = {
    "venue_bookings": "bookings",
    "booking_payments": "payments",
    "client_interactions": "interactions",
    "supplier_activity": "suppliers",
}
"""Table (``metric`` of an update) → the stream name report types list in ``reads``."""

CLIENT_INTERACTION_TOTALS = "client-interaction-totals"
"""The faust table of client interaction totals (:mod:`stream_app.topology`)."""
CLIENT_KEYED_TABLES: tuple[str, ...] = (CLIENT_INTERACTION_TOTALS,)
"""Tables whose rows are keyed by client: their changelogs are compacted within a bound."""


def changelog_topic(app_id: str, table: str) -> str:
    """The changelog topic of faust table ``table`` of application ``app_id`` (faust's naming:
    ``<app id>-<table>-changelog``)."""
    return f"{app_id}-{table}-changelog"


DEFAULT_INPUT_RETENTION_MS = 7 * 86_400_000
"""``retention.ms`` of :data:`CLIENT_KEYED_TOPICS` unless set (Kafka's own default, stated)."""

MAX_SEGMENT_MS = 86_400_000
"""Longest ``segment.ms`` of a bounded topic: a segment is deleted only as a whole, once its
newest record is older than ``retention.ms``, so a record can outlive ``retention.ms`` by up
to one segment's time span."""


def bounded_retention_configs(retention_ms: int) -> tuple[tuple[str, str], ...]:
    """Broker configs of a topic whose records must be gone within ``retention_ms`` +
    ``min(retention_ms, MAX_SEGMENT_MS)`` (plus the broker's retention check interval,
    ``log.retention.check.interval.ms``, 5 minutes by default)."""
    return (
        ("cleanup.policy", "delete"),
        ("retention.ms", str(retention_ms)),
        ("segment.ms", str(min(retention_ms, MAX_SEGMENT_MS))),
    )


def compacted_changelog_configs(max_lag_ms: int) -> dict[str, str]:
    """Broker configs of a changelog whose deleted keys must vanish in bounded time.

    A record superseded by a later one of its key (a tombstone included) becomes eligible for
    compaction at most ``max_lag_ms`` after it was written (``max.compaction.lag.ms``,
    KIP-354; the active segment is rolled after ``segment.ms`` = ``max_lag_ms`` at the
    partition's next write); the tombstone itself is dropped by a later cleaning once it is
    ``delete.retention.ms`` = ``max_lag_ms`` old. The log cleaner wakes every
    ``log.cleaner.backoff.ms`` (15 s by default).
    """
    return {
        "cleanup.policy": "compact",
        "max.compaction.lag.ms": str(max_lag_ms),
        "segment.ms": str(max_lag_ms),
        "delete.retention.ms": str(max_lag_ms),
        "min.cleanable.dirty.ratio": "0.1",
    }


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic to create: its name, partition count and extra broker configs."""

    name: str
    partitions: int
    configs: tuple[tuple[str, str], ...] = ()


def topic_specs(partitions: int, retention_ms: int = DEFAULT_INPUT_RETENTION_MS) -> list[TopicSpec]:
    """The topics of the product, each with ``partitions`` partitions (must be >= 1); the
    :data:`CLIENT_KEYED_TOPICS` keep records ``retention_ms`` milliseconds
    (:func:`bounded_retention_configs`)."""
    if partitions < 1:
        raise ValueError(f"partitions: must be >= 1, got {partitions}")
    bounded = bounded_retention_configs(retention_ms)
    return [
        TopicSpec(name, partitions, bounded if name in CLIENT_KEYED_TOPICS else ())
        for name in ALL_TOPICS
    ]


def message_key(organization_id: str, entity_id: str) -> bytes:
    """The Kafka key of a tenant-scoped entity: ``b"<organization_id>/<entity_id>"``."""
    return f"{organization_id}/{entity_id}".encode()


@contextlib.asynccontextmanager
async def _admin(bootstrap: str) -> AsyncIterator[tuple[AIOKafkaAdminClient, set[str]]]:
    """A started admin client of ``bootstrap`` and the names of the topics that exist now;
    the client is closed at the end.

    Raises:
        aiokafka.errors.KafkaError: the broker could not be reached.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        yield admin, set(await admin.list_topics())
    finally:
        await admin.close()


async def ensure_topics(
    bootstrap: str, partitions: int, retention_ms: int = DEFAULT_INPUT_RETENTION_MS
) -> list[str]:
    """Create every missing product topic; return the names created. Existing topics are
    kept, and those with configs (:func:`topic_specs`) get them set again.

    Raises:
        aiokafka.errors.KafkaError: the broker could not be reached or refused the request.
    """
    async with _admin(bootstrap) as (admin, existing):
        specs = topic_specs(partitions, retention_ms)
        configured = {s.name: dict(s.configs) for s in specs if s.configs and s.name in existing}
        if configured:
            await _alter_topic_configs(admin, configured)
        wanted = [s for s in specs if s.name not in existing]
        if not wanted:
            return []
        # another worker may create them concurrently: the goal is met either way
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(
                [
                    NewTopic(
                        name=s.name,
                        num_partitions=s.partitions,
                        replication_factor=1,
                        topic_configs=dict(s.configs),
                    )
                    for s in wanted
                ]
            )
        return [s.name for s in wanted]


async def _alter_topic_configs(
    admin: AIOKafkaAdminClient, configs: dict[str, dict[str, str]]
) -> None:
    """Set ``configs`` (topic → broker configs) on existing topics.

    Kafka's AlterConfigs replaces a topic's whole set of dynamic configs, so each topic's
    entry must hold every config it should keep.

    Raises:
        aiokafka.errors.KafkaError: the broker refused a topic's configs (named).
    """
    responses = await admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name, c) for name, c in configs.items()]
    )
    for response in responses:
        for error_code, message, _type, name in response.resources:
            if error_code:
                raise for_code(error_code)(f"{name}: {message}")


async def set_topic_configs(bootstrap: str, configs: dict[str, dict[str, str]]) -> list[str]:
    """Set ``configs`` (topic → broker configs) on the topics of it that exist; the names set.

    Used for the table changelogs, which faust creates on first start (with the table's
    configs) but never updates.

    Raises:
        aiokafka.errors.KafkaError: the broker could not be reached or refused the request.
    """
    async with _admin(bootstrap) as (admin, existing):
        present = {n: c for n, c in configs.items() if n in existing}
        if present:
            await _alter_topic_configs(admin, present)
        return sorted(present)


async def prepare_topics(settings: Settings) -> list[str]:
    """Create the app's topics with their retention and bring the client-keyed changelogs'
    compaction settings up to date (faust creates a changelog with its table's configs but
    never updates them). Run by ``wedding-engine init`` and before every worker starts.

    Returns:
        The names of the topics created by this call.
    """
    created = await ensure_topics(
        settings.kafka_bootstrap, settings.topic_partitions, settings.input_retention_ms
    )
    await set_topic_configs(
        settings.kafka_bootstrap,
        {
            changelog_topic(settings.app_id, t): compacted_changelog_configs(
                settings.changelog_max_compaction_lag_ms
            )
            for t in CLIENT_KEYED_TABLES
        },
    )
    return created
