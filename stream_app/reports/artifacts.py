"""The artifact store: a folder where report files are written, with checksum and size.

Files are written under a temporary name and renamed when complete, so a reader never sees
half a file. Layout: ``<root>/<organization_id>/<report_id>/<report_type>.<ext>``.

**Encryption at rest.** Every file is sealed as it is written, in the segmented AES-256-GCM
format of :mod:`stream_app.crypto.segmented`, under the organisation's current data key and
bound to (organisation, report id, file name); no plaintext byte reaches the disk, the
``.partial`` file included. The SHA-256 and size of an :class:`ArtifactLink` are those of the
**plaintext** (what a user downloads and checks), not of the bytes on disk. Every reader goes
through :func:`open_artifact`, which authenticates each 64 KiB segment before handing it out.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
from collections.abc import AsyncIterator, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from stream_app.crypto.keys import DataKey
from stream_app.crypto.segmented import (
    ArtifactIntegrityError,
    FileContext,
    Header,
    SegmentedEncryptor,
    decrypt_segments,
    plaintext_size,
    read_header,
)
from stream_app.schemas.updates import ArtifactLink

__all__ = [
    "ArtifactIntegrityError",
    "ArtifactMissingError",
    "ArtifactReader",
    "ArtifactStore",
    "HashingWriter",
    "open_artifact",
]


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int | None: ...


class HashingWriter:
    """A binary file wrapper that counts bytes and computes SHA-256 as it writes."""

    def __init__(self, fh: _Sink) -> None:
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
        self,
        organization_id: str,
        report_id: str,
        filename: str,
        fmt: str,
        *,
        key: DataKey | None,
    ) -> Iterator[tuple[HashingWriter, list[ArtifactLink]]]:
        """Open a new artifact for writing; on clean exit it is renamed into place.

        Yields ``(writer, out)``: write through ``writer`` (set ``writer.rows``); after the
        block, ``out`` holds the :class:`ArtifactLink` (SHA-256 and size of the plaintext).
        On an exception the partial file is removed and the exception propagates.

        Args:
            key: the organisation's current data key (``KeyRing.current``): the file is
                sealed with it. ``None`` writes plaintext, which :func:`open_artifact`
                refuses: only for renderer tests that read the file back directly.

        Raises:
            ValueError: ``key`` belongs to another organisation.
        """
        if key is not None and key.organization_id != organization_id:
            raise ValueError(f"key: belongs to {key.organization_id!r}, not {organization_id!r}")
        rel = self.relative_path(organization_id, report_id, filename)
        final = self.root / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.partial-{os.getpid()}")
        out: list[ArtifactLink] = []
        try:
            with tmp.open("wb") as fh:
                sealer = (
                    None
                    if key is None
                    else SegmentedEncryptor(
                        fh, key.key, key.version, FileContext(organization_id, report_id, filename)
                    )
                )
                writer = HashingWriter(fh if sealer is None else sealer)
                yield writer, out
                if sealer is not None:
                    sealer.close()
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


SEGMENTS_PER_HOP = 16
"""Segments an async reader decrypts per thread hop (16 × 64 KiB = 1 MiB in memory)."""


def _take(it: Iterator[bytes], n: int) -> list[bytes]:
    return list(itertools.islice(it, n))


class ArtifactMissingError(FileNotFoundError):
    """The artifact's path is malformed, outside the store, or the file is gone."""

    retriable = False


class _KeySource(Protocol):
    async def get(self, organization_id: str, version: int, /) -> DataKey: ...


