"""Which aggregations a rollup may answer (no database): the cases it must and must not take."""

from __future__ import annotations

from typing import Any

import pytest

from stream_app.aggregation import AggregationError, request_from_dict
from stream_app.aggregation.rollups import definition_from_dict, mismatch, proposal_for

ROLLUP = definition_from_dict(
    {
        "dataset": "bookings",
        "dimensions": ["venue_id", "status"],
        "time_dimension": {"field": "service_date", "grain": "day"},
        "measures": [
            {"op": "count"},
            {"op": "avg", "field": "amount_minor"},
            {"op": "max", "field": "nights"},
        ],
    }
)
MONTHLY = definition_from_dict(
    {
        "dataset": "bookings",
        "dimensions": ["venue_id"],
        "time_dimension": {"field": "booked_at", "grain": "month"},
        "measures": [{"op": "count"}, {"op": "sum", "field": "amount_minor"}],
    }
)


def req(**over: Any) -> dict[str, Any]:
    return {"dataset": "bookings", "metrics": [{"op": "count"}], **over}


def test_the_definition_is_canonical() -> None:
    # currency joins the dimensions (money measures), avg is stored as sum and count
    assert ROLLUP.dimensions == ("currency", "status", "venue_id")
    assert ROLLUP.measures == (
        ("count", None),
        ("count", "amount_minor"),
        ("max", "nights"),
        ("sum", "amount_minor"),
    )
    assert ROLLUP.time_type == "date" and MONTHLY.time_type == "timestamp"


MUST = [
    req(),
    req(group_by=["venue_id", "status"]),
    req(group_by=[{"field": "service_date", "grain": "week"}]),
    req(group_by=[{"field": "service_date", "grain": "year"}, "venue_id"]),
    req(group_by=["service_date"]),  # a date grouped as it is = day
    req(filters=[{"field": "status", "op": "in", "value": ["booked"]}]),
    req(filters=[{"field": "service_date", "op": "gte", "value": "2016-03-04"}]),
    req(time_range={"field": "service_date", "from": "2016-03-04", "to": "2016-03-09"}),
    req(metrics=[{"op": "avg", "field": "amount_minor"}, {"op": "max", "field": "nights"}]),
    req(metrics=[{"op": "sum", "field": "amount_minor"}, {"op": "count", "field": "amount_minor"}]),
]


@pytest.mark.parametrize("body", MUST)
def test_matching_requests_are_answered(body: dict[str, Any]) -> None:
    assert mismatch(request_from_dict(body), ROLLUP) is None


MUST_NOT = [
    (req(dataset="payments"), "dataset"),
    (req(metrics=[{"op": "distinct_count", "field": "client_id"}]), "not additive"),
    (req(metrics=[{"op": "percentile", "field": "amount_minor", "p": 0.5}]), "not additive"),
    (req(metrics=[{"op": "percentile_disc", "field": "nights", "p": 0.5}]), "not additive"),
    (req(metrics=[{"op": "min", "field": "nights"}]), "min_nights"),
    (req(metrics=[{"op": "sum", "field": "nights"}]), "sum_nights"),
    (req(group_by=["client_id"]), "client_id"),
    (req(filters=[{"field": "currency", "op": "eq", "value": "EUR"}]), None),  # a dimension
    (req(filters=[{"field": "supplier_id", "op": "eq", "value": "s"}]), "supplier_id"),
    (req(group_by=[{"field": "booked_at", "grain": "month"}]), "booked_at"),
    (req(sample={"percent": 10}), "sample"),
]


@pytest.mark.parametrize(("body", "reason"), MUST_NOT)
def test_other_requests_are_not(body: dict[str, Any], reason: str | None) -> None:
    got = mismatch(request_from_dict(body), ROLLUP)
    if reason is None:
        assert got is None
    else:
        assert got is not None and reason in got


