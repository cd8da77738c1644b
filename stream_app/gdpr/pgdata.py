"""A client's rows in PostgreSQL: found for an export, deleted or pseudonymised for an erasure.

The tables holding a client are found by their columns, not listed by hand, so a table added
later with a ``client_id`` column is covered: ``clients`` (by ``id``), every base table with
both ``organization_id`` and ``client_id``, and ``payments`` of the client's bookings (a
payment names its booking, not the client).

Erasure rule (GDPR Art. 17 and its exception 17(3)(b): records a law requires to be kept):

- **deleted**: ``clients`` (name, e-mail, country: nothing there must be kept) and the rows of
  :data:`DELETED_TABLES` (``feedback``: the client's opinions, needed by no law);
- **pseudonymised**: every other table with a ``client_id`` (``bookings``, ``weddings``,
  ``gdpr_requests``, and any later one): the client id is replaced by a per-erasure
  pseudonym (``erased-`` and 32 random hex digits, never derived from the id, so it cannot
  be recomputed from it). Bookings and their payments are accounting records (commercial and
  tax law keep them for years); weddings and request records keep the business's statistics
  and its proof of having answered the request. Amounts, dates and counts do not change.
"""

from __future__ import annotations

import secrets
from typing import Any

import asyncpg
import orjson

from stream_app.db.rows import status_count

DELETED_TABLES = frozenset({"feedback"})
"""Tables whose rows of an erased client are deleted (the others with ``client_id`` are
pseudonymised)."""

_CLIENT_TABLES_SQL = """
SELECT c.relname AS table_name
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
  AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
              AND a.attname = 'client_id' AND NOT a.attisdropped)
  AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
              AND a.attname = 'organization_id' AND NOT a.attisdropped)
ORDER BY c.relname
"""


def new_pseudonym() -> str:
    """A per-erasure pseudonym: ``erased-`` and 32 hex digits from :mod:`secrets`."""
    return f"erased-{secrets.token_hex(16)}"


async def client_tables(conn: asyncpg.Connection) -> list[str]:
    """Tables of the current schema with ``organization_id`` and ``client_id``, by name.

    Read from the catalogue (``pg_class``), which lists every table whatever the caller's
    privileges (``information_schema`` hides tables the role may not read): a table the
    tenant role may not change makes an erasure fail instead of being skipped.
    """
    return [r["table_name"] for r in await conn.fetch(_CLIENT_TABLES_SQL)]


def _ident(name: str) -> str:
    """``name`` quoted as an SQL identifier (names come from the catalogue, quoted anyway)."""
    return '"' + name.replace('"', '""') + '"'


async def _rows(conn: asyncpg.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    rows = [orjson.loads(r[0]) for r in await conn.fetch(sql, *args)]
    return sorted(rows, key=lambda r: str(r.get("id", "")))


async def client_rows(
    conn: asyncpg.Connection, organization_id: str, client_id: str
) -> dict[str, list[dict[str, Any]]]:
    """Every row of PostgreSQL about ``client_id`` of ``organization_id`` (call it inside
    :func:`stream_app.db.tenancy.tenant_transaction` of the organisation).

    Returns:
        ``{table: [row, ...]}``, rows as PostgreSQL's ``to_jsonb`` gives them (dates and
        timestamps ISO 8601, numbers as numbers), sorted by ``id``; tables without rows are
        present with an empty list.
    """
    out: dict[str, list[dict[str, Any]]] = {
        "clients": await _rows(
            conn,
            "SELECT to_jsonb(t)::text FROM clients t WHERE organization_id = $1 AND id = $2",
            organization_id,
            client_id,
        )
    }
    for table in await client_tables(conn):
        out[table] = await _rows(
            conn,
            f"SELECT to_jsonb(t)::text FROM {_ident(table)} t"
            " WHERE organization_id = $1 AND client_id = $2",
            organization_id,
            client_id,
        )
    out["payments"] = await _rows(
        conn,
        "SELECT to_jsonb(p)::text FROM payments p WHERE p.organization_id = $1"
        " AND p.booking_id IN (SELECT b.id FROM bookings b"
        "                      WHERE b.organization_id = $1 AND b.client_id = $2)",
        organization_id,
        client_id,
    )
    return out


REQUEST_TABLES = frozenset({"gdpr_requests"})
"""Tables recording requests about a client rather than data of it: a request (an export of
an id the organisation never had, say) does not make the client known."""


async def holds_client(conn: asyncpg.Connection, organization_id: str, client_id: str) -> bool:
    """Whether a row of ``organization_id`` about ``client_id`` is in PostgreSQL: in
    ``clients`` or any table of :func:`client_tables` but :data:`REQUEST_TABLES` (a payment
    names a booking, so the bookings cover it). Call it inside
    :func:`stream_app.db.tenancy.tenant_transaction` of the organisation."""
    if await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM clients WHERE organization_id = $1 AND id = $2)",
        organization_id,
        client_id,
    ):
        return True
    for table in await client_tables(conn):
        if table not in REQUEST_TABLES and await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {_ident(table)}"
            " WHERE organization_id = $1 AND client_id = $2)",
            organization_id,
            client_id,
        ):
            return True
    return False


async def erase_client_rows(
    conn: asyncpg.Connection, organization_id: str, client_id: str, pseudonym: str
) -> dict[str, int]:
    """Delete or pseudonymise ``client_id``'s rows of ``organization_id`` (module docstring).

    Runs in one transaction (nested in the caller's, if any); call it inside
    :func:`stream_app.db.tenancy.tenant_transaction` of the organisation.

    Raises:
        asyncpg.InsufficientPrivilegeError: a table holding the client that the tenant role
            may not change (the request then stays ``in_progress``).

    Returns:
        ``{"<table>.deleted" | "<table>.pseudonymised": rows}`` per table touched.
    """
    counts: dict[str, int] = {}
    async with conn.transaction():
        counts["clients.deleted"] = status_count(
            await conn.execute(
                "DELETE FROM clients WHERE organization_id = $1 AND id = $2",
                organization_id,
                client_id,
            )
        )
        for table in await client_tables(conn):
            if table in DELETED_TABLES:
                counts[f"{table}.deleted"] = status_count(
                    await conn.execute(
                        f"DELETE FROM {_ident(table)}"
                        " WHERE organization_id = $1 AND client_id = $2",
                        organization_id,
                        client_id,
                    )
                )
            else:
                counts[f"{table}.pseudonymised"] = status_count(
                    await conn.execute(
                        f"UPDATE {_ident(table)} SET client_id = $3"
                        " WHERE organization_id = $1 AND client_id = $2",
                        organization_id,
                        client_id,
                        pseudonym,
                    )
                )
    return counts
