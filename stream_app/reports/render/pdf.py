"""PDF renderer: a :class:`ReportTable` as a paginated PDF with a chart and the data table.

Layout: title and organisation, a metadata block (organisation, id, time zone, period, rows,
notes), the key figures (``kpis``: a two-column block of label and value, when there are
any), the validation findings ("Data validation": one line each, or "No findings."), the
chart of the table's :class:`~stream_app.reports.model.ChartSpec` (a reportlab bar or line
chart drawn as vectors, with a legend), then the table with its header row repeated on every
page; then, for each :class:`~stream_app.reports.model.ReportSection` in order, its title as
a heading, its notes, its chart and its table, laid out and capped like the main ones. Pages
are A4, landscape when the main table or a section has at least
:data:`LANDSCAPE_FROM_COLUMNS` columns; every page has a footer with the report, the
organisation and the page number. A table's columns are never narrower than their widest
word, so words wrap only at spaces; a table too wide for that is set in a smaller size (7 pt
down to 4.5 pt).

Fonts: DejaVu Sans (Debian ``fonts-dejavu-core``: Latin, Greek, Cyrillic, Hebrew and more)
is embedded (as a subset) for all text; characters it lacks, such as Chinese, Japanese and
Korean ideographs, are set in Droid Sans Fallback (Debian ``fonts-droid-fallback``), also
embedded. Both are required: a missing font file raises :class:`FontMissingError` naming the
path and the package. Right-to-left scripts are drawn in logical order, without shaping.

Size: a PDF is a document to read, not a data dump; it lists the first
:data:`MAX_TABLE_ROWS` rows and, when there are more, says so above and below the table
("the first N of M rows; all M rows are in the CSV, JSON and Excel files"); each section's
table is capped the same way. The charts and the row counts always cover every row.
``out.rows`` is set to the number of rows of the main table listed. A text cell longer than
:data:`MAX_CELL_CHARS` is likewise cut with a note saying so.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.linecharts import HorizontalLineChart
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (
    Flowable,
    KeepTogether,
    LongTable,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from stream_app.errors import WeddingError
from stream_app.reports.artifacts import HashingWriter
from stream_app.reports.model import (
    Cell,
    ChartData,
    Column,
    Kpi,
    ReportTable,
    check_sections,
    display_text,
)
from stream_app.reports.render.base import NUMERIC_TYPES, read_once

FONT_PATH = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
"""Body font (Debian package ``fonts-dejavu-core``)."""

BOLD_FONT_PATH = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
"""Bold body font (Debian package ``fonts-dejavu-core``)."""

FALLBACK_FONT_PATH = Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf")
"""Font for characters DejaVu Sans lacks, e.g. CJK (Debian package ``fonts-droid-fallback``)."""

FONT = "DejaVuSans"
BOLD_FONT = "DejaVuSans-Bold"
FALLBACK_FONT = "DroidSansFallback"

MAX_TABLE_ROWS = 5_000
"""Rows listed in the PDF's table (about 120 pages); the rest are counted and stated."""

MAX_CELL_CHARS = 500
"""Characters of one text cell printed in full; a longer one is cut there with a note saying
how many characters follow and that the CSV, JSON and Excel files hold the full text (a
single table row must fit on a page)."""

LANDSCAPE_FROM_COLUMNS = 7
"""Tables with at least this many columns are printed on landscape pages."""

_PALETTE = (
    colors.HexColor("#1F77B4"),
    colors.HexColor("#FF7F0E"),
    colors.HexColor("#2CA02C"),
    colors.HexColor("#D62728"),
    colors.HexColor("#9467BD"),
    colors.HexColor("#8C564B"),
    colors.HexColor("#E377C2"),
    colors.HexColor("#7F7F7F"),
)
MAX_CHART_SERIES = 32
"""Series drawn in the chart; a note says so when there are more."""

_HEADER_BG = colors.HexColor("#DDE4EE")
_STRIPE_BG = colors.HexColor("#F4F6F9")
_MAX_CHART_CATEGORY_LABELS = 24


class FontMissingError(WeddingError, FileNotFoundError):
    """A font file the PDF renderer embeds is not installed."""


@dataclass(frozen=True, slots=True)
class _Fonts:
    main: frozenset[int]
    fallback: frozenset[int]


