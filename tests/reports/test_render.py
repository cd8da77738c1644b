"""Excel, PDF and PowerPoint renderers, each file opened with an independent reader.

The expected figures are written out by hand below (not computed by the code under test):
openpyxl reads the workbooks, pypdf the PDFs and python-pptx the decks.
"""

from __future__ import annotations

import dataclasses
import json
import re
import zipfile
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pypdf
import pytest
from pptx import Presentation
from pptx.enum.chart import XL_CHART_TYPE

from stream_app.db.tenancy import Organization, Venue
from stream_app.reports.artifacts import HashingWriter
from stream_app.reports.model import (
    Cell,
    ChartAccumulator,
    ChartSpec,
    Column,
    ReportTable,
)
from stream_app.reports.render import RENDERERS
from stream_app.reports.render import pdf as render_pdf
from stream_app.reports.render import pptx as render_pptx
from stream_app.reports.render import xlsx as render_xlsx
from stream_app.reports.types import booking_summary
from stream_app.schemas.reports import OUTPUT_FORMATS
from stream_app.tables.bookings import table_key
from tests.reports.rendering import render

Renderer = Callable[[ReportTable, HashingWriter], None]

CAFE = "Ürsula's Café — 東京"
FORMULA = '=HYPERLINK("http://evil.example/","click")'
ORG_NAME = "Ünïcode Weddings — 東京 & Lisboa"

COLUMNS = (
    Column("venue_id", "text", "venue id"),
    Column("venue_name", "text", "venue name"),
    Column("month", "month", "calendar month"),
    Column("first_wedding", "date", "first wedding date in the month"),
    Column("bookings", "int", "bookings"),
    Column("cancellation_rate", "percent", "cancelled / booked × 100"),
    Column("currency", "text", "ISO 4217 code"),
    Column("revenue", "money", "revenue, major units"),
    Column("revenue_minor", "int", "revenue, minor units"),
)

ROWS: list[list[Cell]] = [
    ["v1", CAFE, "2016-01", "2016-01-09", 3, "33.33", "EUR", "11601850.23", 1160185023],
    ["v1", CAFE, "2016-02", "2016-02-13", 5, "0.00", "EUR", "200.01", 20001],
    ["v2", FORMULA, "2016-01", None, 0, None, "JPY", "123456", 123456],
    ["v2", FORMULA, "2016-03", "2016-03-05", 2, "50.00", "JPY", "98765", 98765],
    ["v3", "Dar Al-Kuwait Hall", "2016-02", "2016-02-20", 7, "28.57", "KWD", "1234.567", 1234567],
    ["v3", "Dar Al-Kuwait Hall", "2016-03", "2016-03-12", 1, "100.00", "KWD", "-0.125", -125],
    # 15 significant digits: the largest kind of amount that is still exact as an Excel number
    ["v4", "Zürich Ballsaal ß", "2016-03", "2016-03-26", 4, "25.00", "EUR", "9999999999999.99",
     999999999999999],
]  # fmt: skip

CHART = ChartSpec(
    title="Revenue by month",
    category_column="month",
    value_columns=("revenue",),
    series_column="currency",
)

# revenue per month and currency, added up by hand from ROWS
EXPECTED_SERIES = {
    "revenue (EUR)": [Decimal("11601850.23"), Decimal("200.01"), Decimal("9999999999999.99")],
    "revenue (JPY)": [Decimal("123456"), Decimal("0"), Decimal("98765")],
    "revenue (KWD)": [Decimal("0"), Decimal("1234.567"), Decimal("-0.125")],
}
EXPECTED_TOTALS = {
    "revenue (EUR)": "10,000,011,602,050.23",
    "revenue (JPY)": "222,221",
    "revenue (KWD)": "1,234.442",
}
MONEY_FORMATS = {"EUR": '#,##0.00 "EUR"', "JPY": '#,##0 "JPY"', "KWD": '#,##0.000 "KWD"'}
NOTES = ("Revenue is booked minus cancelled value.", "Zeitzone: Europe/Lisbon — ok.")


