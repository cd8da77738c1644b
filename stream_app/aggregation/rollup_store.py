"""Rollups in PostgreSQL (migration 017): create, list, delete, refresh, answer from one.

Part of the query layer (reports). Every statement runs inside
:func:`stream_app.db.tenancy.tenant_transaction` for the organisation (row-level security on
``rollups``, ``rollup_rows`` and ``rollup_dirty``), so one organisation never sees, uses or
deletes another's rollup.

Freshness: the statement-level triggers of migration 017 add a ``rollup_dirty`` row for
every (rollup, bucket) whose history rows an insert, update or delete touched, in the same
transaction as the change. :func:`refresh` recomputes those buckets (and the whole rollup
when it is unbuilt or was built in another zone than the organisation's current one) in a
short transaction of its own; :func:`read_rollup` reads the rollup and checks, in the same
statement (one snapshot), that no bucket is dirty and the zone is current, so an answer
never leaves out a change committed before it was read.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from stream_app.aggregation.compiler import CompiledQuery
from stream_app.aggregation.request import AggregationRequest
from stream_app.aggregation.rollups import (
    Rollup,
    build_sql,
    compile_from_rollup,
    mismatch,
    rollup_from_json,
)
from stream_app.db.tenancy import UnknownOrganizationError, tenant_transaction
from stream_app.errors import WeddingError

MAX_ROLLUPS_PER_ORG = 20
"""Rollups one organisation may hold (each is refreshed on every write to its table)."""
BUILD_TIMEOUT_MS = 60_000
"""Longest a full build or refresh may run (``statement_timeout``, milliseconds)."""


class RollupNotFoundError(WeddingError, LookupError):
    """No rollup of this id in this organisation."""

    retriable = False


class RollupLimitError(WeddingError, ValueError):
    """The organisation already holds :data:`MAX_ROLLUPS_PER_ORG` rollups."""

    retriable = False


@dataclass(frozen=True, slots=True)
class StoredRollup:
    """A rollup row: its id, canonical definition, the zone it was built in (None: unbuilt)."""

    id: int
    rollup: Rollup
    time_zone: str | None
    built_at: str | None
    row_count: int | None = None
    dirty_buckets: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The rollup as the HTTP API lists it."""
        return {
            "id": self.id,
            "definition": self.rollup.to_json(),
            "time_zone": self.time_zone,
            "built_at": self.built_at,
            "row_count": self.row_count,
            "dirty_buckets": self.dirty_buckets,
        }


async def _zone(conn: asyncpg.Connection, organization_id: str) -> str:
    zone = await conn.fetchval("SELECT time_zone FROM organizations WHERE id = $1", organization_id)
    if zone is None:
        raise UnknownOrganizationError(f"organization_id: {organization_id!r} does not exist")
    return str(zone)


async def create_rollup(conn: asyncpg.Connection, organization_id: str, rollup: Rollup) -> int:
    """Store ``rollup`` for the organisation and build it; returns its id.

    Raises:
        UnknownOrganizationError: no such organisation.
        RollupLimitError: the organisation holds :data:`MAX_ROLLUPS_PER_ORG` already.
        asyncpg.QueryCanceledError: the build ran over :data:`BUILD_TIMEOUT_MS`.
    """
    async with tenant_transaction(conn, organization_id):
        await conn.execute(f"SET LOCAL statement_timeout = {BUILD_TIMEOUT_MS}")
        zone = await _zone(conn, organization_id)
        count = await conn.fetchval(
            "SELECT count(*) FROM rollups WHERE organization_id = $1", organization_id
        )
        if count >= MAX_ROLLUPS_PER_ORG:
            raise RollupLimitError(
                f"the organisation holds {count} rollups (at most {MAX_ROLLUPS_PER_ORG})"
            )
        rollup_id = await insert_rollup(conn, organization_id, rollup)
        await build_all(conn, organization_id, rollup_id, rollup, zone)
    return rollup_id


ROLLUP_ID_MAX = 2**53 - 1
"""The largest rollup id (ids are exact integers in JavaScript too)."""


