"""PowerPoint renderer: a :class:`ReportTable` as a 16:9 ``.pptx`` deck.

Slides, in order:

1. Title: the report, the organisation, the period and time zone.
2. Key figures (when the table has ``kpis``; one slide per :data:`KPIS_PER_SLIDE`): the
   report's own key figures, label and value as the report states them, titled as in the
   PDF and Excel files.
3. Totals (one slide per :data:`KPIS_PER_SLIDE` figures): the row count, then the total
   of every series of the table's chart (e.g. ``revenue (EUR)``: revenue summed over all rows
   in EUR). A table without a chart gets the total of every ``money`` and ``int`` column,
   per currency when the table has a ``currency`` column.
4. Data validation (when there are findings; :data:`FINDINGS_PER_SLIDE` a slide): one
   finding a line.
5. The chart (when the table has a chart spec and rows): a native PowerPoint chart built from
   chart data (clustered columns or lines), editable in PowerPoint, one series per chart
   series.
6. Table slides, :data:`ROWS_PER_SLIDE` rows each, at most :data:`MAX_TABLE_SLIDES` of them.
7. Per section (:class:`~stream_app.reports.model.ReportSection`), in order: its chart slide
   (native, as above) and its table slides titled ``<section title>: rows a–b of n``
   (capped like the main table; a section without rows gets one slide saying so).
8. Notes (:data:`NOTES_PER_SLIDE` lines a slide): the table's notes, each section's notes
   and the row counts, and "Data validation: no findings." when there are none; when table
   slides do not hold every row of a table, these slides say how many rows the deck shows
   and that all rows are in the CSV, JSON and Excel files. That is a stated summary, not a
   silent truncation: a deck is for presenting, the data files are for the data.

All totals are exact decimal sums, shown with thousands separators. A table cell longer than
:data:`MAX_CELL_CHARS` characters is cut there and says how many characters follow.
``out.rows`` is set to the number of rows of the main table shown on the table slides.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from pptx import Presentation
from pptx.chart.data import CategoryChartData
from pptx.dml.color import RGBColor
from pptx.enum.chart import XL_CHART_TYPE, XL_LEGEND_POSITION
from pptx.enum.shapes import MSO_SHAPE
from pptx.enum.text import PP_ALIGN
from pptx.util import Emu, Inches, Pt

from stream_app.reports.artifacts import HashingWriter
from stream_app.reports.model import (
    BLANK_LABEL,
    Cell,
    ChartData,
    Column,
    ReportTable,
    check_sections,
    display_text,
)
from stream_app.reports.render.base import NUMERIC_TYPES, read_once

# python-pptx leaves these constructors unannotated; typed as Any so strict mypy accepts calls
_RGB: Any = RGBColor
_CategoryChartData: Any = CategoryChartData

ROWS_PER_SLIDE = 15
"""Data rows on one table slide."""

MAX_TABLE_SLIDES = 20
"""Table slides at most (300 rows); the last slide states how many rows there are in all."""

MAX_CELL_CHARS = 120
"""Characters of one table cell shown on a slide; a longer one ends in ``… [+N characters]``
(the data files hold the full text)."""

KPIS_PER_SLIDE = 6
"""Key figures on one slide (two rows of three)."""

FINDINGS_PER_SLIDE = 8
"""Validation findings on one slide."""

NOTES_PER_SLIDE = 10
"""Lines on one notes slide (further ones go to ``Notes (2)``, ...)."""

_WIDTH = Inches(13.333)
_HEIGHT = Inches(7.5)
_MARGIN = Inches(0.5)
_ACCENT = _RGB(0x1F, 0x4E, 0x79)
_HEADER_FILL = _RGB(0xDD, 0xE4, 0xEE)
_KPI_FILL = _RGB(0xF2, 0xF5, 0xF9)
_TITLE_SLIDE, _TITLE_ONLY = 0, 5


_XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
"""Characters XML 1.0 text cannot hold."""


def _xml(text: str) -> str:
    """``text`` with the characters XML 1.0 cannot hold replaced by U+FFFD. python-pptx
    refuses U+FFFE and U+FFFF in slide text ("All strings must be XML compatible") and writes
    chart categories into XML unescaped: an attacker round's venue name with U+FFFE, or a
    history's supplier name with a control character, failed every PowerPoint report of the
    organisation."""
    return _XML_UNSAFE.sub("\ufffd", text)


def render_pptx(table: ReportTable, out: HashingWriter) -> None:
    """Write ``table`` as a PowerPoint deck to ``out`` (see the module docstring for slides).

    Reads ``table.rows`` once, keeping at most ``ROWS_PER_SLIDE × MAX_TABLE_SLIDES`` rows in
    memory; the deck is assembled in memory and written to ``out`` at the end. Sets
    ``out.rows`` to the number of rows shown on the table slides.

    Raises:
        ValueError: a row has the wrong number of cells, a ``money`` or ``int`` cell is not
            a number, or the chart spec names an unknown or non-numeric column.
    """
    check_sections(table)
    columns = list(table.columns)
    totals = None if table.chart is not None else _Totals(columns)
    each = None if totals is None else totals.add
    shown, total, data = read_once(
        columns, table.rows, table.chart, _table_rows(), "the table", each
    )

    prs: Any = Presentation()
    prs.slide_width = _WIDTH
    prs.slide_height = _HEIGHT
    title = table.report_type.replace("_", " ").capitalize()
    # document properties take XML text only (the slides escape control characters
    # themselves): a name registered before names were checked must not fail the deck
    org_name = _XML_UNSAFE.sub("\ufffd", table.organization_name)
    prs.core_properties.title = f"{title} — {org_name}"
    prs.core_properties.author = org_name

    slide = prs.slides.add_slide(prs.slide_layouts[_TITLE_SLIDE])
    # the default template's placeholders are laid out for 4:3; span the 16:9 width
    heading, subtitle = slide.shapes.title, slide.placeholders[1]
    heading.left, heading.top = _MARGIN, Inches(2.0)
    heading.width, heading.height = _WIDTH - 2 * _MARGIN, Inches(1.5)
    subtitle.left, subtitle.top = _MARGIN, Inches(3.7)
    subtitle.width, subtitle.height = _WIDTH - 2 * _MARGIN, Inches(1.8)
    heading.text = _xml(title)
    heading.text_frame.paragraphs[0].font.color.rgb = _ACCENT
    subtitle.text = _xml(
        f"{table.organization_name}\n"
        f"{table.date_from.isoformat()} to {table.date_to.isoformat()} ({table.time_zone})"
    )

    _kpi_slides(prs, "Key figures", [(k.label, k.value) for k in table.kpis])
    kpis: list[tuple[str, str]] = [("Rows", f"{total:,}")]
    if data is not None:
        kpis.extend(_series_totals(data))
    elif totals is not None:
        kpis.extend(totals.result())
    _kpi_slides(prs, "Totals", kpis)

    findings = list(table.validation)
    for start in range(0, len(findings), FINDINGS_PER_SLIDE):
        part = (
            "" if len(findings) <= FINDINGS_PER_SLIDE else f" ({start // FINDINGS_PER_SLIDE + 1})"
        )
        _text_slide(prs, f"Data validation{part}", findings[start : start + FINDINGS_PER_SLIDE])

    lines = list(table.notes)
    lines.append(_shown_line("The table slides", len(shown), total))
    _table_slides(prs, "Data", columns, shown, total, data, say_empty=False)
    for section in table.sections:
        s_columns = list(section.columns)
        s_shown, s_total, s_data = read_once(
            s_columns, section.rows, section.chart, _table_rows(), f"section {section.name!r}"
        )
        _table_slides(prs, section.title, s_columns, s_shown, s_total, s_data, say_empty=True)
        lines.extend(f"{section.title}: {note}" for note in section.notes)
        lines.append(_shown_line(f"The slides of {section.title}", len(s_shown), s_total))
    if not findings:
        lines.append("Data validation: no findings.")

    for start in range(0, len(lines), NOTES_PER_SLIDE):
        part = "" if len(lines) <= NOTES_PER_SLIDE else f" ({start // NOTES_PER_SLIDE + 1})"
        _text_slide(prs, f"Notes{part}", lines[start : start + NOTES_PER_SLIDE])
    buf = io.BytesIO()
    prs.save(buf)
    out.write(buf.getvalue())
    out.rows = len(shown)


def _table_rows() -> int:
    """The rows a table's slides show at most (read when rendering: the caps may be set)."""
    return ROWS_PER_SLIDE * MAX_TABLE_SLIDES


