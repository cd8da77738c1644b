"""Migration 011 on a database that already has unchained audit rows: they are kept, unchanged,
in ``audit_log_legacy`` (owner only), and the chained table starts empty."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from stream_app.db import audit_events
from stream_app.db.migrate import migration_files
from stream_app.settings import Settings


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def test_rows_before_the_chain_are_kept_apart(settings: Settings) -> None:
    name = f"audit_mig_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(settings.postgres_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await asyncpg.connect(with_database(settings.postgres_dsn, name))
        try:
            for version, _, sql in migration_files():
                if version < 11:
                    await conn.execute(sql)
            await conn.execute(
                "INSERT INTO audit_log (organization_id, actor, action, target, details) VALUES"
                " ('org-a', 'u1', 'report.requested', 'r1', '{\"x\": 1}'),"
                " (NULL, 'ops', 'token.issued', NULL, '{}')"
            )
            [eleven] = [sql for version, _, sql in migration_files() if version == 11]
            await conn.execute(eleven)
            legacy = await conn.fetch(
                "SELECT recorded_organization_id, actor, action, target, details::text AS d"
                " FROM audit_log_legacy ORDER BY id"
            )
            assert [tuple(r) for r in legacy] == [
                ("org-a", "u1", "report.requested", "r1", '{"x": 1}'),
                (None, "ops", "token.issued", None, "{}"),
            ]
            assert await conn.fetchval("SELECT count(*) FROM audit_log") == 0
            # the tenant role has no privilege on the legacy rows
            privileges = await conn.fetchval(
                "SELECT has_table_privilege('wedding_tenant', 'audit_log_legacy', 'SELECT')"
                " OR has_table_privilege('wedding_tenant', 'audit_log_legacy', 'UPDATE')"
            )
            assert privileges is False
            await audit_events.record(conn, "org-a", "u1", "report.requested", "r2", {})
            [report] = await audit_events.verify_chains(conn)
            assert (report.organization_id, report.rows_checked, report.fault) == ("org-a", 1, None)
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE "{name}"')
        await admin.close()