_fonts: _Fonts | None = None
_fonts_lock = threading.Lock()


def _register_fonts() -> _Fonts:
    """Register the fonts with reportlab once; returns the code points each covers."""
    global _fonts
    with _fonts_lock:
        if _fonts is not None:
            return _fonts
        for path, package in (
            (FONT_PATH, "fonts-dejavu-core"),
            (BOLD_FONT_PATH, "fonts-dejavu-core"),
            (FALLBACK_FONT_PATH, "fonts-droid-fallback"),
        ):
            if not path.is_file():
                raise FontMissingError(
                    f"PDF reports need the font {path}; install the Debian package {package} "
                    "(scripts/install does)"
                )
        main = TTFont(FONT, str(FONT_PATH))
        bold = TTFont(BOLD_FONT, str(BOLD_FONT_PATH))
        fallback = TTFont(FALLBACK_FONT, str(FALLBACK_FONT_PATH))
        for font in (main, bold, fallback):
            pdfmetrics.registerFont(font)
        pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=BOLD_FONT)
        _fonts = _Fonts(
            main=frozenset(main.face.charToGlyph), fallback=frozenset(fallback.face.charToGlyph)
        )
        return _fonts


def render_pdf(table: ReportTable, out: HashingWriter) -> None:
    """Write ``table`` as a PDF document to ``out`` (see the module docstring for layout).

    Reads ``table.rows`` and each section's rows once, keeping at most
    :data:`MAX_TABLE_ROWS` rows of each in memory; the document is assembled in memory
    (bounded by that cap) and written to ``out`` at the end. Sets ``out.rows`` to the number
    of rows of the main table listed.

    Raises:
        FontMissingError: DejaVu Sans or Droid Sans Fallback is not installed (the message
            names the path and the Debian package).
        ValueError: a row has the wrong number of cells, a chart spec names an unknown or
            non-numeric column, or two sections share a name.
    """
    check_sections(table)
    fonts = _register_fonts()
    columns = list(table.columns)
    listed, total, data = read_once(columns, table.rows, table.chart, MAX_TABLE_ROWS, "the table")
    widest = max([len(columns), *(len(s.columns) for s in table.sections)])
    pagesize = landscape(A4) if widest >= LANDSCAPE_FROM_COLUMNS else A4
    margin = 15 * mm
    width = pagesize[0] - 2 * margin
    styles = _Styles()
    title = table.report_type.replace("_", " ").capitalize()
    text = _Text(fonts)

    story: list[Flowable] = [
        Paragraph(escape(title), styles.title),
        Paragraph(text.markup(table.organization_name), styles.subtitle),
        _metadata_block(table, total, text, styles, width),
    ]
    if table.kpis:
        story.append(Spacer(1, 6 * mm))
        story.append(Paragraph("Key figures", styles.heading))
        story.append(_kpi_block(table.kpis, text, styles, width))
    story.append(Spacer(1, 6 * mm))
    story.append(Paragraph("Data validation", styles.heading))
    story.extend(Paragraph("• " + text.markup(f), styles.finding) for f in table.validation)
    if not table.validation:
        story.append(Paragraph("No findings.", styles.note))
    story.extend(_chart_flowables(data, text, styles, width))
    story.append(Spacer(1, 6 * mm))
    story.append(Paragraph("Data", styles.heading))
    story.extend(_table_flowables(columns, listed, total, text, styles, width))

    for section in table.sections:
        s_columns = list(section.columns)
        s_listed, s_total, s_data = read_once(
            s_columns, section.rows, section.chart, MAX_TABLE_ROWS, f"section {section.name!r}"
        )
        story.append(Spacer(1, 8 * mm))
        story.append(Paragraph(text.markup(section.title), styles.section))
        story.extend(Paragraph(text.markup(note), styles.note) for note in section.notes)
        story.extend(_chart_flowables(s_data, text, styles, width))
        if s_data is not None:
            story.append(Spacer(1, 4 * mm))
        story.extend(_table_flowables(s_columns, s_listed, s_total, text, styles, width))

    footer_markup = text.markup(f"{title} · {table.organization_name}")

    def on_page(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        line = Paragraph(footer_markup, styles.footer)
        line.wrap(pagesize[0] - 2 * margin - 60, 10 * mm)
        line.drawOn(canvas, margin, 8 * mm)
        canvas.setFont(FONT, 7)
        canvas.setFillColor(colors.grey)
        canvas.drawRightString(pagesize[0] - margin, 8 * mm, f"page {doc.page}")
        canvas.restoreState()

    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=pagesize,
        leftMargin=margin,
        rightMargin=margin,
        topMargin=margin,
        bottomMargin=margin,
        title=f"{title} — {table.organization_name}",
        author=table.organization_name,
        subject=f"{table.date_from.isoformat()} to {table.date_to.isoformat()}",
        creator="wedding-reporting-engine",
        initialFontName=FONT,
    )
    doc.build(story, onFirstPage=on_page, onLaterPages=on_page)
    out.write(buf.getvalue())
    out.rows = len(listed)


