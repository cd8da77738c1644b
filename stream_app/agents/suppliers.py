"""The suppliers agent: folds ``supplier-activities`` into the ``supplier-activity`` table (rows,
metrics and units: :mod:`stream_app.tables.suppliers`), published as metric
``supplier_activity``; message key ``organization_id/supplier_id``. How:
:mod:`stream_app.agents.fold`.
"""

from __future__ import annotations

from stream_app.agents.fold import FoldSpec, GuardedFoldAgent, ZonedFoldAgent
from stream_app.schemas.suppliers import SupplierActivityEvent
from stream_app.tables.suppliers import fold_batch_in
from stream_app.topics import SUPPLIER_ACTIVITIES
from stream_app.topology import supplier_activity_table, suppliers_topic

suppliers_stream: GuardedFoldAgent[SupplierActivityEvent] = ZonedFoldAgent(
    FoldSpec(
        SUPPLIER_ACTIVITIES,
        SupplierActivityEvent,
        entity_field="supplier_id",
        table=supplier_activity_table,
        metric="supplier_activity",
    ),
    fold_batch_in,
)
suppliers_agent = suppliers_stream.agent(suppliers_topic, f"{__name__}.suppliers_agent")
