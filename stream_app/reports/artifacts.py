"""The artifact store: a folder where report files are written, with checksum and size.

Files are written under a temporary name and renamed when complete, so a reader never sees
half a file. Layout: ``<root>/<organization_id>/<report_id>/<report_type>.<ext>``.

Paths are **derived**, never read: whoever needs a report's file (the download route, the
delivery agent, the cache, the cleanup of a failed report) computes it from (organisation,
report id, report type, format) with :func:`artifact_path`, which checks both ids against the
id rule (:mod:`stream_app.schemas.ids`) and that the result lies in
``<root>/<organization_id>/<report_id>/``. A path held by a Kafka message or a database row
is never opened. :func:`remove_report_folder` deletes exactly one report's folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from stream_app.schemas.ids import check_id
from stream_app.schemas.updates import ArtifactLink

FORMAT_EXTENSIONS: dict[str, str] = {
    "csv": "csv",
    "json": "json",
    "excel": "xlsx",
    "pdf": "pdf",
    "powerpoint": "pptx",
}
"""Output format → file extension of its artifact."""


class ArtifactPathError(ValueError):
    """An artifact path cannot be derived: a bad id or format, or it leaves its folder."""

    retriable = False


def artifact_filename(report_type: str, fmt: str) -> str:
    """``<report_type>.<ext>``, the file name of a report's ``fmt`` artifact.

    Raises:
        ArtifactPathError: ``fmt`` is not an output format, or ``report_type`` breaks the
            id rule.
    """
    ext = FORMAT_EXTENSIONS.get(fmt)
    if ext is None:
        raise ArtifactPathError(f"format: {fmt!r} is not one of {sorted(FORMAT_EXTENSIONS)}")
    try:
        check_id("report_type", report_type)
    except ValueError as exc:
        raise ArtifactPathError(str(exc)) from None
    return f"{report_type}.{ext}"


def report_folder(root: Path, organization_id: str, report_id: str) -> Path:
    """``<root>/<organization_id>/<report_id>`` (resolved), after checking both ids.

    Raises:
        ArtifactPathError: an id breaks the id rule, or the folder is not exactly two levels
            under ``root`` once resolved (a symlinked organisation or report folder).
    """
    try:
        check_id("organization_id", organization_id)
        check_id("report_id", report_id)
    except ValueError as exc:
        raise ArtifactPathError(str(exc)) from None
    base = root.resolve()
    folder = base / organization_id / report_id
    if folder.resolve() != folder or folder.parent.parent != base:
        # a symlinked organisation or report folder would lead to another tenant's files
        raise ArtifactPathError(f"report folder {organization_id}/{report_id} leaves the store")
    return folder


def artifact_relpath(organization_id: str, report_id: str, report_type: str, fmt: str) -> str:
    """The artifact's path relative to the store root, ``org/report_id/<type>.<ext>`` (POSIX).

    Raises:
        ArtifactPathError: see :func:`artifact_filename` and :func:`report_folder`.
    """
    for name, value in (("organization_id", organization_id), ("report_id", report_id)):
        try:
            check_id(name, value)
        except ValueError as exc:
            raise ArtifactPathError(str(exc)) from None
    return f"{organization_id}/{report_id}/{artifact_filename(report_type, fmt)}"


def artifact_path(
    root: Path, organization_id: str, report_id: str, report_type: str, fmt: str
) -> Path:
    """The absolute path of a report's ``fmt`` file, derived from its identity (not read).

    The file need not exist. The result is checked to lie directly in
    ``<root>/<organization_id>/<report_id>/``.

    Raises:
        ArtifactPathError: a bad id, report type or format, or the path leaves its folder.
    """
    folder = report_folder(root, organization_id, report_id)
    path = (folder / artifact_filename(report_type, fmt)).resolve()
    if path.parent != folder:
        raise ArtifactPathError(f"artifact of {organization_id}/{report_id} leaves its folder")
    return path


def remove_report_folder(root: Path, organization_id: str, report_id: str) -> bool:
    """Delete the folder of one report, ``<root>/<organization_id>/<report_id>``, and its files.

    Blocking file I/O (run it in a thread). Only ever that one folder: the ids are checked
    against the id rule and the resolved folder must sit exactly two levels under the root,
    so no id can name the store, an organisation's folder or anything outside.

    Returns:
        True when a folder was deleted, False when there was none.

    Raises:
        ArtifactPathError: the ids do not name a report folder of the store.
        OSError: the folder could not be deleted.
    """
    folder = report_folder(root, organization_id, report_id)
    if folder.is_symlink() or not folder.is_dir():
        return False
    shutil.rmtree(folder)
    return True


class HashingWriter:
    """A binary file wrapper that counts bytes and computes SHA-256 as it writes."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._sha = hashlib.sha256()
        self.size = 0
        self.rows = 0

    def write(self, data: bytes) -> int:
        """Write ``data``; returns its length."""
        self._fh.write(data)
        self._sha.update(data)
        self.size += len(data)
        return len(data)

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of everything written so far."""
        return self._sha.hexdigest()


def download_url(organization_id: str, report_id: str, fmt: str) -> str:
    """The HTTP path that serves a report's ``fmt`` file (relative to the API's base URL)."""
    return f"/orgs/{organization_id}/reports/{report_id}/files/{fmt}"


@dataclass(frozen=True, slots=True)
class ArtifactStore:
    """A local-folder artifact store rooted at ``root``."""

    root: Path

    def relative_path(self, organization_id: str, report_id: str, filename: str) -> Path:
        """Where a file of a report lives, relative to the root."""
        return Path(organization_id) / report_id / filename

    @contextmanager
    def write(
        self, organization_id: str, report_id: str, filename: str, fmt: str
    ) -> Iterator[tuple[HashingWriter, list[ArtifactLink]]]:
        """Open a new artifact for writing; on clean exit it is renamed into place.

        Yields ``(writer, out)``: write through ``writer`` (set ``writer.rows``); after the
        block, ``out`` holds the :class:`ArtifactLink`. On an exception the partial file is
        removed and the exception propagates.
        """
        rel = self.relative_path(organization_id, report_id, filename)
        final = report_folder(self.root, organization_id, report_id) / filename
        if final.resolve().parent != final.parent:
            raise ArtifactPathError(f"file name {filename!r} leaves the report's folder")
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.partial-{os.getpid()}")
        out: list[ArtifactLink] = []
        try:
            with tmp.open("wb") as fh:
                writer = HashingWriter(fh)
                yield writer, out
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        out.append(
            ArtifactLink(
                format=fmt,
                uri=download_url(organization_id, report_id, fmt),
                path=rel.as_posix(),
                sha256=writer.sha256,
                size_bytes=writer.size,
                rows=writer.rows,
            )
        )