def _chart_flowables(
    data: ChartData | None, text: _Text, styles: _Styles, width: float
) -> list[Flowable]:
    """The chart's heading and drawing (and a note past :data:`MAX_CHART_SERIES`), or
    nothing when there is nothing to plot."""
    if data is None or not data.categories or not data.series:
        return []
    out: list[Flowable] = [
        Spacer(1, 6 * mm),
        KeepTogether(
            [
                Paragraph(text.markup(data.spec.title), styles.heading),
                _chart_drawing(data, text, width, 80 * mm),
            ]
        ),
    ]
    if len(data.series) > MAX_CHART_SERIES:
        out.append(
            Paragraph(
                f"The chart shows the first {MAX_CHART_SERIES} of {len(data.series)} series.",
                styles.note,
            )
        )
    return out


def _table_flowables(
    columns: Sequence[Column],
    listed: Sequence[Sequence[Cell]],
    total: int,
    text: _Text,
    styles: _Styles,
    width: float,
) -> list[Flowable]:
    """A table of the listed rows, with the cap stated above and below it when it applies."""
    out: list[Flowable] = []
    cap_note = (
        f"This PDF lists the first {len(listed):,} of {total:,} rows; all {total:,} rows "
        "are in the CSV, JSON and Excel files of this report."
        if total > len(listed)
        else None
    )
    if cap_note:
        out.append(Paragraph(cap_note, styles.warning))
    out.append(_data_table(columns, listed, text, styles, width))
    if cap_note:
        out.append(Spacer(1, 3 * mm))
        out.append(Paragraph(cap_note, styles.warning))
    if total == 0:
        out.append(Paragraph("No rows.", styles.note))
    return out


def _kpi_block(kpis: Sequence[Kpi], text: _Text, styles: _Styles, width: float) -> Table:
    """The key figures: label on the left, value (as the report states it) on the right."""
    data = [
        [
            Paragraph(text.markup(k.label), styles.meta_value),
            Paragraph(text.markup(k.value), styles.kpi_value),
        ]
        for k in kpis
    ]
    block = Table(data, colWidths=[min(110 * mm, width * 0.6), 60 * mm], hAlign="LEFT")
    block.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEBELOW", (0, 0), (-1, -1), 0.3, colors.HexColor("#DDDDDD")),
                ("TOPPADDING", (0, 0), (-1, -1), 2),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
            ]
        )
    )
    return block


