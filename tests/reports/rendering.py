"""Rendering a report table to a file in a test, the way the worker writes it: through an
unencrypted :class:`~stream_app.reports.artifacts.ArtifactStore`."""

from __future__ import annotations

from pathlib import Path

from stream_app.reports.artifacts import ArtifactStore
from stream_app.reports.model import ReportTable
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