def make_table(
    rows: Iterable[Sequence[Cell]] = ROWS,
    columns: Sequence[Column] = COLUMNS,
    chart: ChartSpec | None = CHART,
) -> ReportTable:
    return ReportTable(
        report_type="monthly_booking_summary",
        organization_id="org-1",
        organization_name=ORG_NAME,
        time_zone="Europe/Lisbon",
        date_from=date(2016, 1, 1),
        date_to=date(2016, 3, 31),
        columns=columns,
        rows=rows,
        notes=NOTES,
        chart=chart,
    )


def squash(text: str) -> str:
    """``text`` without whitespace: PDF text extraction splits runs and lines freely."""
    return "".join(text.split())


# -- registration -----------------------------------------------------------------------------


def test_every_output_format_has_a_renderer() -> None:
    assert set(RENDERERS) == OUTPUT_FORMATS
    assert {k: v[0] for k, v in RENDERERS.items()} == {
        "csv": "csv",
        "json": "json",
        "excel": "xlsx",
        "pdf": "pdf",
        "powerpoint": "pptx",
    }


def test_chart_spec_is_checked_against_the_columns() -> None:
    with pytest.raises(ValueError, match="'nope' is not a column"):
        ChartAccumulator(ChartSpec("t", "nope", ("revenue",)), COLUMNS)
    with pytest.raises(ValueError, match="only int and money"):
        ChartAccumulator(ChartSpec("t", "month", ("venue_name",)), COLUMNS)
    acc = ChartAccumulator(CHART, COLUMNS)
    for row in reversed(ROWS):
        acc.add(row)
    data = acc.result()
    assert data.categories == ("2016-01", "2016-02", "2016-03")  # months sorted
    assert {s.name: list(s.values) for s in data.series} == EXPECTED_SERIES


# -- Excel ------------------------------------------------------------------------------------


def test_excel_cells_are_typed_exact_and_formatted(tmp_path: Path) -> None:
    path, rows = render(tmp_path, "excel", make_table())
    assert rows == len(ROWS)
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["data", "chart", "metadata"]
    ws = wb["data"]
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == f"A1:I{len(ROWS) + 1}"
    header = next(ws.iter_rows(min_row=1, max_row=1))
    assert [c.value for c in header] == [c.name for c in COLUMNS]
    assert all(c.font.b for c in header)
    assert ws.max_row == len(ROWS) + 1

    for expected, cells in zip(ROWS, ws.iter_rows(min_row=2), strict=True):
        vid, name, month, first, bookings, rate, currency, revenue, minor = cells
        assert (vid.value, vid.data_type) == (expected[0], "s")
        # the formula-looking name is a plain string cell, not a formula
        assert (name.value, name.data_type) == (expected[1], "s")
        assert month.is_date and month.value.date() == date.fromisoformat(f"{expected[2]}-01")
        assert month.number_format == "yyyy-mm"
        if expected[3] is None:
            assert first.value is None
        else:
            assert first.is_date and first.number_format == "yyyy-mm-dd"
            assert first.value.date() == date.fromisoformat(str(expected[3]))
        assert type(bookings.value) is int and bookings.value == expected[4]
        assert bookings.number_format == "#,##0"
        if expected[5] is None:
            assert rate.value is None
        else:
            assert isinstance(rate.value, (int, float)) and rate.number_format == "0.00%"
            assert Decimal(repr(float(rate.value))) * 100 == Decimal(str(expected[5]))
        assert currency.value == expected[6]
        # money: a number whose shortest decimal form is exactly the table's amount
        assert isinstance(revenue.value, (int, float))
        assert Decimal(repr(float(revenue.value))) == Decimal(str(expected[7]))
        assert revenue.number_format == MONEY_FORMATS[str(expected[6])]
        assert type(minor.value) is int and minor.value == expected[8]

    chart_ws = wb["chart"]
    values = [[c.value for c in r] for r in chart_ws.iter_rows()]
    assert values[0] == ["month", "revenue (EUR)", "revenue (JPY)", "revenue (KWD)"]
    assert [r[0] for r in values[1:]] == ["2016-01", "2016-02", "2016-03"]
    for col, name in enumerate(EXPECTED_SERIES, start=1):
        got = [Decimal(repr(float(r[col]))) for r in values[1:]]
        assert got == EXPECTED_SERIES[name]
    assert chart_ws.cell(2, 4).number_format == MONEY_FORMATS["KWD"]
    with zipfile.ZipFile(path) as z:
        charts = [n for n in z.namelist() if n.startswith("xl/charts/chart")]
        assert len(charts) == 1
        xml = z.read(charts[0]).decode()
    assert "<c:barChart>" in xml and '<c:barDir val="col"/>' in xml
    assert xml.count("<c:ser>") == 3
    assert "chart!$B$2:$B$4" in xml and "chart!$A$2:$A$4" in xml
    assert "Revenue by month" in xml
    assert len(chart_ws._charts) == 1  # openpyxl found the drawing's chart too

    meta = {r[0]: r[1] for r in wb["metadata"].iter_rows(values_only=True) if r[0] is not None}
    assert meta["organisation"] == ORG_NAME
    assert meta["organisation id"] == "org-1"
    assert meta["time zone"] == "Europe/Lisbon"
    assert isinstance(meta["from"], datetime) and isinstance(meta["to"], datetime)
    assert meta["from"].date() == date(2016, 1, 1) and meta["to"].date() == date(2016, 3, 31)
    assert meta["rows"] == len(ROWS)
    assert meta["notes"] == NOTES[0]
    texts = [v for r in wb["metadata"].iter_rows(values_only=True) for v in r if v]
    assert NOTES[1] in texts and "money" in texts