class _Styles:
    def __init__(self) -> None:
        self.title = ParagraphStyle("title", fontName=BOLD_FONT, fontSize=18, leading=22)
        self.subtitle = ParagraphStyle(
            "subtitle", fontName=FONT, fontSize=12, leading=16, spaceAfter=4 * mm
        )
        self.heading = ParagraphStyle(
            "heading", fontName=BOLD_FONT, fontSize=12, leading=15, spaceAfter=2 * mm
        )
        self.section = ParagraphStyle(
            "section",
            fontName=BOLD_FONT,
            fontSize=14,
            leading=18,
            spaceAfter=2 * mm,
            keepWithNext=1,  # never the last line of a page
        )
        self.finding = ParagraphStyle(
            "finding", fontName=FONT, fontSize=9, leading=11, leftIndent=8, firstLineIndent=-8
        )
        self.kpi_value = ParagraphStyle(
            "kpi_value", fontName=BOLD_FONT, fontSize=10, leading=12, alignment=TA_RIGHT
        )
        self.note = ParagraphStyle("note", fontName=FONT, fontSize=8, leading=10, spaceBefore=1)
        self.warning = ParagraphStyle(
            "warning", fontName=BOLD_FONT, fontSize=8, leading=10, textColor=colors.darkred
        )
        self.cell = ParagraphStyle("cell", fontName=FONT, fontSize=7, leading=8.5)
        self.cell_right = ParagraphStyle("cell_right", parent=self.cell, alignment=TA_RIGHT)
        self.head = ParagraphStyle("head", fontName=BOLD_FONT, fontSize=7, leading=8.5)
        self.head_right = ParagraphStyle("head_right", parent=self.head, alignment=TA_RIGHT)
        self.footer = ParagraphStyle(
            "footer", fontName=FONT, fontSize=7, leading=8.5, textColor=colors.grey
        )
        self.meta_key = ParagraphStyle("meta_key", fontName=BOLD_FONT, fontSize=9, leading=11)
        self.meta_value = ParagraphStyle("meta_value", fontName=FONT, fontSize=9, leading=11)


class _Text:
    """Paragraph markup that sets each character in a font that has it."""

    def __init__(self, fonts: _Fonts) -> None:
        self.fonts = fonts

    def covered(self, text: str) -> bool:
        """Whether DejaVu Sans has every character of ``text``."""
        main = self.fonts.main
        return all(ord(ch) in main for ch in text)

    def markup(self, text: str) -> str:
        """``text`` escaped for a Paragraph, with runs DejaVu lacks in the fallback font."""
        if self.covered(text):
            return escape(text)
        main, fallback = self.fonts.main, self.fonts.fallback
        parts: list[str] = []
        run: list[str] = []
        in_fallback = False
        for ch in text:
            cp = ord(ch)
            use_fallback = cp not in main and cp in fallback
            if use_fallback != in_fallback and run:
                parts.append(_run(run, in_fallback))
                run = []
            in_fallback = use_fallback
            run.append(ch)
        if run:
            parts.append(_run(run, in_fallback))
        return "".join(parts)

    def font_for(self, texts: Sequence[str]) -> str:
        """One font for single-font labels (chart axes and legend): DejaVu Sans, or Droid Sans
        Fallback when only it has every character (it has no Latin letters, so a label that
        mixes CJK and Latin shows its CJK characters in the table, not on the chart)."""
        if all(self.covered(t) for t in texts):
            return FONT
        fallback = self.fonts.fallback
        if all(ord(ch) in fallback for t in texts for ch in t):
            return FALLBACK_FONT
        return FONT


def _run(chars: list[str], fallback: bool) -> str:
    body = escape("".join(chars))
    return f'<font name="{FALLBACK_FONT}">{body}</font>' if fallback else body


def _metadata_block(
    table: ReportTable, total: int, text: _Text, styles: _Styles, width: float
) -> Table:
    pairs = [
        ("Organisation", table.organization_name),
        ("Organisation id", table.organization_id),
        ("Time zone", table.time_zone),
        ("Period", f"{table.date_from.isoformat()} to {table.date_to.isoformat()}"),
        ("Rows", f"{total:,}"),
        ("Report type", table.report_type),
    ]
    data = [
        [Paragraph(escape(k), styles.meta_key), Paragraph(text.markup(v), styles.meta_value)]
        for k, v in pairs
    ]
    for i, note in enumerate(table.notes):
        key = Paragraph("Notes" if i == 0 else "", styles.meta_key)
        data.append([key, Paragraph(text.markup(note), styles.meta_value)])
    block = Table(data, colWidths=[35 * mm, width - 35 * mm], hAlign="LEFT")
    block.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), FONT, 9),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
                ("TOPPADDING", (0, 0), (-1, -1), 1),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
            ]
        )
    )
    return block


TABLE_FONT_SIZE = 7.0
"""Points of a data table's text; a table whose words do not fit the page at this size is set
smaller, down to :data:`MIN_TABLE_FONT_SIZE`."""

MIN_TABLE_FONT_SIZE = 4.5
"""The smallest size a data table is set in (points)."""

