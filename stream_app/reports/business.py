"""Shared definitions of the business reports (photography, catering, planner portfolio).

Pure helpers: exact ratios as decimal strings, the same period a year earlier, and the
refusal of data filters these reports do not support. No I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TypeVar

import asyncpg

from stream_app.db.tenancy import tenant_transaction
from stream_app.reports.model import ReportTable
from stream_app.reports.registry import ReportContext, ReportInputError
from stream_app.reports.validation import TableName, validate_for_report
from stream_app.schemas.reports import ReportRequest

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
"""ISO weekday names, Monday = ISO day 1 (PostgreSQL ``extract(isodow ...)``)."""

_CENT = Decimal("0.01")


def percent(numerator: int | Decimal, denominator: int | Decimal) -> str | None:
    """``numerator ÷ denominator × 100`` to 2 decimals, half-even; None when the divisor is 0."""
    if denominator == 0:
        return None
    value = Decimal(numerator) * 100 / Decimal(denominator)
    return str(value.quantize(_CENT, rounding=ROUND_HALF_EVEN))


def growth(current: int | Decimal, prior: int | Decimal) -> str | None:
    """Change from ``prior`` to ``current`` in percent, ``(current − prior) ÷ prior × 100``.

    Two decimals, half-even; None when ``prior`` is 0 (growth from nothing is undefined).
    """
    return percent(Decimal(current) - Decimal(prior), prior)


def mean_text(total: int | Decimal, count: int) -> str | None:
    """``total ÷ count`` as a decimal string with 2 decimals, half-even; None when count is 0."""
    if count == 0:
        return None
    return str((Decimal(total) / count).quantize(_CENT, rounding=ROUND_HALF_EVEN))


def round_minor(value: Decimal | int) -> int:
    """``value`` (minor units, possibly fractional) rounded half-even to a whole minor unit."""
    return int(Decimal(value).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def year_earlier(day: date) -> date:
    """The same calendar date a year earlier (29 February → 28 February)."""
    try:
        return day.replace(year=day.year - 1)
    except ValueError:
        return day.replace(year=day.year - 1, day=28)


def month_earlier_label(month: str) -> str:
    """``YYYY-MM`` of the same month a year earlier (``2025-06`` → ``2024-06``)."""
    return f"{int(month[:4]) - 1:04d}{month[4:]}"


def reject_filters(request: ReportRequest) -> None:
    """Refuse data filters: the business reports cover the whole organisation.

    Raises:
        ReportInputError: ``data_filters`` is not empty (names the first dimension).
    """
    for dimension in request.data_filters:
        raise ReportInputError(
            f"data_filters.{dimension}: not supported by report type {request.report_type!r}"
        )


T = TypeVar("T")


async def read_history(
    ctx: ReportContext,
    read: Callable[[asyncpg.Connection, str, date, date], Awaitable[T]],
) -> T:
    """Refuse data filters, then run ``read(conn, organization_id, date_from, date_to)``
    inside the organisation's tenant transaction.

    Raises:
        ReportInputError: data filters were given.
    """
    req = ctx.request
    reject_filters(req)
    org = ctx.organization
    async with ctx.pool.acquire() as conn, tenant_transaction(conn, org.id):
        return await read(conn, org.id, req.date_from, req.date_to)


async def with_validation(
    ctx: ReportContext, table: ReportTable, tables: Sequence[TableName]
) -> ReportTable:
    """``table`` carrying the validation findings of ``tables`` for the report's range."""
    checked = await validate_for_report(ctx, tables=tables)
    return dataclasses.replace(table, validation=checked.lines())