def test_grains_and_time_ranges_of_a_monthly_rollup() -> None:
    def check(body: dict[str, Any]) -> str | None:
        return mismatch(request_from_dict(body), MONTHLY)

    month = {"field": "booked_at", "grain": "month"}
    assert check(req(group_by=[month])) is None
    assert check(req(group_by=[{"field": "booked_at", "grain": "year"}])) is None
    assert "grain 'day'" in str(check(req(group_by=[{"field": "booked_at", "grain": "day"}])))
    assert "grain 'week'" in str(check(req(group_by=[{"field": "booked_at", "grain": "week"}])))
    whole = {"field": "booked_at", "from": "2016-02-01", "to": "2016-04-30"}
    assert check(req(time_range=whole)) is None
    for lo, hi in (("2016-02-02", "2016-04-30"), ("2016-02-01", "2016-04-29")):
        part = {"field": "booked_at", "from": lo, "to": hi}
        assert "whole months" in str(check(req(time_range=part)))
    # a filter on a timestamp compares instants, not the rollup's local buckets
    flt = [{"field": "booked_at", "op": "gte", "value": "2016-02-01T00:00:00+00:00"}]
    assert "booked_at" in str(check(req(filters=flt)))
    # a sum of money groups by currency, which the definition added to the dimensions
    assert check(req(metrics=[{"op": "sum", "field": "amount_minor"}])) is None
    # an average needs the count of the field, which this rollup does not hold
    avg = check(req(metrics=[{"op": "avg", "field": "amount_minor"}]))
    assert avg is not None and "count_amount_minor" in avg


@pytest.mark.parametrize(
    ("definition", "field"),
    [
        ({"measures": [{"op": "distinct_count", "field": "client_id"}]}, "$.measures[0].op"),
        ({"measures": [{"op": "percentile", "field": "amount_minor"}]}, "$.measures[0].op"),
        ({"measures": [{"op": "count"}], "dimensions": ["service_date"]}, "$.dimensions[0]"),
        ({"measures": [{"op": "count"}], "dimensions": ["nope"]}, "$.dimensions[0]"),
        (
            {"measures": [{"op": "count"}], "time_dimension": {"field": "status", "grain": "day"}},
            "$.time_dimension.field",
        ),
        ({"measures": [{"op": "sum", "field": "status"}]}, "$.measures[0].op"),
        ({"measures": [{"op": "sum"}]}, "$.measures[0].field"),
    ],
)
def test_bad_definitions_name_the_field(definition: dict[str, Any], field: str) -> None:
    with pytest.raises(AggregationError) as err:
        definition_from_dict({"dataset": "bookings", **definition})
    assert err.value.field == field


def test_the_proposal_answers_the_request() -> None:
    body = req(
        group_by=["venue_id", {"field": "service_date", "grain": "month"}],
        metrics=[{"op": "count"}, {"op": "avg", "field": "amount_minor"}],
        filters=[{"field": "status", "op": "eq", "value": "booked"}],
        time_range={"field": "service_date", "from": "2016-01-01", "to": "2016-12-31"},
    )
    proposal = proposal_for(request_from_dict(body))
    assert proposal == {
        "dataset": "bookings",
        "dimensions": ["venue_id", "status"],
        "measures": [{"op": "count"}, {"op": "avg", "field": "amount_minor"}],
        "time_dimension": {"field": "service_date", "grain": "month"},
    }
    assert mismatch(request_from_dict(body), definition_from_dict(proposal)) is None
    # a range that does not fall on whole months needs day buckets
    body["time_range"] = {"field": "service_date", "from": "2016-01-05", "to": "2016-12-31"}
    proposal = proposal_for(request_from_dict(body))
    assert proposal is not None and proposal["time_dimension"]["grain"] == "day"
    assert mismatch(request_from_dict(body), definition_from_dict(proposal)) is None
    distinct = req(metrics=[{"op": "distinct_count", "field": "client_id"}])
    assert proposal_for(request_from_dict(distinct)) is None
