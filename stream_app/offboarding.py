"""Offboarding an organisation: what it holds, and deleting it (``wedding-engine offboard``).

What is deleted: its row in ``organizations``, which cascades to every PostgreSQL table keyed
by it (history, reports, schedules and their runs, deliveries, download links, tokens and
revocations, data keys, rollups, GDPR requests, ...) and leaves a tombstone
(``deleted_organizations``, migration 026: its tokens and signed links are refused on every
worker from then on, and ``wedding-engine org`` refuses the id again); then its folder of
the artifact store (``<WEDDING_ARTIFACT_DIR>/<org>``: its report files, undecryptable anyway
once its data keys are gone).

What stays, by design or for want of a way: its audit chain (``organization.deleted`` is its
last event), its rows in the live tables (Kafka changelogs and the workers' RocksDB folders:
keyed by organisation id, which is why the id is never registered again) and its events in
the input topics until their retention. Personal data in the live tables is erased by a
GDPR erasure *before* offboarding (it runs through the organisation's token).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

from stream_app.db.audit_events import record as audit
from stream_app.errors import WeddingError

COUNTED = ("venues", "reports", "schedules", "tokens", "bookings", "payments", "clients")
"""The tables :func:`footprint` counts rows of (all cascade with the organisation)."""


@dataclass(frozen=True, slots=True)
class Footprint:
    """What an organisation holds.

    Attributes:
        rows: rows per table of :data:`COUNTED`.
        files: files under its folder of the artifact store.
        file_bytes: their total size, bytes.
    """

    rows: dict[str, int]
    files: int
    file_bytes: int


class OffboardingError(WeddingError, ValueError):
    """The organisation cannot be offboarded: it does not exist, or it is already deleted
    (the message says which, naming ``ORG``)."""

    retriable = False


def org_folder(artifact_dir: Path, organization_id: str) -> Path:
    """``<artifact_dir>/<organization_id>``, checked to be a direct child of the store.

    Raises:
        OffboardingError: the id would name another path (``..``, a separator); ids are
            checked before, this is the second wall.
    """
    root = artifact_dir.resolve()
    folder = root / organization_id
    if folder.parent != root or organization_id in ("", ".", ".."):
        raise OffboardingError(f"ORG: {organization_id!r} does not name a folder of the store")
    return folder


def _files(folder: Path) -> tuple[int, int]:
    count = size = 0
    if folder.is_symlink() or not folder.is_dir():
        return 0, 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                count += 1
                size += path.stat().st_size
    return count, size


async def footprint(
    conn: asyncpg.Connection, organization_id: str, artifact_dir: Path
) -> Footprint:
    """What ``organization_id`` holds (owner connection: row-level security does not apply).

    Raises:
        OffboardingError: no such organisation (and, if it was deleted, when).
    """
    exists = await conn.fetchval("SELECT 1 FROM organizations WHERE id = $1", organization_id)
    if exists is None:
        gone: datetime | None = await conn.fetchval(
            "SELECT deleted_at FROM deleted_organizations WHERE organization_id = $1",
            organization_id,
        )
        if gone is not None:
            raise OffboardingError(
                f"ORG: {organization_id!r} was already deleted at {gone.isoformat()}"
            )
        raise OffboardingError(f"ORG: no organisation {organization_id!r}")
    rows = {}
    for table in COUNTED:  # names from COUNTED, never from input
        rows[table] = int(
            await conn.fetchval(
                f"SELECT count(*) FROM {table} WHERE organization_id = $1",
                organization_id,
            )
        )
    files, size = _files(org_folder(artifact_dir, organization_id))
    return Footprint(rows, files, size)


async def delete_organization(
    conn: asyncpg.Connection, organization_id: str, actor: str, found: Footprint
) -> datetime:
    """Delete ``organization_id``'s row (cascading to its PostgreSQL data; leaves the
    tombstone) in one transaction with its last audit event, ``organization.deleted``
    (details: the row counts of ``found``). Owner connection.

    Returns:
        The tombstone's time (UTC).

    Raises:
        OffboardingError: the organisation is gone (deleted meanwhile).
    """
    async with conn.transaction():
        await audit(
            conn,
            organization_id,
            actor,
            "organization.deleted",
            organization_id,
            {"rows": found.rows, "files": found.files},
        )
        deleted = await conn.execute("DELETE FROM organizations WHERE id = $1", organization_id)
        if deleted != "DELETE 1":
            raise OffboardingError(f"ORG: no organisation {organization_id!r}")
        at: datetime = await conn.fetchval(
            "SELECT deleted_at FROM deleted_organizations WHERE organization_id = $1",
            organization_id,
        )
    return at


def remove_files(artifact_dir: Path, organization_id: str) -> tuple[int, int]:
    """Remove the organisation's folder of the artifact store: ``(files, bytes)`` removed
    (``(0, 0)`` when there is none; a symlink in its place is removed, never followed)."""
    folder = org_folder(artifact_dir, organization_id)
    if folder.is_symlink():
        folder.unlink()
        return 0, 0
    files, size = _files(folder)
    if folder.is_dir():
        shutil.rmtree(folder)
    return files, size
