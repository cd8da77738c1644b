"""The shared column vocabulary (stream_app/reports/types/columns.py) and the column lists the
report types compose from it."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from stream_app.reports.model import Column
from stream_app.reports.types import (
    booking_summary,
    catering_cost,
    columns,
    compliance,
    occupancy,
    photography_business,
    planner_portfolio,
)


def test_the_shared_columns_have_the_names_and_types_the_renderers_read() -> None:
    # CSV headers / JSON keys and how each cell is rendered (int, percent, text).
    assert [(c.name, c.type) for c in columns.VENUE] == [
        ("venue_id", "text"),
        ("venue_name", "text"),
    ]
    assert (columns.CURRENCY.name, columns.CURRENCY.type) == ("currency", "text")
    assert (columns.REVENUE_CURRENCY.name, columns.REVENUE_CURRENCY.type) == ("currency", "text")
    assert (columns.CANCELLATIONS.name, columns.CANCELLATIONS.type) == ("cancellations", "int")
    assert (columns.CANCELLATION_RATE.name, columns.CANCELLATION_RATE.type) == (
        "cancellation_rate",
        "percent",
    )
    assert (columns.REVENUE_MINOR.name, columns.REVENUE_MINOR.type) == ("revenue_minor", "int")


def names(cols: Sequence[Column]) -> list[str]:
    return [c.name for c in cols]


def test_composed_lists_keep_their_order() -> None:
    assert names(booking_summary.COLUMNS) == [
        "venue_id",
        "venue_name",
        "month",
        "bookings",
        "cancellations",
        "cancellation_rate",
        "currency",
        "revenue",
        "revenue_minor",
    ]
    assert names(photography_business.COLUMNS) == [
        "photographer_id",
        "photographer_name",
        *names(booking_summary.COLUMNS)[2:],
    ]
    money = ["currency", "revenue", "ingredient_cost", "waste_cost", "waste_share", "margin"]
    assert names(catering_cost.COLUMNS)[5:] == [*money, "margin_percent"]
    assert names(catering_cost.EVENT_COLUMNS)[5:] == [*money, "margin_percent"]
    assert names(occupancy.REVENUE_COLUMNS)[:4] == ["venue_id", "venue_name", "month", "currency"]


COLUMN_LISTS: dict[str, list[Sequence[Column]]] = {
    "monthly_booking_summary": [booking_summary.COLUMNS],
    "catering_cost": [
        catering_cost.COLUMNS,
        catering_cost.EVENT_COLUMNS,
        catering_cost.INGREDIENT_COLUMNS,
    ],
    "compliance": [compliance.OPERATIONS_COLUMNS, compliance.TOTALS_COLUMNS],
    "occupancy": [
        occupancy.COLUMNS,
        occupancy.WEEKDAY_COLUMNS,
        occupancy.REVENUE_COLUMNS,
        occupancy.RECOMMENDATION_COLUMNS,
        occupancy.FORECAST_COLUMNS,
        occupancy.BACKTEST_COLUMNS,
    ],
    "photography_business": [
        photography_business.COLUMNS,
        photography_business.SATISFACTION_COLUMNS,
        photography_business.MONTH_TREND_COLUMNS,
        photography_business.WEEKDAY_TREND_COLUMNS,
    ],
    "planner_portfolio": [planner_portfolio.COLUMNS, planner_portfolio.BENCHMARK_COLUMNS],
}


@pytest.mark.parametrize("report_type", sorted(COLUMN_LISTS))
def test_no_table_names_a_column_twice(report_type: str) -> None:
    for cols in COLUMN_LISTS[report_type]:
        assert len(set(names(cols))) == len(cols), names(cols)


def test_one_name_one_definition_across_the_types() -> None:
    # A shared name is rendered the same way in every report that has it.
    seen: dict[str, str] = {}
    for lists in COLUMN_LISTS.values():
        for cols in lists:
            for c in cols:
                assert seen.setdefault(c.name, c.type) == c.type, c
    assert seen["currency"] == "text" and seen["revenue"] == "money"
