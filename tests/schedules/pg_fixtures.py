"""PostgreSQL fixtures shared by tests/schedules and tests/delivery (ready to merge into
tests/conftest.py).

One throw-away cluster per pytest process, started with :func:`stream_app.devservices.postgres
.start` in ``/tmp/wedding-sched-tests-<pid>`` (not pytest's ``tmp_path``: its parents are
``0700`` and the server's system user could not reach them), migrated, and stopped when the
last fixture using it is torn down. Both conftests load this file under one module name, so
they share the cluster.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from stream_app.db.migrate import migrate
from stream_app.db.tenancy import Organization, upsert_organization
from stream_app.devservices import postgres

_state: dict[str, object] = {"users": 0}


def _start() -> str:
    if "dsn" not in _state:
        state_dir = Path(f"/tmp/wedding-sched-tests-{os.getpid()}")
        state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chmod(state_dir, 0o755)
        instance = postgres.start(state_dir)
        _state["dsn"] = instance.dsn
        _state["dir"] = state_dir
    _state["users"] = int(str(_state["users"])) + 1
    return str(_state["dsn"])


def _release() -> None:
    _state["users"] = int(str(_state["users"])) - 1
    if int(str(_state["users"])) == 0 and "dir" in _state:
        state_dir = Path(str(_state.pop("dir")))
        _state.pop("dsn", None)
        postgres.stop(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest_asyncio.fixture(scope="session")
async def pg_dsn() -> AsyncIterator[str]:
    """DSN of the migrated test cluster (superuser ``postgres``, database ``wedding``)."""
    dsn = await asyncio.to_thread(_start)
    try:
        await migrate(dsn)
        yield dsn
    finally:
        await asyncio.to_thread(_release)


@pytest_asyncio.fixture(scope="session")
async def pg_pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A session-wide pool (1–12 connections) on the test cluster."""
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=12)
    try:
        yield pool
    finally:
        await pool.close()


@pytest_asyncio.fixture
async def db(pg_pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """The pool, with every schedule removed after the test (claims are cross-tenant)."""
    yield pg_pool
    async with pg_pool.acquire() as conn:
        await conn.execute("DELETE FROM schedules")


NewOrg = Callable[[str], Awaitable[str]]


@pytest.fixture
def new_org(pg_pool: asyncpg.Pool) -> NewOrg:
    """Create an organisation with a unique id in the given IANA zone; returns its id."""

    async def create(time_zone: str = "Europe/London") -> str:
        org_id = f"org-{uuid.uuid4().hex[:12]}"
        async with pg_pool.acquire() as conn:
            await upsert_organization(conn, Organization(org_id, org_id, time_zone, "GBP"))
        return org_id

    return create
