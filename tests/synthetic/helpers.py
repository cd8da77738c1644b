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
from stream_app.reports.render import RENDERERS
from stream_app.reports.types.base import ReportContext
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
    if column_type in ("money", "decimal"):
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
        with store.write("org", "r", f"report.{ext}", fmt, key=None) as (writer, out):
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


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: Any, column_type: str) -> str:
    """A cell as the CSV holds it (a text cell that looks like a formula gets a ``'``)."""
    if value is None:
        return ""
    text = str(value)
    if column_type == "text" and text.startswith(_FORMULA_START):
        return "'" + text
    return text


def _excel_matches(value: Any, cell: Any, kind: str) -> None:
    if value is None:
        assert cell is None
    elif kind == "int":
        assert type(cell) is int and cell == value
    elif kind in ("money", "decimal"):
        assert isinstance(cell, (int, float))
        assert Decimal(repr(float(cell))) == Decimal(value)
    elif kind == "percent":
        assert isinstance(cell, (int, float))
        assert Decimal(repr(float(cell))) * 100 == Decimal(value)
    elif kind == "month":
        assert isinstance(cell, datetime) and cell.date() == date.fromisoformat(f"{value}-01")
    elif kind == "date":
        assert isinstance(cell, datetime) and cell.date() == date.fromisoformat(value)
    else:
        assert cell == value


def check_files(
    files: Files, table: ReportTable, expected: dict[str, Expected], pptx_rows: int = 300
) -> None:
    """Every format holds the main table (key ``""``) and each section (key: its name) with
    exactly the ``expected`` rows, and the key figures.

    CSV: blocks separated by an empty line, each section titled ``# title``; every cell.
    JSON: ``rows`` and ``sections[].rows``, every cell, and ``kpis``. Excel: the ``data`` sheet
    and a sheet per section, typed (ints are ints, money a number whose shortest decimal
    form is the amount, percent that ÷ 100, months and dates as dates). PDF: each row's
    cells as shown, in order, after its table's title; the key figures. PowerPoint: the
    table slides' cells as shown (at most ``pptx_rows`` rows a table) and the headline
    figures.
    """
    blocks: list[tuple[str, str, Sequence[Column]]] = [("", "Data", table.columns)]
    blocks += [(s.name, s.title, s.columns) for s in table.sections]
    assert sorted(expected) == sorted(name for name, _, _ in blocks)

    # CSV
    text = files.paths["csv"].read_bytes().decode("utf-8-sig")
    parts: list[list[list[str]]] = [[]]
    for line in csv.reader(io.StringIO(text, newline="")):
        if line == []:
            parts.append([])
        else:
            parts[-1].append(line)
    if table.validation:  # the findings block comes last
        assert parts.pop() == [["# Validation"], ["finding"], *[[v] for v in table.validation]]
    assert len(parts) == len(blocks)
    for part, (name, title, columns) in zip(parts, blocks, strict=True):
        types = [c.type for c in columns]
        if name:
            assert part[0] == [f"# {title}"]
            part = part[1:]
        assert part[0] == [c.name for c in columns]
        want = [[csv_text(v, t) for v, t in zip(r, types, strict=True)] for r in expected[name]]
        assert part[1:] == want, name

    # JSON
    doc = orjson.loads(files.paths["json"].read_bytes())
    names = [c.name for c in table.columns]
    assert doc["rows"] == [dict(zip(names, r, strict=True)) for r in expected[""]]
    assert doc["kpis"] == [{"label": k.label, "value": k.value} for k in table.kpis]
    assert [s["name"] for s in doc["sections"]] == [s.name for s in table.sections]
    for section in doc["sections"]:
        cols = [c["name"] for c in section["columns"]]
        assert section["rows"] == [
            dict(zip(cols, r, strict=True)) for r in expected[section["name"]]
        ]

    # Excel
    wb = openpyxl.load_workbook(files.paths["excel"], read_only=True)
    for name, _, columns in blocks:
        got = list(wb[name or "data"].iter_rows(values_only=True))
        assert list(got[0]) == [c.name for c in columns]
        assert len(got) == 1 + len(expected[name]), name
        for row, cells in zip(expected[name], got[1:], strict=True):
            for value, cell, column in zip(row, cells, columns, strict=True):
                _excel_matches(value, cell, column.type)
    wb.close()

    # PDF: key figures, then each table's rows in order after its title
    pdf = squash("".join(p.extract_text() for p in pypdf.PdfReader(files.paths["pdf"]).pages))
    for kpi in table.kpis:
        assert squash(kpi.label) + squash(kpi.value) in pdf, kpi
    position = 0
    for name, title, columns in blocks:
        if name:
            position = pdf.index(squash(title), position)
        types = [c.type for c in columns]
        for row in expected[name]:
            run = squash("".join(shown(v, t) for v, t in zip(row, types, strict=True)))
            found = pdf.find(run, position)
            assert found >= 0, f"{name or 'main'} row {row} not in the PDF after {position}"
            position = found + len(run)

    # PowerPoint: headline figures, then the table slides of each table
    deck = Presentation(str(files.paths["powerpoint"]))
    seen: dict[str, list[list[str]]] = {name: [] for name, _, _ in blocks}
    headline: dict[str, str] = {}
    for slide in deck.slides:
        texts = [sh.text_frame.text for sh in slide.shapes if sh.has_text_frame]
        if texts and texts[0].startswith("Key figures"):
            headline.update((t.split("\n")[1], t.split("\n")[0]) for t in texts[1:])
        for shape in slide.shapes:
            if not shape.has_table:
                continue
            block = next(b for b in blocks if texts[0].startswith(f"{b[1]}: rows"))
            grid = shape.table
            cells = [[c.text for c in row.cells] for row in grid.rows]
            assert cells[0] == [c.name.replace("_", " ") for c in block[2]]
            seen[block[0]].extend(cells[1:])
    assert headline == {k.label: k.value for k in table.kpis}
    for name, _, columns in blocks:
        types = [c.type for c in columns]
        want = [[shown(v, t) for v, t in zip(r, types, strict=True)] for r in expected[name]]
        assert seen[name] == want[:pptx_rows], name
