"""Benchmark: what the freshness triggers (migration 016) cost a bulk statement.

Inserts ``--rows`` payments of one organisation in one statement, updates every one of them
in one statement, deletes them in one statement, with the ``wedding_fresh_*`` triggers enabled
and disabled, in ``--repeat`` interleaved rounds (on, off, on, off, ...: load from other
processes on a shared machine falls on both alike), and prints the medians. It also checks
that the enabled rounds moved the ``history`` version by exactly the rows they changed.

Usage: ``python -m loadtests.bench_history_triggers [--rows N] [--repeat N]``. It starts its
own PostgreSQL in a fresh state folder and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg

from loadtests.common import postgres_only, state_folder

ORG = "bench-fresh"


async def one_round(conn: asyncpg.Connection, rows: int, enabled: bool) -> tuple[float, ...]:
    """(insert, update, delete) seconds of one round."""
    state = "ENABLE" if enabled else "DISABLE"
    await conn.execute(f"ALTER TABLE payments {state} TRIGGER USER")
    out: list[float] = []
    for sql, args in (
        (
            "INSERT INTO payments SELECT $1, 'p' || g, 'b' || (g % 1000), 'payment', g, 'EUR',"
            " now() FROM generate_series(1, $2) g",
            (ORG, rows),
        ),
        ("UPDATE payments SET amount_minor = amount_minor + 1 WHERE organization_id = $1", (ORG,)),
        ("DELETE FROM payments WHERE organization_id = $1", (ORG,)),
    ):
        t0 = time.perf_counter()
        await conn.execute(sql, *args)
        out.append(time.perf_counter() - t0)
    await conn.execute("ALTER TABLE payments ENABLE TRIGGER USER")
    return tuple(out)


async def history_version(conn: asyncpg.Connection) -> int:
    """The ``history`` data version of :data:`ORG`."""
    version: int = await conn.fetchval(
        "SELECT version FROM report_data_versions WHERE organization_id = $1"
        " AND stream = 'history'",
        ORG,
    )
    return version


async def measure(
    dsn: str, rows: int, repeat: int
) -> tuple[dict[bool, list[tuple[float, ...]]], int]:
    """Rounds with the triggers on and off, alternating; their seconds by on/off and how far
    the enabled rounds moved the ``history`` version."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO organizations VALUES ($1, $1, 'Europe/Lisbon', 'EUR')", ORG)
        version0 = await history_version(conn)
        times: dict[bool, list[tuple[float, ...]]] = {True: [], False: []}
        for i in range(2 * repeat):
            enabled = i % 2 == 0
            times[enabled].append(await one_round(conn, rows, enabled))
        return times, await history_version(conn) - version0
    finally:
        await conn.close()


def main(rows: int, repeat: int) -> None:
    """Measure (in a throw-away PostgreSQL) and print; exit 1 if the version count is wrong."""
    with state_folder("wedding-bench-fresh") as state, postgres_only(state) as dsn:
        times, moved = asyncio.run(measure(dsn, rows, repeat))
    for enabled in (True, False):
        runs = times[enabled]
        ins, upd, dele = (statistics.median(r[k] for r in runs) for k in range(3))
        print(
            f"triggers {'on ' if enabled else 'off'}: insert {rows:,} rows {ins:.2f} s, "
            f"update {upd:.2f} s, delete {dele:.2f} s (medians of {len(runs)})"
        )
    # per enabled round: rows inserted + 2 × rows updated (before and after) + rows deleted
    expected = repeat * 4 * rows
    print(f"history version moved by {moved:,} (expected {expected:,})")
    if moved != expected:
        raise SystemExit("the triggers did not count the changed rows")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    main(args.rows, args.repeat)
