"""Helpers of the synthetic-data and business-report tests.

- :func:`load` generates a data set (kept in memory for the independent computations) and
  loads it into the session's PostgreSQL through the product's loader;
- :func:`build` builds a report through the registry against that database;
- :func:`render_and_read` renders a table in every format and reads each file back with an
  independent reader (csv, json, openpyxl, pypdf, python-pptx);
- small independent formatters: minor units → major-unit strings, half-even percentages.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import asyncpg
import openpyxl
import orjson
import pypdf
from pptx import Presentation

from stream_app.db.tenancy import fetch_organization
from stream_app.reports import registry
from stream_app.reports.artifacts import ArtifactStore
from stream_app.reports.model import Column, ReportTable
from stream_app.reports.registry import ReportContext
from stream_app.reports.render import RENDERERS
from stream_app.schemas.reports import ReportRequest
from stream_app.settings import Settings
from stream_app.synthetic.generator import Chunk, SynthConfig, generate_all
from stream_app.synthetic.load import load_synthetic

Expected = list[list[Any]]


async def load(settings: Settings, config: SynthConfig) -> Chunk:
    """Generate ``config``'s rows, load them (replacing the organisation); return the rows."""
    rows = generate_all(config)
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        summary = await load_synthetic(conn, config, replace=True, chunk_weddings=700)
    finally:
        await conn.close()
    assert summary.rows == {name: len(r) for name, r in rows.items()}
    return rows


async def _no_table_reads(*_: Any) -> dict[str, dict[str, Any]]:
    raise AssertionError("business reports read PostgreSQL only")


async def build(
    settings: Settings,
    report_type: str,
    organization_id: str,
    date_from: date,
    date_to: date,
    data_filters: dict[str, list[str]] | None = None,
) -> ReportTable:
    """Build ``report_type`` for ``organization_id`` over ``[date_from, date_to]``."""
    req = ReportRequest(
        schema_version=1,
        report_id=str(uuid.uuid4()),
        organization_id=organization_id,
        user_id="test",
        report_type=report_type,
        date_from=date_from,
        date_to=date_to,
        output_formats=["csv"],
        requested_at=datetime.now(UTC),
        data_filters=data_filters or {},
    )
    pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            org = await fetch_organization(conn, organization_id)
        ctx = ReportContext(
            request=req, organization=org, venues=[], pool=pool, read_venue_rows=_no_table_reads
        )
        return await registry.get(report_type).build(ctx)
    finally:
        await pool.close()


# -- independent formatting -------------------------------------------------------------------


def major(minor: int) -> str:
    """Minor units of a 2-decimal currency as the major-unit string (``-1234`` → ``-12.34``)."""
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"


