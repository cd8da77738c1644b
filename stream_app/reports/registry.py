"""The report types, a static list: the name a request carries → its :class:`ReportType`.

Adding a type: a module in :mod:`stream_app.reports.types` exposing ``REPORT`` (a
:class:`~stream_app.reports.types.base.ReportType`), its name in
:data:`stream_app.schemas.reports.REPORT_CONFIGS`, and a line in :data:`TYPES`.
"""

from __future__ import annotations

from stream_app.reports.types import (
    booking_summary,
    catering_cost,
    compliance,
    occupancy,
    photography_business,
    planner_portfolio,
)
from stream_app.reports.types.base import ReportType
from stream_app.schemas.reports import REPORT_TYPES

TYPES: tuple[ReportType, ...] = (
    booking_summary.REPORT,
    catering_cost.REPORT,
    compliance.REPORT,
    occupancy.REPORT,
    photography_business.REPORT,
    planner_portfolio.REPORT,
)
"""Every report type, in name order."""

_BY_NAME: dict[str, ReportType] = {t.name: t for t in TYPES}

if len(_BY_NAME) != len(TYPES) or set(_BY_NAME) != REPORT_TYPES:
    raise ImportError(
        f"report types {sorted(t.name for t in TYPES)} do not match REPORT_TYPES"
        f" {sorted(REPORT_TYPES)}"
    )


def get(name: str) -> ReportType:
    """The type ``name``.

    Raises:
        KeyError: no such type (requests are validated first, so this is a programming error).
    """
    return _BY_NAME[name]


def all_types() -> list[ReportType]:
    """Every type, by name."""
    return list(TYPES)
