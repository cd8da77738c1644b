"""Loads a synthetic history into PostgreSQL with ``COPY`` (asyncpg ``copy_records_to_table``).

Admin path (not tenant-scoped): it creates the organisation and writes its rows. The rows are
generated a chunk of weddings at a time in a worker thread while the previous chunk is being
copied, so memory stays at about two chunks whatever the size, and generation and ``COPY``
overlap on two cores. Everything is one transaction: a failed load leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import asyncpg

from stream_app.db.tenancy import Organization, upsert_organization
from stream_app.errors import WeddingError
from stream_app.synthetic.generator import (
    TABLE_COLUMNS,
    Chunk,
    SynthConfig,
    generate,
    organization_for,
)


class OrganizationExistsError(WeddingError, ValueError):
    """The organisation already exists and ``replace`` was not asked for."""

    retriable = False


@dataclass(slots=True)
class LoadSummary:
    """What a load wrote.

    Attributes:
        organization: the tenant created.
        rows: rows copied per table (every table of ``TABLE_COLUMNS``, zeros included).
        seconds: wall time of the whole load (generation and ``COPY``), seconds.
    """

    organization: Organization
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _next_chunk(chunks: Iterator[Chunk]) -> Chunk | None:
    return next(chunks, None)


async def load_synthetic(
    conn: asyncpg.Connection,
    config: SynthConfig,
    *,
    replace: bool = False,
    chunk_weddings: int = 20_000,
    progress: Callable[[int], None] | None = None,
) -> LoadSummary:
    """Create ``config``'s organisation and copy its generated history into PostgreSQL.

    Args:
        conn: a connection with write rights on the history tables (migrations applied).
        config: what to generate.
        replace: delete an existing organisation of the same id (and, by cascade, all its
            rows) first.
        chunk_weddings: weddings generated and copied at a time (memory ∝ this).
        progress: called with the number of weddings loaded so far after each chunk.

    Returns:
        The rows copied per table and the time taken.

    Raises:
        OrganizationExistsError: the organisation exists and ``replace`` is false.
        asyncpg.PostgresError: a row breaks a constraint; nothing of the load is kept.
    """
    started = time.perf_counter()
    org = organization_for(config)
    summary = LoadSummary(org, dict.fromkeys(TABLE_COLUMNS, 0))
    chunks = generate(config, chunk_weddings)
    async with conn.transaction():
        exists = await conn.fetchval("SELECT 1 FROM organizations WHERE id = $1", org.id)
        if exists and not replace:
            raise OrganizationExistsError(
                f"organization_id: {org.id!r} already exists (use replace / --replace to "
                "delete it and its history first)"
            )
        if exists:
            await conn.execute("DELETE FROM organizations WHERE id = $1", org.id)
        await upsert_organization(conn, org)
        pending = asyncio.ensure_future(asyncio.to_thread(_next_chunk, chunks))
        loaded = 0
        while (chunk := await pending) is not None:
            # generate the next chunk in a thread while this one is copied
            pending = asyncio.ensure_future(asyncio.to_thread(_next_chunk, chunks))
            try:
                for table, columns in TABLE_COLUMNS.items():
                    rows = chunk[table]
                    if rows:
                        await conn.copy_records_to_table(table, records=rows, columns=columns)
                        summary.rows[table] += len(rows)
            except BaseException:
                await asyncio.gather(pending, return_exceptions=True)
                raise
            loaded += len(chunk["weddings"])
            if progress is not None:
                progress(loaded)
    for table, count in summary.rows.items():
        if count:
            await conn.execute(f"ANALYZE {table}")
    summary.seconds = time.perf_counter() - started
    return summary