def test_excel_keeps_numbers_too_long_for_a_double_as_exact_text(tmp_path: Path) -> None:
    rows: list[list[Cell]] = [
        ["v1", CAFE, "2016-01", None, 2**60, None, "EUR", "12345678901234567.89", 5],
    ]
    path, _ = render(tmp_path, "excel", make_table(rows, chart=None))
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["data", "metadata"]
    row = [c.value for c in wb["data"][2]]
    assert row[4] == str(2**60) and row[7] == "12345678901234567.89"
    meta = {r[0]: r[1] for r in wb["metadata"].iter_rows(values_only=True) if r[0]}
    assert "2 numbers too long" in str(meta["cells kept as text"])


def test_excel_writes_identifiers_and_integers_over_15_digits_as_exact_text(
    tmp_path: Path,
) -> None:
    # Excel keeps 15 significant digits: 1234567890123456 as a number shows 1,234,567,890,123,460
    sixteen = 1_234_567_890_123_456
    columns = (
        Column("booking_id", "int", "an identifier held as an integer"),
        Column("client_ref", "text", "a text column whose rows hold integers"),
        Column("id", "int", "a bare id"),
        Column("guests", "int", "a count"),
        Column("share", "percent", "a share"),
        Column("amount", "decimal", "a quantity"),
        Column("currency", "text", "ISO 4217 code"),
        Column("revenue", "money", "revenue"),
    )
    rows: list[list[Cell]] = [
        [sixteen, sixteen, 7, sixteen, "12.3456789012345678", "1234567890123456", "EUR", "1.00"],
        [42, 7, 8, 999_999_999_999_999, "12.50", "3.25", "EUR", "1234567890123.45"],
        [43, 8, 9, -120_000_000_000_000_000, "0.00", "0", "EUR", "1234567890123456"],
    ]
    path, _ = render(tmp_path, "excel", make_table(rows, columns, chart=None))
    wb = openpyxl.load_workbook(path)
    got = [[c.value for c in row] for row in wb["data"].iter_rows(min_row=2)]
    # identifiers: text whatever their length
    assert [r[0] for r in got] == ["1234567890123456", "42", "43"]
    assert [r[1] for r in got] == ["1234567890123456", "7", "8"]
    assert [r[2] for r in got] == ["7", "8", "9"]
    # other integers: numbers up to 15 significant digits, exact text beyond
    assert got[0][3] == "1234567890123456"
    assert type(got[1][3]) is int and got[1][3] == 999_999_999_999_999
    assert got[2][3] == -120_000_000_000_000_000  # 2 significant digits: exact as a number
    # the same rule in the percent, decimal and money columns
    assert got[0][4] == "12.3456789012345678" and got[1][4] == pytest.approx(0.125)
    assert got[0][5] == "1234567890123456" and got[1][5] == pytest.approx(3.25)
    assert got[2][7] == "1234567890123456" and got[1][7] == 1234567890123.45
    # 16, 18, 16 and 16 digits: four cells kept as text (identifiers are not counted)
    meta = {r[0]: r[1] for r in wb["metadata"].iter_rows(values_only=True) if r[0]}
    assert str(meta["cells kept as text"]).startswith("4 numbers too long")


