"""The interactions agent: folds ``client-interactions`` into ``client-interaction-totals``
(rows, metrics and units: :mod:`stream_app.tables.interactions`), published as metric
``client_interactions``; message key
``organization_id/client_id``. How: :mod:`stream_app.agents.fold`.

The table's rows are keyed by client, so its changelog is compacted within a bounded lag
(:mod:`stream_app.topology`): a ``client_erased`` event's tombstones remove the client from it
(GDPR Art. 17).
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any

from stream_app.agents.fold import GuardedFoldAgent
from stream_app.app import app
from stream_app.schemas.interactions import ClientInteractionEvent
from stream_app.tables.interactions import fold_batch
from stream_app.topics import CLIENT_INTERACTIONS
from stream_app.topology import client_interactions_table, interactions_topic

interactions_stream: GuardedFoldAgent[ClientInteractionEvent] = GuardedFoldAgent(
    topic=CLIENT_INTERACTIONS,
    schema=ClientInteractionEvent,
    entity_field="client_id",
    table=client_interactions_table,
    metric="client_interactions",
    rows=fold_batch,
)


@app.agent(interactions_topic)
async def interactions_agent(stream: AsyncIterable[Any]) -> None:
    """Consume ``client-interactions`` for ever (see the module docstring)."""
    await interactions_stream.run(stream)
