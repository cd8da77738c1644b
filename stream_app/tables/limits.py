"""The largest value a table row holds, and the refusal of an event that would pass it.

Row values are integers (counts, sums of minor units) stored as JSON and carried to readers
in other languages and to PostgreSQL; :data:`ROW_LIMIT` is the largest signed 64-bit integer
(PostgreSQL's ``bigint``, Java's ``long``), so a row's values, and the difference of two of
them (booked minus cancelled value), are always 64-bit integers. An event may carry up to
10^15 minor units (:data:`stream_app.schemas.base.MinorUnits`), so 9,224 of the largest into
one row would pass it: the folds refuse such an event before it changes any of its rows, and
the batch layer dead-letters it with the row named (:func:`reason`).
"""

from __future__ import annotations

from stream_app.errors import WeddingError

ROW_LIMIT = 2**63 - 1
"""The largest value of a row's counter or sum (9,223,372,036,854,775,807)."""


class RowLimitExceeded(WeddingError, ValueError):
    """Adding an event's value would take a row's value past :data:`ROW_LIMIT`."""

    retriable = False


def checked(value: int) -> int:
    """``value`` when at most :data:`ROW_LIMIT`.

    Raises:
        RowLimitExceeded: it is larger.
    """
    if value > ROW_LIMIT:
        raise RowLimitExceeded(f"{value} is past {ROW_LIMIT}")
    return value


def reason(key: str) -> str:
    """The dead-letter reason of an event refused because of row ``key``."""
    return (
        f"folding it would take row {key!r} past {ROW_LIMIT:,}, the largest value a table row"
        " holds (a signed 64-bit integer)"
    )
