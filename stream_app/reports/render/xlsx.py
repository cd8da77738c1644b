r"""Excel renderer: a :class:`ReportTable` as an ``.xlsx`` workbook with typed cells and a chart.

Sheets, in order:

- ``data``: a bold header row, then one row per table row; the header is frozen and has an
  autofilter. Past Excel's limit of :data:`MAX_ROWS_PER_SHEET` rows (header included) the
  rows continue on ``data (2)``, ``data (3)``, ... each with the same header. A table lists
  at most :data:`MAX_TABLE_ROWS` rows (memory, below); the metadata sheet says when rows
  were left out and that all of them are in the CSV and JSON files; its chart and the row
  count still cover every row.
- ``chart`` (when the table has a :class:`~stream_app.reports.model.ChartSpec` and rows): the
  summed figures per category and a native Excel chart of them.
- per section (:class:`~stream_app.reports.model.ReportSection`), in order: a sheet named
  after the section's ``name`` laid out like ``data`` (continuing on ``<sheet> (2)``, ... past
  the row limit), then, when it has a chart and rows, ``<sheet> chart`` laid out like
  ``chart``. Sheet names follow Excel's rules: at most 31 characters (a long name is cut to
  fit its suffix), none of ``[ ] : * ? / \``, unique without regard to case (a name already
  taken gets ``~2``, ``~3``, ...); ``metadata`` is reserved.
- ``metadata``: organisation, time zone, date range, row count, sheets, notes, the sections
  (title, sheets, rows, chart sheet, notes), the key figures (``kpis``: label and value as
  text, as the report states them), the validation findings (one per row, or "no findings")
  and the column definitions of the main table and of every section.

Cells are typed: ``int`` cells are numbers (format ``#,##0``); ``money`` cells are numbers
shown with the row currency's ISO 4217 minor-unit digits and its code (``#,##0.00 "EUR"``,
``#,##0 "JPY"``, ``#,##0.000 "KWD"``; the row's currency is the text column named
``currency``, else the number of decimals in the cell); ``percent`` cells (``"27.76"``
meaning 27.76 %) are the fraction 0.2776 with the format ``0.00%``; ``decimal`` cells are
numbers shown with their own decimals (``#,##0.00``), exact by the same rule as money;
``month`` and ``date`` cells are Excel dates (``yyyy-mm``, ``yyyy-mm-dd``); text is always
written as a string, never as a formula, so ``=HYPERLINK(...)`` stays inert text.

Why money is exact: Excel stores every number as an IEEE 754 double. A decimal with at most
15 significant digits survives the trip decimal → nearest double → decimal (15 is the
``DBL_DIG`` of a double), so the value Excel shows with the currency's decimals, and any
reader that rounds the double to those decimals, gets back exactly the decimal string of
the table: that covers every amount below 10^15 minor units (10 trillion EUR, 1 quadrillion
JPY, 1 trillion KWD). Any number with more significant digits, in a column of any type (an
integer of 16 digits is exact as a double, but Excel shows only 15 of them: 1234567890123456
would read 1,234,567,890,123,460), is written as its exact text instead of a rounded number,
and the metadata sheet says how many such cells there are. The exact integer
``revenue_minor`` column of the booking summary is a second, integer check.

Identifiers are text whatever their value: a cell of a ``text`` column, or of a column named
``id`` or ``*_id`` (:func:`is_identifier`), is written as a string even when the row holds an
``int``, so an id keeps its leading zeros and all its digits and is never summed or shown
with thousands separators.

No plaintext temporary file: the workbook is written in xlsxwriter's ``constant_memory``
mode (one row in memory at a time), its finished rows spooled to an anonymous temporary file
sealed with AES-256-GCM under a key that exists only in memory
(:mod:`stream_app.reports.render.xlsx_spool`), each sheet's XML assembled in memory at close and the
zip container written straight into the artifact writer (which encrypts,
:mod:`stream_app.reports.artifacts`). xlsxwriter's plain ``constant_memory`` mode spooled rows
and sheet XML to plaintext temporary files, and its ``in_memory`` mode keeps every cell as
an object. One render of 100,000 rows × 8 columns (3.5 MB workbook), same process and
imports, 2026-12-05: plaintext temporary files (before) 41 MB peak RSS, 6.2 s; sealed spool
118 MB, 6.5 s; xlsxwriter's ``in_memory`` 230 MB. The sealed spool costs the sheet's XML
held once in memory while the zip is written (about 0.8 KB per row); at 1,000 rows the
peak is the same (39 → 41 MB).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from itertools import chain, islice
from typing import Any

import xlsxwriter

from stream_app.money import minor_unit_exponent
from stream_app.reports.artifacts import HashingWriter
from stream_app.reports.model import (
    Cell,
    ChartAccumulator,
    ChartData,
    ChartSpec,
    Column,
    ReportSection,
    ReportTable,
    check_sections,
    display_text,
)
from stream_app.reports.render.xlsx_spool import SealedSpoolWorksheet

MAX_ROWS_PER_SHEET = 1_048_576
"""Rows per worksheet, header included (Excel's limit); tests lower it."""

MAX_TABLE_ROWS = 100_000
"""Rows of one table (the main one or a section) written to the workbook; further rows are
counted and charted but not listed, and the metadata sheet says so. Why: each sheet's XML is
assembled in memory when the workbook is closed (no plaintext temporary file, see the module
docstring), about 1 KB a row of 11 columns, so this cap is what bounds a render's memory
(``loadtests/bench_report_memory.py``: a 2,000,000-row report stays under 200 MiB)."""

MAX_COLUMNS = 16_384
"""Excel's column limit."""

MAX_TEXT = 32_767
"""Excel's limit on the characters in one cell."""

EXACT_DIGITS = 15
"""Significant digits of a decimal that always round-trip through a double (``DBL_DIG``)."""

_IDENTIFIER = re.compile(r"(?:.*_)?id")

MAX_CHART_SERIES = 255
"""Excel's limit on the series of one chart."""

MAX_SHEET_NAME = 31
"""Excel's limit on the characters of a sheet name."""

_WIDTH_SAMPLE = 1000
_MAX_WIDTH = 60
_CURRENCY_CODE = re.compile(r"[A-Z]{3}")
_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")


def is_identifier(col: Column) -> bool:
    """Whether ``col`` holds identifiers, written as text whatever the value's type: a ``text``
    column, or one named ``id`` or ``<something>_id``."""
    return col.type == "text" or _IDENTIFIER.fullmatch(col.name) is not None


def significant_digits(value: int) -> int:
    """Significant digits of an integer: its digits without sign and trailing zeros (0 has 1).

    >>> significant_digits(1_234_567_890_123_456), significant_digits(-120_000)
    (16, 2)
    """
    return len(str(abs(value)).rstrip("0")) or 1


class _SheetNames:
    r"""Hands out sheet names that Excel accepts: at most 31 characters, no ``[]:*?/\``, not
    starting or ending with ``'``, unique without regard to case, never ``History``."""

    def __init__(self, reserved: Sequence[str]) -> None:
        self.taken = {"history", *(n.lower() for n in reserved)}

    def take(self, base: str, suffix: str = "") -> str:
        """A free name: ``base`` (cleaned, cut so that ``suffix`` fits) + ``suffix``; when
        that is taken, ``~2``, ``~3``, ... before the suffix."""
        clean = _SHEET_FORBIDDEN.sub("_", base).strip("'") or "sheet"
        for n in range(1, 10_000):
            mark = "" if n == 1 else f"~{n}"
            room = MAX_SHEET_NAME - len(suffix) - len(mark)
            name = clean[:room].rstrip("'") + mark + suffix
            if name.lower() not in self.taken:
                self.taken.add(name.lower())
                return name
        raise ValueError(f"no free sheet name for {base!r}")


@dataclass(frozen=True, slots=True)
class _Written:
    """What one table (the main one or a section) became: its data sheets, rows, chart sheet."""

    sheets: list[str]
    rows: int
    chart_sheet: str | None
    total: int = 0
    """Rows the table has (``rows`` of them are listed, at most :data:`MAX_TABLE_ROWS`)."""

    def listed(self) -> str:
        """``"N rows"``, or ``"the first N of M rows (...)"`` when rows were left out."""
        if self.total <= self.rows:
            return f"{self.rows:,} rows"
        return (
            f"the first {self.rows:,} of {self.total:,} rows (a workbook lists at most "
            f"{MAX_TABLE_ROWS:,} rows a table); all {self.total:,} rows are in the CSV and "
            "JSON files"
        )


def render_xlsx(table: ReportTable, out: HashingWriter) -> None:
    """Write ``table`` as an Excel workbook to ``out`` (see the module docstring for layout).

    Reads ``table.rows`` once. Sets ``out.rows`` to the number of data rows written across
    the ``data`` sheets (at most :data:`MAX_TABLE_ROWS`).

    Raises:
        ValueError: a ``month``/``date`` cell is not ``YYYY-MM``/``YYYY-MM-DD``, a ``money``
            or ``percent`` cell is not a decimal number, a text cell is longer than Excel's
            32,767 characters, the table or a section has more than 16,384 columns, a chart
            spec names an unknown or non-numeric column, or two sections share a name.
    """
    check_sections(table)
    for what, columns in [("the table", table.columns)] + [
        (f"section {s.name!r}", s.columns) for s in table.sections
    ]:
        if len(columns) > MAX_COLUMNS:
            raise ValueError(f"{what}: {len(columns)} columns; Excel allows at most {MAX_COLUMNS}")
    out.rows = _Workbook(out, table).write()


class _ZipSink:
    """``out`` as the write-only file object :class:`zipfile.ZipFile` wants."""

    def __init__(self, out: HashingWriter) -> None:
        self.write = out.write

    def flush(self) -> None:
        """Nothing to flush: the artifact store flushes when the file is complete."""


class _SealedSpoolBook(xlsxwriter.Workbook):  # type: ignore[misc]
    worksheet_class = SealedSpoolWorksheet


class _Workbook:
    """One workbook being written; :meth:`write` does it all and returns the row count."""

    def __init__(self, out: HashingWriter, table: ReportTable) -> None:
        self.table = table
        self.book: Any = _SealedSpoolBook(
            _ZipSink(out),  # write-only: zipfile writes data descriptors, never seeks
            {
                "constant_memory": True,
                "strings_to_numbers": False,
                "strings_to_formulas": False,
                "strings_to_urls": False,
            },
        )
        self.book.in_memory = True  # parts assembled in memory, not in plaintext temp files
        self.book.set_properties(
            {
                "title": _title(table),
                "company": table.organization_name,
                "comments": f"{table.date_from.isoformat()} to {table.date_to.isoformat()}, "
                f"{table.time_zone}",
            }
        )
        b = self.book
        self.bold = b.add_format({"bold": True, "bottom": 1, "bg_color": "#DDE4EE"})
        self.bold_plain = b.add_format({"bold": True})
        self.wrap = b.add_format({"text_wrap": True, "valign": "top"})
        self.int_fmt = b.add_format({"num_format": "#,##0"})
        self.date_fmt = b.add_format({"num_format": "yyyy-mm-dd"})
        self.date_left = b.add_format({"num_format": "yyyy-mm-dd", "align": "left"})
        self.int_left = b.add_format({"num_format": "#,##0", "align": "left"})
        self.month_fmt = b.add_format({"num_format": "yyyy-mm"})
        self.title_fmt = b.add_format({"bold": True, "font_size": 14})
        self._money_fmts: dict[tuple[int, str | None], Any] = {}
        self._percent_fmts: dict[int, Any] = {}
        self.as_text = 0
        self.names = _SheetNames(reserved=["metadata"])

    # -- formats ---------------------------------------------------------------------------

    def money_fmt(self, exponent: int, currency: str | None) -> Any:
        """The number format of a money cell with ``exponent`` decimals in ``currency``."""
        key = (exponent, currency)
        fmt = self._money_fmts.get(key)
        if fmt is None:
            pattern = "#,##0" + ("." + "0" * exponent if exponent > 0 else "")
            if currency is not None:
                pattern += f' "{currency}"'
            fmt = self.book.add_format({"num_format": pattern})
            self._money_fmts[key] = fmt
        return fmt

    def percent_fmt(self, decimals: int) -> Any:
        """The format of a percent cell whose text has ``decimals`` digits after the point."""
        fmt = self._percent_fmts.get(decimals)
        if fmt is None:
            pattern = "0" + ("." + "0" * decimals if decimals > 0 else "") + "%"
            fmt = self.book.add_format({"num_format": pattern})
            self._percent_fmts[decimals] = fmt
        return fmt

    # -- cells -----------------------------------------------------------------------------

    def string(self, sheet: Any, r: int, c: int, text: str, fmt: Any = None) -> None:
        """Write ``text`` as a string cell (never a formula); raise if Excel would cut it."""
        if len(text) > MAX_TEXT:
            raise ValueError(
                f"sheet {sheet.name!r} row {r + 1} column {c + 1}: {len(text)} characters; "
                f"an Excel cell holds at most {MAX_TEXT}"
            )
        sheet.write_string(r, c, text, fmt)

    def cell(self, sheet: Any, r: int, c: int, col: Column, value: Cell, currency: Cell) -> None:
        """Write one data cell with its type (see the module docstring)."""
        if value is None:
            return
        try:
            self._cell(sheet, r, c, col, value, currency)
        except (ArithmeticError, ValueError) as exc:
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
            raise ValueError(f"column {col.name!r} ({col.type}), value {shown}: {exc}") from exc

    def _cell(self, sheet: Any, r: int, c: int, col: Column, value: str | int, cur: Cell) -> None:
        if isinstance(value, int):
            if is_identifier(col):
                self.string(sheet, r, c, str(value))
            elif significant_digits(value) <= EXACT_DIGITS:
                sheet.write_number(r, c, value, self.int_fmt)
            else:
                self.as_text += 1
                self.string(sheet, r, c, str(value))
            return
        kind = col.type
        if kind in ("money", "decimal", "percent"):
            self._decimal(sheet, r, c, kind, value, cur)
        elif kind == "month":
            if len(value) != 7:
                raise ValueError("not a YYYY-MM month")
            sheet.write_datetime(r, c, date.fromisoformat(value + "-01"), self.month_fmt)
        elif kind == "date":
            sheet.write_datetime(r, c, date.fromisoformat(value), self.date_fmt)
        else:
            self.string(sheet, r, c, value)

    def _decimal(self, sheet: Any, r: int, c: int, kind: str, value: str, cur: Cell) -> None:
        """A ``money``, ``decimal`` or ``percent`` cell: an Excel number with the value's decimals
        (a money cell at least its currency's minor unit, a percentage ÷ 100 in a % format),
        or exact text when it has more than :data:`EXACT_DIGITS` significant digits."""
        number = Decimal(value)
        if not number.is_finite():
            raise ValueError("not a finite decimal")
        if len(number.as_tuple().digits) > EXACT_DIGITS:
            self.as_text += 1
            self.string(sheet, r, c, value)
            return
        decimals = max(-int(number.as_tuple().exponent), 0)
        if kind == "percent":
            sheet.write_number(r, c, float(number / 100), self.percent_fmt(decimals))
            return
        currency = None
        if kind == "money" and isinstance(cur, str) and _CURRENCY_CODE.fullmatch(cur):
            currency = cur
            decimals = max(decimals, minor_unit_exponent(cur))
        sheet.write_number(r, c, float(number), self.money_fmt(decimals, currency))

    # -- sheets ----------------------------------------------------------------------------

    def data_sheet(self, name: str, columns: Sequence[Column], widths: Sequence[float]) -> Any:
        """A new data sheet ``name`` with the header row, frozen and filterable."""
        sheet = self.book.add_worksheet(name)
        for c, col in enumerate(columns):
            sheet.set_column(c, c, widths[c])
            self.string(sheet, 0, c, col.name, self.bold)
        sheet.freeze_panes(1, 0)
        sheet.repeat_rows(0)  # printing: the header on every page
        sheet.set_landscape()
        sheet.fit_to_pages(1, 0)  # printing: all columns on one page wide
        return sheet

    def write(self) -> int:
        """Write every sheet and close the workbook; returns the number of data rows."""
        try:
            return self._write()
        except BaseException:
            self.abandon()
            raise

    def abandon(self) -> None:
        """Close the per-sheet row files of ``constant_memory`` mode after a failure (the
        workbook is not closed, so nothing more is written; the directory is deleted)."""
        for sheet in self.book.worksheets():
            fh = getattr(sheet, "row_data_fh", None)
            if fh is not None and not fh.closed:
                fh.close()

    def _write(self) -> int:
        table = self.table
        main = self.table_sheets(table.columns, table.rows, table.chart, "data", None)
        sections = [
            (section, self.table_sheets(
                section.columns, section.rows, section.chart, section.name, " chart"
            ))
            for section in table.sections
        ]  # fmt: skip
        self.metadata_sheet(main, sections)
        self.book.close()
        return main.rows

    def table_sheets(
        self,
        columns: Sequence[Column],
        rows_in: Iterable[Sequence[Cell]],
        spec: ChartSpec | None,
        base: str,
        chart_suffix: str | None,
    ) -> _Written:
        """Write one table on data sheets ``base``, ``base (2)``, ... and its chart sheet,
        named ``chart`` when ``chart_suffix`` is None, else the first data sheet's name (cut
        to fit) + ``chart_suffix``."""
        columns = list(columns)
        rows = iter(rows_in)
        head = list(islice(rows, _WIDTH_SAMPLE))
        widths = _widths(columns, head)
        chart = ChartAccumulator(spec, columns) if spec is not None else None
        per_sheet = MAX_ROWS_PER_SHEET - 1
        if per_sheet < 1:
            raise ValueError("MAX_ROWS_PER_SHEET must leave room for a header and a row")
        names = [c.name for c in columns]
        ci = names.index("currency") if "currency" in names else None
        sheets = [self.names.take(base)]
        sheet = self.data_sheet(sheets[-1], columns, widths)
        r = 0  # data rows on the current sheet
        total = 0
        for row in chain(head, rows):
            if len(row) != len(columns):
                raise ValueError(
                    f"sheet {sheets[0]!r}: row {total + 1} has {len(row)} cells for "
                    f"{len(columns)} columns"
                )
            if total >= MAX_TABLE_ROWS:  # counted and charted, not listed
                if chart is not None:
                    chart.add(row)
                total += 1
                continue
            if r == per_sheet:
                sheet.autofilter(0, 0, r, len(columns) - 1)
                sheets.append(self.names.take(sheets[0], f" ({len(sheets) + 1})"))
                sheet = self.data_sheet(sheets[-1], columns, widths)
                r = 0
            r += 1
            currency = row[ci] if ci is not None else None
            for c, (col, value) in enumerate(zip(columns, row, strict=True)):
                self.cell(sheet, r, c, col, value, currency)
            if chart is not None:
                chart.add(row)
            total += 1
        sheet.autofilter(0, 0, r, len(columns) - 1)
        data = chart.result() if chart is not None else None
        chart_name = ("chart", "") if chart_suffix is None else (sheets[0], chart_suffix)
        chart_sheet = self.chart_sheet(data, *chart_name) if data is not None else None
        return _Written(sheets, min(total, MAX_TABLE_ROWS), chart_sheet, total)

    def chart_sheet(self, data: ChartData, base: str, suffix: str) -> str | None:
        """A chart sheet (named ``base + suffix`` if free): the summed figures and a native
        chart; returns its name, or None when there is nothing to plot (no sheet then)."""
        if not data.categories or not data.series:
            return None
        series = data.series[:MAX_CHART_SERIES]
        name = self.names.take(base, suffix)
        sheet = self.book.add_worksheet(name)
        sheet.set_column(0, 0, max(12, min(_MAX_WIDTH, 2 + max(map(len, data.categories)))))
        sheet.set_column(1, len(series), 18)
        self.string(sheet, 0, 0, data.category.name, self.bold)
        for s, ser in enumerate(series, start=1):
            self.string(sheet, 0, s, ser.name, self.bold)
        fmts = []
        for ser in series:
            if ser.column.type == "money":
                currency = (
                    ser.series_value
                    if data.spec.series_column == "currency"
                    and ser.series_value is not None
                    and _CURRENCY_CODE.fullmatch(ser.series_value)
                    else None
                )
                decimals = max((max(-int(v.as_tuple().exponent), 0) for v in ser.values), default=0)
                if currency is not None:
                    decimals = max(decimals, minor_unit_exponent(currency))
                fmts.append(self.money_fmt(decimals, currency))
            else:
                fmts.append(self.int_fmt)
        for i, category in enumerate(data.categories, start=1):
            self.string(sheet, i, 0, category)
            for s, ser in enumerate(series, start=1):
                total = ser.values[i - 1]
                if len(total.as_tuple().digits) <= EXACT_DIGITS:
                    sheet.write_number(i, s, float(total), fmts[s - 1])
                else:  # a sum too long to be exact: its text (the chart skips the point)
                    self.as_text += 1
                    self.string(sheet, i, s, str(total))
        n = len(data.categories)
        chart = self.book.add_chart(
            {"type": "column"} if data.spec.kind == "column" else {"type": "line"}
        )
        for s in range(1, len(series) + 1):
            chart.add_series(
                {
                    "name": [name, 0, s],
                    "categories": [name, 1, 0, n, 0],
                    "values": [name, 1, s, n, s],
                    **({"marker": {"type": "circle"}} if data.spec.kind == "line" else {}),
                }
            )
        chart.set_title({"name": data.spec.title})
        chart.set_x_axis({"name": data.category.name})
        chart.set_y_axis({"major_gridlines": {"visible": True}, "num_format": "#,##0"})
        chart.set_legend({"position": "bottom"})
        chart.set_size({"width": 760, "height": 420})
        sheet.insert_chart(1, len(series) + 2, chart)
        if len(data.series) > MAX_CHART_SERIES:
            self.string(
                sheet,
                n + 2,
                0,
                f"The chart shows the first {MAX_CHART_SERIES} of {len(data.series)} series "
                "(Excel's limit); the data sheets hold every row.",
            )
        return name

    def metadata_sheet(
        self, main: _Written, sections: Sequence[tuple[ReportSection, _Written]]
    ) -> None:
        """The ``metadata`` sheet: who, when, what, sections, key figures, validation
        findings and the column definitions."""
        t = self.table
        sheet = self.book.add_worksheet("metadata")
        sheet.set_column(0, 0, 22)
        sheet.set_column(1, 1, 50)
        sheet.set_column(2, 2, 80)
        r = 0
        self.string(sheet, r, 0, _title(t), self.title_fmt)
        pairs: list[tuple[str, str | int | date]] = [
            ("report type", t.report_type),
            ("organisation", t.organization_name),
            ("organisation id", t.organization_id),
            ("time zone", t.time_zone),
            ("from", t.date_from),
            ("to", t.date_to),
            ("rows", main.rows),
            ("data sheets", ", ".join(main.sheets)),
        ]
        if main.total > main.rows:
            pairs.append(("rows not listed", main.listed()))
        if main.chart_sheet is not None and t.chart is not None:
            pairs.append(("chart", f"{t.chart.title}, on the sheet {main.chart_sheet}"))
        if self.as_text:
            pairs.append(
                (
                    "cells kept as text",
                    f"{self.as_text} numbers too long to be exact as Excel numbers "
                    f"(over {EXACT_DIGITS} significant digits) are written as exact text",
                )
            )
        r += 1
        for key, value in pairs:
            r += 1
            self.string(sheet, r, 0, key, self.bold_plain)
            if isinstance(value, date):
                sheet.write_datetime(r, 1, value, self.date_left)
            elif isinstance(value, int):
                sheet.write_number(r, 1, value, self.int_left)
            else:
                self.string(sheet, r, 1, value)
        if t.notes:
            r += 2
            self.string(sheet, r, 0, "notes", self.bold_plain)
            for note in t.notes:
                self.string(sheet, r, 1, note)
                r += 1
        if sections:
            r += 2
            self.string(sheet, r, 0, "sections", self.bold_plain)
            for section, written in sections:
                where = f"sheet {', '.join(written.sheets)}: {written.listed()}"
                if written.chart_sheet is not None and section.chart is not None:
                    where += f"; chart {section.chart.title!r} on the sheet {written.chart_sheet}"
                self.string(sheet, r, 1, section.title, self.bold_plain)
                self.string(sheet, r, 2, where)
                r += 1
                for note in section.notes:
                    self.string(sheet, r, 2, note, self.wrap)
                    r += 1
        if t.kpis:
            r += 2
            self.string(sheet, r, 0, "key figures", self.bold_plain)
            for kpi in t.kpis:
                self.string(sheet, r, 1, kpi.label)
                self.string(sheet, r, 2, kpi.value)
                r += 1
        r += 2
        self.string(sheet, r, 0, "validation", self.bold_plain)
        if not t.validation:
            self.string(sheet, r, 1, "no findings")
        for finding in t.validation:
            self.string(sheet, r, 1, finding)
            r += 1
        blocks: list[tuple[str | None, Sequence[Column]]] = [(None, t.columns)]
        blocks.extend((s.title, s.columns) for s, _ in sections)
        for title, columns in blocks:
            r += 2
            if title is not None:
                self.string(sheet, r, 0, f"columns of {title}", self.bold_plain)
                r += 1
            for c, head in enumerate(("column", "type", "description")):
                self.string(sheet, r, c, head, self.bold)
            for col in columns:
                r += 1
                self.string(sheet, r, 0, col.name)
                self.string(sheet, r, 1, col.type)
                self.string(sheet, r, 2, col.description, self.wrap)


def _title(table: ReportTable) -> str:
    return table.report_type.replace("_", " ").capitalize()


def _widths(columns: Sequence[Column], sample: Iterable[Sequence[Cell]]) -> list[float]:
    """Column widths (in characters) from the header and the first rows."""
    widths = [float(len(c.name) + 2) for c in columns]
    for row in sample:
        for i, (col, value) in enumerate(zip(columns, row, strict=False)):
            shown = _shown_width(col, value)
            if shown + 2 > widths[i]:
                widths[i] = float(shown + 2)
    return [min(w, _MAX_WIDTH) for w in widths]


def _shown_width(col: Column, value: Cell) -> int:
    if col.type == "money":
        return len(display_text(value, col.type)) + 4  # the currency code
    if col.type == "month":
        return 7
    if col.type == "date":
        return 10
    return len(display_text(value, col.type))