def test_excel_chart_sums_over_15_digits_are_exact_text(tmp_path: Path) -> None:
    rows: list[list[Cell]] = [
        ["v1", CAFE, "2016-01", None, 1, None, "EUR", "9999999999999.99", 1],
        ["v1", CAFE, "2016-01", None, 1, None, "EUR", "0.02", 1],  # sum: 17 digits
        ["v1", CAFE, "2016-02", None, 1, None, "EUR", "1.50", 1],
    ]
    path, _ = render(tmp_path, "excel", make_table(rows))
    wb = openpyxl.load_workbook(path)
    chart = [[c.value for c in r] for r in wb["chart"].iter_rows(min_row=2)]
    assert chart == [["2016-01", "10000000000000.01"], ["2016-02", 1.5]]


@pytest.mark.parametrize("count", [9, 18, 25])
def test_excel_rows_past_the_sheet_limit_continue_on_further_sheets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    monkeypatch.setattr(render_xlsx, "MAX_ROWS_PER_SHEET", 10)  # header + 9 rows a sheet
    rows = [
        [f"v{i}", f"Venue {i} — 東京", "2016-01", None, i, None, "EUR", f"{i}.05", i * 100 + 5]
        for i in range(count)
    ]
    # a one-shot iterator: the renderer must stream the rows in one pass
    path, written = render(tmp_path, "excel", make_table(iter(rows)))
    assert written == count
    wb = openpyxl.load_workbook(path)
    sheets = ["data", "data (2)", "data (3)"][: -(-count // 9)]
    assert wb.sheetnames == [*sheets, "chart", "metadata"]
    seen: list[list[Any]] = []
    for name in sheets:
        ws = wb[name]
        assert [c.value for c in ws[1]] == [c.name for c in COLUMNS]
        assert ws.freeze_panes == "A2"
        assert ws.max_row <= 10
        seen.extend([c.value for c in r] for r in ws.iter_rows(min_row=2))
    assert len(seen) == count
    assert [r[0] for r in seen] == [r[0] for r in rows]
    assert [r[4] for r in seen] == list(range(count))
    assert [r[8] for r in seen] == [r[8] for r in rows]
    meta = {r[0]: r[1] for r in wb["metadata"].iter_rows(values_only=True) if r[0]}
    assert meta["rows"] == count and meta["data sheets"] == ", ".join(sheets)
    total = sum(
        Decimal(repr(v)) for v in [r[1] for r in wb["chart"].iter_rows(values_only=True)][1:]
    )
    assert total == sum(Decimal(f"{i}.05") for i in range(count))


def test_excel_lists_at_most_max_table_rows_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render_xlsx, "MAX_TABLE_ROWS", 7)
    monkeypatch.setattr(render_xlsx, "MAX_ROWS_PER_SHEET", 5)  # header + 4 rows a sheet
    count = 12
    rows = [
        [f"v{i:02d}", "Venue", f"2016-0{1 + i % 2}", None, i, None, "EUR", f"{i}.25", i]
        for i in range(count)
    ]
    path, written = render(tmp_path, "excel", make_table(iter(rows)))
    assert written == 7
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["data", "data (2)", "chart", "metadata"]
    listed = [
        r[0]
        for name in ("data", "data (2)")
        for r in wb[name].iter_rows(min_row=2, values_only=True)
    ]
    assert listed == [f"v{i:02d}" for i in range(7)]
    meta = {r[0]: r[1] for r in wb["metadata"].iter_rows(values_only=True) if r[0]}
    assert meta["rows"] == 7
    assert meta["rows not listed"] == (
        "the first 7 of 12 rows (a workbook lists at most 7 rows a table); "
        "all 12 rows are in the CSV and JSON files"
    )
    # the chart still sums every row: 2016-01 holds the even i, 2016-02 the odd ones
    chart = {r[0]: Decimal(repr(r[1])) for r in wb["chart"].iter_rows(min_row=2, values_only=True)}
    assert chart == {
        "2016-01": sum(Decimal(f"{i}.25") for i in range(0, count, 2)),
        "2016-02": sum(Decimal(f"{i}.25") for i in range(1, count, 2)),
    }


# -- PDF --------------------------------------------------------------------------------------


def pdf_text(path: Path) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(path).pages]