_CELL_PAD = 6.0
"""LEFTPADDING + RIGHTPADDING of a table cell at :data:`TABLE_FONT_SIZE` (points; scaled with
the size, :func:`_data_table`)."""


def _widest_word(text: str, font: str) -> float:
    """The width of the widest space-separated word of ``text`` at :data:`TABLE_FONT_SIZE`."""
    return max((pdfmetrics.stringWidth(w, font, TABLE_FONT_SIZE) for w in text.split()), default=0)


def _column_widths(
    columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: float
) -> tuple[list[float], float]:
    """Column widths in points and the font size of the table (points).

    A column is never narrower than its widest word (header words in bold, text cells' words)
    or, for numbers, months and dates (printed on one line), its widest value, so no word is
    broken across lines (a trial user's 15-column PDF showed ``currenc`` / ``y``); when those
    do not fit the page at :data:`TABLE_FONT_SIZE`, the table is set smaller, down to
    :data:`MIN_TABLE_FONT_SIZE` (a text column's word counts at most a third of the page:
    one long id does not shrink the whole table). Room left over goes to the columns that
    would otherwise wrap, in proportion to what they lack; a table that fits keeps its
    natural widths. Widths come from the first 500 rows.
    """
    sample = rows[:500]
    needed: list[float] = []  # on one line, at TABLE_FONT_SIZE, without padding
    floor: list[float] = []  # the widest word (number), at TABLE_FONT_SIZE, without padding
    for i, col in enumerate(columns):
        head = col.name.replace("_", " ")
        head_line = pdfmetrics.stringWidth(head, BOLD_FONT, TABLE_FONT_SIZE)
        head_word = _widest_word(head, BOLD_FONT)
        shown = [display_text(r[i], col.type) for r in sample]
        longest = max(
            (pdfmetrics.stringWidth(v, FONT, TABLE_FONT_SIZE) for v in shown), default=0.0
        )
        if col.type in NUMERIC_TYPES or col.type in ("month", "date"):
            needed.append(max(longest, min(head_line, 60.0), head_word))
            floor.append(max(longest, head_word))
        else:
            word = min(max((_widest_word(v, FONT) for v in shown), default=0.0), width / 3)
            needed.append(max(longest, head_line, 30.0))
            floor.append(max(word, head_word))
    size = TABLE_FONT_SIZE
    smallest = sum(floor) + _CELL_PAD * len(columns)  # at TABLE_FONT_SIZE; all scale with it
    if smallest > width:
        fit = TABLE_FONT_SIZE * width / smallest
        size = max(MIN_TABLE_FONT_SIZE, int(fit * 4) / 4)  # quarter points, rounded down
    scale = size / TABLE_FONT_SIZE
    need = [(w + _CELL_PAD) * scale for w in needed]
    least = [(w + _CELL_PAD) * scale for w in floor]
    if sum(need) <= width:
        return need, size
    if sum(least) >= width:  # even the smallest size leaves words too wide: shrink all
        return [w * width / sum(least) for w in least], size
    k = (width - sum(least)) / (sum(need) - sum(least))
    return [lo + (hi - lo) * k for lo, hi in zip(least, need, strict=True)], size


