"""Renderers: a :class:`ReportTable` to the bytes of one file format, streamed row by row.

CSV (RFC 4180, UTF-8 with BOM so spreadsheet programs detect the encoding): text cells that
a spreadsheet would read as a formula (first character ``= + - @``, tab or carriage return)
are prefixed with ``'`` (OWASP "CSV Injection" guidance). Numbers are written as numbers.

JSON: ``{"report": {...metadata}, "columns": [...], "rows": [{column: value}, ...]}``;
money stays an exact decimal string, never a float.

Renderers are CPU-bound and synchronous; the report agent runs them in a worker thread.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import orjson

from stream_app.reports.artifacts import HashingWriter
from stream_app.reports.model import Cell, ReportTable
from stream_app.reports.render_pdf import render_pdf
from stream_app.reports.render_pptx import render_pptx
from stream_app.reports.render_xlsx import render_xlsx

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


def render_csv(table: ReportTable, out: HashingWriter) -> None:
    """Write ``table`` as CSV to ``out`` (header row, then one line per row)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    types = [c.type for c in table.columns]
    writer.writerow([c.name for c in table.columns])
    out.write(b"\xef\xbb\xbf" + buf.getvalue().encode())
    for row in table.rows:
        buf.seek(0)
        buf.truncate()
        writer.writerow([_csv_cell(v, t) for v, t in zip(row, types, strict=True)])
        out.write(buf.getvalue().encode())
        out.rows += 1


def render_json(table: ReportTable, out: HashingWriter) -> None:
    """Write ``table`` as one JSON document to ``out``, a row at a time."""
    meta = {
        "report_type": table.report_type,
        "organization_id": table.organization_id,
        "organization_name": table.organization_name,
        "time_zone": table.time_zone,
        "date_from": table.date_from.isoformat(),
        "date_to": table.date_to.isoformat(),
        "notes": list(table.notes),
    }
    columns = [
        {"name": c.name, "type": c.type, "description": c.description} for c in table.columns
    ]
    out.write(b'{"report":' + orjson.dumps(meta) + b',"columns":' + orjson.dumps(columns))
    out.write(b',"rows":[')
    names = [c.name for c in table.columns]
    first = True
    for row in table.rows:
        out.write((b"" if first else b",") + orjson.dumps(dict(zip(names, row, strict=True))))
        first = False
        out.rows += 1
    out.write(b"]}")


RENDERERS: dict[str, tuple[str, Callable[[ReportTable, HashingWriter], None]]] = {
    "csv": ("csv", render_csv),
    "json": ("json", render_json),
    "excel": ("xlsx", render_xlsx),
    "pdf": ("pdf", render_pdf),
    "powerpoint": ("pptx", render_pptx),
}
"""Format name → (file extension, renderer)."""
