"""PostgreSQL roles: who may do what in the history database.

The database is the second wall behind the query layer (DESIGN.md, "Security model"). Four roles:

- ``wedding_owner`` (login): owns every table, runs the migrations (``wedding-engine init``) and
  the operator's bulk work (``org``/``venue`` registration, history loads with ``COPY``). It has
  ``BYPASSRLS`` because ``COPY FROM`` is refused on tables whose row-level security applies to
  the caller; it never serves a request, and a worker refuses to run as it.
- ``wedding_tenant`` (no login): the grants and row-level security policies of tenant work. A
  row is visible and writable only when its ``organization_id`` equals the tenant of the current
  transaction, which only :func:`stream_app.db.tenancy.tenant_transaction` sets (through the
  ``wedding_enter_tenant`` function of migration 007, once per transaction).
- ``wedding_app`` (login): what the workers log in as (``POSTGRES_DSN``). Not a superuser, owns
  nothing, cannot bypass row-level security, a member of ``wedding_tenant``: outside a tenant
  transaction it sees no tenant row at all.
- ``wedding_system`` (login, ``POSTGRES_SYSTEM_DSN``): work that spans tenants (finding due
  schedules, claiming runs, the delivery queue, the time zones of the organisations in a batch,
  data-version bumps, retention). Policies give it the rows of those tables only; it has no grant
  on clients, bookings, payments or any other history table.

:data:`ROLES_SQL` creates the roles (run as a superuser or a role with ``CREATEROLE``): the local
services run it when they start a cluster; an operator runs it once, with passwords added
(``ALTER ROLE … PASSWORD``), before ``wedding-engine init``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream_app.errors import WeddingError
from stream_app.settings import dsn_as_role

if TYPE_CHECKING:
    import asyncpg

OWNER_ROLE = "wedding_owner"
TENANT_ROLE = "wedding_tenant"
APP_ROLE = "wedding_app"
SYSTEM_ROLE = "wedding_system"

ROLES_SQL = f"""
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{OWNER_ROLE}') THEN
        CREATE ROLE {OWNER_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE BYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{TENANT_ROLE}') THEN
        CREATE ROLE {TENANT_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS INHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{SYSTEM_ROLE}') THEN
        CREATE ROLE {SYSTEM_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
END $$;
GRANT {TENANT_ROLE} TO {APP_ROLE};
-- tenant transactions bound their statements' temporary files (PostgreSQL >= 15)
GRANT SET ON PARAMETER temp_file_limit TO {APP_ROLE};
GRANT CREATE, USAGE ON SCHEMA public TO {OWNER_ROLE};
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
-- hypothetical indexes for the query optimiser (stream_app/aggregation/optimizer.py), when
-- the server has Debian's postgresql-<major>-hypopg; without it index candidates are skipped
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg') THEN
        CREATE SCHEMA IF NOT EXISTS hypopg;
        CREATE EXTENSION IF NOT EXISTS hypopg SCHEMA hypopg;
        GRANT USAGE ON SCHEMA hypopg TO {TENANT_ROLE};
    END IF;
END $$;
"""
"""Creates the four roles (idempotent); needs a superuser or ``CREATEROLE``."""


as_role = dsn_as_role
"""``as_role(dsn, role)``: ``dsn`` with its user replaced (``settings.dsn_as_role``)."""


class UnsafeDatabaseRoleError(WeddingError, RuntimeError):
    """The worker's database login could bypass the tenant wall (superuser, BYPASSRLS, owner)."""

    retriable = False


async def check_serving_role(conn: asyncpg.Connection, variable: str) -> str:
    """Refuse a login that could read across tenants; return its name when it cannot.

    Args:
        conn: a connection made with the DSN of ``variable``.
        variable: the setting the DSN came from (named in the error), e.g. ``POSTGRES_DSN``.

    Raises:
        UnsafeDatabaseRoleError: the role is a superuser, has ``BYPASSRLS``, or owns a table
            of the ``public`` schema (row-level security would not apply to it).
    """
    row = await conn.fetchrow(
        "SELECT r.rolname, r.rolsuper, r.rolbypassrls,"
        " (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        "   WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
        "     AND pg_has_role(r.oid, c.relowner, 'USAGE')) AS owned"
        " FROM pg_roles r WHERE r.rolname = current_user"
    )
    assert row is not None  # current_user always has a pg_roles row
    name = str(row["rolname"])
    reasons = []
    if row["rolsuper"]:
        reasons.append("is a superuser")
    if row["rolbypassrls"]:
        reasons.append("has BYPASSRLS")
    if row["owned"]:
        reasons.append(f"owns {row['owned']} table(s) or is a member of their owner")
    if reasons:
        raise UnsafeDatabaseRoleError(
            f"{variable}: the database role {name!r} {' and '.join(reasons)}, so row-level "
            f"security would not hold; log in as {APP_ROLE} / {SYSTEM_ROLE} (see README, "
            "security model)"
        )
    return name
