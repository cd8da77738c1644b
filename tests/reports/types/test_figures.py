"""The exact figures the report types share (stream_app/reports/types/figures.py) and the one
pass over a table's rows of the document renderers (stream_app/reports/render/base.py).

Expected values are worked out by hand in the comments.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from stream_app.reports.model import Cell, ChartSpec, Column
from stream_app.reports.render.base import read_once
from stream_app.reports.types import figures


def test_ratios_are_half_even_to_two_decimals_and_none_over_zero() -> None:
    assert figures.percent(1, 3) == "33.33"  # 33.333…
    assert figures.percent(1, 8) == "12.50"
    assert figures.percent(1, 1600) == "0.06"  # 0.0625 → 0.06 (half-even)
    assert figures.percent(3, 1600) == "0.19"  # 0.1875 → 0.19
    assert figures.percent(Decimal("2.5"), 10) == "25.00"
    assert figures.percent(5, 0) is None
    assert figures.growth(150, 120) == "25.00"  # (150 − 120) / 120
    assert figures.growth(90, 120) == "-25.00"
    assert figures.growth(7, 0) is None
    assert figures.mean_text(10, 4) == "2.50"
    assert figures.mean_text(1, 0) is None
    assert figures.round_minor(Decimal("12.5")) == 12  # half-even
    assert figures.round_minor(Decimal("13.5")) == 14


def test_money_is_exact_in_the_currency_minor_unit() -> None:
    assert figures.money(123456, "EUR") == "1234.56"
    assert figures.money(1234, "JPY") == "1234"  # no minor unit
    assert figures.money(1234, "BHD") == "1.234"  # three decimals
    assert figures.money_grouped(123456789, "EUR") == "1,234,567.89"


def test_calendar_labels() -> None:
    assert figures.months_between(date(2024, 11, 30), date(2025, 2, 1)) == [
        "2024-11",
        "2024-12",
        "2025-01",
        "2025-02",
    ]
    assert figures.months_between(date(2025, 3, 5), date(2025, 3, 6)) == ["2025-03"]
    assert figures.year_earlier(date(2024, 2, 29)) == date(2023, 2, 28)
    assert figures.year_earlier(date(2025, 6, 15)) == date(2024, 6, 15)
    assert figures.month_earlier_label("2025-01") == "2024-01"
    assert figures.WEEKDAYS[5] == "Saturday"  # ISO day 6


COLUMNS = (Column("month", "month", "m"), Column("n", "int", "count"))


def test_read_once_keeps_the_first_rows_counts_all_and_charts_all() -> None:
    rows: list[list[Cell]] = [["2025-01", 2], ["2025-02", 3], ["2025-01", 5]]
    seen: list[list[Cell]] = []
    spec = ChartSpec(title="t", category_column="month", value_columns=("n",))
    kept, total, chart = read_once(
        COLUMNS, iter(rows), spec, 2, "the table", lambda r: seen.append(list(r))
    )
    assert (kept, total, seen) == (rows[:2], 3, rows)
    assert chart is not None
    assert chart.categories == ("2025-01", "2025-02")
    assert [s.values for s in chart.series] == [(Decimal(7), Decimal(3))]  # 2 + 5 in January


def test_read_once_names_the_table_of_a_short_row() -> None:
    with pytest.raises(ValueError, match=r"^section 'x': row 2 has 1 cells for 2 columns$"):
        read_once(COLUMNS, [["2025-01", 1], ["2025-02"]], None, 10, "section 'x'")
