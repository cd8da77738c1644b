"""The aggregation API: group-by queries over an organisation's history in PostgreSQL.

Part of the query layer of reports. A request (JSON or :class:`AggregationRequest`)::

    {"dataset": "bookings",
     "group_by": ["venue_id", {"field": "service_date", "grain": "month"}],
     "metrics": [{"op": "count"}, {"op": "sum", "field": "amount_minor"},
                 {"op": "percentile", "field": "amount_minor", "p": 0.9},
                 {"op": "distinct_count", "field": "client_id"}],
     "filters": [{"field": "status", "op": "in", "value": ["booked"]}],
     "time_range": {"field": "service_date", "from": "2016-01-01", "to": "2016-12-31"},
     "sample": {"percent": 10, "seed": 1},
     "limit": 1000}

is checked against an allow-list of datasets and columns (:mod:`.datasets`), compiled to one
parameterised statement (:mod:`.compiler`: identifiers from the allow-list only, every value a
``$n`` parameter, ``organization_id = $1`` always in the predicate) and run inside a
row-level-security tenant transaction under a statement timeout (:mod:`.engine`).

Money: any money metric (sum/avg/min/max/percentile of ``amount_minor``) groups by
``currency`` as well, so amounts of two currencies are never combined; sums, minima and
maxima are exact integers of minor units; averages are exact decimal strings (sum / count,
half-even, 6 decimals). Time grains of timestamps are computed in the organisation's zone.
"""

from stream_app.aggregation.compiler import CompiledQuery, OutputColumn, compile_request
from stream_app.aggregation.datasets import DATASETS, Dataset, FieldSpec
from stream_app.aggregation.engine import (
    STATEMENT_TIMEOUT_MS,
    AggregationResult,
    AggregationTimeoutError,
    aggregate,
)
from stream_app.aggregation.request import (
    AggregationError,
    AggregationRequest,
    decode_request,
    request_from_dict,
)

__all__ = [
    "DATASETS",
    "STATEMENT_TIMEOUT_MS",
    "AggregationError",
    "AggregationRequest",
    "AggregationResult",
    "AggregationTimeoutError",
    "CompiledQuery",
    "Dataset",
    "FieldSpec",
    "OutputColumn",
    "aggregate",
    "compile_request",
    "decode_request",
    "request_from_dict",
]
