"""The interactions agent: folds ``client-interactions`` into ``client-interaction-totals`` (rows,
metrics and units: :mod:`stream_app.tables.interactions`), published as metric
``client_interactions``; message key ``organization_id/client_id``. How:
:mod:`stream_app.agents.fold`.

The table's rows are keyed by client, so its changelog is compacted within a bounded lag
(:mod:`stream_app.topology`): a ``client_erased`` event's tombstones remove the client from it
(GDPR Art. 17).
"""

from __future__ import annotations

from stream_app.agents.fold import FoldSpec, GuardedFoldAgent
from stream_app.schemas.interactions import ClientInteractionEvent
from stream_app.tables.interactions import fold_batch
from stream_app.topics import CLIENT_INTERACTIONS
from stream_app.topology import client_interactions_table, interactions_topic

interactions_stream: GuardedFoldAgent[ClientInteractionEvent] = GuardedFoldAgent(
    FoldSpec(
        CLIENT_INTERACTIONS,
        ClientInteractionEvent,
        entity_field="client_id",
        table=client_interactions_table,
        metric="client_interactions",
    ),
    rows=fold_batch,
)
interactions_agent = interactions_stream.agent(interactions_topic, f"{__name__}.interactions_agent")