def _shown_line(what: str, shown: int, total: int) -> str:
    if total > shown:
        return (
            f"{what} show the first {shown:,} of {total:,} rows; all {total:,} rows are in "
            "the CSV, JSON and Excel files of this report."
        )
    return f"{what} show all {total:,} rows."


def _kpi_slides(prs: Any, title: str, kpis: Sequence[tuple[str, str]]) -> None:
    for start in range(0, len(kpis), KPIS_PER_SLIDE):
        part = "" if len(kpis) <= KPIS_PER_SLIDE else f" ({start // KPIS_PER_SLIDE + 1})"
        _kpi_slide(prs, f"{title}{part}", kpis[start : start + KPIS_PER_SLIDE])


def _table_slides(
    prs: Any,
    title: str,
    columns: Sequence[Column],
    shown: Sequence[Sequence[Cell]],
    total: int,
    data: ChartData | None,
    say_empty: bool,
) -> None:
    """The chart slide (if any) and the table slides of one table; with ``say_empty``, a
    slide saying "No rows." when there are none."""
    if data is not None and data.categories and data.series:
        _chart_slide(prs, data)
    for start in range(0, len(shown), ROWS_PER_SLIDE):
        chunk = shown[start : start + ROWS_PER_SLIDE]
        _table_slide(
            prs,
            f"{title}: rows {start + 1:,}–{start + len(chunk):,} of {total:,}",
            columns,
            chunk,
        )
    if say_empty and not shown:
        _text_slide(prs, title, ["No rows."])


