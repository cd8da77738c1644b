"""The PostgreSQL wall: as the application's role, nothing of another tenant is read or written.

Two organisations share entity ids (client ``c1``, booking ``b1``). Every check logs in as the
role a worker uses (``wedding_app``) or the system role, never as the superuser that loads the
fixtures, and compares exact rows.
"""

from __future__ import annotations

import ast
import asyncio
import os
import random
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

import stream_app
from stream_app.db import audit_events, tenancy
from stream_app.db.report_scope import report_venues
from stream_app.db.reports import fetch_report
from stream_app.db.roles import (
    APP_ROLE,
    OWNER_ROLE,
    SYSTEM_ROLE,
    UnsafeDatabaseRoleError,
    as_role,
    check_serving_role,
)
from stream_app.db.tenancy import TenantScopeError, tenant_read, tenant_transaction
from stream_app.delivery.adhoc import delivery_summary
from stream_app.delivery.links import links_of_reports
from stream_app.settings import Settings
from tests.test_cli import refused_worker

_RUN = uuid.uuid4().hex[:8]
A, B = f"wall-a-{_RUN}", f"wall-b-{_RUN}"  # fresh ids: audit rows can never be deleted
EMAIL = {A: "alice@a.example", B: "bob@b.example"}


@pytest.fixture(scope="module")
async def tenants(settings: Settings) -> AsyncIterator[None]:
    """Organisations A and B with the same client, booking and schedule ids (as superuser)."""
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        for org in (A, B):
            await conn.execute(
                "INSERT INTO organizations (id, name, time_zone, currency)"
                " VALUES ($1, $1, 'Europe/Lisbon', 'EUR')",
                org,
            )
            await conn.execute(
                "INSERT INTO clients (organization_id, id, display_name, email)"
                " VALUES ($1, 'c1', $2, $3)",
                org,
                f"client of {org}",
                EMAIL[org],
            )
            await conn.execute(
                "INSERT INTO bookings (organization_id, id, client_id, service_date, booked_at,"
                " amount_minor, currency, status) VALUES ($1, 'b1', 'c1', '2026-06-06', $2,"
                " $3, 'EUR', 'booked')",
                org,
                datetime(2026, 1, 1, tzinfo=UTC),
                100 if org == A else 200,
            )
        yield
    finally:
        await conn.close()


@pytest.fixture
async def app_conn(settings: Settings, tenants: None) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(as_role(settings.postgres_dsn, APP_ROLE))
    try:
        yield conn
    finally:
        await conn.close()


