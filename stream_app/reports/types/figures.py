"""Exact figures and calendar labels shared by the report types.

Pure helpers, no I/O: ratios as decimal strings (half-even, the rounding every report states),
money in major units, months and weekdays. Money is never a float.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

from stream_app.money import to_major

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


def money(minor: int, currency: str) -> str:
    """``minor`` units of ``currency`` as an exact major-unit decimal string (``12345, EUR`` →
    ``"123.45"``; ISO 4217 exponents, :func:`stream_app.money.to_major`)."""
    return str(to_major(minor, currency))


def money_grouped(minor: int, currency: str) -> str:
    """:func:`money` with thousands separators, for key figures (``"1,234.50"``)."""
    return format(to_major(minor, currency), ",")


def year_earlier(day: date) -> date:
    """The same calendar date a year earlier (29 February → 28 February)."""
    try:
        return day.replace(year=day.year - 1)
    except ValueError:
        return day.replace(year=day.year - 1, day=28)


def month_earlier_label(month: str) -> str:
    """``YYYY-MM`` of the same month a year earlier (``2025-06`` → ``2024-06``)."""
    return f"{int(month[:4]) - 1:04d}{month[4:]}"


def months_between(date_from: date, date_to: date) -> list[str]:
    """The calendar months (``YYYY-MM``) overlapping ``[date_from, date_to]``, in order."""
    out = []
    y, m = date_from.year, date_from.month
    while (y, m) <= (date_to.year, date_to.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out
