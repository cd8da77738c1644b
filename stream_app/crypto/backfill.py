"""``wedding-engine keys seal-existing``: encrypt what was stored before encryption at rest.

* Artifact files: every file ``<root>/<org>/<report id>/<name>`` that does not start with the
  format's magic (:data:`stream_app.crypto.segmented.MAGIC`) is sealed in place under the
  organisation's current data key (written to a temporary name, fsync'd, renamed over the
  original, so a crash leaves either the old or the new file). Its recorded SHA-256 and size
  stay right: they are those of the plaintext. Hidden files (``.partial`` leftovers) and
  folders of organisations that do not exist are skipped and counted.
* Delivery secrets: every schedule whose webhook secret or SFTP password or key is still
  plaintext in ``schedules.delivery_secrets`` gets it sealed (:mod:`stream_app.schedules.
  sealing`), its firing state untouched.

Idempotent: a second run finds nothing to do. The administrator's cross-tenant path (it lists
organisations), working in each one's tenant scope.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import orjson

from stream_app.crypto.keys import DataKey, MasterKeys, check_master_key, current_data_key
from stream_app.crypto.sealed import is_sealed, seal
from stream_app.crypto.segmented import MAGIC, FileContext, SegmentedEncryptor
from stream_app.db.tenancy import tenant_transaction

_SECRET_FIELDS = {"webhook": ("secret",), "sftp": ("password", "private_key")}


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """What :func:`seal_existing` did.

    Attributes:
        files_sealed: plaintext artifact files now encrypted.
        files_already: files that were already encrypted.
        files_skipped: hidden files, or files of unknown organisations.
        schedules_sealed: schedules whose delivery secrets were sealed.
    """

    files_sealed: int
    files_already: int
    files_skipped: int
    schedules_sealed: int


def seal_file_in_place(path: Path, key: DataKey, context: FileContext) -> bool:
    """Seal ``path`` if it is plaintext; returns whether it was (blocking I/O).

    Raises:
        OSError: the file cannot be read or replaced.
    """
    with path.open("rb") as fh:
        if fh.read(len(MAGIC)) == MAGIC:
            return False
        fh.seek(0)
        tmp = path.with_name(f".{path.name}.sealing-{os.getpid()}")
        try:
            with tmp.open("wb") as out:
                enc = SegmentedEncryptor(out, key.key, key.version, context)
                while chunk := fh.read(1 << 20):
                    enc.write(chunk)
                enc.close()
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return True


def _listing(artifact_root: Path) -> tuple[Path, list[Path]]:
    root = artifact_root.resolve()
    return root, sorted(root.glob("*/*/*")) if root.is_dir() else []


async def seal_existing(
    dsn: str, masters: MasterKeys, artifact_root: Path, *, system_dsn: str | None = None
) -> BackfillResult:
    """Encrypt plaintext artifacts under ``artifact_root`` and plaintext delivery secrets.

    ``dsn`` is the application login (each organisation's writes run in its tenant scope);
    ``system_dsn`` (default ``dsn``) lists the organisations and the schedules with secrets.

    Raises:
        MasterKeyError: an organisation's key cannot be unwrapped, or ``masters`` wrap none of
            the stored data keys while some exist (:func:`check_master_key`).
        OSError: a file cannot be read or replaced.
    """
    sealed = already = skipped = schedules = 0
    lister = await asyncpg.connect(system_dsn or dsn)
    try:
        orgs = {r["id"] for r in await lister.fetch("SELECT id FROM organizations")}
        rows = await lister.fetch(
            "SELECT organization_id, id, delivery_method, delivery_secrets FROM schedules"
            " WHERE delivery_method = ANY($1::text[]) ORDER BY organization_id, id",
            list(_SECRET_FIELDS),
        )
        # before any file: a key it would create must be one the workers can unwrap (the
        # development key left on in an operator's shell, as `keys rotate` met it)
        await check_master_key(lister, masters, holder="keys seal-existing")
    finally:
        await lister.close()
    conn = await asyncpg.connect(dsn)
    try:
        keys: dict[str, DataKey] = {}
        root, paths = await asyncio.to_thread(_listing, artifact_root)
        for path in paths:
            org, report_id, name = path.relative_to(root).parts
            if name.startswith(".") or org not in orgs or not path.is_file():
                skipped += 1
                continue
            if org not in keys:
                keys[org] = await current_data_key(conn, masters, org)
            context = FileContext(org, report_id, name)
            if await asyncio.to_thread(seal_file_in_place, path, keys[org], context):
                sealed += 1
            else:
                already += 1
        for row in rows:
            org, schedule_id = row["organization_id"], row["id"]
            secrets = orjson.loads(row["delivery_secrets"])
            plain = [
                f
                for f in _SECRET_FIELDS[row["delivery_method"]]
                if isinstance(secrets.get(f), str) and not is_sealed(secrets[f])
            ]
            if not plain:
                continue
            if org not in keys:
                keys[org] = await current_data_key(conn, masters, org)
            for f in plain:
                secrets[f] = seal(keys[org], schedule_id, f"delivery.{f}", secrets[f])
            async with tenant_transaction(conn, org):
                await conn.execute(
                    "UPDATE schedules SET delivery_secrets = $3::text::jsonb"
                    " WHERE organization_id = $1 AND id = $2",
                    org,
                    schedule_id,
                    orjson.dumps(secrets).decode(),
                )
            schedules += 1
    finally:
        await conn.close()
    return BackfillResult(sealed, already, skipped, schedules)
