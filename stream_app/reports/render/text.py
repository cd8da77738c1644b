"""The text renderers, CSV and JSON: a :class:`ReportTable` streamed row by row.

CSV (RFC 4180, UTF-8 with BOM so spreadsheet programs detect the encoding, CRLF line ends):
text cells that a spreadsheet would read as a formula (first character ``= + - @``, tab or
carriage return) are prefixed with ``'`` (OWASP "CSV Injection" guidance). Numbers are written
as numbers, money as its exact decimal string. One file holds several blocks::

    venue_id,venue_name,month,...        <- the main table: header, then its rows
    v1,Café,2016-01,...
                                         <- a blank line between blocks
    # Revenue by photographer            <- a section: "# " + its title (one cell),
    photographer_id,name,revenue,...        its header,
    p1,Zoë,120.00,...                       its rows
                                         <- (one block per section, in order)
    # Validation                         <- the validation findings, when there are any:
    finding                                 a header "finding",
    3 payments name no booking              one finding per line

A table without sections and findings is exactly the header and the rows, as before. Blocks
are separated by one empty line, and the line after an empty line is always a block's title
(``# `` + title): no data line is empty (the csv module writes a row of one empty cell as
``""``). Key figures (``kpis``) are not in the CSV (they are in the JSON, Excel, PDF and
PowerPoint files); ``out.rows`` counts the main table's rows.

JSON: ``{"report": {...metadata}, "kpis": [{"label", "value"}], "validation": [finding, ...],
"columns": [...], "rows": [{column: value}, ...], "sections": [{"name", "title", "notes",
"columns", "rows"}]}``; money stays an exact decimal string, never a float; every ``rows``
array is streamed one row at a time.

Renderers are CPU-bound and synchronous; the report generator runs them in a worker thread.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, time
from typing import Any

import orjson

from stream_app.reports.artifacts import HashingWriter
from stream_app.reports.model import Cell, Column, ReportTable, check_sections

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_csv_text(value: str) -> str:
    """``value`` made inert for spreadsheets: a leading formula character gets a ``'``."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _csv_cell(value: Cell, column_type: str) -> str | int:
    if value is None:
        return ""
    if isinstance(value, int):
        return value
    if column_type == "text":
        return safe_csv_text(value)
    return value


VALIDATION_TITLE = "Validation"
"""The title of the CSV's validation block (``# Validation``)."""


def render_csv(table: ReportTable, out: HashingWriter) -> None:
    """Write ``table`` as CSV to ``out``: the main table, then one block per section, then
    the validation findings (layout in the module docstring).

    Sets ``out.rows`` to the number of rows of the main table.

    Raises:
        ValueError: a row has the wrong number of cells, or two sections share a name.
    """
    check_sections(table)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")

    def emit(cells: list[str | int]) -> None:
        buf.seek(0)
        buf.truncate()
        writer.writerow(cells)
        out.write(buf.getvalue().encode())

    out.write(b"\xef\xbb\xbf")
    out.rows = _csv_block(table.columns, table.rows, emit, None)
    for section in table.sections:
        emit([])
        _csv_block(section.columns, section.rows, emit, section.title)
    if table.validation:
        emit([])
        emit([f"# {VALIDATION_TITLE}"])
        emit(["finding"])
        for finding in table.validation:
            emit([safe_csv_text(finding)])


def _csv_block(
    columns: Sequence[Column],
    rows: Iterable[Sequence[Cell]],
    emit: Callable[[list[str | int]], None],
    title: str | None,
) -> int:
    """Write one block (title line, header, rows); returns the number of rows."""
    if title is not None:
        emit([f"# {title}"])
    types = [c.type for c in columns]
    emit([safe_csv_text(c.name) for c in columns])
    n = 0
    for row in rows:
        if len(row) != len(types):
            raise ValueError(
                f"{'main table' if title is None else repr(title)} row {n + 1} has "
                f"{len(row)} cells for {len(types)} columns"
            )
        emit([_csv_cell(v, t) for v, t in zip(row, types, strict=True)])
        n += 1
    return n


def render_json(table: ReportTable, out: HashingWriter) -> None:
    """Write ``table`` as one JSON document to ``out``, a row at a time (layout in the
    module docstring). Sets ``out.rows`` to the number of rows of the main table.

    Raises:
        ValueError: a row has the wrong number of cells, or two sections share a name.
    """
    check_sections(table)
    meta = {
        "report_type": table.report_type,
        "organization_id": table.organization_id,
        "organization_name": table.organization_name,
        "time_zone": table.time_zone,
        "date_from": table.date_from.isoformat(),
        "date_to": table.date_to.isoformat(),
        "notes": list(table.notes),
    }
    kpis = [{"label": k.label, "value": k.value} for k in table.kpis]
    out.write(
        b'{"report":'
        + _json(meta)
        + b',"kpis":'
        + _json(kpis)
        + b',"validation":'
        + orjson.dumps(list(table.validation))
    )
    out.rows = _json_rows(table.columns, table.rows, out, "main table")
    out.write(b',"sections":[')
    for i, section in enumerate(table.sections):
        head = {"name": section.name, "title": section.title, "notes": list(section.notes)}
        out.write((b"," if i else b"") + orjson.dumps(head)[:-1])  # the object stays open
        _json_rows(section.columns, section.rows, out, f"section {section.name!r}")
        out.write(b"}")
    out.write(b"]}")


def _json(value: Any) -> bytes:
    """``value`` as JSON: orjson, or ``json.dumps`` for an integer past 64 bits (a sum over a
    history whose rows an ETL loaded near the ``bigint`` limit: orjson refused it and the
    whole report failed, a second attacker round); dates as ISO 8601 either way."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value, default=_iso, ensure_ascii=False).encode()


def _iso(value: Any) -> str:
    if isinstance(value, date | datetime | time):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _json_rows(
    columns: Sequence[Column], rows: Iterable[Sequence[Cell]], out: HashingWriter, what: str
) -> int:
    """Write ``,"columns":[...],"rows":[...]`` a row at a time; returns the row count."""
    described = [{"name": c.name, "type": c.type, "description": c.description} for c in columns]
    out.write(b',"columns":' + orjson.dumps(described) + b',"rows":[')
    names = [c.name for c in columns]
    n = 0
    for row in rows:
        if len(row) != len(names):
            raise ValueError(f"{what} row {n + 1} has {len(row)} cells for {len(names)} columns")
        out.write((b"," if n else b"") + _json(dict(zip(names, row, strict=True))))
        n += 1
    out.write(b"]")
    return n
