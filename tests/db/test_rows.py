"""Rows of a real PostgreSQL as dataclasses (:mod:`stream_app.db.rows`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from stream_app.db.rows import column_list, from_row, status_count
from stream_app.settings import Settings


@dataclass(frozen=True, slots=True)
class Thing:
    name: str
    doc: Any
    missing: Any
    count: int


SELECT = (
    "SELECT 'a'::text AS name, '{\"n\": 2, \"big\": 18446744073709551616}'::jsonb AS doc,"
    " NULL::jsonb AS missing, 7 AS count"
)


async def test_from_row(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        row = await conn.fetchrow(SELECT)
        short = await conn.fetchrow("SELECT 'a'::text AS name, 1 AS count")
    finally:
        await conn.close()
    assert row is not None and short is not None
    assert (row["name"], row["count"], row["missing"]) == ("a", 7, None)
    assert dict(short) == {"name": "a", "count": 1}
    # json.loads: integers beyond 64 bits stay exact (orjson refuses them)
    got = from_row(Thing, row, json={"doc", "missing"}, loads=json.loads)
    assert got == Thing("a", {"n": 2, "big": 2**64}, None, 7)
    # a column not listed as JSON is the text PostgreSQL sent
    assert from_row(Thing, row, json={"missing"}, loads=json.loads).doc == (
        '{"n": 2, "big": 18446744073709551616}'
    )
    with pytest.raises(KeyError):
        from_row(Thing, short)


async def test_status_count(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await conn.execute("CREATE TEMP TABLE rows_probe (n int)")
        inserted = await conn.execute("INSERT INTO rows_probe SELECT generate_series(1, 5)")
        updated = await conn.execute("UPDATE rows_probe SET n = n + 1 WHERE n > 3")
        deleted = await conn.execute("DELETE FROM rows_probe WHERE n > 100")
    finally:
        await conn.close()
    assert [status_count(s) for s in (inserted, updated, deleted)] == [5, 2, 0]


def test_column_list() -> None:
    assert column_list(Thing) == "name, doc, missing, count"
