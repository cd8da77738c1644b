"""Bad aggregation requests and the JSON path each must be refused at (Python API and HTTP)."""

from __future__ import annotations

from typing import Any

GOOD: dict[str, Any] = {
    "dataset": "bookings",
    "group_by": ["venue_id", {"field": "service_date", "grain": "month"}],
    "metrics": [
        {"op": "count"},
        {"op": "sum", "field": "amount_minor"},
        {"op": "percentile", "field": "amount_minor", "p": 0.9},
        {"op": "distinct_count", "field": "client_id"},
    ],
    "filters": [{"field": "status", "op": "in", "value": ["booked"]}],
    "time_range": {"field": "service_date", "from": "2016-01-01", "to": "2016-12-31"},
    "limit": 1000,
}


def _with(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


def _metric(i: int, **m: Any) -> dict[str, Any]:
    metrics = list(GOOD["metrics"])
    metrics[i] = m
    return _with(metrics=metrics)


BAD: list[tuple[dict[str, Any] | list[int], str]] = [
    # dataset
    (_with(dataset="horoscopes"), "$.dataset"),
    (_with(dataset="organizations"), "$.dataset"),
    (_with(dataset="bookings; DROP TABLE bookings"), "$.dataset"),
    ({k: v for k, v in GOOD.items() if k != "dataset"}, "$.dataset"),
    # metrics
    (_metric(2, op="percentile", field="amount_minor"), "$.metrics[2].p"),
    (_metric(2, op="percentile", field="amount_minor", p=1.5), "$.metrics[2].p"),
    (_metric(2, op="median", field="amount_minor"), "$.metrics[2].op"),
    (_metric(2, op="sum", field="status"), "$.metrics[2].op"),
    (_metric(2, op="sum", field="guest_count"), "$.metrics[2].field"),
    (_metric(2, op="sum", field="amount_minor) FROM payments --"), "$.metrics[2].field"),
    (_metric(2, op="sum", field='amount_minor"'), "$.metrics[2].field"),
    (_metric(2, op="sum"), "$.metrics[2].field"),
    (_metric(2, op="count", p=0.5), "$.metrics[2].p"),
    (_metric(2, op="sum", field="amount_minor", extra=1), "$.metrics[2].extra"),
    (_metric(2, op="avg", field="booked_at"), "$.metrics[2].op"),
    (_metric(2, op="count", **{"as": "venue_id"}), "$.metrics[2].as"),
    (_metric(2, op="count", **{"as": "x; drop"}), "$.metrics[2].as"),
    (_with(metrics=[]), "$.metrics"),
    # group by
    (_with(group_by=["organization_id"]), "$.group_by[0]"),
    (_with(group_by=["venue_id", "id"]), "$.group_by[1]"),
    (_with(group_by=["booked_at"]), "$.group_by[0]"),
    (_with(group_by=[{"field": "service_date", "grain": "fortnight"}]), "$.group_by[0].grain"),
    (_with(group_by=[{"field": "venue_id", "grain": "month"}]), "$.group_by[0].grain"),
    (_with(group_by=[{"field": "1; select 1", "grain": "month"}]), "$.group_by[0].field"),
    (_with(group_by=[7]), "$.group_by[0]"),
    (_with(group_by=["venue_id", "venue_id"]), "$.group_by[1]"),
    # filters
    (
        _with(filters=[{"field": "organization_id", "op": "eq", "value": "agg-other"}]),
        "$.filters[0].field",
    ),
    (_with(filters=[{"field": "status", "op": "like", "value": "%"}]), "$.filters[0].op"),
    (_with(filters=[{"field": "status", "op": "lt", "value": "b"}]), "$.filters[0].op"),
    (_with(filters=[{"field": "status", "op": "in", "value": "booked"}]), "$.filters[0].value"),
    (_with(filters=[{"field": "status", "op": "in", "value": []}]), "$.filters[0].value"),
    # a NUL PostgreSQL text cannot hold (an attacker round's 400 named "path")
    (_with(filters=[{"field": "status", "op": "eq", "value": "a\x00"}]), "$.filters[0].value"),
    (
        _with(filters=[{"field": "status", "op": "in", "value": ["booked", "\x00"]}]),
        "$.filters[0].value[1]",
    ),
    (
        _with(filters=[{"field": "status", "op": "in", "value": ["booked", 3]}]),
        "$.filters[0].value[1]",
    ),
    (_with(filters=[{"field": "nights", "op": "gt", "value": "3"}]), "$.filters[0].value"),
    (_with(filters=[{"field": "nights", "op": "gt", "value": True}]), "$.filters[0].value"),
    (_with(filters=[{"field": "nights", "op": "gt", "value": 1.5}]), "$.filters[0].value"),
    (_with(filters=[{"field": "amount_minor", "op": "eq"}]), "$.filters[0].value"),
    (
        _with(filters=[{"field": "service_date", "op": "gte", "value": "2016-13-01"}]),
        "$.filters[0].value",
    ),
    (
        _with(filters=[{"field": "booked_at", "op": "gte", "value": "2016-01-01T00:00:00"}]),
        "$.filters[0].value",
    ),
    (
        _with(filters=[{"field": "nights", "op": "between", "value": [5, 2]}]),
        "$.filters[0].value[1]",
    ),
    (_with(filters=[{"field": "nights", "op": "is_null", "value": 1}]), "$.filters[0].value"),
    # time range
    (
        _with(time_range={"field": "status", "from": "2016-01-01", "to": "2016-12-31"}),
        "$.time_range.field",
    ),
    (
        _with(time_range={"field": "service_date", "from": "2016/01/01", "to": "2016-12-31"}),
        "$.time_range.from",
    ),
    (
        _with(time_range={"field": "service_date", "from": "2016-02-01", "to": "2016-01-31"}),
        "$.time_range.to",
    ),
    # years outside 1900..2099 (year 9999 used to overflow into a 500)
    (
        _with(time_range={"field": "booked_at", "from": "2016-01-01", "to": "9999-12-31"}),
        "$.time_range.to",
    ),
    (
        _with(time_range={"field": "service_date", "from": "0001-01-01", "to": "2016-12-31"}),
        "$.time_range.from",
    ),
    (_with(time_range={"field": "service_date", "from": "2016-01-01"}), "$.time_range.to"),
    # sampling, limit, body
    (_with(sample={"percent": 0}), "$.sample.percent"),
    (_with(sample={"percent": 10, "method": "fast"}), "$.sample.method"),
    (_with(limit=0), "$.limit"),
    (_with(limit=1_000_000), "$.limit"),
    (_with(surprise=1), "$.surprise"),
    ([1, 2], "$"),
]