@dataclass(frozen=True, slots=True)
class ArtifactReader:
    """An opened encrypted artifact: its plaintext size and a way to read it segment by segment.

    Attributes:
        path: the file on this machine.
        size: plaintext bytes (what a download sends; the link's ``size_bytes``).
        context: the identity the file is bound to.
        header: the file's header (its key version).
    """

    path: Path
    size: int
    context: FileContext
    header: Header
    _key: DataKey = field(repr=False)

    def iter_chunks(self) -> Generator[bytes, None, None]:
        """The plaintext, one authenticated segment (at most 64 KiB) at a time (blocking I/O).

        Raises:
            ArtifactIntegrityError: a segment fails authentication (see
                :func:`~stream_app.crypto.segmented.decrypt_segments`).
            OSError: the file cannot be read.
        """
        with self.path.open("rb") as fh:
            total = os.fstat(fh.fileno()).st_size
            read_header(fh)
            yield from decrypt_segments(fh, self._key.key, self.header, self.context, total)

    async def chunks(self) -> AsyncIterator[bytes]:
        """:meth:`iter_chunks` without blocking the event loop: up to
        :data:`SEGMENTS_PER_HOP` segments (1 MiB) are read and decrypted per worker-thread
        call, then yielded one by one."""
        it = self.iter_chunks()
        try:
            while batch := await asyncio.to_thread(_take, it, SEGMENTS_PER_HOP):
                for chunk in batch:
                    yield chunk
        finally:
            it.close()

    def read_all(self) -> bytes:
        """The whole plaintext in memory (for bounded uses such as email attachments)."""
        return b"".join(self.iter_chunks())


def artifact_context(organization_id: str, rel_path: str) -> FileContext:
    """The identity of the artifact at ``rel_path`` (``<org>/<report id>/<file name>``).

    Raises:
        ArtifactMissingError: the path is not three plain segments under ``organization_id``.
    """
    parts = Path(rel_path).parts
    if len(parts) != 3 or parts[0] != organization_id or any(p in (".", "..") for p in parts):
        raise ArtifactMissingError(f"{rel_path!r} is not an artifact of {organization_id!r}")
    return FileContext(parts[0], parts[1], parts[2])


async def open_artifact(
    root: Path, organization_id: str, rel_path: str, keys: _KeySource
) -> ArtifactReader:
    """Open the encrypted artifact ``rel_path`` of ``organization_id`` for reading.

    The one way every reader (HTTP download, signed links, delivery) reads report files.
    Reads the header, fetches the data key of the version it names (cached by ``keys``) and
    authenticates the first segment before returning, so a swapped, edited-header or
    foreign-key file fails here, before a caller starts a response.

    Args:
        root: the artifact store's root folder.
        organization_id: the organisation the file must belong to.
        rel_path: the path relative to ``root`` (an :class:`ArtifactLink`'s ``path``).
        keys: a :class:`~stream_app.crypto.keyring.KeyRing`.

    Returns:
        An :class:`ArtifactReader` (plaintext size, chunk iterators).

    Raises:
        ArtifactMissingError: malformed path, outside the store, or no such file.
        ArtifactIntegrityError: not an encrypted artifact, truncated, or its first segment
            fails authentication.
        DataKeyNotFoundError / MasterKeyError: the key it names cannot be had.
    """
    context = artifact_context(organization_id, rel_path)

    def head() -> tuple[Path, Header, int]:
        base = root.resolve()
        path = (base / rel_path).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            raise ArtifactMissingError(f"{rel_path!r} is not in the artifact store")
        with path.open("rb") as fh:
            return path, read_header(fh), os.fstat(fh.fileno()).st_size

    path, header, total = await asyncio.to_thread(head)
    size = plaintext_size(total)
    key = await keys.get(organization_id, header.key_version)
    reader = ArtifactReader(path, size, context, header, key)

    def first() -> None:
        it = reader.iter_chunks()
        try:
            next(it)
        finally:
            it.close()

    await asyncio.to_thread(first)
    return reader


def reseal(
    reader: ArtifactReader, store: ArtifactStore, report_id: str, fmt: str, key: DataKey
) -> ArtifactLink:
    """Copy an opened artifact into ``report_id``'s folder of the same organisation, sealed
    for its new identity (a cache hit reuses an earlier report's files). Blocking I/O.

    Returns:
        The new file's link (plaintext SHA-256 and size, checked equal to the source's).

    Raises:
        ArtifactIntegrityError: the source fails authentication.
        OSError: the store cannot be written.
    """
    context = reader.context
    with store.write(context.organization_id, report_id, context.filename, fmt, key=key) as (
        writer,
        out,
    ):
        for chunk in reader.iter_chunks():
            writer.write(chunk)
    return out[0]
