"""The in-memory shape every report type produces and every renderer consumes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

ColumnType = Literal["text", "int", "money", "percent", "date", "month"]
Cell = str | int | None


@dataclass(frozen=True, slots=True)
class Column:
    """A report column.

    Attributes:
        name: machine name (CSV header, JSON key).
        type: how to render it: ``money`` cells are exact decimal strings in the row's currency
            (``"11601850.23"``), ``percent`` cells decimal strings with two decimals
            (``"27.76"``), ``int`` integers, ``month`` ``YYYY-MM``, ``date`` ``YYYY-MM-DD``.
        description: what the column means, with its unit.
    """

    name: str
    type: ColumnType
    description: str


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