def _data_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    text: _Text,
    styles: _Styles,
    width: float,
) -> Table:
    widths, size = _column_widths(columns, rows, width)
    scale = size / TABLE_FONT_SIZE
    leading = 8.5 * scale
    pad = _CELL_PAD * scale
    cell = ParagraphStyle("cell_fit", parent=styles.cell, fontSize=size, leading=leading)
    head = ParagraphStyle("head_fit", parent=styles.head, fontSize=size, leading=leading)
    head_right = ParagraphStyle("head_right_fit", parent=head, alignment=TA_RIGHT)
    header = [
        Paragraph(escape(c.name.replace("_", " ")), head_right if c.type in NUMERIC_TYPES else head)
        for c in columns
    ]
    body: list[list[Any]] = [header]
    for row in rows:
        cells: list[Any] = []
        for col, w, value in zip(columns, widths, row, strict=True):
            shown = _clip(display_text(value, col.type))
            # plain strings are ten times cheaper than Paragraphs; wrap or mix fonts only
            # where needed
            if col.type in NUMERIC_TYPES or (
                text.covered(shown) and pdfmetrics.stringWidth(shown, FONT, size) <= w - pad
            ):
                cells.append(shown)
            else:
                cells.append(Paragraph(text.markup(shown), cell))
        body.append(cells)
    table = LongTable(body, colWidths=widths, repeatRows=1, hAlign="LEFT")
    numeric = [i for i, c in enumerate(columns) if c.type in NUMERIC_TYPES]
    commands: list[tuple[Any, ...]] = [
        ("FONT", (0, 0), (-1, -1), FONT, size),
        ("LEADING", (0, 0), (-1, -1), leading),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("BACKGROUND", (0, 0), (-1, 0), _HEADER_BG),
        ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.HexColor("#4A5A70")),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, _STRIPE_BG]),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ("LEFTPADDING", (0, 0), (-1, -1), pad / 2),
        ("RIGHTPADDING", (0, 0), (-1, -1), pad / 2),
    ]
    commands.extend(("ALIGN", (i, 1), (i, -1), "RIGHT") for i in numeric)
    table.setStyle(TableStyle(commands))
    return table


def _clip(text: str) -> str:
    if len(text) <= MAX_CELL_CHARS:
        return text
    rest = len(text) - MAX_CELL_CHARS
    return (
        f"{text[:MAX_CELL_CHARS]}… [{rest:,} more characters; the full text is in the CSV, "
        "JSON and Excel files]"
    )


def _chart_drawing(data: ChartData, text: _Text, width: float, height: float) -> Drawing:
    """A vector bar (or line) chart of ``data`` with a legend below it."""
    drawing = Drawing(width, height, initialFontName=FONT, initialFontSize=7)
    series = data.series[:MAX_CHART_SERIES]
    legend_rows = (len(series) + 3) // 4
    legend_height = 12.0 * legend_rows + 6
    label_font = text.font_for(list(data.categories))
    legend_font = text.font_for([s.name for s in series])
    chart: Any = VerticalBarChart() if data.spec.kind == "column" else HorizontalLineChart()
    top = max((abs(float(v)) for s in series for v in s.values), default=0.0)
    chart.x = 12 + pdfmetrics.stringWidth(_axis_number(-top * 1.25), FONT, 7)
    chart.y = legend_height + 18
    chart.width = width - chart.x - 15
    chart.height = height - chart.y - 6
    chart.data = [tuple(float(v) for v in s.values) for s in series]
    step = max(1, -(-len(data.categories) // _MAX_CHART_CATEGORY_LABELS))
    chart.categoryAxis.categoryNames = [
        label if i % step == 0 else "" for i, label in enumerate(data.categories)
    ]
    chart.categoryAxis.labels.fontName = label_font
    chart.categoryAxis.labels.fontSize = 7
    chart.categoryAxis.labels.boxAnchor = "n"
    chart.valueAxis.labels.fontName = FONT
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.labelTextFormat = _axis_number
    chart.valueAxis.forceZero = 1
    chart.valueAxis.rangeRound = "both"  # the axis ends on a labelled tick above the tallest bar
    chart.valueAxis.visibleGrid = 1
    chart.valueAxis.gridStrokeColor = colors.HexColor("#DDDDDD")
    chart.valueAxis.gridStrokeWidth = 0.3
    if data.spec.kind == "column":
        chart.groupSpacing = 6
        chart.barSpacing = 1
        for i in range(len(series)):
            chart.bars[i].fillColor = _PALETTE[i % len(_PALETTE)]
            chart.bars[i].strokeColor = None
    else:
        for i in range(len(series)):
            chart.lines[i].strokeColor = _PALETTE[i % len(_PALETTE)]
            chart.lines[i].strokeWidth = 1.5
    drawing.add(chart)
    legend = Legend()
    legend.x = chart.x
    legend.y = legend_height - 4
    legend.fontName = legend_font
    legend.fontSize = 7
    legend.alignment = "right"
    legend.columnMaximum = legend_rows
    legend.dx = legend.dy = 7
    legend.deltax = 120
    legend.colorNamePairs = [(_PALETTE[i % len(_PALETTE)], s.name) for i, s in enumerate(series)]
    drawing.add(legend)
    return drawing


def _axis_number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:,.2f}"
