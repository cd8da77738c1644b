"""Removing report files from the artifact store, for an erasure and for retention.

Layout of the store (:mod:`stream_app.reports.artifacts`):
``<root>/<organization_id>/<report_id>/<file>``. Only single, safe path components are ever
joined to the root (no ``.``, ``..``, separators or control characters) and the folder
removed must sit directly under the organisation's folder, whatever the id holds.

Erasure rule: which file of a report mentions a client is not tracked (validation findings
name rows, the compliance report lists data-subject requests, every total includes the
client), so an erasure removes **every report file of the organisation** except those of
reports still being generated (they are named in the answer; erasing again after they end
removes them). The report rows stay, with no artifacts, no cache key and
``metadata.artifacts_purged`` = the request id; the organisation can request them again.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import orjson

TERMINAL = ("completed", "failed", "cancelled")
"""Report statuses after which no file of the report is written any more."""


def safe_component(name: str) -> bool:
    """True when ``name`` can be one path component under the store (not ``.``/``..``, no
    separator, no control character, not empty)."""
    return (
        bool(name)
        and name not in (".", "..")
        and "/" not in name
        and "\\" not in name
        and all(ord(ch) >= 32 and ch != "\x7f" for ch in name)
    )


def remove_report_dirs(root: Path, organization_id: str, report_ids: list[str]) -> int:
    """Delete the folders ``<root>/<organization_id>/<report id>``; the files removed.

    Blocking file I/O: run it in a thread. Unsafe ids (:func:`safe_component`) are skipped.
    """
    if not safe_component(organization_id):
        return 0
    org_dir = (root / organization_id).resolve()
    removed = 0
    for rid in report_ids:
        if not safe_component(rid):
            continue
        folder = org_dir / rid
        if folder.resolve().parent != org_dir or not folder.is_dir():
            continue
        removed += sum(1 for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder, ignore_errors=True)
    return removed


def report_dirs(root: Path, organization_id: str) -> list[str]:
    """Names of the report folders under ``<root>/<organization_id>`` (blocking)."""
    org_dir = root / organization_id
    if not safe_component(organization_id) or not org_dir.is_dir():
        return []
    return sorted(p.name for p in org_dir.iterdir() if p.is_dir())


@dataclass(frozen=True, slots=True)
class Purge:
    """What a purge removed.

    Attributes:
        report_ids: reports whose folders were removed (or found absent) and rows cleared.
        files: files deleted.
        cache_keys: cache keys those reports had (for the report cache's levels 1 and 2).
        running: reports of the organisation still queued or processing, left alone.
    """

    report_ids: list[str]
    files: int
    cache_keys: list[str]
    running: list[str]


async def purge_organization_files(
    conn: asyncpg.Connection, root: Path, organization_id: str, reason: str
) -> Purge:
    """Remove every report file of ``organization_id`` but those of running reports, and
    clear the rows' artifacts and cache keys (the erasure rule of the module docstring).
    Call it inside :func:`stream_app.db.tenancy.tenant_transaction` of the organisation.

    Args:
        reason: recorded in each cleared row's ``metadata.artifacts_purged`` (a request id).
    """
    rows = await conn.fetch(
        "SELECT id, status, cache_key FROM reports WHERE organization_id = $1", organization_id
    )
    running = sorted(r["id"] for r in rows if r["status"] not in TERMINAL)
    folders = await asyncio.to_thread(report_dirs, root, organization_id)
    done = sorted({r["id"] for r in rows if r["status"] in TERMINAL} | set(folders))
    done = [rid for rid in done if rid not in set(running)]
    files = await asyncio.to_thread(remove_report_dirs, root, organization_id, done)
    keys = sorted({r["cache_key"] for r in rows if r["cache_key"] and r["status"] in TERMINAL})
    await conn.execute(
        "UPDATE reports SET artifacts = '[]'::jsonb, cache_key = NULL, cache = NULL,"
        " metadata = metadata || $3::jsonb, updated_at = now()"
        " WHERE organization_id = $1 AND id = ANY($2::text[])",
        organization_id,
        done,
        orjson.dumps({"artifacts_purged": reason}).decode(),
    )
    return Purge(done, files, keys, running)
