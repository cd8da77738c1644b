"""The in-memory shape every report type produces and every renderer consumes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Literal

ColumnType = Literal["text", "int", "money", "percent", "decimal", "date", "month"]
Cell = str | int | None
ChartKind = Literal["column", "line"]


@dataclass(frozen=True, slots=True)
class Column:
    """A report column.

    Attributes:
        name: machine name (CSV header, JSON key).
        type: how to render it: ``money`` cells are exact decimal strings in the row's currency
            (``"11601850.23"``), ``percent`` cells decimal strings with two decimals
            (``"27.76"``), ``decimal`` exact decimal strings of a quantity that is neither
            money nor a percentage, its unit in the description (``"3.25"`` days), ``int``
            integers, ``month`` ``YYYY-MM``, ``date`` ``YYYY-MM-DD``.
        description: what the column means, with its unit.
    """

    name: str
    type: ColumnType
    description: str


@dataclass(frozen=True, slots=True)
class ChartSpec:
    """Which columns a report's chart plots (Excel, PDF and PowerPoint draw it natively).

    The rows are grouped by ``category_column``; each value column is summed per category
    (exactly, as :class:`~decimal.Decimal`). Only ``int`` and ``money`` columns can be values.

    Attributes:
        title: the chart's title.
        category_column: the x axis: one bar (or point) per distinct value of this column,
            in ascending order for ``month``, ``date`` and ``int`` columns, else in order of
            first appearance.
        value_columns: the summed columns, one series each.
        kind: ``column`` (vertical bars) or ``line``.
        series_column: optional; when set, each value column is split into one series per
            distinct value of this column, named ``"<value column> (<value>)"``. Use the
            currency column so amounts in different currencies are never added together.
    """

    title: str
    category_column: str
    value_columns: tuple[str, ...]
    kind: ChartKind = "column"
    series_column: str | None = None


@dataclass(frozen=True, slots=True)
class Kpi:
    """A headline figure shown on a KPI slide / summary block.

    Attributes:
        label: what it is, e.g. ``"Revenue 2024 (EUR)"``.
        value: the figure as a person reads it, every digit kept (``"1,234,567.89"``).
    """

    label: str
    value: str


@dataclass(frozen=True, slots=True)
class ReportSection:
    """A further table of a report (e.g. "Satisfaction by photographer").

    A report type with several tables puts its first one in :class:`ReportTable` itself and
    the others here. Renderers: CSV and JSON add them after the main table, Excel gives each
    a sheet, PDF and PowerPoint a heading and table (and chart) each.

    Attributes:
        name: machine name, unique in the report (``[a-z0-9_]+``; JSON key, sheet name).
        title: the heading; no comma, quote or line break, so its CSV line is ``# <title>``
            unquoted (a reader splitting a CSV file at lines starting with ``#`` finds it).
        columns / rows / chart / notes: as in :class:`ReportTable`.

    Raises:
        ValueError: a title with a comma, a double quote or a line break.
    """

    name: str
    title: str
    columns: Sequence[Column]
    rows: Iterable[Sequence[Cell]]
    chart: ChartSpec | None = None
    notes: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if any(c in self.title for c in ',"\r\n'):
            raise ValueError(f"section title {self.title!r} holds a comma, quote or line break")


@dataclass(frozen=True, slots=True)
class ReportTable:
    """A report's data: metadata, columns and rows (each row has one cell per column).

    Attributes:
        report_type: e.g. ``monthly_booking_summary``.
        organization_id / organization_name / time_zone: the tenant and its zone.
        date_from / date_to: the inclusive local date range covered.
        columns: the column definitions.
        rows: the data rows, any iterable (renderers stream it).
        notes: definitions and caveats printed with the report.
        chart: what to plot, or None for no chart.
        sections: further tables after the main one (see :class:`ReportSection`).
        kpis: headline figures (PowerPoint KPI slides, PDF and JSON summary).
        validation: findings of the input data's validation, one line each, carried into
            every format (empty = nothing found).
    """

    report_type: str
    organization_id: str
    organization_name: str
    time_zone: str
    date_from: date
    date_to: date
    columns: Sequence[Column]
    rows: Iterable[Sequence[Cell]]
    notes: Sequence[str] = field(default_factory=tuple)
    chart: ChartSpec | None = None
    sections: Sequence[ReportSection] = field(default_factory=tuple)
    kpis: Sequence[Kpi] = field(default_factory=tuple)
    validation: Sequence[str] = field(default_factory=tuple)


_SECTION_NAME = re.compile(r"[a-z0-9_]+")


def check_sections(table: ReportTable) -> None:
    """Check that every section name is ``[a-z0-9_]+`` and unique in the report.

    Raises:
        ValueError: naming the section and the reason.
    """
    seen: set[str] = set()
    for section in table.sections:
        if not _SECTION_NAME.fullmatch(section.name):
            raise ValueError(f"section name {section.name!r}: must match [a-z0-9_]+")
        if section.name in seen:
            raise ValueError(f"section name {section.name!r}: used twice in the report")
        seen.add(section.name)


def display_text(value: Cell, column_type: ColumnType) -> str:
    """``value`` as a person reads it in a PDF or a slide, with every digit kept.

    ``int``, ``money`` and ``decimal`` get thousands separators (``1,234`` and
    ``11,601,850.23``: the string's decimals are kept as they are), ``percent`` gets a ``%`` sign
    (``27.76%``), empty cells are ``""``; other values are shown unchanged.
    """
    if value is None:
        return ""
    if isinstance(value, int):
        return f"{value:,}"
    if column_type in ("money", "decimal"):
        return format(Decimal(value), ",")
    if column_type == "percent":
        return f"{value}%"
    return value


@dataclass(frozen=True, slots=True)
class ChartSeries:
    """One plotted series.

    Attributes:
        name: the legend text (the value column's name, then the series value in brackets).
        column: the summed column.
        series_value: the value of :attr:`ChartSpec.series_column` (e.g. ``EUR``) or None.
        values: the exact sum per category, in the order of :attr:`ChartData.categories`
            (0 for a category without rows in this series); money in major units.
    """

    name: str
    column: Column
    series_value: str | None
    values: tuple[Decimal, ...]


@dataclass(frozen=True, slots=True)
class ChartData:
    """A chart's figures: the spec, the category column, category labels and series."""

    spec: ChartSpec
    category: Column
    categories: tuple[str, ...]
    series: tuple[ChartSeries, ...]


BLANK_LABEL = "(blank)"
"""The category or series label of an empty cell."""


class ChartAccumulator:
    """Sums a table's rows into :class:`ChartData` in one pass over the rows.

    Memory is one :class:`~decimal.Decimal` per category and series, whatever the row count.

    Raises:
        ValueError: (from the constructor) a column named in the spec is not in the table,
            ``value_columns`` is empty, or a value column is not ``int`` or ``money``.
    """

    def __init__(self, spec: ChartSpec, columns: Sequence[Column]) -> None:
        index = {c.name: i for i, c in enumerate(columns)}

        def position(name: str, role: str) -> int:
            if name not in index:
                raise ValueError(f"chart {spec.title!r}: {role} {name!r} is not a column")
            return index[name]

        if not spec.value_columns:
            raise ValueError(f"chart {spec.title!r}: value_columns is empty")
        self._spec = spec
        self._columns = columns
        self._category = position(spec.category_column, "category_column")
        self._values = [position(n, "value column") for n in spec.value_columns]
        for i in self._values:
            if columns[i].type not in ("int", "money"):
                raise ValueError(
                    f"chart {spec.title!r}: value column {columns[i].name!r} is "
                    f"{columns[i].type!r}; only int and money columns can be summed"
                )
        self._series = (
            None if spec.series_column is None else position(spec.series_column, "series_column")
        )
        self._categories: dict[Cell, None] = {}
        self._sums: dict[tuple[int, Cell], dict[Cell, Decimal]] = {}

    def add(self, row: Sequence[Cell]) -> None:
        """Add one row's values to the sums of its category (empty value cells are skipped)."""
        category = row[self._category]
        self._categories.setdefault(category)
        key = None if self._series is None else row[self._series]
        for i in self._values:
            value = row[i]
            if value is None:
                continue
            sums = self._sums.setdefault((i, key), {})
            sums[category] = sums.get(category, Decimal(0)) + Decimal(value)

    def result(self) -> ChartData:
        """The chart's figures for the rows added so far."""
        category_column = self._columns[self._category]
        present = [c for c in self._categories if c is not None]
        if category_column.type == "int":
            present.sort(key=lambda c: Decimal(c))
        elif category_column.type in ("month", "date"):
            present.sort(key=str)
        order: list[Cell] = [*present, *([None] if None in self._categories else [])]
        series: list[ChartSeries] = []
        for i in self._values:
            keys = sorted((k for c, k in self._sums if c == i), key=lambda k: (k is None, str(k)))
            for key in keys:
                sums = self._sums[(i, key)]
                name = self._columns[i].name
                label = None if self._series is None else _label(key)
                series.append(
                    ChartSeries(
                        name=name if label is None else f"{name} ({label})",
                        column=self._columns[i],
                        series_value=label,
                        values=tuple(sums.get(c, Decimal(0)) for c in order),
                    )
                )
        return ChartData(
            spec=self._spec,
            category=category_column,
            categories=tuple(_label(c) for c in order),
            series=tuple(series),
        )


def _label(value: Cell) -> str:
    return BLANK_LABEL if value is None else str(value)
