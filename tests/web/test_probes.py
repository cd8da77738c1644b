"""``/livez`` and ``/readyz`` of a real worker (:mod:`stream_app.web.probes`).

The worker runs against a PostgreSQL cluster of this module's own (the session's is left
alone), which the test stops with ``pg_ctl stop -m fast`` and starts again with
``pg_ctl restart`` (the server's recorded options, same port), and the session's Kafka.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import os
import pwd
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from stream_app.crypto.keys import DEV_MASTER_KEY, MasterKey
from stream_app.db.migrate import migrate
from stream_app.db.tenancy import Organization, upsert_organization
from stream_app.devservices import postgres
from stream_app.devservices.workers import WorkerProcess
from stream_app.settings import Settings
from tests.conftest import WorkerFactory
from tests.e2e.helpers import auth, request_report_http


def pg_ctl(state: Path, *args: str) -> None:
    """Run ``pg_ctl`` on the cluster of ``state`` as its owner (the server refuses root)."""
    data = state / "postgres" / "data"
    initdb = shutil.which("initdb") or sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))[-1]
    command = [str(Path(initdb).resolve().parent / "pg_ctl"), "-D", str(data), *args]
    owner = pwd.getpwuid(data.stat().st_uid).pw_name
    if os.geteuid() == 0 and owner != "root":
        command = ["runuser", "-u", owner, "--", *command]
    subprocess.run(command, check=True, capture_output=True, cwd=data.parent, timeout=120)


@pytest.fixture
async def own_pg(state_dir: Path) -> AsyncIterator[tuple[Path, str]]:
    """A PostgreSQL cluster of its own, migrated: (its state folder, superuser DSN)."""
    state = state_dir / f"probes-{uuid.uuid4().hex[:8]}"
    state.mkdir(mode=0o755)
    instance = await asyncio.to_thread(postgres.start, state)
    await migrate(instance.dsn)
    try:
        yield state, instance.dsn
    finally:
        await asyncio.to_thread(postgres.stop, state)
        shutil.rmtree(state, ignore_errors=True)


async def probe(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
        return resp.status, await resp.json()


async def wait_for(
    session: aiohttp.ClientSession, url: str, status: int, timeout_s: float = 60
) -> dict[str, Any]:
    """Poll ``url`` until it answers ``status``; its last body."""
    deadline = time.monotonic() + timeout_s
    last: tuple[int, dict[str, Any]] | None = None
    while time.monotonic() < deadline:
        last = await probe(session, url)
        if last[0] == status:
            return last[1]
        await asyncio.sleep(0.25)
    raise AssertionError(f"{url} did not answer {status} in {timeout_s} s; last {last}")


def oks(body: dict[str, Any]) -> dict[str, bool]:
    return {name: check["ok"] for name, check in body["checks"].items()}


async def test_not_ready_but_alive_while_postgres_is_down(
    settings: Settings, state_dir: Path, own_pg: tuple[Path, str]
) -> None:
    state, dsn = own_pg
    name = uuid.uuid4().hex[:8]
    own = dataclasses.replace(settings, postgres_dsn=dsn, artifact_dir=state / "artifacts")
    worker = WorkerFactory(own, state_dir).start(
        f"probes-{name}", "w", WEDDING_SCHEDULING="0", WEDDING_OFFSET_RESET="latest"
    )
    try:
        # while it starts: alive as soon as it answers at all, ready only once in its group
        seen_not_ready: list[dict[str, Any]] = []
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    live = await probe(session, f"{worker.url}/livez")
                    ready = await probe(session, f"{worker.url}/readyz")
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
                    continue
                assert live == (200, {"status": "alive"})
                if ready[0] == 200:
                    break
                assert ready[0] == 503 and ready[1]["ready"] is False
                seen_not_ready.append(ready[1])
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"never ready\n{worker.log_path.read_text()[-3000:]}")
            assert ready[1] == {
                "ready": True,
                "checks": {
                    "tables": {"ok": True, "detail": "ok"},
                    "kafka": {"ok": True, "detail": "1 broker(s)"},
                    "postgres": {"ok": True, "detail": "ok"},
                    "keys": {"ok": True, "detail": "ok"},
                    "ratelimits": {"ok": True, "detail": "ok", "required": False},
                },
            }
            # any not-ready answer before that was the tables' (broker and database were up)
            for body in seen_not_ready:
                assert oks(body)["tables"] is False
                detail = body["checks"]["tables"]["detail"]
                assert detail in ("starting", "rebalancing", "recovering")

            # PostgreSQL stopped: alive, not ready, and the failing check is named
            await asyncio.to_thread(pg_ctl, state, "-m", "fast", "-w", "stop")
            down = await wait_for(session, f"{worker.url}/readyz", 503, timeout_s=30)
            # the key check reads the same database (the system login): unreachable too
            assert oks(down) == {
                "tables": True,
                "kafka": True,
                "postgres": False,
                "keys": False,
                "ratelimits": True,  # advisory, and up: Redis is not PostgreSQL
            }
            # the public body names the check and a generic reason, never an address
            assert down["checks"]["postgres"]["detail"] in ("unreachable", "timeout")
            assert "127.0.0.1" not in str(down) and "Error" not in str(down)
            assert await probe(session, f"{worker.url}/livez") == (200, {"status": "alive"})
            t0 = time.monotonic()
            again = await probe(session, f"{worker.url}/readyz")
            assert again[0] == 503 and time.monotonic() - t0 < 5  # bounded, never hangs
            # the old /health (tables only) is unchanged: still 200
            status, health = await probe(session, f"{worker.url}/health")
            assert status == 200 and health["status"] == "ok"

            # PostgreSQL back on the same port: ready again
            log = str(state / "postgres" / "postgres.log")
            await asyncio.to_thread(pg_ctl, state, "-w", "-l", log, "restart")
            back = await wait_for(session, f"{worker.url}/readyz", 200, timeout_s=30)
            assert oks(back) == {
                "tables": True,
                "kafka": True,
                "postgres": True,
                "keys": True,
                "ratelimits": True,
            }
    finally:
        code = await asyncio.to_thread(worker.stop, 60)
    assert code == 0, worker.log_path.read_text()[-3000:]


def readiness_runs(metrics: str) -> float:
    """``wedding_readiness_checks_total`` from a ``/metrics`` text."""
    for line in metrics.splitlines():
        if line.startswith("wedding_readiness_checks_total "):
            return float(line.split()[1])
    raise AssertionError("wedding_readiness_checks_total is not exported")


async def test_a_flood_of_readyz_shares_a_handful_of_checks(main_worker: WorkerProcess) -> None:
    """200 concurrent unauthenticated GET /readyz: every one answers 200, and the checks (a
    pool connection and a broker request each) run a handful of times, not 200."""
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=60)
    ) as session:
        await wait_for(session, f"{main_worker.url}/readyz", 200)
        async with session.get(f"{main_worker.url}/metrics") as resp:
            before = readiness_runs(await resp.text())
        started = time.monotonic()
        answers = await asyncio.gather(
            *(probe(session, f"{main_worker.url}/readyz") for _ in range(200))
        )
        elapsed = time.monotonic() - started
        async with session.get(f"{main_worker.url}/metrics") as resp:
            runs = readiness_runs(await resp.text()) - before
    assert [status for status, _ in answers] == [200] * 200
    assert all(body["ready"] is True for _, body in answers)
    # one run per CACHE_S (1 s) of the flood at most, plus the one under way at its start
    assert 0 <= runs <= elapsed / 1.0 + 2, (runs, elapsed)


async def test_a_worker_with_the_wrong_master_key_refuses_to_start_and_says_why(
    settings: Settings, state_dir: Path, main_worker: WorkerProcess
) -> None:
    """A report sealed under the session's master key (the development one); a worker given
    another ``WEDDING_MASTER_KEY`` stops at start (exit 2) naming the variable, the key id it
    holds and the one the stored keys are wrapped by, before it takes any partition or report
    lane (an operator's trial: it used to run "not ready", take report lanes and create new
    organisations' data keys under its wrong key). The session's worker still serves the file."""
    org = f"mk-{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(org, org, "Europe/Lisbon", "EUR"))
        await conn.execute(
            "INSERT INTO bookings (organization_id, id, service_date, booked_at, amount_minor,"
            " currency, status) VALUES ($1, 'b1', $2, $3, 100, 'EUR', 'booked')",
            org,
            date(2026, 3, 1),
            datetime(2026, 1, 1, tzinfo=UTC),
        )
    finally:
        await conn.close()
    body = {
        "report_type": "compliance",
        "date_from": "2026-03-01",
        "date_to": "2026-03-31",
        "output_formats": ["csv"],
    }
    status = await request_report_http(main_worker.url, settings, org, body)
    assert status["status"] == "completed", status
    wrong = hashlib.sha256(b"not the master key of this deployment").digest()
    worker = WorkerFactory(settings, state_dir).start(
        f"probes-mk-{uuid.uuid4().hex[:8]}",
        "wrongkey",
        WEDDING_SCHEDULING="0",
        WEDDING_OFFSET_RESET="latest",
        WEDDING_DEV_MODE="0",
        WEDDING_MASTER_KEY=base64.b64encode(wrong).decode(),
    )
    try:
        code = await asyncio.to_thread(worker.process.wait, 120)
    finally:
        if worker.process.poll() is None:
            await asyncio.to_thread(worker.stop, 60)
    log = worker.log_path.read_text()
    assert code == 2, log[-3000:]
    [line] = [x for x in log.splitlines() if x.startswith("error: WEDDING_MASTER_KEY")]
    assert line.startswith(
        f"error: WEDDING_MASTER_KEY: this worker's master key ({MasterKey.of(wrong).key_id})"
        " wraps none of the stored data keys, which are wrapped by "
    ), line
    # every key id wrapping stored keys, with its count; the session's among them (other
    # tests of the session may have left keys under other master keys)
    wrapped_by = line.split("which are wrapped by ", 1)[1].split(": run it", 1)[0]
    assert f"{MasterKey.of(DEV_MASTER_KEY).key_id} (" in wrapped_by, line
    assert MasterKey.of(wrong).key_id not in wrapped_by
    assert "Traceback" not in log
    async with aiohttp.ClientSession() as session:
        url = status["artifacts"][0]["download_url"]
        async with session.get(main_worker.url + url, headers=auth(settings, org)) as r:
            assert r.status == 200