def test_pdf_shows_the_figures_in_embedded_unicode_fonts(tmp_path: Path) -> None:
    path, rows = render(tmp_path, "pdf", make_table())
    assert rows == len(ROWS)
    reader = pypdf.PdfReader(path)
    text = squash("\n".join(p.extract_text() for p in reader.pages))
    for expected in (
        "Monthly booking summary",
        ORG_NAME,
        CAFE,
        FORMULA,
        "Zürich Ballsaal ß",
        "2016-01-01 to 2016-03-31",
        "Europe/Lisbon",
        *NOTES,
        "Revenue by month",
        "revenue (EUR)",
        "revenue (JPY)",
        "revenue (KWD)",
    ):
        assert squash(expected) in text, expected
    # every figure of every row, as printed (thousands separators, exact decimals)
    for figure in (
        "11,601,850.23",
        "1,160,185,023",
        "200.01",
        "123,456",
        "98,765",
        "1,234.567",
        "1,234,567",
        "-0.125",
        "9,999,999,999,999.99",
        "999,999,999,999,999",
        "33.33%",
        "28.57%",
        "100.00%",
        "2016-03-26",
    ):
        assert figure in text, figure
    # fonts: all embedded TrueType subsets, DejaVu Sans and the CJK fallback among them
    fonts: dict[str, Any] = {}
    for page in reader.pages:
        resources: Any = page["/Resources"]
        for ref in resources["/Font"].values():
            font = ref.get_object()
            fonts[str(font["/BaseFont"])] = font
    assert any(name.endswith("+DejaVuSans") for name in fonts)
    assert any(name.endswith("+DroidSansFallback") for name in fonts)
    for name, font in fonts.items():
        descriptor = font["/FontDescriptor"].get_object()
        assert "/FontFile2" in descriptor, f"{name} is not embedded"
    # 9 columns: landscape
    box = reader.pages[0].mediabox
    assert box.width > box.height


def test_pdf_repeats_the_header_and_states_a_capped_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render_pdf, "MAX_TABLE_ROWS", 120)
    rows = [
        [f"x{i:03d}", f"Venue {i:03d}", "2016-02", None, i, None, "EUR", "1.00", 100]
        for i in range(150)
    ]
    path, written = render(tmp_path, "pdf", make_table(rows))
    assert written == 120
    pages = [squash(t) for t in pdf_text(path)]
    text = "".join(pages)
    assert "ThisPDFliststhefirst120of150rows;all150rowsareintheCSV,JSONandExcel" in text
    assert "Venue119" in text and "Venue120" not in text
    table_pages = [p for p in pages if "Venue" in p]
    assert len(table_pages) >= 2
    assert all("venueidvenuenamemonth" in p for p in table_pages)


def test_pdf_portrait_for_few_columns_and_no_chart(tmp_path: Path) -> None:
    columns = COLUMNS[:3]
    rows = [r[:3] for r in ROWS]
    path, written = render(tmp_path, "pdf", make_table(rows, columns, chart=None))
    assert written == len(ROWS)
    box = pypdf.PdfReader(path).pages[0].mediabox
    assert box.width < box.height
    assert squash(CAFE) in squash("".join(pdf_text(path)))


