"""A scheduler worker in its own process, for the two-process exactly-once test.

Usage: ``python claimer_proc.py DSN WORKER_ID START_ISO STEP_S STEPS GO_AT_EPOCH``. Waits until
wall-clock ``GO_AT_EPOCH`` (so both workers start together), then calls ``claim_due_runs`` at
the simulated times ``START + i * STEP_S`` and prints the claimed fire times as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime, timedelta

import asyncpg

from stream_app.schedules.store import claim_due_runs

WALL_STEP_S = 0.05
"""Wall-clock seconds between two simulated steps (the lockstep of both processes)."""


async def main(dsn: str, worker: str, start: str, step_s: float, steps: int, go_at: float) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        begin = datetime.fromisoformat(start)
        claimed: list[str] = []
        for i in range(steps):
            # lockstep: both processes take simulated step i at the same wall instant, so their
            # simulated clocks never drift apart (one running a minute ahead would fold two
            # fire times into one catch-up run, which is right for a late worker but not what
            # this test counts)
            time.sleep(max(0.0, go_at + i * WALL_STEP_S - time.time()))  # noqa: ASYNC251 - a barrier, nothing else runs
            runs = await claim_due_runs(
                conn, begin + timedelta(seconds=i * step_s), worker_id=worker
            )
            claimed.extend(r.fire_time.isoformat() for r in runs)
        print(json.dumps(claimed))
    finally:
        await conn.close()


if __name__ == "__main__":
    dsn, worker, start, step, steps, go = sys.argv[1:7]
    asyncio.run(main(dsn, worker, start, float(step), int(steps), float(go)))