async def emails(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """Every client row the connection can see, with no organisation predicate."""
    rows = await conn.fetch("SELECT organization_id, email FROM clients ORDER BY 1")
    return [(r[0], r[1]) for r in rows if r[0] in (A, B)]


async def superuser_rows(settings: Settings, sql: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def test_outside_a_tenant_scope_the_app_role_sees_and_writes_nothing(
    app_conn: asyncpg.Connection,
) -> None:
    assert await emails(app_conn) == []
    assert await app_conn.fetchval("SELECT count(*) FROM bookings") == 0
    # the old mechanism: a setting any statement can change
    async with app_conn.transaction():
        await app_conn.execute("SELECT set_config('app.organization_id', $1, true)", A)
        assert await emails(app_conn) == []
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        await app_conn.execute(
            "INSERT INTO clients (organization_id, id, email) VALUES ($1, 'x', 'x@x')", A
        )


async def test_a_query_without_the_organisation_predicate_reads_only_the_tenant(
    app_conn: asyncpg.Connection,
) -> None:
    for org in (A, B):
        async with tenant_transaction(app_conn, org):
            assert await emails(app_conn) == [(org, EMAIL[org])]
            total = await app_conn.fetchval("SELECT sum(amount_minor) FROM bookings")
            assert total == (100 if org == A else 200)


async def test_set_config_and_reset_role_inside_the_scope_do_not_switch_the_tenant(
    app_conn: asyncpg.Connection,
) -> None:
    async with tenant_transaction(app_conn, A):
        await app_conn.execute("SELECT set_config('app.organization_id', $1, true)", B)
        assert await emails(app_conn) == [(A, EMAIL[A])]
        await app_conn.execute("RESET ROLE")
        assert await app_conn.fetchval("SELECT current_user") == APP_ROLE
        assert await emails(app_conn) == [(A, EMAIL[A])]
        # writes stay in A as well
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await app_conn.execute(
                "INSERT INTO clients (organization_id, id, email) VALUES ($1, 'x', 'x@x')", B
            )
    async with tenant_transaction(app_conn, A):
        await app_conn.execute("RESET ROLE")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="cannot be changed"):
            await app_conn.execute("SELECT wedding_enter_tenant($1)", B)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with tenant_transaction(app_conn, A), tenant_transaction(app_conn, B):
            pass
    # the record of the scope is out of reach
    for sql in ("SELECT * FROM tenant_scope", "UPDATE tenant_scope SET organization_id = 'x'"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app_conn.execute(sql)
    # nor can it take a role that reads across tenants
    for role in (SYSTEM_ROLE, OWNER_ROLE, "postgres"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app_conn.execute(f"SET ROLE {role}")


async def test_the_scope_ends_with_its_transaction(app_conn: asyncpg.Connection) -> None:
    async with tenant_transaction(app_conn, A):
        assert len(await emails(app_conn)) == 1
    assert await emails(app_conn) == []
    async with app_conn.transaction():
        assert await emails(app_conn) == []


async def test_the_scope_bounds_its_statements_as_the_tenant_role(
    app_conn: asyncpg.Connection,
) -> None:
    """Inside the scope: the tenant, the tenant role, the statement time and temporary-file
    bounds; after it (they are transaction-local), the app role and the server's defaults."""
    query = (
        "SELECT wedding_current_tenant(), current_user::text,"
        " current_setting('statement_timeout'), current_setting('temp_file_limit')"
    )
    outside = tuple(await app_conn.fetchrow(query))
    async with tenant_transaction(app_conn, A):
        inside = tuple(await app_conn.fetchrow(query))
    assert inside == (A, "wedding_tenant", "2min", "1GB")
    assert tuple(await app_conn.fetchrow(query)) == outside
    assert outside[:2] == (None, "wedding_app") and outside[2:] != ("2min", "1GB")


async def test_writes_cannot_reach_or_move_rows_into_another_tenant(
    settings: Settings, app_conn: asyncpg.Connection
) -> None:
    tx = app_conn.transaction()
    await tx.start()
    try:
        await app_conn.execute("SELECT wedding_enter_tenant($1)", A)
        await app_conn.execute("SET LOCAL ROLE wedding_tenant")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            async with app_conn.transaction():
                await app_conn.execute("UPDATE clients SET organization_id = $1", B)
        # no predicate: only A's rows are touched
        assert await app_conn.execute("UPDATE bookings SET amount_minor = 1") == "UPDATE 1"
        assert await app_conn.execute("DELETE FROM clients") == "DELETE 1"
    finally:
        await tx.rollback()
    rows = await superuser_rows(
        settings,
        f"SELECT organization_id, amount_minor FROM bookings WHERE organization_id IN "
        f"('{A}', '{B}') ORDER BY 1",
    )
    assert rows == [(A, 100), (B, 200)]


async def test_every_tenant_table_forces_row_level_security_with_both_clauses(
    settings: Settings,
) -> None:
    tables = await superuser_rows(
        settings,
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,"
        " (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid"
        "   AND p.polname = 'tenant_isolation' AND p.polqual IS NOT NULL"
        "   AND (p.polwithcheck IS NOT NULL OR c.relname = 'organizations'))"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'tenant_scope'"
        " AND (c.relname = 'organizations'"
        "   OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid"
        "   AND a.attname = 'organization_id' AND NOT a.attisdropped))"
        " ORDER BY 1",
    )
    names = [t[0] for t in tables]
    for needed in ("audit_log", "report_data_versions", "reports", "clients", "schedules"):
        assert needed in names
    assert [t for t in tables if t[1:] != (True, True, 1)] == []
    owners = await superuser_rows(
        settings,
        "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind = 'r'",
    )
    assert owners == [(OWNER_ROLE,)]


async def test_the_audit_log_is_append_only_for_the_app_role(
    app_conn: asyncpg.Connection,
) -> None:
    async with tenant_transaction(app_conn, A):
        await audit_events.record(app_conn, A, "u", "probe", None, {})
        assert await app_conn.fetchval("SELECT count(*) FROM audit_log") == 1
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with tenant_transaction(app_conn, A):
            await audit_events.record(app_conn, B, "u", "probe", None, {})
    for sql in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with tenant_transaction(app_conn, A):
                await app_conn.execute(sql)


async def test_the_system_role_reads_schedules_of_all_tenants_but_no_history(
    settings: Settings, tenants: None
) -> None:
    conn = await asyncpg.connect(as_role(settings.postgres_dsn, SYSTEM_ROLE))
    try:
        n = await conn.fetchval("SELECT count(*) FROM organizations WHERE id IN ($1, $2)", A, B)
        assert n == 2
        await conn.fetchval("SELECT count(*) FROM schedules")
        for table in ("clients", "bookings", "payments", "feedback", "gdpr_requests"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetchval(f"SELECT count(*) FROM {table}")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("SELECT wedding_enter_tenant($1)", A)
    finally:
        await conn.close()


async def test_only_a_role_under_row_level_security_may_serve(settings: Settings) -> None:
    for role, reason in (
        ("postgres", "is a superuser"),
        (OWNER_ROLE, "has BYPASSRLS"),
    ):
        conn = await asyncpg.connect(as_role(settings.postgres_dsn, role))
        try:
            with pytest.raises(UnsafeDatabaseRoleError, match=f"POSTGRES_DSN: .*{reason}"):
                await check_serving_role(conn, "POSTGRES_DSN")
        finally:
            await conn.close()
    for role in (APP_ROLE, SYSTEM_ROLE):
        conn = await asyncpg.connect(as_role(settings.postgres_dsn, role))
        try:
            assert await check_serving_role(conn, "POSTGRES_DSN") == role
        finally:
            await conn.close()


def test_a_worker_refuses_to_start_as_the_superuser(settings: Settings) -> None:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        POSTGRES_DSN=settings.postgres_dsn,  # the superuser
        POSTGRES_SYSTEM_DSN=as_role(settings.postgres_dsn, SYSTEM_ROLE),
    )
    stderr = refused_worker(env)
    assert "POSTGRES_DSN: the database role 'postgres' is a superuser" in stderr


async def test_a_nested_scope_of_the_same_tenant_is_a_savepoint(
    app_conn: asyncpg.Connection,
) -> None:
    async with tenant_transaction(app_conn, A):
        async with tenant_transaction(app_conn, A):
            assert await emails(app_conn) == [(A, EMAIL[A])]
        assert await emails(app_conn) == [(A, EMAIL[A])]


async def test_a_rolled_back_savepoint_cannot_switch_the_tenant(
    app_conn: asyncpg.Connection,
) -> None:
    """The attack tests' sequence: enter A inside a savepoint, roll it back, enter B."""
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="top level"):
        async with app_conn.transaction():
            await app_conn.execute("SAVEPOINT s1")
            await app_conn.execute("SELECT wedding_enter_tenant($1)", A)
    # entered at the top level, a later savepoint rolled back keeps it
    async with tenant_transaction(app_conn, A):
        await app_conn.execute("SAVEPOINT s2")
        await app_conn.execute("ROLLBACK TO SAVEPOINT s2")
        assert await emails(app_conn) == [(A, EMAIL[A])]
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app_conn.execute("SELECT wedding_enter_tenant($1)", B)
    # an open transaction without a tenant: the scope is entered at its level and stays
    async with app_conn.transaction():
        async with tenant_transaction(app_conn, A):
            pass
        assert await emails(app_conn) == [(A, EMAIL[A])]


def statements_of(conn: asyncpg.Connection) -> list[str]:
    """From now on, the text of every statement ``conn`` sends (asyncpg's query logger, which
    reports on the event loop's next turn: :func:`logged` first)."""
    sent: list[str] = []
    conn.add_query_logger(lambda record: sent.append(record.query))
    return sent


async def logged(sent: list[str]) -> list[str]:
    await asyncio.sleep(0)
    return sent


async def test_a_tenant_read_inside_the_same_tenants_transaction_sends_only_its_reads(
    app_conn: asyncpg.Connection,
) -> None:
    async with tenant_transaction(app_conn, A):
        sent = statements_of(app_conn)
        async with tenant_read(app_conn, A):
            assert await emails(app_conn) == [(A, EMAIL[A])]
        assert [q[:34] for q in await logged(sent)] == ["SELECT organization_id, email FROM"]
    # outside any scope it is a tenant transaction of its own: BEGIN, enter, the read, COMMIT
    (await logged(sent)).clear()  # the outer scope's COMMIT
    async with tenant_read(app_conn, B):
        assert await emails(app_conn) == [(B, EMAIL[B])]
    assert [q.split()[0] for q in await logged(sent)] == ["BEGIN;", "SELECT", "SELECT", "COMMIT;"]
    assert "wedding_enter_tenant('" + B in sent[1]
    assert tenancy._open_scopes == {}


async def test_a_tenant_read_of_another_tenant_inside_a_scope_is_refused(
    app_conn: asyncpg.Connection,
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with tenant_transaction(app_conn, A), tenant_read(app_conn, B):
            await emails(app_conn)
    assert tenancy._open_scopes == {}
    # a scope that ended (by an error, too) leaves nothing a later read could borrow
    with pytest.raises(ZeroDivisionError):
        async with tenant_transaction(app_conn, A):
            _ = 1 / 0
    assert tenancy._open_scopes == {} and not app_conn.is_in_transaction()
    async with tenant_read(app_conn, B):
        assert await emails(app_conn) == [(B, EMAIL[B])]
    # a transaction this module did not open: entered at its level, as tenant_transaction does
    async with app_conn.transaction():
        async with tenant_read(app_conn, A):
            assert await emails(app_conn) == [(A, EMAIL[A])]
        assert await emails(app_conn) == [(A, EMAIL[A])]


async def test_the_report_status_reads_in_one_scope_send_one_statement_each(
    app_conn: asyncpg.Connection,
) -> None:
    """The report status route's reads (venue scope, report, links, delivery) in one tenant
    transaction: BEGIN, entering, five reads, COMMIT; no savepoint, no tenant lookup."""
    async with tenant_transaction(app_conn, A):
        sent = statements_of(app_conn)
        await report_venues(app_conn, A, "r1")
        assert await fetch_report(app_conn, A, "r1") is None
        assert await links_of_reports(app_conn, A, ["r1"]) == {}
        assert await delivery_summary(app_conn, A, "r1", show_targets=True) is None
    reads = await logged(sent)
    assert len(reads) == 6 and reads[-1] == "COMMIT;"  # 5 reads and the scope's COMMIT
    assert not [q for q in reads if "SAVEPOINT" in q or "wedding_current_tenant" in q]


async def test_a_cancelled_scope_leaves_no_record_and_a_clean_connection(
    settings: Settings, tenants: None
) -> None:
    """From the attacker round: a request cancelled in the middle of its reads (a statement
    running) leaves no record of its scope, and the pool's next user of the same connection
    is the application role outside any tenant."""
    pool = await asyncpg.create_pool(
        as_role(settings.postgres_dsn, APP_ROLE), min_size=1, max_size=1
    )
    try:
        reading = asyncio.Event()

        async def request() -> None:
            async with pool.acquire() as conn, tenant_transaction(conn, A), tenant_read(conn, A):
                reading.set()
                await conn.execute("SELECT pg_sleep(5)")

        task = asyncio.create_task(request())
        await reading.wait()
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert tenancy._open_scopes == {}
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            row = await conn.fetchrow("SELECT current_user::text, wedding_current_tenant()")
            assert tuple(row) == (APP_ROLE, None)
            assert await emails(conn) == []
            async with tenant_read(conn, B):
                assert await emails(conn) == [(B, EMAIL[B])]
    finally:
        await pool.close()


async def test_scopes_of_two_tenants_on_a_shared_pool_with_cancellations_stay_apart(
    settings: Settings, tenants: None
) -> None:
    """From the attacker round: 200 requests of A and B on a pool of two connections, a third
    cancelled at random moments; every read sees its own tenant's row only."""
    rnd = random.Random(13)
    pool = await asyncpg.create_pool(
        as_role(settings.postgres_dsn, APP_ROLE), min_size=2, max_size=2
    )
    wrong: list[object] = []
    try:

        async def request(org: str, scoped: bool) -> None:
            async with pool.acquire() as conn:
                async with AsyncExitStack() as stack:
                    if scoped:
                        await stack.enter_async_context(tenant_transaction(conn, org))
                    for _ in range(3):
                        async with tenant_read(conn, org):
                            if (got := await emails(conn)) != [(org, EMAIL[org])]:
                                wrong.append((org, got))
                        await asyncio.sleep(0)
                if await emails(conn) != []:
                    wrong.append(("outside a scope", org))

        tasks = [
            asyncio.create_task(request(rnd.choice((A, B)), rnd.random() < 0.5)) for _ in range(200)
        ]
        for _ in range(70):
            await asyncio.sleep(rnd.random() * 0.003)
            rnd.choice(tasks).cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert {type(r).__name__ for r in results} <= {"NoneType", "CancelledError"}
        assert sum(isinstance(r, asyncio.CancelledError) for r in results) > 0
        assert wrong == [] and tenancy._open_scopes == {}
    finally:
        await pool.close()


async def test_a_scope_whose_transaction_was_ended_by_hand_is_refused(
    app_conn: asyncpg.Connection,
) -> None:
    """The attacker round's sequence: inside A's scope, COMMIT and BEGIN sent as SQL, then B
    entered in the new transaction; a read of A would have borrowed the record and read B."""
    with pytest.raises(TenantScopeError, match="transaction control by hand"):
        async with tenant_transaction(app_conn, A):
            await app_conn.execute("COMMIT; BEGIN")
            async with tenant_transaction(app_conn, B):
                pass
    with pytest.raises(TenantScopeError, match="none is open"):
        async with tenant_transaction(app_conn, A):
            await app_conn.execute("COMMIT")
            async with tenant_transaction(app_conn, A):
                pass
    assert tenancy._open_scopes == {} and not app_conn.is_in_transaction()
    async with tenant_read(app_conn, A):
        assert await emails(app_conn) == [(A, EMAIL[A])]


_TRANSACTION_CONTROL = re.compile(
    r"(?:^|;)\s*(?:BEGIN|COMMIT|END|ABORT|START\s+TRANSACTION|ROLLBACK(?!\s+TO\b))\b"
)
"""SQL ending or beginning a transaction (upper case, as every statement of the package is
written; ``ROLLBACK TO SAVEPOINT`` ends none)."""


def sql_texts(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``(line, text)`` of each string constant and f-string of ``tree`` (an f-string's
    literal parts joined, ``{}`` for each value), docstrings and PL/pgSQL bodies (``$$``:
    there BEGIN and END delimit blocks) left out."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    inside_fstrings: set[int] = set()
    for node in ast.walk(tree):  # breadth first: an f-string before its parts
        if isinstance(node, ast.JoinedStr):
            parts = [v.value if isinstance(v, ast.Constant) else "{}" for v in node.values]
            inside_fstrings.update(id(v) for v in node.values)
            text = "".join(str(p) for p in parts)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings | inside_fstrings
        ):
            text = node.value
        else:
            continue
        if "$$" not in text:
            yield node.lineno, text


def test_no_sql_of_the_package_ends_or_begins_a_transaction_by_hand() -> None:
    """``tenant_read`` trusts that a tenant scope's transaction lasts its block: transactions
    are begun and ended only by asyncpg's ``Connection.transaction()``. Every string of
    ``stream_app`` that is SQL of transaction control is listed (none is allowed)."""
    found = [
        f"{path.name}:{line}: {text[:80]!r}"
        for path in sorted(Path(stream_app.__file__).parent.rglob("*.py"))
        for line, text in sql_texts(ast.parse(path.read_text(), str(path)))
        if _TRANSACTION_CONTROL.search(text)
    ]
    assert found == []
    # what it must find, in a string and in an f-string
    module = 'X = "SELECT 1; COMMIT"\nY = f"ROLLBACK; SELECT {X}"\nZ = "ROLLBACK TO SAVEPOINT s"'
    assert [
        line for line, text in sql_texts(ast.parse(module)) if _TRANSACTION_CONTROL.search(text)
    ] == [1, 2]


@pytest.mark.parametrize("org", [A, "o'x); SET LOCAL ROLE wedding_app; --", "a\\b"])
async def test_both_ways_of_entering_fix_the_same_scope(
    app_conn: asyncpg.Connection, org: str
) -> None:
    """A plain id enters in one simple-protocol round trip (the id as a literal); any other
    text goes as a bound parameter: the same tenant, role and bounds, nothing injected."""
    query = (
        "SELECT wedding_current_tenant(), current_user::text,"
        " current_setting('statement_timeout'), current_setting('temp_file_limit')"
    )
    async with tenant_transaction(app_conn, org):
        assert tuple(await app_conn.fetchrow(query)) == (org, "wedding_tenant", "2min", "1GB")