def _text_slide(prs: Any, title: str, lines: Sequence[str]) -> None:
    """A titled slide of text lines: 18 pt for up to 6 lines, 14 pt for more."""
    slide = _titled(prs, title)
    size = Pt(18) if len(lines) <= 6 else Pt(14)
    body = slide.shapes.add_textbox(_MARGIN, Inches(1.5), _WIDTH - 2 * _MARGIN, Inches(5))
    frame = body.text_frame
    frame.word_wrap = True
    for i, line in enumerate(lines):
        para = frame.paragraphs[0] if i == 0 else frame.add_paragraph()
        para.text = _xml(line)
        para.font.size = size
        para.space_after = Pt(8)


def _titled(prs: Any, title: str) -> Any:
    slide = prs.slides.add_slide(prs.slide_layouts[_TITLE_ONLY])
    shape = slide.shapes.title
    shape.left, shape.top = _MARGIN, Inches(0.3)
    shape.width, shape.height = _WIDTH - 2 * _MARGIN, Inches(1)
    shape.text = _xml(title)
    para = shape.text_frame.paragraphs[0]
    para.alignment = PP_ALIGN.LEFT
    para.font.size = Pt(30)
    para.font.bold = True
    para.font.color.rgb = _ACCENT
    return slide


def _kpi_slide(prs: Any, title: str, kpis: Sequence[tuple[str, str]]) -> None:
    slide = _titled(prs, title)
    per_row = 3
    gap = Inches(0.3)
    box_w = int((_WIDTH - 2 * _MARGIN - gap * (per_row - 1)) / per_row)
    box_h = Inches(2.2)
    for i, (label, value) in enumerate(kpis):
        left = _MARGIN + (i % per_row) * (box_w + gap)
        top = Inches(1.6) + (i // per_row) * (box_h + gap)
        box = slide.shapes.add_shape(MSO_SHAPE.ROUNDED_RECTANGLE, left, top, box_w, box_h)
        box.fill.solid()
        box.fill.fore_color.rgb = _KPI_FILL
        box.line.color.rgb = _HEADER_FILL
        box.shadow.inherit = False
        frame = box.text_frame
        frame.word_wrap = True
        value_para = frame.paragraphs[0]
        value_para.text = _xml(value)
        value_para.alignment = PP_ALIGN.CENTER
        value_para.font.size = Pt(_kpi_points(len(value)))
        value_para.font.bold = True
        value_para.font.color.rgb = _ACCENT
        label_para = frame.add_paragraph()
        label_para.text = _xml(label)
        label_para.alignment = PP_ALIGN.CENTER
        label_para.font.size = Pt(16)
        label_para.font.color.rgb = _RGB(0x40, 0x40, 0x40)


def _kpi_points(chars: int) -> int:
    """A font size at which ``chars`` bold digits fit one line of a KPI box (about 4 in)."""
    return 36 if chars <= 9 else 28 if chars <= 12 else 22 if chars <= 16 else 16


def _chart_slide(prs: Any, data: ChartData) -> None:
    slide = _titled(prs, data.spec.title)
    chart_data = _CategoryChartData()
    chart_data.categories = [_xml(str(c)) for c in data.categories]
    for s in data.series:
        decimals = max((max(-int(v.as_tuple().exponent), 0) for v in s.values), default=0)
        fmt = "#,##0" + ("." + "0" * decimals if decimals else "")
        chart_data.add_series(_xml(s.name), [float(v) for v in s.values], number_format=fmt)
    kind = (
        XL_CHART_TYPE.COLUMN_CLUSTERED if data.spec.kind == "column" else XL_CHART_TYPE.LINE_MARKERS
    )
    frame = slide.shapes.add_chart(
        kind, _MARGIN, Inches(1.4), _WIDTH - 2 * _MARGIN, Inches(5.7), chart_data
    )
    chart = frame.chart
    chart.has_legend = True
    chart.legend.position = XL_LEGEND_POSITION.BOTTOM
    chart.legend.include_in_layout = False
    chart.legend.font.size = Pt(12)
    chart.category_axis.tick_labels.font.size = Pt(11)
    chart.value_axis.tick_labels.font.size = Pt(11)
    chart.value_axis.has_major_gridlines = True
    chart.value_axis.tick_labels.number_format = "#,##0"
    chart.value_axis.tick_labels.number_format_is_linked = False


def _table_slide(
    prs: Any, title: str, columns: Sequence[Column], rows: Sequence[Sequence[Cell]]
) -> None:
    slide = _titled(prs, title)
    width = _WIDTH - 2 * _MARGIN
    row_h = Inches(0.33)
    shape = slide.shapes.add_table(
        len(rows) + 1, len(columns), _MARGIN, Inches(1.4), width, row_h * (len(rows) + 1)
    )
    grid = shape.table
    texts = [
        [_clip(display_text(v, c.type)) for c, v in zip(columns, row, strict=True)] for row in rows
    ]
    widths, size = _layout(columns, texts, width)
    for i, w in enumerate(widths):
        grid.columns[i].width = Emu(w)
    for i, col in enumerate(columns):
        _cell(grid.cell(0, i), col.name.replace("_", " "), size, col.type in NUMERIC_TYPES, True)
    for r, row_texts in enumerate(texts, start=1):
        grid.rows[r].height = row_h
        for i, (col, text) in enumerate(zip(columns, row_texts, strict=True)):
            _cell(grid.cell(r, i), text, size, col.type in NUMERIC_TYPES, False)


def _layout(
    columns: Sequence[Column], texts: Sequence[Sequence[str]], width: int
) -> tuple[list[int], Pt]:
    """Column widths (EMU) and the font size of a table slide.

    Numbers, dates and headers never wrap: the largest font from 12 pt down to 7 pt at which
    they fit is used; text columns share the rest of the width in proportion to their longest
    cell (text wraps past 40 characters, and past 20 when the table is tight).
    """
    pad = Inches(0.12)
    for points in (12, 11, 10, 9, 8, 7):
        char = Pt(points) * 0.62  # average glyph width of the theme's sans serif
        need, least = [], []
        for i, col in enumerate(columns):
            longest = max((len(t[i]) for t in texts), default=0)
            header = len(col.name) * 1.1
            if col.type == "text":
                need.append(int(max(header, min(40, longest)) * char + pad))
                least.append(int(max(header, min(20, longest)) * char + pad))
            else:
                need.append(int(max(header, longest) * char + pad))
                least.append(need[-1])
        if sum(least) <= width:
            break
    # every column gets its least; what is left goes to the text columns that want more
    spare = width - sum(least)
    wants = [n - m for n, m in zip(need, least, strict=True)]
    if spare > 0 and sum(wants) > 0:
        share = min(1.0, spare / sum(wants))
        least = [m + int(w * share) for m, w in zip(least, wants, strict=True)]
    scale = min(1.0, width / sum(least)) if least else 1.0
    return [int(n * scale) for n in least], Pt(points)


def _clip(text: str) -> str:
    if len(text) <= MAX_CELL_CHARS:
        return text
    return f"{text[:MAX_CELL_CHARS]}… [+{len(text) - MAX_CELL_CHARS:,} characters]"


def _cell(cell: Any, text: str, size: Pt, right: bool, header: bool) -> None:
    cell.text = _xml(text)
    cell.margin_left = cell.margin_right = Inches(0.05)
    cell.margin_top = cell.margin_bottom = Inches(0.02)
    para = cell.text_frame.paragraphs[0]
    para.alignment = PP_ALIGN.RIGHT if right else PP_ALIGN.LEFT
    para.font.size = size
    if header:
        para.font.bold = True
        para.font.color.rgb = _RGB(0x10, 0x10, 0x10)
        cell.fill.solid()
        cell.fill.fore_color.rgb = _HEADER_FILL


def _series_totals(data: ChartData) -> list[tuple[str, str]]:
    """``(label, total)`` of every chart series, exact, with thousands separators."""
    out = []
    for s in data.series:
        total = sum(s.values, Decimal(0))
        out.append((f"Total {s.name}", display_text(str(total), "money")))
    return out


class _Totals:
    """Totals of the ``int`` and ``money`` columns, for tables without a chart.

    When the table has a ``currency`` column every total is per currency (the rows of that
    currency), so amounts in different currencies, including minor-unit integers, are never
    added together.
    """

    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = columns
        names = [c.name for c in columns]
        self.currency = names.index("currency") if "currency" in names else None
        self.summed = [i for i, c in enumerate(columns) if c.type in ("int", "money")]
        self.sums: dict[tuple[int, Cell], Decimal] = {}

    def add(self, row: Sequence[Cell]) -> None:
        """Add one row."""
        key = row[self.currency] if self.currency is not None else None
        for i in self.summed:
            value = row[i]
            if value is None:
                continue
            self.sums[(i, key)] = self.sums.get((i, key), Decimal(0)) + Decimal(value)

    def result(self) -> list[tuple[str, str]]:
        """``(label, total)`` per column (and currency), in column order."""
        out = []
        for (i, currency), total in sorted(
            self.sums.items(), key=lambda kv: (kv[0][0], kv[0][1] is None, str(kv[0][1]))
        ):
            col = self.columns[i]
            label = f"Total {col.name}"
            if self.currency is not None:
                label += f" ({BLANK_LABEL if currency is None else currency})"
            if col.type == "money":
                value = display_text(str(total), "money")
            else:
                value = display_text(int(total), "int")
            out.append((label, value))
        return out
