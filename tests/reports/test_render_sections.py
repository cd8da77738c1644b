"""Sections, key figures and validation findings in every output format.

One report with a main table, two further sections (non-ASCII names, a formula-looking name,
three currencies, a line chart and a column chart), three key figures and three validation
findings is rendered in the five formats; each file is opened with an independent reader
(csv, orjson, openpyxl, pypdf, python-pptx) and every figure is compared with values written
out by hand or summed here in plain Python from the rows.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator, Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import orjson
import pypdf
import pytest
from pptx import Presentation
from pptx.enum.chart import XL_CHART_TYPE

from stream_app.reports.model import Cell, ChartSpec, Column, Kpi, ReportSection, ReportTable
from stream_app.reports.render import RENDERERS
from stream_app.reports.render import xlsx as render_xlsx
from tests.reports.rendering import csv_blocks, csv_cell, render

ORG_NAME = "Fotografía Ñandú — 東京 & Zürich"

MAIN_COLUMNS = (
    Column("month", "month", "calendar month"),
    Column("currency", "text", "ISO 4217 code"),
    Column("revenue", "money", "revenue, major units"),
    Column("bookings", "int", "bookings"),
)
MAIN_ROWS: list[list[Cell]] = [
    ["2016-01", "EUR", "12345.67", 12],
    ["2016-02", "EUR", "1000.00", 5],
]
MAIN_CHART = ChartSpec("Revenue by month", "month", ("revenue",), series_column="currency")

ZOE, LI, ORJAN = "Zoë Ångström", "李小龙 (Lǐ Xiǎolóng)", "Ørjan Ødegård"
FORMULA = "=cmd|' /C calc'!A0"
P_COLUMNS = (
    Column("photographer_id", "text", "photographer id"),
    Column("photographer", "text", "name"),
    Column("first_wedding", "date", "first wedding"),
    Column("weddings", "int", "weddings"),
    Column("nps", "percent", "net promoter score"),
    Column("currency", "text", "ISO 4217 code"),
    Column("revenue", "money", "revenue, major units"),
)
P_ROWS: list[list[Cell]] = [
    ["p1", ZOE, "2016-01-09", 12, "42.50", "EUR", "12345.67"],
    ["p2", LI, "2016-02-13", 3, "-10.00", "EUR", "0.01"],
    ["p3", FORMULA, None, 1234, "100.00", "JPY", "1234567"],
    ["p4", ORJAN, "2016-03-05", 0, None, "KWD", "-1.250"],
    ["p1", ZOE, "2016-03-26", 5, "0.00", "EUR", "1000.00"],
]
P_CHART = ChartSpec("Umsatz je Fotograf", "photographer", ("revenue",), series_column="currency")
P_TITLE = "Zufriedenheit je Fotograf — 写真家"
P_NOTES = ("NPS: Anteil Promotoren − Anteil Kritiker, in Prozentpunkten.",)

W_COLUMNS = (
    Column("weekday", "text", "weekday of the wedding"),
    Column("this_year", "int", "weddings 2016"),
    Column("last_year", "int", "weddings 2015"),
    Column("share", "percent", "share of 2016 weddings"),
)
SATURDAY = "Samstag — 土曜日"
W_ROWS: list[list[Cell]] = [
    [SATURDAY, 560, 540, "56.00"],
    ["Freitag", 150, 170, "15.00"],
    ["Sonntag", 90, 80, "9.00"],
    ["Montag", 0, 3, "0.00"],
]
W_CHART = ChartSpec("Hochzeiten je Wochentag", "weekday", ("this_year", "last_year"), kind="line")
W_TITLE = "Saisonalität: Wochentag (Ñandú)"

KPIS = (
    Kpi("Umsatz 2016 (EUR)", "13,345.67"),
    Kpi("NPS — 東京", "42"),
    Kpi("Buchungen", "1,254"),
)
FINDINGS = (
    "3 Zahlungen ohne Buchung (Waisen): pay-9, pay-10, pay-11",
    "-1 Buchung mit negativem Betrag: b-7 (−5.00 EUR)",
    "Währungen gemischt: Buchung b-2 in EUR, Zahlung pay-4 in USD",
)


def make_table(
    sections: Sequence[ReportSection] | None = None,
    kpis: Sequence[Kpi] = KPIS,
    validation: Sequence[str] = FINDINGS,
) -> ReportTable:
    """The report; section rows are one-shot iterators, so each renderer must read them once."""
    if sections is None:
        sections = (
            ReportSection(
                "by_photographer", P_TITLE, P_COLUMNS, iter(P_ROWS), P_CHART, notes=P_NOTES
            ),
            ReportSection("weekday_trend", W_TITLE, W_COLUMNS, iter(W_ROWS), W_CHART),
        )
    return ReportTable(
        report_type="photography_business",
        organization_id="org-s",
        organization_name=ORG_NAME,
        time_zone="Europe/Madrid",
        date_from=date(2016, 1, 1),
        date_to=date(2016, 3, 31),
        columns=MAIN_COLUMNS,
        rows=iter(MAIN_ROWS),
        notes=("Revenue is booked minus cancelled value.",),
        chart=MAIN_CHART,
        sections=sections,
        kpis=kpis,
        validation=validation,
    )


def sums(
    rows: Sequence[Sequence[Cell]], cat: int, value: int, series: int | None
) -> dict[str, dict[str, Decimal]]:
    """``{series: {category: sum}}`` in plain Python (categories in first-seen order)."""
    cats = list(dict.fromkeys(str(r[cat]) for r in rows))
    keys = sorted({str(r[series]) for r in rows}) if series is not None else [""]
    out: dict[str, dict[str, Decimal]] = {}
    for key in keys:
        out[key] = {c: Decimal(0) for c in cats}
        for r in rows:
            if (series is None or r[series] == key) and r[value] is not None:
                out[key][str(r[cat])] += Decimal(str(r[value]))
    return out


# hand-checked: Zoë 12345.67 + 1000.00; the others have one row each
P_SERIES = {
    "revenue (EUR)": [Decimal("13345.67"), Decimal("0.01"), Decimal(0), Decimal(0)],
    "revenue (JPY)": [Decimal(0), Decimal(0), Decimal("1234567"), Decimal(0)],
    "revenue (KWD)": [Decimal(0), Decimal(0), Decimal(0), Decimal("-1.250")],
}
W_SERIES = {
    "this_year": [Decimal(560), Decimal(150), Decimal(90), Decimal(0)],
    "last_year": [Decimal(540), Decimal(170), Decimal(80), Decimal(3)],
}


def test_expected_chart_figures_agree_with_a_plain_sum() -> None:
    plain = sums(P_ROWS, 1, 6, 5)
    assert {f"revenue ({k})": list(v.values()) for k, v in plain.items()} == P_SERIES
    assert list(plain["EUR"]) == [ZOE, LI, FORMULA, ORJAN]
    assert list(sums(W_ROWS, 0, 1, None)[""].values()) == W_SERIES["this_year"]
    assert list(sums(W_ROWS, 0, 2, None)[""].values()) == W_SERIES["last_year"]


# -- CSV --------------------------------------------------------------------------------------


def test_csv_blocks(tmp_path: Path) -> None:
    path, rows = render(tmp_path, "csv", make_table())
    assert rows == len(MAIN_ROWS)
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    blocks = csv_blocks(raw)
    assert len(blocks) == 4
    main, photographers, weekdays, validation = blocks
    assert main[0] == [c.name for c in MAIN_COLUMNS]
    assert main[1:] == [
        [csv_cell(v, c) for v, c in zip(r, MAIN_COLUMNS, strict=True)] for r in MAIN_ROWS
    ]
    assert photographers[0] == [f"# {P_TITLE}"]
    assert photographers[1] == [c.name for c in P_COLUMNS]
    assert photographers[2:] == [
        [csv_cell(v, c) for v, c in zip(r, P_COLUMNS, strict=True)] for r in P_ROWS
    ]
    assert photographers[4][1] == "'=cmd|' /C calc'!A0"  # made inert
    assert photographers[5][6] == "-1.250" and photographers[4][3] == "1234"
    assert weekdays[0] == [f"# {W_TITLE}"]
    assert weekdays[1] == [c.name for c in W_COLUMNS]
    assert weekdays[2:] == [
        [csv_cell(v, c) for v, c in zip(r, W_COLUMNS, strict=True)] for r in W_ROWS
    ]
    assert validation == [
        ["# Validation"],
        ["finding"],
        [FINDINGS[0]],
        ["'" + FINDINGS[1]],
        [FINDINGS[2]],
    ]


def test_csv_without_sections_or_findings_is_the_plain_table(tmp_path: Path) -> None:
    path, _ = render(tmp_path, "csv", make_table(sections=(), validation=()))
    lines = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")))
    assert lines == [[c.name for c in MAIN_COLUMNS], *[[str(v) for v in r] for r in MAIN_ROWS]]


# -- JSON -------------------------------------------------------------------------------------


def test_json_sections_kpis_validation(tmp_path: Path) -> None:
    path, rows = render(tmp_path, "json", make_table())
    assert rows == len(MAIN_ROWS)
    doc = orjson.loads(path.read_bytes())
    assert doc["report"]["organization_name"] == ORG_NAME
    assert doc["kpis"] == [{"label": k.label, "value": k.value} for k in KPIS]
    assert doc["validation"] == list(FINDINGS)
    assert doc["rows"] == [
        dict(zip([c.name for c in MAIN_COLUMNS], r, strict=True)) for r in MAIN_ROWS
    ]

    def described(columns: Sequence[Column]) -> list[dict[str, str]]:
        return [{"name": c.name, "type": c.type, "description": c.description} for c in columns]

    assert doc["sections"] == [
        {
            "name": "by_photographer",
            "title": P_TITLE,
            "notes": list(P_NOTES),
            "columns": described(P_COLUMNS),
            "rows": [dict(zip([c.name for c in P_COLUMNS], r, strict=True)) for r in P_ROWS],
        },
        {
            "name": "weekday_trend",
            "title": W_TITLE,
            "notes": [],
            "columns": described(W_COLUMNS),
            "rows": [dict(zip([c.name for c in W_COLUMNS], r, strict=True)) for r in W_ROWS],
        },
    ]
    # money stays an exact string, never a float
    assert doc["sections"][0]["rows"][3]["revenue"] == "-1.250"


# -- Excel ------------------------------------------------------------------------------------

MONEY_FORMATS = {"EUR": '#,##0.00 "EUR"', "JPY": '#,##0 "JPY"', "KWD": '#,##0.000 "KWD"'}


def as_decimal(value: Any) -> Decimal:
    assert isinstance(value, (int, float)), value
    return Decimal(repr(float(value))) if isinstance(value, float) else Decimal(value)


def test_excel_sheet_per_section_with_chart_kpis_and_findings(tmp_path: Path) -> None:
    path, rows = render(tmp_path, "excel", make_table())
    assert rows == len(MAIN_ROWS)
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == [
        "data",
        "chart",
        "by_photographer",
        "by_photographer chart",
        "weekday_trend",
        "weekday_trend chart",
        "metadata",
    ]
    ws = wb["by_photographer"]
    assert ws.freeze_panes == "A2"
    assert [c.value for c in ws[1]] == [c.name for c in P_COLUMNS]
    assert ws.max_row == len(P_ROWS) + 1
    for expected, cells in zip(P_ROWS, ws.iter_rows(min_row=2), strict=True):
        pid, name, first, weddings, nps, currency, revenue = cells
        assert (pid.value, name.value, name.data_type) == (expected[0], expected[1], "s")
        if expected[2] is None:
            assert first.value is None
        else:
            assert first.is_date and first.number_format == "yyyy-mm-dd"
            assert first.value.date() == date.fromisoformat(str(expected[2]))
        assert type(weddings.value) is int and weddings.value == expected[3]
        if expected[4] is None:
            assert nps.value is None
        else:
            assert nps.number_format == "0.00%"
            assert as_decimal(nps.value) * 100 == Decimal(str(expected[4]))
        assert currency.value == expected[5]
        assert as_decimal(revenue.value) == Decimal(str(expected[6]))
        assert revenue.number_format == MONEY_FORMATS[str(expected[5])]
    ws = wb["weekday_trend"]
    got = [[c.value for c in r] for r in ws.iter_rows(min_row=2)]
    assert [r[:3] for r in got] == [r[:3] for r in W_ROWS]
    assert [as_decimal(r[3]) * 100 for r in got] == [Decimal(str(r[3])) for r in W_ROWS]

    figures = list(wb["by_photographer chart"].iter_rows(values_only=True))
    assert figures[0] == ("photographer", *P_SERIES)
    assert [r[0] for r in figures[1:]] == [ZOE, LI, FORMULA, ORJAN]
    for i, name in enumerate(P_SERIES, start=1):
        assert [as_decimal(r[i]) for r in figures[1:]] == P_SERIES[name]
    figures = list(wb["weekday_trend chart"].iter_rows(values_only=True))
    assert figures[0] == ("weekday", *W_SERIES)
    assert [r[0] for r in figures[1:]] == [r[0] for r in W_ROWS]
    for i, name in enumerate(W_SERIES, start=1):
        assert [as_decimal(r[i]) for r in figures[1:]] == W_SERIES[name]

    with zipfile.ZipFile(path) as z:
        xml = {n: z.read(n).decode() for n in z.namelist() if n.startswith("xl/charts/chart")}
    assert len(xml) == 3
    photographer_xml = next(x for x in xml.values() if "Umsatz je Fotograf" in x)
    assert "<c:barChart>" in photographer_xml and photographer_xml.count("<c:ser>") == 3
    assert "'by_photographer chart'!$B$2:$B$5" in photographer_xml
    weekday_xml = next(x for x in xml.values() if "Hochzeiten je Wochentag" in x)
    assert "<c:lineChart>" in weekday_xml and weekday_xml.count("<c:ser>") == 2

    meta = list(wb["metadata"].iter_rows(values_only=True))
    first = {r[0]: r for r in meta if r[0] is not None}
    assert first["rows"][1] == len(MAIN_ROWS)
    start = meta.index(first["key figures"])
    assert [(r[1], r[2]) for r in meta[start : start + len(KPIS)]] == [
        (k.label, k.value) for k in KPIS
    ]
    start = meta.index(first["validation"])
    assert [r[1] for r in meta[start : start + len(FINDINGS)]] == list(FINDINGS)
    start = meta.index(first["sections"])
    assert meta[start][1:] == (
        P_TITLE,
        "sheet by_photographer: 5 rows; chart 'Umsatz je Fotograf' on the sheet "
        "by_photographer chart",
    )
    assert meta[start + 1][2] == P_NOTES[0]
    assert meta[start + 2][1:] == (
        W_TITLE,
        "sheet weekday_trend: 4 rows; chart 'Hochzeiten je Wochentag' on the sheet "
        "weekday_trend chart",
    )
    texts = {v for r in meta for v in r if isinstance(v, str)}
    assert {f"columns of {P_TITLE}", f"columns of {W_TITLE}", "net promoter score"} <= texts


def test_excel_sheet_names_are_short_unique_and_continue_past_the_row_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render_xlsx, "MAX_ROWS_PER_SHEET", 4)  # header + 3 rows a sheet
    long = "x" * 40
    sections = (
        ReportSection("data", "Another data", W_COLUMNS, iter(W_ROWS)),
        ReportSection("metadata", "Not the metadata", W_COLUMNS, iter(W_ROWS[:1])),
        ReportSection(long, "Long", W_COLUMNS, iter(W_ROWS), W_CHART),
        ReportSection("chart", "Empty", W_COLUMNS, iter([])),
    )
    path, _ = render(tmp_path, "excel", make_table(sections, kpis=(), validation=()))
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == [
        "data",
        "chart",
        "data~2",
        "data~2 (2)",
        "metadata~2",
        "x" * 31,
        "x" * 27 + " (2)",
        "x" * 25 + " chart",
        "chart~2",
        "metadata",
    ]
    assert all(len(n) <= 31 for n in wb.sheetnames)
    for names in (["data~2", "data~2 (2)"], ["x" * 31, "x" * 27 + " (2)"]):
        seen: list[list[Any]] = []
        for name in names:
            assert [c.value for c in wb[name][1]] == [c.name for c in W_COLUMNS]
            seen.extend([c.value for c in r][:3] for r in wb[name].iter_rows(min_row=2))
        assert seen == [r[:3] for r in W_ROWS]
    assert [c.value for c in wb["chart~2"][1]] == [c.name for c in W_COLUMNS]
    assert wb["chart~2"].max_row == 1
    meta = {r[0]: r for r in wb["metadata"].iter_rows(values_only=True) if r[0]}
    assert meta["validation"][1] == "no findings"
    assert "key figures" not in meta


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_every_format_refuses_two_sections_with_one_name(tmp_path: Path, fmt: str) -> None:
    sections = (
        ReportSection("same", "A", W_COLUMNS, W_ROWS),
        ReportSection("same", "B", W_COLUMNS, W_ROWS),
    )
    with pytest.raises(ValueError, match="section name 'same': used twice"):
        render(tmp_path, fmt, make_table(sections))
    bad = (ReportSection("Nope!", "A", W_COLUMNS, W_ROWS),)
    with pytest.raises(ValueError, match=r"section name 'Nope!': must match \[a-z0-9_\]\+"):
        render(tmp_path, fmt, make_table(bad))


def test_a_short_section_row_is_refused_naming_the_section(tmp_path: Path) -> None:
    sections = (ReportSection("short", "Short", W_COLUMNS, [["Montag", 1]]),)
    for fmt in RENDERERS:
        with pytest.raises(ValueError, match="2 cells for 4 columns"):
            render(tmp_path / fmt, fmt, make_table(sections))
        assert not list((tmp_path / fmt).rglob("report.*"))


# -- PDF --------------------------------------------------------------------------------------


def squash(text: str) -> str:
    return "".join(text.split())


def test_pdf_sections_kpis_and_findings(tmp_path: Path) -> None:
    path, rows = render(tmp_path, "pdf", make_table())
    assert rows == len(MAIN_ROWS)
    text = squash("\n".join(p.extract_text() for p in pypdf.PdfReader(path).pages))
    # order: key figures, validation, main data, section 1 (chart, table), section 2
    order = [
        "Keyfigures",
        "Datavalidation",
        "Revenuebymonth",
        squash(P_TITLE),
        "UmsatzjeFotograf",
        squash(W_TITLE),
        "HochzeitenjeWochentag",
    ]
    positions = [text.index(o) for o in order]
    assert positions == sorted(positions), order
    for kpi in KPIS:
        assert squash(kpi.label) + squash(kpi.value) in text, kpi
    for finding in FINDINGS:
        assert squash(finding) in text, finding
    assert "Nofindings." not in text
    assert squash(P_NOTES[0]) in text
    section1 = text[text.index(squash(P_TITLE)) : text.index(squash(W_TITLE))]
    # every row of the photographer table as printed, cell after cell
    printed = [
        ["p1", ZOE, "2016-01-09", "12", "42.50%", "EUR", "12,345.67"],
        ["p2", LI, "2016-02-13", "3", "-10.00%", "EUR", "0.01"],
        ["p3", FORMULA, "", "1,234", "100.00%", "JPY", "1,234,567"],
        ["p4", ORJAN, "2016-03-05", "0", "", "KWD", "-1.250"],
        ["p1", ZOE, "2016-03-26", "5", "0.00%", "EUR", "1,000.00"],
    ]
    for row in printed:
        assert squash("".join(row)) in section1, row
    section2 = text[text.index(squash(W_TITLE)) :]
    for row in (
        [SATURDAY, "560", "540", "56.00%"],
        ["Freitag", "150", "170", "15.00%"],
        ["Sonntag", "90", "80", "9.00%"],
        ["Montag", "0", "3", "0.00%"],
    ):
        assert squash("".join(row)) in section2, row
    # the chart legends name every series
    for name in (*P_SERIES, *W_SERIES):
        assert squash(name) in text


def test_pdf_says_no_findings_and_no_rows(tmp_path: Path) -> None:
    sections = (ReportSection("empty", "Leer — 空", W_COLUMNS, []),)
    path, _ = render(tmp_path, "pdf", make_table(sections, kpis=(), validation=()))
    text = squash("\n".join(p.extract_text() for p in pypdf.PdfReader(path).pages))
    assert "Nofindings." in text and "Keyfigures" not in text
    assert text.index("Leer—空") < text.rindex("Norows.")


# -- PowerPoint -------------------------------------------------------------------------------


def slide_texts(slide: Any) -> list[str]:
    return [shape.text_frame.text for shape in slide.shapes if shape.has_text_frame]


def boxes(slide: Any) -> dict[str, str]:
    """KPI boxes: ``{label: value}``."""
    return {t.split("\n")[1]: t.split("\n")[0] for t in slide_texts(slide)[1:]}


def table_cells(slide: Any) -> list[list[str]]:
    grid = next(s.table for s in slide.shapes if s.has_table)
    return [[c.text for c in row.cells] for row in grid.rows]


def chart_of(slide: Any) -> Any:
    return next(s.chart for s in slide.shapes if s.has_chart)


def test_powerpoint_kpi_slides_and_a_slide_per_section(tmp_path: Path) -> None:
    path, rows = render(tmp_path, "powerpoint", make_table())
    assert rows == len(MAIN_ROWS)
    slides = list(Presentation(str(path)).slides)
    titles = [slide_texts(s)[0] for s in slides]
    assert titles == [
        titles[0],
        "Key figures",
        "Totals",
        "Data validation",
        "Revenue by month",
        "Data: rows 1–2 of 2",
        "Umsatz je Fotograf",
        f"{P_TITLE}: rows 1–5 of 5",
        "Hochzeiten je Wochentag",
        f"{W_TITLE}: rows 1–4 of 4",
        "Notes",
    ]
    assert boxes(slides[1]) == {k.label: k.value for k in KPIS}
    assert boxes(slides[2]) == {
        "Rows": "2",
        "Total revenue (EUR)": "13,345.67",  # 12,345.67 + 1,000.00
    }
    assert slide_texts(slides[3])[1].split("\n") == list(FINDINGS)

    chart = chart_of(slides[6])
    assert chart.chart_type == XL_CHART_TYPE.COLUMN_CLUSTERED
    assert tuple(chart.plots[0].categories) == (ZOE, LI, FORMULA, ORJAN)
    assert {s.name: list(s.values) for s in chart.plots[0].series} == {
        k: [float(v) for v in vs] for k, vs in P_SERIES.items()
    }
    assert table_cells(slides[7]) == [
        [c.name.replace("_", " ") for c in P_COLUMNS],
        ["p1", ZOE, "2016-01-09", "12", "42.50%", "EUR", "12,345.67"],
        ["p2", LI, "2016-02-13", "3", "-10.00%", "EUR", "0.01"],
        ["p3", FORMULA, "", "1,234", "100.00%", "JPY", "1,234,567"],
        ["p4", ORJAN, "2016-03-05", "0", "", "KWD", "-1.250"],
        ["p1", ZOE, "2016-03-26", "5", "0.00%", "EUR", "1,000.00"],
    ]
    chart = chart_of(slides[8])
    assert chart.chart_type == XL_CHART_TYPE.LINE_MARKERS
    assert tuple(chart.plots[0].categories) == tuple(r[0] for r in W_ROWS)
    assert {s.name: list(s.values) for s in chart.plots[0].series} == {
        k: [float(v) for v in vs] for k, vs in W_SERIES.items()
    }
    assert table_cells(slides[9])[1:] == [
        [SATURDAY, "560", "540", "56.00%"],
        ["Freitag", "150", "170", "15.00%"],
        ["Sonntag", "90", "80", "9.00%"],
        ["Montag", "0", "3", "0.00%"],
    ]
    notes = slide_texts(slides[10])[1].split("\n")
    assert f"{P_TITLE}: {P_NOTES[0]}" in notes
    assert f"The slides of {W_TITLE} show all 4 rows." in notes
    assert "Data validation: no findings." not in notes


def test_powerpoint_empty_section_and_no_findings(tmp_path: Path) -> None:
    sections = (ReportSection("empty", "Leer — 空", W_COLUMNS, [], W_CHART),)
    path, _ = render(tmp_path, "powerpoint", make_table(sections, kpis=(), validation=()))
    slides = list(Presentation(str(path)).slides)
    titles = [slide_texts(s)[0] for s in slides]
    assert titles[1:] == [
        "Totals",
        "Revenue by month",
        "Data: rows 1–2 of 2",
        "Leer — 空",
        "Notes",
    ]
    assert slide_texts(slides[4])[1] == "No rows."
    assert "Data validation: no findings." in slide_texts(slides[5])[1].split("\n")


def _generator(rows: Sequence[Sequence[Cell]]) -> Iterator[Sequence[Cell]]:
    yield from rows


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_sections_are_read_once_as_generators(tmp_path: Path, fmt: str) -> None:
    sections = (
        ReportSection("by_photographer", P_TITLE, P_COLUMNS, _generator(P_ROWS), P_CHART),
        ReportSection("weekday_trend", W_TITLE, W_COLUMNS, _generator(W_ROWS), W_CHART),
    )
    path, rows = render(tmp_path, fmt, make_table(sections))
    assert rows == len(MAIN_ROWS) and path.stat().st_size > 0
    for section in sections:
        assert next(iter(section.rows), None) is None  # consumed


def test_powerpoint_pages_long_findings_and_notes(tmp_path: Path) -> None:
    findings = [f"Befund {i} — ü" for i in range(1, 10)]  # 9: 8 on the first slide
    table = make_table(sections=(), kpis=(), validation=findings)
    notes = [f"Anmerkung {i}" for i in range(1, 12)]  # 11 + the row count line = 12 lines
    table = ReportTable(**{**{f: getattr(table, f) for f in table.__slots__}, "notes": notes})
    path, _ = render(tmp_path, "powerpoint", table)
    slides = list(Presentation(str(path)).slides)
    by_title = {
        texts[0]: texts[1].split("\n")
        for texts in map(slide_texts, slides)
        if texts[0].startswith(("Data validation", "Notes"))
    }
    assert len(by_title) == 4
    assert by_title["Data validation (1)"] == findings[:8]
    assert by_title["Data validation (2)"] == findings[8:]
    assert by_title["Notes (1)"] == notes[:10]
    assert by_title["Notes (2)"] == [*notes[10:], "The table slides show all 2 rows."]


@pytest.mark.parametrize("title", ["Revenue by venue, whole range", 'The "best" month', "a\nb"])
def test_a_section_title_that_csv_would_quote_is_refused(title: str) -> None:
    """A trial user's finding: a title with a comma came out as ``"# title, …"``, so a reader
    splitting the CSV file at lines starting with ``#`` missed the block."""
    with pytest.raises(ValueError, match="holds a comma, quote or line break"):
        ReportSection("s", title, W_COLUMNS, iter(W_ROWS))