async def insert_rollup(conn: asyncpg.Connection, organization_id: str, rollup: Rollup) -> int:
    """Store ``rollup``'s row (unbuilt) inside a tenant transaction of the organisation; its
    id, a random integer in 1..:data:`ROLLUP_ID_MAX` (unique within the organisation).

    Not the table's identity sequence, which every organisation shares: an attacker round
    read from its own ids how many rollups the other tenants created between two of its."""
    while True:
        got = await conn.fetchval(
            "INSERT INTO rollups (organization_id, id, dataset, definition, time_field,"
            " time_type, grain) OVERRIDING SYSTEM VALUE"
            " VALUES ($1, $7, $2, $3::jsonb, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING id",
            organization_id,
            rollup.dataset,
            orjson.dumps(rollup.to_json()).decode(),
            rollup.time_field,
            rollup.time_type,
            rollup.grain,
            secrets.randbelow(ROLLUP_ID_MAX) + 1,
        )
        if got is not None:
            return int(got)


async def build_all(
    conn: asyncpg.Connection, organization_id: str, rollup_id: int, rollup: Rollup, zone: str
) -> None:
    """Recompute every row of a stored rollup in ``zone`` and mark it built (inside a tenant
    transaction of the organisation; the optimiser builds a scratch rollup this way)."""
    await conn.execute(
        "DELETE FROM rollup_dirty WHERE organization_id = $1 AND rollup_id = $2",
        organization_id,
        rollup_id,
    )
    await conn.execute(
        "DELETE FROM rollup_rows WHERE organization_id = $1 AND rollup_id = $2",
        organization_id,
        rollup_id,
    )
    await conn.execute(build_sql(rollup, partial=False), organization_id, rollup_id, zone)
    await conn.execute(
        "UPDATE rollups SET time_zone = $3, built_at = now()"
        " WHERE organization_id = $1 AND id = $2",
        organization_id,
        rollup_id,
        zone,
    )


async def list_rollups(
    conn: asyncpg.Connection, organization_id: str, dataset: str | None = None
) -> list[StoredRollup]:
    """The organisation's rollups by id (of one dataset when given), with their row counts
    and dirty buckets."""
    async with tenant_transaction(conn, organization_id):
        rows = await conn.fetch(
            "SELECT r.id, r.definition, r.time_zone, r.built_at,"
            " (SELECT count(*) FROM rollup_rows x WHERE x.organization_id = r.organization_id"
            "   AND x.rollup_id = r.id) AS row_count,"
            " (SELECT count(*) FROM rollup_dirty d WHERE d.organization_id = r.organization_id"
            "   AND d.rollup_id = r.id) AS dirty"
            " FROM rollups r WHERE r.organization_id = $1 AND ($2::text IS NULL OR dataset = $2)"
            " ORDER BY r.id",
            organization_id,
            dataset,
        )
    return [
        StoredRollup(
            id=int(r["id"]),
            rollup=rollup_from_json(orjson.loads(r["definition"])),
            time_zone=r["time_zone"],
            built_at=None if r["built_at"] is None else r["built_at"].isoformat(),
            row_count=int(r["row_count"]),
            dirty_buckets=int(r["dirty"]),
        )
        for r in rows
    ]


async def delete_rollup(conn: asyncpg.Connection, organization_id: str, rollup_id: int) -> None:
    """Delete one rollup of the organisation (its rows and dirty marks go with it).

    Raises:
        RollupNotFoundError: the organisation has no rollup ``rollup_id``.
    """
    async with tenant_transaction(conn, organization_id):
        deleted = await conn.fetchval(
            "DELETE FROM rollups WHERE organization_id = $1 AND id = $2 RETURNING id",
            organization_id,
            rollup_id,
        )
    if deleted is None:
        raise RollupNotFoundError(f"rollup {rollup_id} does not exist in this organisation")


