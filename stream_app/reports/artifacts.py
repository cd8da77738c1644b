"""The artifact store: a folder where report files are written, with checksum and size.

Files are written under a temporary name and renamed when complete, so a reader never sees
half a file. Layout: ``<root>/<organization_id>/<report_id>/<report_type>.<ext>``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from stream_app.schemas.updates import ArtifactLink


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
        final = self.root / rel
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
                uri=final.resolve().as_uri(),
                path=rel.as_posix(),
                sha256=writer.sha256,
                size_bytes=writer.size,
                rows=writer.rows,
            )
        )