@pytest.mark.parametrize("columns", [15, 24])
def test_pdf_never_breaks_a_word_of_a_wide_table(tmp_path: Path, columns: int) -> None:
    """A trial user's 15-column PDF printed ``currenc`` / ``y`` and ``Barcelon`` / ``a Port``:
    a column is as wide as its widest word, and a table too wide for that is set smaller.
    Every word of the headers and text cells comes out whole (24 columns: at a smaller size)."""
    names = ["office_name", "city", "currency", "bookings", "cancellation_rate", "revenue"]
    cols = [
        Column(
            f"{names[i % len(names)]}_{i}",
            "text" if i % len(names) < 3 else "int",
            "a column",
        )
        for i in range(columns)
    ]
    cells: list[Cell] = ["Barcelona Port Weddings", "Barcelona", "EUR", 1234567, 98765, 4321]
    rows: list[list[Cell]] = [[cells[i % len(names)] for i in range(columns)]]
    rows += [[f"Lisboa {n}" if i % len(names) < 3 else n for i in range(columns)] for n in range(3)]
    path, written = render(tmp_path, "pdf", make_table(rows, cols, chart=None))
    assert written == 4
    words = set(" ".join(pdf_text(path)).split())
    for col in cols:
        for word in col.name.replace("_", " ").split():
            assert word in words, (word, sorted(w for w in words if w[:3] == word[:3]))
    for word in ("Barcelona", "Port", "Weddings", "EUR", "1,234,567", "98,765", "Lisboa"):
        assert word in words


def test_pdf_names_a_missing_font(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope" / "DejaVuSans.ttf"
    monkeypatch.setattr(render_pdf, "FONT_PATH", missing)
    monkeypatch.setattr(render_pdf, "_fonts", None)
    with pytest.raises(render_pdf.FontMissingError, match=re.escape(str(missing))):
        render(tmp_path, "pdf", make_table())
    assert not list(tmp_path.rglob("*.pdf"))


# -- PowerPoint -------------------------------------------------------------------------------


def slide_texts(slide: Any) -> list[str]:
    return [shape.text_frame.text for shape in slide.shapes if shape.has_text_frame]


def test_powerpoint_title_kpis_native_chart_and_table(tmp_path: Path) -> None:
    path, rows = render(tmp_path, "powerpoint", make_table())
    assert rows == len(ROWS)
    prs = Presentation(str(path))
    slides = list(prs.slides)
    # title, totals (the table states no key figures of its own), chart, one table slide
    # (7 rows), notes
    assert len(slides) == 5
    assert slide_texts(slides[1])[0] == "Totals"
    title = "\n".join(slide_texts(slides[0]))
    assert "Monthly booking summary" in title and ORG_NAME in title
    assert "2016-01-01 to 2016-03-31" in title

    kpis = {t.split("\n")[1]: t.split("\n")[0] for t in slide_texts(slides[1])[1:]}
    assert kpis == {
        "Rows": "7",
        **{f"Total {name}": total for name, total in EXPECTED_TOTALS.items()},
    }

    charts = [s.chart for s in slides[2].shapes if s.has_chart]
    assert len(charts) == 1
    chart = charts[0]
    assert chart.chart_type == XL_CHART_TYPE.COLUMN_CLUSTERED
    assert tuple(chart.plots[0].categories) == ("2016-01", "2016-02", "2016-03")
    series = {s.name: list(s.values) for s in chart.plots[0].series}
    assert series == {k: [float(v) for v in vs] for k, vs in EXPECTED_SERIES.items()}

    tables = [s.table for s in slides[3].shapes if s.has_table]
    assert len(tables) == 1
    grid = tables[0]
    cells = [[grid.cell(r, c).text for c in range(len(COLUMNS))] for r in range(len(ROWS) + 1)]
    assert cells[0] == [c.name.replace("_", " ") for c in COLUMNS]
    assert cells[1] == [
        "v1", CAFE, "2016-01", "2016-01-09", "3", "33.33%", "EUR", "11,601,850.23",
        "1,160,185,023",
    ]  # fmt: skip
    assert cells[3] == ["v2", FORMULA, "2016-01", "", "0", "", "JPY", "123,456", "123,456"]
    assert cells[6][7] == "-0.125" and cells[7][7] == "9,999,999,999,999.99"
    last = "\n".join(slide_texts(slides[4]))
    assert NOTES[0] in last and "show all 7 rows" in last


def test_powerpoint_holds_text_xml_cannot(tmp_path: Path) -> None:
    """An attacker round's venue name with U+FFFE, and a history's name with a control
    character, failed every PowerPoint report of the organisation (python-pptx: "All strings
    must be XML compatible"; chart categories: an XML syntax error). They are shown as U+FFFD,
    in the table and as chart categories."""
    odd = "bad \ufffe x\x01y\uffff"
    rows = [["v1", odd, "2016-01", None, 1, None, "EUR", "1.00", 100]]
    by_name = ChartSpec(
        title="Revenue by venue",
        category_column="venue_name",
        value_columns=("revenue",),
        series_column="currency",
    )
    path, _ = render(tmp_path, "powerpoint", make_table(rows=rows, chart=by_name))
    prs = Presentation(str(path))
    shown = "bad \ufffd x\ufffdy\ufffd"
    chart = next(s.chart for slide in prs.slides for s in slide.shapes if s.has_chart)
    assert tuple(chart.plots[0].categories) == (shown,)
    grid = next(s.table for slide in prs.slides for s in slide.shapes if s.has_table)
    assert grid.cell(1, 1).text == shown


def test_powerpoint_caps_table_slides_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render_pptx, "ROWS_PER_SLIDE", 2)
    monkeypatch.setattr(render_pptx, "MAX_TABLE_SLIDES", 2)
    path, rows = render(tmp_path, "powerpoint", make_table())
    assert rows == 4
    slides = list(Presentation(str(path)).slides)
    assert len(slides) == 3 + 2 + 1
    assert slide_texts(slides[4])[0] == "Data: rows 3–4 of 7"
    last = "\n".join(slide_texts(slides[-1]))
    assert "first 4 of 7 rows; all 7 rows are in the CSV, JSON and Excel files" in last


