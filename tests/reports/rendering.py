"""Rendering a report table to a file in a test, the way the worker writes it: through an
unencrypted :class:`~stream_app.reports.artifacts.ArtifactStore`; and reading the files back
with the test's own expectations of a cell (written here, not taken from the renderers)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from stream_app.reports.artifacts import ArtifactStore
from stream_app.reports.model import Cell, Column, ReportTable
from stream_app.reports.render import RENDERERS


def render(folder: Path, fmt: str, table: ReportTable) -> tuple[Path, int]:
    """Render ``table`` as ``fmt`` into ``folder`` (report id ``r1``, file ``report.<ext>``).

    Returns:
        The file and the rows the renderer wrote. Checked on the way: no partial file is left
        and the link's size is the file's.
    """
    ext, renderer = RENDERERS[fmt]
    store = ArtifactStore(folder)
    with store.write(table.organization_id, "r1", f"report.{ext}", fmt, key=None) as (writer, out):
        renderer(table, writer)
    assert not list(folder.rglob("*.partial-*"))
    path = folder / out[0].path
    assert out[0].size_bytes == path.stat().st_size
    return path, out[0].rows


def render_path(folder: Path, fmt: str, table: ReportTable) -> Path:
    """The file of :func:`render`."""
    return render(folder, fmt, table)[0]


def csv_blocks(raw: bytes) -> list[list[list[str]]]:
    """The blocks of a rendered CSV file (UTF-8 with a BOM), split at its empty lines: the main
    table, then each section (first row ``# <title>``), then the validation findings."""
    blocks: list[list[list[str]]] = [[]]
    for line in csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")):
        if line:
            blocks[-1].append(line)
        else:
            blocks.append([])
    return blocks


def csv_cell(value: Cell, column: Column) -> str:
    """A cell as the CSV holds it: empty for None, and a text cell that a spreadsheet would
    read as a formula (``= + - @``, tab, carriage return first) behind a ``'``."""
    if value is None:
        return ""
    text = str(value)
    return "'" + text if column.type == "text" and text[:1] in "=+-@\t\r" else text


def shown(value: Cell, column: Column) -> str:
    """A cell as the PDF and the slides print it: thousands separators in ``int``, ``money``
    and ``decimal`` cells (the decimals as they are), a ``%`` after a percentage."""
    if value is None:
        return ""
    if column.type == "int":
        return f"{value:,}"
    if column.type in ("money", "decimal"):
        whole, _, frac = str(value).partition(".")
        sign = "-" if whole.startswith("-") else ""
        return f"{sign}{abs(int(whole)):,}" + (f".{frac}" if frac else "")
    if column.type == "percent":
        return f"{value}%"
    return str(value)
