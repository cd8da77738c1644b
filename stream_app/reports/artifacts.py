"""The artifact store: a folder where report files are written, with checksum and size.

Files are written under a temporary name and renamed when complete, so a reader never sees
half a file. Layout: ``<root>/<organization_id>/<report_id>/<report_type>.<ext>``.

Paths are **derived**, never read: whoever needs a report's file (the download route, the
delivery agent, the cache, the cleanup of a failed report) computes it from (organisation,
report id, report type, format) with :func:`artifact_path`, which checks both ids against the
id rule (:mod:`stream_app.schemas.ids`) and that the result lies in
``<root>/<organization_id>/<report_id>/``. A path held by a Kafka message or a database row
is never opened. :func:`remove_report_folder` deletes exactly one report's folder.

**Encryption at rest.** Every file is sealed as it is written, in the segmented AES-256-GCM
format of :mod:`stream_app.crypto.segmented`, under the organisation's current data key and
bound to (organisation, report id, file name); no plaintext byte reaches the disk, the
``.partial`` file included. The SHA-256 and size of an :class:`ArtifactLink` are those of the
**plaintext** (what a user downloads and checks), not of the bytes on disk. Every reader goes
through :func:`open_artifact`, which authenticates each 64 KiB segment before handing it out.

**A full store.** ``max_bytes`` (``WEDDING_ARTIFACT_STORE_MAX_BYTES``, 0 = no limit) bounds the
bytes on disk under the root, and ``org_max_bytes`` (``WEDDING_ARTIFACT_ORG_MAX_BYTES``, 10 GiB
by default) those under one organisation's folder, so that one tenant cannot fill a shared
store and fail every other tenant's reports (an attacker round filled one with its own 61 MB
compliance reports): a file that would take the store or its organisation past its limit, or
a disk that answers ``ENOSPC``/``EDQUOT``, raises :class:`ArtifactStoreFullError` (not
retriable: a full store does not empty itself within a retry's backoff) and leaves no partial
file behind.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import itertools
import os
import shutil
from collections.abc import AsyncIterator, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol, cast

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
from stream_app.errors import WeddingError
from stream_app.schemas.ids import check_id
from stream_app.schemas.updates import ArtifactLink

__all__ = [
    "ArtifactIntegrityError",
    "ArtifactMissingError",
    "ArtifactReader",
    "ArtifactStore",
    "ArtifactStoreFullError",
    "HashingWriter",
    "open_artifact",
]


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int | None: ...


FORMAT_EXTENSIONS: dict[str, str] = {
    "csv": "csv",
    "json": "json",
    "excel": "xlsx",
    "pdf": "pdf",
    "powerpoint": "pptx",
}
"""Output format → file extension of its artifact."""


class ArtifactPathError(WeddingError, ValueError):
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


class ArtifactStoreFullError(WeddingError, OSError):
    """The artifact store has no room for a file (its size limit, or the disk is full).

    The message is the cause shown on the failed report; ``retriable`` is False.
    """

    retriable = False

    def __str__(self) -> str:
        return str(self.strerror)


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def store_usage(root: Path) -> int:
    """Bytes of every file under ``root`` (0 when it does not exist); files removed while
    the folder is walked are skipped."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                continue
    return total


class _BudgetSink:
    """A sink that raises :class:`ArtifactStoreFullError` with ``message`` once more than
    ``budget`` bytes would have been written through it."""

    def __init__(self, fh: _Sink, budget: int, message: str) -> None:
        self._fh = fh
        self._budget = budget
        self._message = message

    def write(self, data: bytes, /) -> int | None:
        if len(data) > self._budget:
            raise ArtifactStoreFullError(errno.ENOSPC, self._message)
        self._budget -= len(data)
        return self._fh.write(data)


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


def download_url(organization_id: str, report_id: str, fmt: str) -> str:
    """The HTTP path that serves a report's ``fmt`` file (relative to the API's base URL)."""
    return f"/orgs/{organization_id}/reports/{report_id}/files/{fmt}"


@dataclass(frozen=True, slots=True)
class ArtifactStore:
    """A local-folder artifact store rooted at ``root``, at most ``max_bytes`` on disk and at
    most ``org_max_bytes`` of them one organisation's (0: no limit; see the module docstring)."""

    root: Path
    max_bytes: int = 0
    org_max_bytes: int = 0

    def _budget(self, organization_id: str) -> tuple[int, str] | None:
        """``(bytes a new file may take, the refusal's message)`` under the store's limit and
        the organisation's, the smaller; None without limits. Blocking (walks the folders)."""
        budgets: list[tuple[int, str]] = []
        if self.max_bytes > 0:
            budgets.append(
                (
                    self.max_bytes - store_usage(self.root),
                    f"artifact store full: the store limit of {self.max_bytes:,} bytes"
                    " (WEDDING_ARTIFACT_STORE_MAX_BYTES) is reached",
                )
            )
        if self.org_max_bytes > 0:
            used = store_usage(self.root / organization_id)
            budgets.append(
                (
                    self.org_max_bytes - used,
                    f"artifact quota of organisation {organization_id!r} reached: its files"
                    f" would take more than {self.org_max_bytes:,} bytes"
                    f" (WEDDING_ARTIFACT_ORG_MAX_BYTES; {used:,} in use); shorten its retention"
                    " (PUT /orgs/{org}/retention, artifacts_days) or raise the quota",
                )
            )
        return min(budgets, key=lambda b: b[0]) if budgets else None

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

        Raises (besides the above):
            ArtifactStoreFullError: the file does not fit under ``max_bytes``, or the disk
                is full (``ENOSPC``/``EDQUOT``); nothing of it is left on disk.

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
        final = report_folder(self.root, organization_id, report_id) / filename
        if final.resolve().parent != final.parent:
            raise ArtifactPathError(f"file name {filename!r} leaves the report's folder")
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.partial-{os.getpid()}")
        out: list[ArtifactLink] = []
        try:
            with tmp.open("wb") as fh:
                sink: _Sink = fh
                budget = self._budget(organization_id)
                if budget is not None:
                    sink = _BudgetSink(fh, max(0, budget[0]), budget[1])
                sealer = (
                    None
                    if key is None
                    else SegmentedEncryptor(
                        cast(BinaryIO, sink),
                        key.key,
                        key.version,
                        FileContext(organization_id, report_id, filename),
                    )
                )
                writer = HashingWriter(sink if sealer is None else sealer)
                yield writer, out
                if sealer is not None:
                    sealer.close()
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno in _FULL_ERRNOS and not isinstance(exc, ArtifactStoreFullError):
                raise ArtifactStoreFullError(exc.errno, f"artifact store full: {exc}") from exc
            raise
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


SEGMENTS_PER_HOP = 16
"""Segments an async reader decrypts per thread hop (16 × 64 KiB = 1 MiB in memory)."""


def _take(it: Iterator[bytes], n: int) -> list[bytes]:
    return list(itertools.islice(it, n))


class ArtifactMissingError(WeddingError, FileNotFoundError):
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