def test_powerpoint_without_chart_spec_totals_columns(tmp_path: Path) -> None:
    path, _ = render(tmp_path, "powerpoint", make_table(chart=None))
    slides = list(Presentation(str(path)).slides)
    assert not any(s.has_chart for slide in slides for s in slide.shapes)
    kpis: dict[str, str] = {}
    for slide in slides:
        if slide_texts(slide)[0].startswith("Totals"):
            kpis.update((t.split("\n")[1], t.split("\n")[0]) for t in slide_texts(slide)[1:])
    # per currency: bookings and minor units of different currencies are never added up
    assert kpis == {
        "Rows": "7",
        "Total bookings (EUR)": "12",
        "Total bookings (JPY)": "2",
        "Total bookings (KWD)": "8",
        "Total revenue (EUR)": "10,000,011,602,050.23",
        "Total revenue (JPY)": "222,221",
        "Total revenue (KWD)": "1,234.442",
        "Total revenue_minor (EUR)": "1,000,001,160,205,023",
        "Total revenue_minor (JPY)": "222,221",
        "Total revenue_minor (KWD)": "1,234,442",
    }


# -- the booking summary, end to end ----------------------------------------------------------


@pytest.mark.parametrize("fmt", ["excel", "pdf", "powerpoint"])
def test_booking_summary_renders_with_its_chart(tmp_path: Path, fmt: str) -> None:
    totals = {
        "bookings": 3,
        "cancellations": 1,
        "booked_minor": {"EUR": 30001},
        "cancelled_minor": {"EUR": 10000},
    }
    store = {table_key("org", "v1", "month", "2016-02"): {"totals": totals, "offset": 9}}
    org = Organization("org", ORG_NAME, "Europe/Lisbon", "EUR")
    table = booking_summary.build_report(
        store.get, org, [Venue("v1", CAFE, None)], date(2016, 1, 1), date(2016, 2, 29)
    )
    assert table.chart == booking_summary.CHART
    path, rows = render(tmp_path, fmt, table)
    assert rows == 2
    if fmt == "excel":
        wb = openpyxl.load_workbook(path)
        figures = list(wb["chart"].iter_rows(values_only=True))
        assert figures == [("month", "revenue (EUR)"), ("2016-01", 0), ("2016-02", 200.01)]
    elif fmt == "pdf":
        text = squash("".join(pdf_text(path)))
        assert "200.01" in text and "20,001" in text and squash(CAFE) in text
    else:
        slides = list(Presentation(str(path)).slides)
        chart = next(s.chart for slide in slides for s in slide.shapes if s.has_chart)
        assert [list(s.values) for s in chart.plots[0].series] == [[0.0, 200.01]]


