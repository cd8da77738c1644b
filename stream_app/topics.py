"""Topic names, partition counts and their creation on the broker.

Every topic is created explicitly with ``Settings.topic_partitions`` partitions (the broker runs
with ``auto.create.topics.enable=false``). Message keys are always ``organization_id/entity``
so that a partition never mixes data a tenant may see with a query path that forgets the tenant.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

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
"""Priority lane topics of the report agent (see :mod:`stream_app.reports.agent`)."""
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


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic to create: its name, partition count and extra broker configs."""

    name: str
    partitions: int
    configs: tuple[tuple[str, str], ...] = ()


def topic_specs(partitions: int) -> list[TopicSpec]:
    """The topics of the product, each with ``partitions`` partitions (must be >= 1)."""
    if partitions < 1:
        raise ValueError(f"partitions: must be >= 1, got {partitions}")
    return [TopicSpec(name, partitions) for name in ALL_TOPICS]


def message_key(organization_id: str, entity_id: str) -> bytes:
    """The Kafka key of a tenant-scoped entity: ``b"<organization_id>/<entity_id>"``."""
    return f"{organization_id}/{entity_id}".encode()


async def ensure_topics(bootstrap: str, partitions: int) -> list[str]:
    """Create every missing product topic; return the names created (existing ones are kept).

    Raises:
        aiokafka.errors.KafkaError: the broker could not be reached or refused the request.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [s for s in topic_specs(partitions) if s.name not in existing]
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
    finally:
        await admin.close()
