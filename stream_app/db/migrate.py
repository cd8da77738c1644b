"""Applies the numbered SQL files in ``db/migrations`` once each, in order.

Each file runs in its own transaction with its version recorded in ``schema_migrations``;
a session advisory lock makes concurrent callers (two workers starting) apply each once.
"""

from __future__ import annotations

from importlib import resources

import asyncpg

_LOCK_ID = 7_311_2026  # arbitrary, constant: the advisory lock of this project's migrations


def migration_files() -> list[tuple[int, str, str]]:
    """The migrations shipped with the package as ``(version, name, sql)``, by version."""
    folder = resources.files("stream_app.db") / "migrations"
    out = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            out.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(out)


async def migrate(dsn: str) -> list[str]:
    """Apply every migration not yet applied to the database at ``dsn``.

    Returns:
        The names of the files applied by this call (empty when up to date).

    Raises:
        asyncpg.PostgresError: a migration failed; its transaction is rolled back.
    """
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for version, name, sql in migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            applied.append(name)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
        await conn.close()