@pytest.mark.parametrize("fmt", ["excel", "pdf", "powerpoint"])
def test_an_empty_table_renders(tmp_path: Path, fmt: str) -> None:
    path, rows = render(tmp_path, fmt, make_table([]))
    assert rows == 0
    if fmt == "excel":
        wb = openpyxl.load_workbook(path)
        assert wb.sheetnames == ["data", "metadata"]  # no figures, no chart
        assert [c.value for c in wb["data"][1]] == [c.name for c in COLUMNS]
    elif fmt == "pdf":
        assert "Norows." in squash("".join(pdf_text(path)))
    else:
        slides = list(Presentation(str(path)).slides)
        assert len(slides) == 3  # title, key figures, notes
        assert "show all 0 rows" in "\n".join(slide_texts(slides[-1]))


def test_an_overlong_text_cell_is_stated_in_documents_and_refused_by_excel(
    tmp_path: Path,
) -> None:
    name = "Quinta " + "x" * 40_000
    rows: list[list[Cell]] = [
        ["v1", name, "2016-01", None, 1, None, "EUR", "1.00", 100],
    ]
    text = squash("".join(pdf_text(render(tmp_path / "pdf", "pdf", make_table(rows))[0])))
    limit = render_pdf.MAX_CELL_CHARS
    assert f"[{len(name) - limit:,}morecharacters;thefulltextisintheCSV,JSONandExcelfiles]" in text
    deck = Presentation(str(render(tmp_path / "pptx", "powerpoint", make_table(rows))[0]))
    table_slide = list(deck.slides)[3]
    grid = next(s.table for s in table_slide.shapes if s.has_table)
    cut = render_pptx.MAX_CELL_CHARS
    assert grid.cell(1, 1).text == f"{name[:cut]}… [+{len(name) - cut:,} characters]"
    with pytest.raises(ValueError, match="40007 characters; an Excel cell holds at most 32767"):
        render(tmp_path / "xlsx", "excel", make_table(rows))
    assert not list((tmp_path / "xlsx").rglob("*.xlsx*"))


def test_powerpoint_of_an_organisation_name_holding_control_characters(tmp_path: Path) -> None:
    """An attacker round's finding: an organisation named with control characters (before
    names were checked at registration) failed the PowerPoint file ("All strings must be XML
    compatible": the document properties); the deck is written, the properties with U+FFFD
    in their place, the title slide with python-pptx's own escapes."""
    name = "ctl\x01\x0b\x1bname"
    table = dataclasses.replace(make_table(), organization_name=name)
    path, rows = render(tmp_path, "powerpoint", table)
    assert rows == len(ROWS)
    prs = Presentation(str(path))
    assert prs.core_properties.author == "ctl\ufffd\ufffd\ufffdname"
    assert prs.core_properties.title == "Monthly booking summary — ctl\ufffd\ufffd\ufffdname"


def test_json_keeps_an_integer_past_64_bits_exact(tmp_path: Path) -> None:
    """A second attacker round: a sum over a history loaded near PostgreSQL's bigint limit
    (three bookings of 2^63 - 1) failed the whole report with orjson's "Integer exceeds
    64-bit range"."""
    huge = 3 * (2**63 - 1)
    rows: list[list[Cell]] = [
        ["v1", CAFE, "2016-01", "2016-01-09", 3, "33.33", "EUR", "1.00", huge]
    ]
    path, written = render(tmp_path, "json", make_table(rows=rows))
    doc = json.loads(path.read_bytes())
    assert written == 1
    assert doc["rows"][0]["revenue_minor"] == huge
    assert doc["rows"][0]["venue_name"] == CAFE and doc["report"]["date_from"] == "2016-01-01"
