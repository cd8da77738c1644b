"""The master key and the organisations' data keys (envelope encryption).

Each organisation has numbered 256-bit data keys (random, ``os.urandom``) in PostgreSQL
(``organization_data_keys``, migration ``012_keys.sql``), each sealed ("wrapped") with
AES-256-GCM under the master key: ``wrapped_key = nonce (12) || AES-GCM(master, nonce,
data key, ad)`` with associated data ``b"wedding-data-key" || organisation || version``, so
a wrapped key copied to another organisation or version does not unwrap. New files use the
highest version; old versions stay to read old files (``wedding-engine keys rotate``).

The master key never touches the database; only its id (the first 16 hex digits of
HMAC-SHA256(master key, ``"wedding-engine master key id"``)) is stored beside each wrapped
key, so a worker given the wrong master key says so instead of failing on every file.

Master key sources (base64 of exactly 32 bytes): ``WEDDING_MASTER_KEY`` or the file named by
``WEDDING_MASTER_KEY_FILE`` (one of the two). Re-wrapping under a new master key reads the
previous one from ``WEDDING_MASTER_KEY_PREVIOUS`` or ``WEDDING_MASTER_KEY_PREVIOUS_FILE``.
Without a master key, a fixed development key is used **only** when ``WEDDING_DEV_MODE`` is
set; otherwise starting a worker or touching a key fails with :class:`MasterKeyError`.

All database functions take a connection and run in the organisation's tenant scope
(:func:`stream_app.db.tenancy.tenant_transaction`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from stream_app.db.tenancy import tenant_transaction
from stream_app.errors import WeddingError
from stream_app.settings import parse_flag

KEY_BYTES: Final = 32
_WRAP_AD: Final = b"wedding-data-key"
_ID_LABEL: Final = b"wedding-engine master key id"
DEV_MASTER_KEY: Final = hashlib.sha256(
    b"wedding-engine development master key; never deploy"
).digest()
"""The development master key (``WEDDING_DEV_MODE`` only): public, so it protects nothing."""


class MasterKeyError(WeddingError, RuntimeError):
    """The master key is missing, malformed, or is not the one that wrapped a data key."""

    retriable = False


class DataKeyNotFoundError(WeddingError, LookupError):
    """No data key of that version exists for the organisation (a file sealed elsewhere)."""

    retriable = False


@dataclass(frozen=True, slots=True)
class MasterKey:
    """A 256-bit master key.

    Attributes:
        key: the 32 key bytes (not in ``repr``).
        key_id: 16 hex digits identifying the key (stored beside each wrapped data key).
        development: True for :data:`DEV_MASTER_KEY`.
    """

    key: bytes = field(repr=False)
    key_id: str = ""
    development: bool = False

    @staticmethod
    def of(key: bytes, development: bool = False) -> MasterKey:
        """The master key ``key`` with its id.

        Raises:
            MasterKeyError: ``key`` is not 32 bytes.
        """
        if len(key) != KEY_BYTES:
            raise MasterKeyError(f"master key: expected {KEY_BYTES} bytes, got {len(key)}")
        key_id = hmac.new(key, _ID_LABEL, hashlib.sha256).hexdigest()[:16]
        return MasterKey(key, key_id, development)


@dataclass(frozen=True, slots=True)
class MasterKeys:
    """The current master key and, during a master rotation, the previous one."""

    current: MasterKey
    """Wraps new data keys; unwraps keys it wrapped."""
    previous: MasterKey | None = None
    """Unwraps keys not yet re-wrapped (``WEDDING_MASTER_KEY_PREVIOUS``)."""

    def by_id(self, key_id: str) -> MasterKey | None:
        """The master key with id ``key_id``, if this worker holds it."""
        for key in (self.current, self.previous):
            if key is not None and key.key_id == key_id:
                return key
        return None


def _decode_key(name: str, text: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MasterKeyError(f"{name}: not base64") from None
    if len(raw) != KEY_BYTES:
        raise MasterKeyError(f"{name}: must decode to {KEY_BYTES} bytes, got {len(raw)}")
    return raw


def _read_key(env: Mapping[str, str], name: str) -> bytes | None:
    """The key in ``name`` or in the file named by ``name + "_FILE"``; None when neither."""
    value, path = env.get(name, ""), env.get(f"{name}_FILE", "")
    if value and path:
        raise MasterKeyError(f"{name}: set either {name} or {name}_FILE, not both")
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise MasterKeyError(f"{name}_FILE: cannot read {path!r}: {exc}") from exc
        return _decode_key(f"{name}_FILE", text)
    if value:
        return _decode_key(name, value)
    return None


def load_master_keys(env: Mapping[str, str] | None = None) -> MasterKeys:
    """The master keys from the environment (see the module docstring for the variables).

    Raises:
        MasterKeyError: no master key and no ``WEDDING_DEV_MODE``; a value is not base64 of
            32 bytes; a variable and its ``_FILE`` twin are both set; previous equals current.
    """
    env = os.environ if env is None else env
    current = _read_key(env, "WEDDING_MASTER_KEY")
    previous = _read_key(env, "WEDDING_MASTER_KEY_PREVIOUS")
    if current is None:
        if not parse_flag("WEDDING_DEV_MODE", env.get("WEDDING_DEV_MODE", "0")):
            raise MasterKeyError(
                "WEDDING_MASTER_KEY: required (base64 of 32 random bytes, or a file in"
                " WEDDING_MASTER_KEY_FILE); only WEDDING_DEV_MODE=1 allows the development key"
            )
        master = MasterKey.of(DEV_MASTER_KEY, development=True)
    else:
        master = MasterKey.of(current)
    old = MasterKey.of(previous) if previous is not None else None
    if old is not None and old.key_id == master.key_id:
        raise MasterKeyError("WEDDING_MASTER_KEY_PREVIOUS: equals WEDDING_MASTER_KEY")
    return MasterKeys(master, old)


@dataclass(frozen=True, slots=True)
class DataKey:
    """One version of an organisation's data key.

    Attributes:
        organization_id: the tenant.
        version: 1, 2, ... (the highest seals new files).
        key: the 32 key bytes (not in ``repr``).
    """

    organization_id: str
    version: int
    key: bytes = field(repr=False)


def _wrap_ad(organization_id: str, version: int) -> bytes:
    return _WRAP_AD + struct.pack(">I", version) + organization_id.encode()


def wrap_key(master: MasterKey, data_key: DataKey) -> bytes:
    """``data_key`` sealed under ``master`` (``nonce || ciphertext || tag``, 60 bytes)."""
    nonce = os.urandom(12)
    ad = _wrap_ad(data_key.organization_id, data_key.version)
    return nonce + AESGCM(master.key).encrypt(nonce, data_key.key, ad)


def unwrap_key(master: MasterKey, organization_id: str, version: int, wrapped: bytes) -> DataKey:
    """The data key sealed in ``wrapped``.

    Raises:
        MasterKeyError: ``wrapped`` does not authenticate under ``master`` for this
            organisation and version (edited, moved, or wrapped by another master key).
    """
    try:
        key = AESGCM(master.key).decrypt(
            wrapped[:12], wrapped[12:], _wrap_ad(organization_id, version)
        )
    except InvalidTag:
        raise MasterKeyError(
            f"data key {version} of {organization_id!r} does not unwrap under master key"
            f" {master.key_id}"
        ) from None
    return DataKey(organization_id, version, key)


def _unwrap_row(masters: MasterKeys, organization_id: str, row: asyncpg.Record) -> DataKey:
    master = masters.by_id(row["master_key_id"])
    if master is None:
        raise MasterKeyError(
            f"data key {row['version']} of {organization_id!r} is wrapped by master key"
            f" {row['master_key_id']}; this process holds {masters.current.key_id}"
            + (f" and {masters.previous.key_id}" if masters.previous else "")
            + " (set WEDDING_MASTER_KEY, or WEDDING_MASTER_KEY_PREVIOUS during a rotation)"
        )
    return unwrap_key(master, organization_id, row["version"], bytes(row["wrapped_key"]))


async def fetch_data_key(
    conn: asyncpg.Connection, masters: MasterKeys, organization_id: str, version: int
) -> DataKey:
    """Version ``version`` of ``organization_id``'s data key, unwrapped.

    Raises:
        DataKeyNotFoundError: no such version.
        MasterKeyError: it cannot be unwrapped with the master keys held.
    """
    async with tenant_transaction(conn, organization_id):
        row = await conn.fetchrow(
            "SELECT version, wrapped_key, master_key_id FROM organization_data_keys"
            " WHERE organization_id = $1 AND version = $2",
            organization_id,
            version,
        )
    if row is None:
        raise DataKeyNotFoundError(
            f"organisation {organization_id!r} has no data key version {version}"
        )
    return _unwrap_row(masters, organization_id, row)


async def _insert_version(
    conn: asyncpg.Connection, masters: MasterKeys, organization_id: str, version: int
) -> bool:
    key = DataKey(organization_id, version, os.urandom(KEY_BYTES))
    status = await conn.execute(
        "INSERT INTO organization_data_keys (organization_id, version, wrapped_key,"
        " master_key_id) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        organization_id,
        version,
        wrap_key(masters.current, key),
        masters.current.key_id,
    )
    return bool(status == "INSERT 0 1")


async def current_data_key(
    conn: asyncpg.Connection, masters: MasterKeys, organization_id: str
) -> DataKey:
    """The newest data key of ``organization_id``; version 1 is created on first use.

    Concurrent first uses on several workers agree (``ON CONFLICT DO NOTHING``, then read).

    Raises:
        MasterKeyError: the newest key cannot be unwrapped with the master keys held.
        asyncpg.ForeignKeyViolationError: the organisation does not exist.
    """
    query = (
        "SELECT version, wrapped_key, master_key_id FROM organization_data_keys"
        " WHERE organization_id = $1 ORDER BY version DESC LIMIT 1"
    )
    async with tenant_transaction(conn, organization_id):
        row = await conn.fetchrow(query, organization_id)
        if row is None:
            await _insert_version(conn, masters, organization_id, 1)
            row = await conn.fetchrow(query, organization_id)
    assert row is not None
    return _unwrap_row(masters, organization_id, row)


async def rotate_data_key(
    conn: asyncpg.Connection, masters: MasterKeys, organization_id: str
) -> int:
    """Add a new data key version for ``organization_id``; returns it (old versions stay).

    Raises:
        asyncpg.ForeignKeyViolationError: the organisation does not exist.
    """
    async with tenant_transaction(conn, organization_id):
        while True:
            newest = await conn.fetchval(
                "SELECT coalesce(max(version), 0) FROM organization_data_keys"
                " WHERE organization_id = $1",
                organization_id,
            )
            if await _insert_version(conn, masters, organization_id, int(newest) + 1):
                return int(newest) + 1


async def rewrap_organization(
    conn: asyncpg.Connection, masters: MasterKeys, organization_id: str
) -> int:
    """Re-wrap every data key of ``organization_id`` not yet under ``masters.current``.

    Each key is unwrapped with the master key that wrapped it (current or previous) and
    sealed again under the current one, in one transaction: a failure changes nothing.

    Returns:
        The number of keys re-wrapped.

    Raises:
        MasterKeyError: a key is wrapped by a master key this process does not hold.
    """
    n = 0
    async with tenant_transaction(conn, organization_id):
        rows = await conn.fetch(
            "SELECT version, wrapped_key, master_key_id FROM organization_data_keys"
            " WHERE organization_id = $1 AND master_key_id <> $2 FOR UPDATE",
            organization_id,
            masters.current.key_id,
        )
        for row in rows:
            key = _unwrap_row(masters, organization_id, row)
            await conn.execute(
                "UPDATE organization_data_keys SET wrapped_key = $3, master_key_id = $4,"
                " rewrapped_at = $5 WHERE organization_id = $1 AND version = $2",
                organization_id,
                key.version,
                wrap_key(masters.current, key),
                masters.current.key_id,
                datetime.now(UTC),
            )
            n += 1
    return n


@dataclass(frozen=True, slots=True)
class MasterKeyCoverage:
    """Which organisations' data keys the master keys of this process can unwrap.

    Attributes:
        held: organisations with at least one data key wrapped by a master key held.
        foreign: organisations with a data key wrapped by a master key not held, by that
            key's id (``{key_id: count of organisations}``).
    """

    held: int
    foreign: dict[str, int]

    @property
    def usable(self) -> bool:
        """False when data keys exist and none is wrapped by a master key held: the process
        was given the wrong ``WEDDING_MASTER_KEY`` (no old file would decrypt)."""
        return self.held > 0 or not self.foreign


async def master_key_coverage(conn: asyncpg.Connection, masters: MasterKeys) -> MasterKeyCoverage:
    """Count the organisations whose data keys ``masters`` can and cannot unwrap, by the master
    key ids stored beside the wrapped keys (an id is an HMAC of its key: equal ids, equal keys).

    ``conn`` is a connection of the system login (``POSTGRES_SYSTEM_DSN``), which may read
    ``organization_id`` and ``master_key_id`` of every organisation's keys (``db/policies.sql``),
    not the wrapped keys.

    Raises:
        asyncpg.InsufficientPrivilegeError: the grant is missing (``wedding-engine init`` not
            run since it was added).
    """
    rows = await conn.fetch(
        "SELECT master_key_id, count(DISTINCT organization_id) AS orgs"
        " FROM organization_data_keys GROUP BY master_key_id"
    )
    held = {m.key_id for m in (masters.current, masters.previous) if m is not None}
    mine = await conn.fetchval(
        "SELECT count(DISTINCT organization_id) FROM organization_data_keys"
        " WHERE master_key_id = ANY($1::text[])",
        sorted(held),
    )
    foreign = {r["master_key_id"]: int(r["orgs"]) for r in rows if r["master_key_id"] not in held}
    return MasterKeyCoverage(int(mine), foreign)


async def check_master_key(
    conn: asyncpg.Connection, masters: MasterKeys, holder: str = "this worker"
) -> None:
    """Refuse a worker (or a key command, ``holder``) whose master keys wrap none of the
    stored data keys (while some exist): a worker would take partitions and report lanes,
    fail every old file with ``key_unavailable`` and create new organisations' data keys
    under its wrong key, which later blocked ``keys rotate --master`` (an operator's trial;
    before, such a worker was only *not ready*); ``keys rotate --org`` run with
    ``WEDDING_DEV_MODE`` set and no master key wrapped a deployment's new data key under the
    public development key, and every report of the organisation failed (a new user's
    trial). ``conn`` is a system-login connection (:func:`master_key_coverage`); a database
    whose grants predate that read is not checked.

    Raises:
        MasterKeyError: naming the key ids held (and the development key as such) and the
            ones the stored keys are wrapped by.
    """
    try:
        coverage = await master_key_coverage(conn, masters)
    except asyncpg.InsufficientPrivilegeError:
        return
    if coverage.usable:
        return
    holds = masters.current.key_id + (f", {masters.previous.key_id}" if masters.previous else "")
    if masters.current.development:
        holds += ": the public development key, as WEDDING_DEV_MODE is set and no key is given"
    stored = ", ".join(f"{k} ({n} organisation(s))" for k, n in sorted(coverage.foreign.items()))
    raise MasterKeyError(
        f"WEDDING_MASTER_KEY: {holder}'s master key ({holds}) wraps none of the stored data"
        f" keys, which are wrapped by {stored}: run it with the deployment's master key"
        " (during a rotation, the new one and WEDDING_MASTER_KEY_PREVIOUS)"
    )
