"""The ``gdpr_requests`` rows of data-subject requests: opened, in progress, completed.

Every request gets a row when it arrives and its completion (Art. 12(3): answered within one
month; the compliance report reads these rows). The audit log names a request by its id,
never by the client id: the log is append-only and could not be erased.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

import asyncpg
import orjson

from stream_app.errors import WeddingError

RequestKind = Literal["access", "portability", "erasure"]


_LOCK_KEY = "SELECT hashtextextended('wedding-gdpr/' || $1, 0)"
"""The advisory lock key of an organisation's GDPR work (one per organisation)."""

LOCK_WAIT_S = 120.0
"""Longest wait for the organisation's GDPR lock before :class:`GdprBusyError`, seconds."""

LOCK_POLL_S = 0.2
"""How often a waiting request tries the lock again, seconds (no connection held between)."""


class GdprBusyError(WeddingError):
    """Another GDPR request of the organisation held the lock for :data:`LOCK_WAIT_S`."""

    retriable = True


async def serialize(conn: asyncpg.Connection, organization_id: str) -> None:
    """Wait for, then hold until the end of the current transaction, the organisation's GDPR
    lock (:func:`exclusive` holds the same lock for a whole request): the retention job's
    transaction of an organisation does not run beside one of its GDPR requests."""
    await conn.execute(f"SELECT pg_advisory_xact_lock(({_LOCK_KEY}))", organization_id)


@asynccontextmanager
async def exclusive(pool: Any, organization_id: str) -> AsyncIterator[None]:
    """Run the block as the organisation's only GDPR request (a session advisory lock on a
    connection of ``pool`` held for the block; waiting, no connection is held: the lock is
    tried every :data:`LOCK_POLL_S`). ``pool`` should be one of its own
    (:func:`stream_app.db.pool.get_lock_pool`): its size bounds how many organisations' requests
    run at once, and waiting for one of its connections counts in :data:`LOCK_WAIT_S`.

    Two requests about one client at once locked its rows, its request rows and the audit
    chain in different orders (deadlocks: a 500 and a request row open for ever), and an
    export answered between an erasure's steps wrote the erased client's id back into
    ``gdpr_requests`` (attacker rounds). Requests are rare; one at a time per organisation
    is enough, and other organisations' requests are not held up.

    Raises:
        GdprBusyError: the lock was not free within :data:`LOCK_WAIT_S`.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LOCK_WAIT_S
    while True:
        try:
            conn = await pool.acquire(timeout=max(deadline - loop.time(), LOCK_POLL_S))
        except TimeoutError:
            raise GdprBusyError(
                f"{pool.get_max_size()} organisations' GDPR requests have run on this worker"
                f" for over {LOCK_WAIT_S:.0f} s; retry later"
            ) from None
        try:
            if await conn.fetchval(f"SELECT pg_try_advisory_lock(({_LOCK_KEY}))", organization_id):
                break
        except BaseException:
            await pool.release(conn)
            raise
        await pool.release(conn)
        if loop.time() >= deadline:
            raise GdprBusyError(
                f"another GDPR request of {organization_id!r} has run for over"
                f" {LOCK_WAIT_S:.0f} s; retry later"
            )
        await asyncio.sleep(LOCK_POLL_S)
    try:
        yield
    finally:
        try:
            await conn.execute(f"SELECT pg_advisory_unlock(({_LOCK_KEY}))", organization_id)
        finally:  # a broken connection releases its session locks as it closes
            await pool.release(conn)


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