async def refresh(
    conn: asyncpg.Connection, organization_id: str, rollup_id: int, rollup: Rollup
) -> int:
    """Bring one rollup up to date; returns the buckets recomputed (-1: rebuilt whole).

    Dirty marks are deleted first, then their buckets recomputed from the base table (a
    change committed meanwhile leaves a new mark, recomputed next time). Unbuilt, or built
    in a zone other than the organisation's: rebuilt whole.

    Raises:
        RollupNotFoundError: the rollup was deleted meanwhile.
        asyncpg.QueryCanceledError: the work ran over :data:`BUILD_TIMEOUT_MS`.
    """
    async with tenant_transaction(conn, organization_id):
        await conn.execute(f"SET LOCAL statement_timeout = {BUILD_TIMEOUT_MS}")
        zone = await _zone(conn, organization_id)
        row = await conn.fetchrow(
            "SELECT time_zone FROM rollups WHERE organization_id = $1 AND id = $2 FOR UPDATE",
            organization_id,
            rollup_id,
        )
        if row is None:
            raise RollupNotFoundError(f"rollup {rollup_id} was deleted")
        if row["time_zone"] != zone:
            await build_all(conn, organization_id, rollup_id, rollup, zone)
            return -1
        periods = [
            r["period"]
            for r in await conn.fetch(
                "DELETE FROM rollup_dirty WHERE organization_id = $1 AND rollup_id = $2"
                " RETURNING period",
                organization_id,
                rollup_id,
            )
        ]
        if not periods:
            return 0
        await conn.execute(
            "DELETE FROM rollup_rows WHERE organization_id = $1 AND rollup_id = $2"
            " AND period = ANY($3::date[])",
            organization_id,
            rollup_id,
            periods,
        )
        await conn.execute(
            build_sql(rollup, partial=True), organization_id, rollup_id, zone, periods
        )
        return len(periods)


async def find_rollup(
    conn: asyncpg.Connection, organization_id: str, request: AggregationRequest
) -> tuple[int, Rollup] | None:
    """The organisation's first rollup (by id) that answers ``request`` exactly, if any.

    Run it inside :func:`~stream_app.db.tenancy.tenant_transaction` for the organisation.
    """
    if request.sample is not None:
        return None
    rows = await conn.fetch(
        "SELECT id, definition FROM rollups WHERE organization_id = $1 AND dataset = $2"
        " ORDER BY id",
        organization_id,
        request.dataset,
    )
    for r in rows:
        rollup = rollup_from_json(orjson.loads(r["definition"]))
        if mismatch(request, rollup) is None:
            return int(r["id"]), rollup
    return None


@dataclass(frozen=True, slots=True)
class RollupRead:
    """Rows read from a rollup: the compiled query, its records, the statement's wall time."""

    query: CompiledQuery
    records: list[asyncpg.Record]
    elapsed_ms: float


async def read_rollup(
    conn: asyncpg.Connection,
    organization_id: str,
    rollup_id: int,
    rollup: Rollup,
    request: AggregationRequest,
    time_zone: str,
) -> RollupRead | None:
    """Answer ``request`` from the rollup, or None when it is not fresh at this instant (a
    dirty bucket, or buckets of another zone than the organisation's).

    One statement (one snapshot) checks freshness and reads the rows. Run it inside
    :func:`~stream_app.db.tenancy.tenant_transaction` for the organisation.
    """
    query = compile_from_rollup(request, rollup, rollup_id, organization_id, time_zone)
    width = 1 + max(p for e in query.extracts for p in e.positions)
    cells = ", ".join(f"q.c{i}" for i in range(width))
    sql = (
        "WITH fresh AS (SELECT NOT EXISTS (SELECT 1 FROM rollup_dirty"
        "  WHERE organization_id = $1 AND rollup_id = $2) AND EXISTS (SELECT 1"
        "  FROM rollups r JOIN organizations o ON o.id = r.organization_id"
        "  WHERE r.organization_id = $1 AND r.id = $2 AND r.time_zone = o.time_zone)"
        " AS ok)"
        f" SELECT {cells}, q.present AS present, fresh.ok AS fresh"
        f" FROM fresh LEFT JOIN LATERAL (SELECT true AS present, s.* FROM ({query.sql}) s)"
        " q ON fresh.ok"
    )
    n_groups = sum(1 for c in query.columns if c.role == "group")
    if n_groups:
        sql += " ORDER BY " + ", ".join(str(i + 1) for i in range(n_groups))
    started = time.perf_counter()
    records = await conn.fetch(sql, *query.params)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if not records or not records[0]["fresh"]:
        return None
    rows = [r for r in records if r["present"]]
    return RollupRead(query, rows, elapsed_ms)
