"""The ``gdpr_requests`` rows of data-subject requests: opened, in progress, completed.

Every request gets a row when it arrives and its completion (Art. 12(3): answered within one
month; the compliance report reads these rows). The audit log names a request by its id,
never by the client id: the log is append-only and could not be erased.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Literal

import asyncpg
import orjson

RequestKind = Literal["access", "portability", "erasure"]


async def serialize(conn: asyncpg.Connection, organization_id: str) -> None:
    """Wait for, then hold until the end of the current transaction, the organisation's GDPR
    lock (a transaction-level advisory lock): every transaction of an export, an erasure or
    the retention job of one organisation runs alone. Two requests about one client at once
    (a double click, an erasure beside an export) locked the client's rows, its request rows
    and the audit chain in different orders: PostgreSQL ended one with a deadlock, the
    request answered 500 and its row stayed open for ever (an attacker round). Requests are
    rare and each transaction short, so one lock per organisation is enough (and two locks
    could not be taken in two orders)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('wedding-gdpr/' || $1, 0))",
        organization_id,
    )


def new_request_id() -> str:
    """A fresh request id: ``gdpr-`` and 32 hex digits (random, UUID 4)."""
    return f"gdpr-{uuid.uuid4().hex}"


async def open_request(
    conn: asyncpg.Connection, organization_id: str, kind: RequestKind, client_id: str
) -> str:
    """Record a request as ``received`` now; its id.

    Raises:
        asyncpg.ForeignKeyViolationError: the organisation does not exist.
    """
    request_id = new_request_id()
    await conn.execute(
        "INSERT INTO gdpr_requests (organization_id, id, client_id, kind, received_at, status)"
        " VALUES ($1, $2, $3, $4, clock_timestamp(), 'received')",
        organization_id,
        request_id,
        client_id,
        kind,
    )
    return request_id


async def mark_in_progress(conn: asyncpg.Connection, organization_id: str, request_id: str) -> None:
    """Set a received request ``in_progress``."""
    await conn.execute(
        "UPDATE gdpr_requests SET status = 'in_progress'"
        " WHERE organization_id = $1 AND id = $2 AND status = 'received'",
        organization_id,
        request_id,
    )


async def complete(
    conn: asyncpg.Connection,
    organization_id: str,
    request_id: str,
    result: Mapping[str, Any],
    pseudonym: str | None = None,
) -> None:
    """Set a request ``completed`` now, with what it did (``result``: counts, no personal
    data) and, for an erasure, the pseudonym left in the kept rows."""
    await conn.execute(
        "UPDATE gdpr_requests SET status = 'completed', completed_at = clock_timestamp(),"
        " result = $3::jsonb, pseudonym = $4 WHERE organization_id = $1 AND id = $2",
        organization_id,
        request_id,
        orjson.dumps(dict(result)).decode(),
        pseudonym,
    )


_UNFINISHED_ERASURE_SQL = """
SELECT EXISTS (
  SELECT 1 FROM gdpr_requests g
  WHERE g.organization_id = $1 AND g.kind = 'erasure'
    AND ((g.status = 'in_progress'
          AND NOT EXISTS (SELECT 1 FROM gdpr_requests l
                          WHERE l.organization_id = $1 AND l.kind = 'erasure'
                            AND l.status = 'completed' AND l.received_at > g.received_at))
         OR EXISTS (SELECT 1 FROM reports r
                    WHERE r.organization_id = $1
                      AND r.id IN (SELECT jsonb_array_elements_text(
                                     COALESCE(g.result -> 'running_reports', '[]'::jsonb)))
                      AND r.metadata ->> 'artifacts_purged' IS NULL)))
"""


async def erasure_unfinished(conn: asyncpg.Connection, organization_id: str) -> bool:
    """Whether an erasure of ``organization_id`` asked to be repeated and was not yet: one
    still ``in_progress`` (the live table did not confirm in time) with no completed erasure
    after it, or one whose ``running_reports`` hold a report whose files no erasure purged
    since. Its client is pseudonymised already, so which client it was cannot be told: any
    erasure of the organisation may then go ahead. Call it inside
    :func:`stream_app.db.tenancy.tenant_transaction` of the organisation."""
    return bool(await conn.fetchval(_UNFINISHED_ERASURE_SQL, organization_id))
