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


async def main(dsn: str, worker: str, start: str, step_s: float, steps: int, go_at: float) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        begin = datetime.fromisoformat(start)
        time.sleep(max(0.0, go_at - time.time()))  # noqa: ASYNC251 - a start barrier, nothing else runs
        claimed: list[str] = []
        for i in range(steps):
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
