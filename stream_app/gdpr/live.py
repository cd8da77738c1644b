"""A client in the live tables: its interactions row read for an export, and its erasure.

The ``client-interaction-totals`` table is owned per partition by one worker; an erasure is
therefore an event, ``client_erased`` on ``client-interactions`` keyed
``organization_id/client_id`` like every interaction, so it reaches the owner in order after
every earlier event of the client. The owner deletes the client's row and writes a
tombstone to the changelog (:func:`stream_app.tables.interactions.fold_batch`).

:func:`wait_folded` knows the erasure is applied when the worker group's committed offset of
the event's partition has passed the event: the interactions agent commits an offset only
after the changelog holds every row its events changed
(:mod:`stream_app.runtime.state`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from stream_app.app import settings
from stream_app.queries.partitions import partition_for
from stream_app.queries.routing import changelog_owner, remote_json
from stream_app.schemas.base import encode_event
from stream_app.schemas.interactions import ClientInteractionEvent
from stream_app.tables import interactions as interactions_tables
from stream_app.topics import CLIENT_INTERACTIONS, message_key
from stream_app.topology import client_interactions_table, interactions_topic
from stream_app.web.streams import client_interactions_body


async def interactions_row(organization_id: str, client_id: str) -> dict[str, Any]:
    """The client's interaction totals, as ``GET /orgs/{org}/clients/{client}/interactions``
    answers them, from this worker or the one holding the client's partition.

    Raises:
        stream_app.queries.errors.QueryUnavailableError: nobody can answer (restoring,
            rebalancing).
    """
    partition = partition_for(message_key(organization_id, client_id), settings.topic_partitions)
    owner = changelog_owner(client_interactions_table.changelog_topic.get_topic_name(), partition)
    if owner is None:
        return client_interactions_body(organization_id, client_id)
    return await remote_json(
        owner, f"/orgs/{organization_id}/clients/{client_id}/interactions", {}, organization_id
    )


def holds_client(row: dict[str, Any]) -> bool:
    """Whether an :func:`interactions_row` answer shows any event of the client (a client
    with no event reads as :func:`stream_app.tables.interactions.empty`'s values)."""
    return any(row.get(name, value) != value for name, value in interactions_tables.empty().items())


async def send_erasure(organization_id: str, client_id: str) -> tuple[int, int]:
    """Produce a ``client_erased`` event for the client; ``(partition, offset)`` once the
    broker has acknowledged it.

    Raises:
        aiokafka.errors.KafkaError: the broker did not take it.
    """
    event = ClientInteractionEvent(
        schema_version=max(ClientInteractionEvent.schema_versions),
        event_id=f"erasure-{uuid.uuid4().hex}",
        organization_id=organization_id,
        occurred_at=datetime.now(UTC),
        event_type="client_erased",
        client_id=client_id,
    )
    fut = await interactions_topic.send(
        key=message_key(organization_id, client_id), value=encode_event(event)
    )
    meta = await fut
    return int(meta.partition), int(meta.offset)


async def wait_folded(partition: int, offset: int, timeout_s: float) -> bool:
    """Wait until the worker group (``settings.app_id``) has committed past ``offset`` of
    ``partition`` of ``client-interactions``; False after ``timeout_s`` seconds.

    Raises:
        aiokafka.errors.KafkaError: the broker could not be asked.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    tp = TopicPartition(CLIENT_INTERACTIONS, partition)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            offsets = await admin.list_consumer_group_offsets(settings.app_id, partitions=[tp])
            committed = offsets.get(tp)
            if committed is not None and committed.offset > offset:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.25)
    finally:
        await admin.close()
