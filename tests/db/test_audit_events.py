"""The hash-chained audit log against the real PostgreSQL: appends, concurrent appends, and
tampering as the table's owner (edit, delete, reorder) found and named by ``audit verify``.

Expected hashes are computed here independently of :mod:`stream_app.db.audit_events`: for
objects of ASCII keys, strings, integers, booleans and null, RFC 8785 is sorted-key compact
JSON (``json.dumps(sort_keys=True, separators=(",", ":"))``).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from stream_app.db import audit_events
from stream_app.db.tenancy import tenant_transaction
from stream_app.settings import Settings
from tests.conftest import run_cli


def new_org(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def independent_hash(row: asyncpg.Record) -> str:
    """SHA-256 of the row's canonical content, computed without the module under test."""
    doc = {
        "org": row["organization_id"],
        "seq": row["seq"],
        "actor": row["actor"],
        "action": row["action"],
        "target": row["target"],
        "details": json.loads(row["details"]),
        "outcome": row["outcome"],
        "at": row["at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "prev_hash": row["prev_hash"],
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def chain_rows(conn: asyncpg.Connection, org: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT id, organization_id, seq, actor, action, target, details::text AS details,"
        " outcome, at, prev_hash, row_hash FROM audit_log WHERE organization_id = $1"
        " ORDER BY seq",
        org,
    )
    return rows


async def append(dsn: str, org: str, n: int, actor: str = "tester") -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for i in range(n):
            await audit_events.record(
                conn, org, actor, "test.event", f"t-{i}", {"i": i, "ok": True, "note": None}
            )
    finally:
        await conn.close()


async def new_chain(settings: Settings, prefix: str, n: int) -> str:
    """A new organisation (:func:`new_org`) whose chain holds ``n`` events (:func:`append`)."""
    org = new_org(prefix)
    await append(settings.postgres_dsn, org, n)
    return org


async def run_verify(settings: Settings, org: str) -> tuple[int, str]:
    """``wedding-engine audit verify --org ORG`` in a subprocess: (exit code, stdout)."""
    code, out, err = await run_cli(settings, settings.postgres_dsn, "audit", "verify", "--org", org)
    assert err == "", err
    return code, out


@pytest.fixture
async def owner(settings: Settings) -> Any:
    """A connection of the tables' owner (the tests' superuser login)."""
    conn = await asyncpg.connect(settings.postgres_dsn)
    yield conn
    await conn.close()


async def test_appends_are_chained_and_hashed_as_specified(
    settings: Settings, owner: asyncpg.Connection
) -> None:
    org = await new_chain(settings, "chain", 5)
    rows = await chain_rows(owner, org)
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["prev_hash"] == "0" * 64
    for before, after in itertools.pairwise(rows):
        assert after["prev_hash"] == before["row_hash"]
        assert after["id"] > before["id"]
    assert [r["row_hash"] for r in rows] == [independent_hash(r) for r in rows]
    assert [r["target"] for r in rows] == [f"t-{i}" for i in range(5)]
    assert {r["outcome"] for r in rows} == {"ok"}
    code, out = await run_verify(settings, org)
    assert code == 0, out
    head = rows[-1]["row_hash"]
    assert f"{org}: 5 rows checked, chain intact (head seq 5, row_hash {head})" in out


async def test_details_are_hashed_as_postgresql_stores_them(
    settings: Settings, owner: asyncpg.Connection
) -> None:
    org = new_org("norm")
    details = {"price": 1.5, "whole": 2.0, "big": 2**52, "nested": {"z": [1, "é"], "a": None}}
    await audit_events.record(owner, org, "tester", "test.numbers", None, details)
    [report] = await audit_events.verify_chains(owner, org)
    assert (report.rows_checked, report.fault) == (1, None)
    # JCS cannot represent integers beyond 2**53: refused before anything is written
    with pytest.raises(ValueError, match="details"):
        await audit_events.record(owner, org, "tester", "test.numbers", None, {"n": 2**60})
    assert [r["seq"] for r in await chain_rows(owner, org)] == [1]


async def test_concurrent_appends_from_four_connections_do_not_fork(
    settings: Settings, owner: asyncpg.Connection
) -> None:
    org = new_org("race")
    per_conn = 25

    async def worker(k: int) -> None:
        conn = await asyncpg.connect(settings.postgres_dsn)
        try:
            for i in range(per_conn):
                async with conn.transaction():
                    await audit_events.record(conn, org, f"w{k}", "test.race", f"{k}-{i}", {})
                    # hold the transaction (and the chain) a little: appends overlap
                    await conn.execute("SELECT pg_sleep(0.002)")
        finally:
            await conn.close()

    await asyncio.gather(*(worker(k) for k in range(4)))
    rows = await chain_rows(owner, org)
    assert [r["seq"] for r in rows] == list(range(1, 4 * per_conn + 1))
    for before, after in itertools.pairwise(rows):
        assert after["prev_hash"] == before["row_hash"]
    assert [r["row_hash"] for r in rows] == [independent_hash(r) for r in rows]
    actors = [r["actor"] for r in rows]
    assert {a: actors.count(a) for a in set(actors)} == {f"w{k}": per_conn for k in range(4)}
    # the workers really interleaved (not one after the other)
    assert actors != sorted(actors)
    code, out = await run_verify(settings, org)
    assert code == 0 and f"{org}: 100 rows checked, chain intact" in out, out


async def tamper(owner: asyncpg.Connection, sql: str, *args: Any) -> None:
    """Run ``sql`` as the owner with the append-only trigger off for this session only
    (what an owner who wants to hide something can do)."""
    async with owner.transaction():
        await owner.execute("SET LOCAL session_replication_role = replica")
        await owner.execute(sql, *args)


async def six_row_chain(
    settings: Settings, owner: asyncpg.Connection, prefix: str
) -> tuple[str, list[asyncpg.Record]]:
    """A new organisation with six audit rows; (its id, its chain rows in order)."""
    org = await new_chain(settings, prefix, 6)
    return org, await chain_rows(owner, org)


async def broken_chain_output(settings: Settings, org: str) -> str:
    """The output of ``audit verify`` for ``org``, checked to have exited 1 (chain broken)."""
    code, out = await run_verify(settings, org)
    assert code == 1, out
    return out


async def test_an_edited_row_is_named(settings: Settings, owner: asyncpg.Connection) -> None:
    org, rows = await six_row_chain(settings, owner, "edit")
    third = rows[2]
    await tamper(
        owner,
        "UPDATE audit_log SET details = '{\"i\": 99}'::jsonb WHERE id = $1",
        third["id"],
    )
    out = await broken_chain_output(settings, org)
    assert f"{org}: chain BROKEN at seq 3 (id {third['id']}): edited:" in out, out
    assert "2 rows before it are intact" in out


async def test_a_deleted_row_is_named(settings: Settings, owner: asyncpg.Connection) -> None:
    org, rows = await six_row_chain(settings, owner, "delete")
    await tamper(owner, "DELETE FROM audit_log WHERE id = $1", rows[3]["id"])
    out = await broken_chain_output(settings, org)
    assert f"{org}: chain BROKEN at seq 5 (id {rows[4]['id']}): deleted:" in out, out
    assert "seq 4 missing before this row" in out


async def test_swapped_rows_are_named(settings: Settings, owner: asyncpg.Connection) -> None:
    org, rows = await six_row_chain(settings, owner, "swap")
    a, b = rows[1], rows[2]  # seq 2 and 3
    await tamper(owner, "UPDATE audit_log SET seq = 1000 WHERE id = $1", a["id"])
    await tamper(owner, "UPDATE audit_log SET seq = 2 WHERE id = $1", b["id"])
    await tamper(owner, "UPDATE audit_log SET seq = 3 WHERE id = $1", a["id"])
    out = await broken_chain_output(settings, org)
    # the row now at seq 2 is the old seq 3: its prev_hash does not follow seq 1
    assert f"{org}: chain BROKEN at seq 2 (id {b['id']}): reordered:" in out, out


async def test_an_untouched_chain_beside_broken_ones_verifies(
    settings: Settings, owner: asyncpg.Connection
) -> None:
    good, bad = await new_chain(settings, "good", 3), await new_chain(settings, "bad", 3)
    [row] = [r for r in await chain_rows(owner, bad) if r["seq"] == 2]
    await tamper(owner, "UPDATE audit_log SET actor = 'someone-else' WHERE id = $1", row["id"])
    reports = {r.organization_id: r for r in await audit_events.verify_chains(owner)}
    assert reports[good].fault is None and reports[good].rows_checked == 3
    fault = reports[bad].fault
    assert fault is not None and (fault.seq, fault.row_id, fault.kind) == (2, row["id"], "edited")
    code, out = await run_verify(settings, good)
    assert code == 0, out


async def test_nobody_updates_deletes_or_truncates_it_through_sql(
    settings: Settings, owner: asyncpg.Connection
) -> None:
    org = await new_chain(settings, "ro", 2)
    # the owner: refused by the trigger
    for sql in (
        "UPDATE audit_log SET actor = 'x' WHERE organization_id = $1",
        "DELETE FROM audit_log WHERE organization_id = $1",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await owner.execute(sql, org)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await owner.execute("TRUNCATE audit_log")
    # the tenant role, in its own organisation's scope: no privilege at all
    for sql in (
        "UPDATE audit_log SET actor = 'x' WHERE organization_id = $1",
        "DELETE FROM audit_log WHERE organization_id = $1",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            async with tenant_transaction(owner, org):
                await owner.execute(sql, org)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
        async with tenant_transaction(owner, org):
            await owner.execute("TRUNCATE audit_log")
    rows = await chain_rows(owner, org)
    assert [(r["seq"], r["actor"]) for r in rows] == [(1, "tester"), (2, "tester")]


async def test_a_tenant_scope_reads_and_appends_only_its_own_chain(
    settings: Settings, owner: asyncpg.Connection
) -> None:
    a, b = await new_chain(settings, "tenant-a", 2), await new_chain(settings, "tenant-b", 3)
    async with tenant_transaction(owner, a):
        seen = await owner.fetch("SELECT DISTINCT organization_id FROM audit_log")
        # appending in A's scope works, and continues A's chain
        await audit_events.record(owner, a, "tester", "test.scoped", None, {})
    assert [r["organization_id"] for r in seen] == [a]
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with tenant_transaction(owner, a):
            await audit_events.record(owner, b, "tester", "test.cross", None, {})
    assert [r["seq"] for r in await chain_rows(owner, a)] == [1, 2, 3]
    assert [r["seq"] for r in await chain_rows(owner, b)] == [1, 2, 3]
    events = await audit_events.list_events(owner, b, after_seq=1, limit=1)
    assert [(e.organization_id, e.seq) for e in events] == [(b, 2)]


async def test_system_wide_events_have_a_reserved_chain(
    settings: Settings, owner: asyncpg.Connection
) -> None:
    before = await owner.fetchval(
        "SELECT coalesce(max(seq), 0) FROM audit_log WHERE organization_id = '(system)'"
    )
    await audit_events.record(owner, None, "tester", "test.system", None)
    row = await owner.fetchrow(
        "SELECT seq, at FROM audit_log WHERE organization_id = '(system)' ORDER BY seq DESC LIMIT 1"
    )
    assert row is not None and row["seq"] == before + 1
    assert (datetime.now(UTC) - row["at"]).total_seconds() < 60
