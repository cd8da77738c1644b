"""Renderers: a :class:`~stream_app.reports.model.ReportTable` as the bytes of one file format.

One module per format family, each implementing :data:`~stream_app.reports.render.base.Renderer`
(:mod:`~stream_app.reports.render.text`: CSV and JSON; :mod:`~stream_app.reports.render.xlsx`,
:mod:`~stream_app.reports.render.pdf`, :mod:`~stream_app.reports.render.pptx`), listed here in
the static table :data:`RENDERERS`.
"""

from __future__ import annotations

from stream_app.reports.artifacts import FORMAT_EXTENSIONS
from stream_app.reports.render.base import Renderer
from stream_app.reports.render.pdf import render_pdf
from stream_app.reports.render.pptx import render_pptx
from stream_app.reports.render.text import render_csv, render_json
from stream_app.reports.render.xlsx import render_xlsx

RENDERERS: dict[str, tuple[str, Renderer]] = {
    "csv": (FORMAT_EXTENSIONS["csv"], render_csv),
    "json": (FORMAT_EXTENSIONS["json"], render_json),
    "excel": (FORMAT_EXTENSIONS["excel"], render_xlsx),
    "pdf": (FORMAT_EXTENSIONS["pdf"], render_pdf),
    "powerpoint": (FORMAT_EXTENSIONS["powerpoint"], render_pptx),
}
"""Format name → (file extension, renderer)."""
