"""What every renderer is, and the one pass over a table's rows the document formats share.

A renderer writes a :class:`~stream_app.reports.model.ReportTable` as one file format to a
:class:`~stream_app.reports.artifacts.HashingWriter`, streaming the rows (CPU-bound and
synchronous: the report generator runs it in a worker thread) and sets ``out.rows``. The
renderers are listed in :data:`stream_app.reports.render.RENDERERS`; this module imports none
of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from stream_app.reports.artifacts import HashingWriter
from stream_app.reports.model import (
    Cell,
    ChartAccumulator,
    ChartData,
    ChartSpec,
    Column,
    ReportTable,
)

Renderer = Callable[[ReportTable, HashingWriter], None]
"""``render(table, out)``: writes the file to ``out`` and sets ``out.rows``.

Raises ``ValueError`` for a row with the wrong number of cells or two sections of one name."""

NUMERIC_TYPES = frozenset({"int", "money", "percent", "decimal"})
"""Column types shown right-aligned (numbers)."""


def read_once(
    columns: Sequence[Column],
    rows: Iterable[Sequence[Cell]],
    spec: ChartSpec | None,
    cap: int,
    what: str,
    each: Callable[[Sequence[Cell]], None] | None = None,
) -> tuple[list[Sequence[Cell]], int, ChartData | None]:
    """Read ``rows`` once (they may be a stream): ``(the first cap rows, the row count, the
    chart data of spec over every row)``; ``each`` (if given) sees every row too.

    Raises:
        ValueError: a row has not one cell per column (``what`` names the table).
    """
    chart = ChartAccumulator(spec, columns) if spec is not None else None
    kept: list[Sequence[Cell]] = []
    total = 0
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(
                f"{what}: row {total + 1} has {len(row)} cells for {len(columns)} columns"
            )
        if total < cap:
            kept.append(row)
        if chart is not None:
            chart.add(row)
        if each is not None:
            each(row)
        total += 1
    return kept, total, chart.result() if chart is not None else None