def pct(numerator: int | Decimal, denominator: int | Decimal) -> str | None:
    """``numerator / denominator × 100`` with 2 decimals, half-even; None for a zero divisor."""
    if denominator == 0:
        return None
    q = Decimal(numerator) * 100 / Decimal(denominator)
    return str(q.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


def half_even(value: Decimal) -> int:
    """``value`` rounded to an integer, half-even."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def shown(value: Any, column_type: str) -> str:
    """How a PDF or slide shows a cell (thousands separators, ``%``), written independently."""
    if value is None:
        return ""
    if isinstance(value, int):
        return f"{value:,}"
    if column_type == "money":
        whole, _, frac = str(value).partition(".")
        sign = "-" if whole.startswith("-") else ""
        digits = f"{int(whole.lstrip('-')):,}"
        return f"{sign}{digits}.{frac}" if frac else f"{sign}{digits}"
    if column_type == "percent":
        return f"{value}%"
    return str(value)


# -- rendering and reading back ---------------------------------------------------------------


@dataclass
class Files:
    """The rendered files of one table, by format."""

    paths: dict[str, Path]


def render_and_read(table: ReportTable, folder: Path) -> Files:
    """Render ``table`` in all five formats into ``folder``."""
    store = ArtifactStore(folder)
    paths: dict[str, Path] = {}
    for fmt, (ext, renderer) in RENDERERS.items():
        with store.write("org", "r", f"report.{ext}", fmt) as (writer, out):
            renderer(table, writer)
        paths[fmt] = folder / out[0].path
    return Files(paths)


def squash(text: str) -> str:
    return "".join(text.split())


def assert_rows(rows: Any, columns: Sequence[Column], expected: Expected) -> None:
    """``rows`` equal ``expected`` cell by cell, with ``int`` cells of type int and every
    other cell a str or None (what the renderers accept)."""
    got = [list(r) for r in rows]
    assert got == expected
    for row in got:
        for value, column in zip(row, columns, strict=True):
            if value is not None:
                want = int if column.type == "int" else str
                assert type(value) is want, (column.name, value)


def check_main_table(
    files: Files, columns: Sequence[Column], expected: Expected, *, pdf_rows: int = 5_000
) -> None:
    """Every format's main table equals ``expected`` (the independently computed rows).

    CSV and JSON: every cell, exactly. Excel: the ``data`` sheet, typed (ints are ints, money
    a number whose shortest decimal form is the amount, percent that / 100, months and dates
    as dates). PDF: each row's shown cells, in order, in the extracted text. PowerPoint: the
    table slides' cells as shown (the deck holds at most 300 rows: those are compared).
    """
    names = [c.name for c in columns]
    types = [c.type for c in columns]

    # CSV
    text = files.paths["csv"].read_bytes().decode("utf-8-sig")
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0] == names
    body = lines[1 : 1 + len(expected)]
    want = [["" if v is None else str(v) for v in row] for row in expected]
    assert body == want
    assert len(lines) == 1 + len(expected) or lines[1 + len(expected)] in ([], [""])

    # JSON
    doc = orjson.loads(files.paths["json"].read_bytes())
    assert [c["name"] for c in doc["columns"]] == names
    assert doc["rows"] == [dict(zip(names, row, strict=True)) for row in expected]

    # Excel
    wb = openpyxl.load_workbook(files.paths["excel"], read_only=True)
    ws = wb["data"]
    got = list(ws.iter_rows(values_only=True))
    assert list(got[0]) == names
    assert len(got) == 1 + len(expected)
    for row, cells in zip(expected, got[1:], strict=True):
        for value, cell, kind in zip(row, cells, types, strict=True):
            if value is None:
                assert cell is None
            elif kind == "int":
                assert type(cell) is int and cell == value
            elif kind == "money":
                assert isinstance(cell, (int, float))
                assert Decimal(repr(float(cell))) == Decimal(value)
            elif kind == "percent":
                assert isinstance(cell, (int, float))
                assert Decimal(repr(float(cell))) * 100 == Decimal(value)
            elif kind == "month":
                assert isinstance(cell, datetime) and cell.date() == date.fromisoformat(
                    f"{value}-01"
                )
            elif kind == "date":
                assert isinstance(cell, datetime) and cell.date() == date.fromisoformat(value)
            else:
                assert cell == value
    wb.close()

    # PDF: each row's cells, in order, as one run of text
    pdf = squash("".join(p.extract_text() for p in pypdf.PdfReader(files.paths["pdf"]).pages))
    position = 0
    for row in expected[:pdf_rows]:
        run = squash("".join(shown(v, t) for v, t in zip(row, types, strict=True)))
        found = pdf.find(run, position)
        assert found >= 0, f"row {row} not in the PDF (after position {position})"
        position = found + len(run)

    # PowerPoint: the table slides, in order
    deck = Presentation(str(files.paths["powerpoint"]))
    header = [n.replace("_", " ") for n in names]
    seen: list[list[str]] = []
    for slide in deck.slides:
        for shape in slide.shapes:
            if shape.has_table:
                grid = shape.table
                cells = [
                    [grid.cell(r, c).text for c in range(len(names))] for r in range(len(grid.rows))
                ]
                if cells[0] == header:
                    seen.extend(cells[1:])
    shown_rows = [[shown(v, t) for v, t in zip(row, types, strict=True)] for row in expected]
    assert seen == shown_rows[: len(seen)]
    assert len(seen) == min(len(expected), 300)
