"""``wedding-engine keys rotate``: new data-key versions and master-key re-wrapping.

* Data key (default, ``--data``): each organisation gets a new data-key version; new files
  are sealed with it (workers pick it up within
  :data:`~stream_app.crypto.keyring.CURRENT_TTL_S`), and old versions stay to open old files.
* Master key (``--master``): every data key not yet under the current master key
  (``WEDDING_MASTER_KEY``) is unwrapped with the previous one
  (``WEDDING_MASTER_KEY_PREVIOUS`` or ``--previous-key-file``) and wrapped again; the data
  keys themselves, and so every file, are unchanged. Each organisation is one transaction.

Procedure for a master rotation: give the workers the new key as ``WEDDING_MASTER_KEY`` and
the old one as ``WEDDING_MASTER_KEY_PREVIOUS`` and restart them; run ``keys rotate
--master``; then remove the previous key. This is the administrator's cross-tenant path: it
lists the organisations, then works in each one's tenant scope.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from stream_app.crypto.keys import (
    MasterKeys,
    check_master_key,
    rewrap_organization,
    rotate_data_key,
)
from stream_app.db import audit_events
from stream_app.db.tenancy import tenant_transaction


@dataclass(frozen=True, slots=True)
class RotationResult:
    """What a rotation did for one organisation.

    Attributes:
        organization_id: the tenant.
        new_version: the data-key version added (None when data keys were not rotated).
        rewrapped: data keys re-wrapped under the current master key.
    """

    organization_id: str
    new_version: int | None
    rewrapped: int


async def rotate(
    dsn: str,
    masters: MasterKeys,
    *,
    organization_id: str | None = None,
    data: bool = True,
    master: bool = False,
    system_dsn: str | None = None,
    actor: str = "cli",
) -> list[RotationResult]:
    """Rotate the keys of ``organization_id`` (or of every organisation).

    Master re-wrapping runs first, so the new data key and the old ones end under one master.

    Args:
        dsn: PostgreSQL URL of the application login (each organisation's keys are
            rewritten in its tenant scope).
        actor: who rotates (``cli:<os user>``), recorded with each organisation's
            ``keys.rotated`` audit event.
        system_dsn: the system login, which lists the organisations (default ``dsn``; the
            application login sees no organisation outside a tenant scope).
        masters: current master key and, for ``master``, the previous one.
        organization_id: one tenant, or None for all.
        data: add a new data-key version.
        master: re-wrap every data key under ``masters.current``.

    Returns:
        One :class:`RotationResult` per organisation, by id.

    Raises:
        ValueError: the organisation does not exist, or neither ``data`` nor ``master``.
        MasterKeyError: a data key is wrapped by a master key not given; or ``masters`` wrap
            none of the stored data keys while some exist (:func:`check_master_key`: a new
            data key would be wrapped by a key the workers do not hold).
    """
    if not (data or master):
        raise ValueError("keys rotate: nothing to do (give --data and/or --master)")
    lister = await asyncpg.connect(system_dsn or dsn)
    try:
        if organization_id is None:
            orgs = [r["id"] for r in await lister.fetch("SELECT id FROM organizations ORDER BY id")]
        elif await lister.fetchval("SELECT 1 FROM organizations WHERE id = $1", organization_id):
            orgs = [organization_id]
        else:
            raise ValueError(f"--org: organisation {organization_id!r} does not exist")
        await check_master_key(lister, masters, holder="keys rotate")
    finally:
        await lister.close()
    conn = await asyncpg.connect(dsn)
    try:
        out = []
        for org in orgs:
            rewrapped = await rewrap_organization(conn, masters, org) if master else 0
            version = await rotate_data_key(conn, masters, org) if data else None
            async with tenant_transaction(conn, org):
                await audit_events.record(
                    conn,
                    org,
                    actor,
                    "keys.rotated",
                    None,
                    {
                        "data_key_version": version,
                        "rewrapped": rewrapped,
                        "master_key_id": masters.current.key_id,
                    },
                )
            out.append(RotationResult(org, version, rewrapped))
        return out
    finally:
        await conn.close()
