"""Independent figures for the aggregation tests, straight from the hotel booking CSV.

Nothing here imports the product: the rows are read with :mod:`csv` and the statistics are
the textbook/PostgreSQL-documented definitions written out in plain Python.
"""

from __future__ import annotations

import math
from datetime import date
from fractions import Fraction


def avg_text(values: list[int]) -> str:
    """Mean as a decimal string, rounded half-even to 6 decimals (Fraction: exact)."""
    scaled = round(Fraction(sum(values), len(values)) * 10**6)  # round() on Fraction: half-even
    sign = "-" if scaled < 0 else ""
    whole, frac = divmod(abs(scaled), 10**6)
    return f"{sign}{whole}.{frac:06d}"


def percentile_cont(values: list[int], p: float) -> float:
    """PostgreSQL's percentile_cont (documented: linear interpolation between the values at
    0-based positions floor and ceil of p·(n−1)), in IEEE doubles as PostgreSQL computes it."""
    xs = sorted(float(v) for v in values)
    pos = p * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    if lo == hi:
        return xs[lo]
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def percentile_disc(values: list[int], p: float) -> int:
    """PostgreSQL's percentile_disc: the first value whose position in the sorted list
    reaches the fraction p, i.e. the ceil(p·n)-th value (1-based, at least the first)."""
    xs = sorted(values)
    k = max(math.ceil(p * len(xs)), 1)
    return xs[k - 1]


def iso_week(d: date) -> str:
    """ISO 8601 week label ``YYYY-Www``."""
    y, w, _ = d.isocalendar()
    return f"{y:04d}-W{w:02d}"
