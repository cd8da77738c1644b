"""Loading a synthetic history into the test PostgreSQL: every row arrives as generated, a
second load needs ``replace``, the new tables are behind row-level security, and the
``wedding-engine synth`` command loads and reports what it loaded."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import partial

import asyncpg
import pytest

from stream_app.db.tenancy import tenant_transaction
from stream_app.settings import Settings
from stream_app.synthetic.generator import TABLE_COLUMNS, SynthConfig, generate_all
from stream_app.synthetic.load import OrganizationExistsError, load_synthetic
from tests.synthetic.helpers import load

KEYS = {
    "catering_menu_items": "menu_id, ingredient_id",
    "catering_usage": "event_id, ingredient_id",
}
"""ORDER BY of the tables without an ``id`` column."""


async def test_rows_read_back_equal_the_generated_rows(settings: Settings) -> None:
    config = SynthConfig("catering", 1_500, seed=21, organization_id="test-load-catering")
    rows = await load(settings, config)
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        for table, columns in TABLE_COLUMNS.items():
            order = KEYS.get(table, "id")
            got = await conn.fetch(
                f"SELECT {', '.join(columns)} FROM {table} WHERE organization_id = $1"
                f" ORDER BY {order}",
                config.organization_id,
            )
            want = sorted(rows[table], key=partial(_key, table))
            assert [tuple(r) for r in got] == want, table  # numerics come back as exact Decimal
        # a second load of the same organisation is refused, then replaces with replace=True
        with pytest.raises(OrganizationExistsError, match="organization_id: 'test-load-catering'"):
            await load_synthetic(conn, config)
        other = SynthConfig("catering", 1_000, seed=22, organization_id="test-load-catering")
        summary = await load_synthetic(conn, other, replace=True)
        count = await conn.fetchval(
            "SELECT count(*) FROM weddings WHERE organization_id = $1", "test-load-catering"
        )
        assert count == summary.rows["weddings"] == 1_000
    finally:
        await conn.close()


def _key(table: str, row: tuple[object, ...]) -> tuple[object, ...]:
    if table == "catering_menu_items":
        return (row[1], row[2])
    if table == "catering_usage":
        return (row[1], row[2])
    return (row[1],)


async def test_new_tables_are_tenant_isolated(settings: Settings) -> None:
    a = SynthConfig("catering", 1_000, seed=1, organization_id="test-rls-a")
    b = SynthConfig("planner", 1_000, seed=2, organization_id="test-rls-b")
    generated_a, generated_b = await load(settings, a), await load(settings, b)
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        for org, rows in (("test-rls-a", generated_a), ("test-rls-b", generated_b)):
            async with tenant_transaction(conn, org):
                for table in (
                    "offices", "catering_menus", "catering_ingredients", "catering_menu_items",
                    "catering_events", "catering_usage",
                ):  # fmt: skip
                    # no predicate on purpose: row-level security alone limits the rows
                    seen = await conn.fetch(f"SELECT organization_id FROM {table}")
                    assert {r[0] for r in seen} <= {org}, table
                    assert len(seen) == len(rows[table]), table
    finally:
        await conn.close()


def test_cli_synth_loads_and_prints_the_counts(settings: Settings) -> None:
    env = {**os.environ, "POSTGRES_DSN": settings.postgres_dsn, "KAFKA_BOOTSTRAP": "unused:1"}
    cmd = [
        sys.executable, "-m", "stream_app.cli", "synth", "--business", "photography",
        "--weddings", "1000", "--seed", "5", "--org", "test-cli-photo",
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    rows = generate_all(SynthConfig("photography", 1_000, 5, organization_id="test-cli-photo"))
    out = done.stdout
    assert "organisation 'test-cli-photo' (Lumière Photography Chain (synthetic), " in out
    assert "Europe/London, GBP" in out
    for table in ("suppliers", "clients", "weddings", "bookings", "payments", "feedback"):
        assert f"  {table}: {len(rows[table]):,} rows" in out
    # again without --replace: a clear error naming the field, exit status 2
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 2
    assert "error: organization_id: 'test-cli-photo' already exists" in again.stderr
    bad = subprocess.run(
        [*cmd[:7], "10", "--seed", "5"], env=env, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "error: weddings: 10 is outside" in bad.stderr
