"""The suppliers agent: folds ``supplier-activities`` into the ``supplier-activity`` table
(rows, metrics and units: :mod:`stream_app.tables.suppliers`), published as metric
``supplier_activity``; message key
``organization_id/supplier_id``. How: :mod:`stream_app.agents.fold`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any

from stream_app.agents.fold import GuardedFoldAgent
from stream_app.app import app
from stream_app.schemas.suppliers import SupplierActivityEvent
from stream_app.tables.suppliers import fold_batch
from stream_app.topics import SUPPLIER_ACTIVITIES
from stream_app.topology import supplier_activity_table, suppliers_topic

suppliers_stream: GuardedFoldAgent[SupplierActivityEvent] = GuardedFoldAgent(
    topic=SUPPLIER_ACTIVITIES,
    schema=SupplierActivityEvent,
    entity_field="supplier_id",
    table=supplier_activity_table,
    metric="supplier_activity",
    rows=fold_batch,
)


@app.agent(suppliers_topic)
async def suppliers_agent(stream: AsyncIterable[Any]) -> None:
    """Consume ``supplier-activities`` for ever (see the module docstring)."""
    await suppliers_stream.run(stream)
