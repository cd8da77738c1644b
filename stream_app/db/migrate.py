"""Applies the numbered SQL files in ``db/migrations`` once each, in order, as the owner role.

Each file runs in its own transaction with its version recorded in ``schema_migrations``;
a session advisory lock makes concurrent callers (two workers starting) apply each once.
After them, ``db/policies.sql`` (row-level security and grants of every tenant table) is
applied on every call, so tables added by any migration get the same wall.

Run it with the owner's login (``POSTGRES_OWNER_DSN``). Given a superuser's login instead (the
local services, the tests), it first creates the roles (:data:`stream_app.db.roles.ROLES_SQL`),
hands every table of the ``public`` schema to the owner role, and applies the files as the
owner role (``SET ROLE``), so the objects belong to the owner either way.
"""

from __future__ import annotations

from importlib import resources
from urllib.parse import urlsplit

import asyncpg

from stream_app.db.roles import OWNER_ROLE, ROLES_SQL, check_serving_role
from stream_app.errors import WeddingError

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
        if await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
            await conn.execute(ROLES_SQL)
            await _hand_to_owner(conn)
            await conn.execute(f"SET ROLE {OWNER_ROLE}")
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
        async with conn.transaction():
            await conn.execute(policies_sql())
        return applied
    finally:
        await conn.execute("RESET ROLE")
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
        await conn.close()


def policies_sql() -> str:
    """The row-level security and grants step (``db/policies.sql``), applied on every call."""
    return (resources.files("stream_app.db") / "policies.sql").read_text(encoding="utf-8")


async def _hand_to_owner(conn: asyncpg.Connection) -> None:
    """Make the owner role own every table, sequence and function of ``public`` (superuser)."""
    await conn.execute(
        f"""
        DO $$
        DECLARE obj record;
        BEGIN
            FOR obj IN
                SELECT c.relname, c.relkind FROM pg_class c
                  JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
                   AND pg_get_userbyid(c.relowner) <> '{OWNER_ROLE}'
                   AND NOT (c.relkind = 'S' AND EXISTS (
                       SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'a'))
            LOOP
                EXECUTE format('ALTER %s %I OWNER TO {OWNER_ROLE}',
                    CASE obj.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                         WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, obj.relname);
            END LOOP;
            FOR obj IN
                SELECT p.oid::regprocedure AS sig FROM pg_proc p
                  JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> '{OWNER_ROLE}'
            LOOP
                EXECUTE format('ALTER FUNCTION %s OWNER TO {OWNER_ROLE}', obj.sig);
            END LOOP;
        END $$;
        """
    )


class SchemaNotReadyError(WeddingError, RuntimeError):
    """The database lacks migrations this code needs (``wedding-engine init`` was not run)."""

    retriable = False


class DatabaseUnreachableError(WeddingError, RuntimeError):
    """A worker's PostgreSQL login cannot reach the server or is refused, at start."""

    retriable = False


def server_of(dsn: str) -> str:
    """``host:port`` of a ``postgresql://`` DSN, for messages (no user, no password);
    ``the server of <variable>`` style callers fall back on ``"the server"``."""
    try:
        parts = urlsplit(dsn)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "the server"
    if not host:
        return "the server"
    return f"{host}:{port or 5432}"


async def connect_login(dsn: str, variable: str) -> asyncpg.Connection:
    """A connection of the login in ``dsn`` (the value of ``variable``).

    Raises:
        DatabaseUnreachableError: the server cannot be reached (``cannot reach PostgreSQL at
            host:port (VARIABLE): …``) or refuses the login (``VARIABLE: PostgreSQL at
            host:port refused the login: …``), naming the variable (an operator's trial: a
            bare ``[Errno 111] Connect call failed`` or a 35-line traceback before).
    """
    try:
        conn: asyncpg.Connection = await asyncpg.connect(dsn)
    except (OSError, TimeoutError) as exc:
        raise DatabaseUnreachableError(
            f"cannot reach PostgreSQL at {server_of(dsn)} ({variable}): {exc}"
        ) from None
    except asyncpg.PostgresError as exc:
        raise DatabaseUnreachableError(
            f"{variable}: PostgreSQL at {server_of(dsn)} refused the login: {exc}"
        ) from None
    return conn


async def check_worker_database(app_dsn: str, system_dsn: str) -> None:
    """Check, before a worker starts, that both its logins are safe and the schema is current.

    A worker never migrates: that is the owner's work (``wedding-engine init``), and a worker
    holds no owner login.

    Raises:
        UnsafeDatabaseRoleError: a login is a superuser, has BYPASSRLS or owns a table.
        SchemaNotReadyError: a shipped migration is not applied; names the first missing one.
        DatabaseUnreachableError: a login is refused or the database is unreachable
            (:func:`connect_login`).
    """
    for dsn, variable in ((app_dsn, "POSTGRES_DSN"), (system_dsn, "POSTGRES_SYSTEM_DSN")):
        conn = await connect_login(dsn, variable)
        try:
            await check_serving_role(conn, variable)
            if variable == "POSTGRES_DSN":
                await _check_applied(conn)
        finally:
            await conn.close()


async def _check_applied(conn: asyncpg.Connection) -> None:
    if await conn.fetchval("SELECT to_regclass('public.schema_migrations')") is None:
        raise SchemaNotReadyError("database: no migrations applied; run `wedding-engine init`")
    done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    missing = [name for version, name, _ in migration_files() if version not in done]
    if missing:
        raise SchemaNotReadyError(
            f"database: migration {missing[0]} (and {len(missing) - 1} more) not applied; "
            "run `wedding-engine init` with the owner's login (POSTGRES_OWNER_DSN)"
        )
