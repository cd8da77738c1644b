"""``wedding-engine services status`` (:mod:`stream_app.devservices.cli`) against the session's
running services and against an empty state folder. ``up`` and ``down`` are what every test
session runs through :mod:`stream_app.devservices.manager` (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import socket
import tempfile
from pathlib import Path

import asyncpg
import pytest

from stream_app.db.roles import APP_ROLE, OWNER_ROLE, SYSTEM_ROLE, as_role
from stream_app.devservices import manager, postgres
from stream_app.devservices.cli import main
from stream_app.devservices.manager import ServiceSettings


def printed(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """The printed ``NAME=value`` lines, read back as a shell would."""
    return dict(shlex.split(line)[0].split("=", 1) for line in capsys.readouterr().out.splitlines())


def test_status_of_the_running_services_prints_where_they_are(
    services: ServiceSettings, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--state-dir", str(state_dir)]) == 0
    superuser = services.postgres_dsn
    assert printed(capsys) == {
        "KAFKA_RUNNING": "yes",
        "POSTGRES_RUNNING": "yes",
        "REDIS_RUNNING": "yes",
        "KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "POSTGRES_DSN": as_role(superuser, APP_ROLE),
        "POSTGRES_SYSTEM_DSN": as_role(superuser, SYSTEM_ROLE),
        "POSTGRES_OWNER_DSN": as_role(superuser, OWNER_ROLE),
        "REDIS_URL": services.redis_url,
        "WEDDING_REDIS_URL": services.redis_url,
    }


def test_status_of_an_empty_state_folder_is_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--state-dir", str(tmp_path)]) == 3
    assert printed(capsys) == {
        "KAFKA_RUNNING": "no",
        "POSTGRES_RUNNING": "no",
        "REDIS_RUNNING": "no",
    }


def test_down_of_an_empty_state_folder_says_nothing_was_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """s6 fresh user: ``services down`` printed nothing he could see."""
    assert main(["down", "--state-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"# nothing running (state folder {tmp_path})\n"


def test_down_says_what_it_stopped(capsys: pytest.CaptureFixture[str]) -> None:
    """Services of a state folder of their own (stopping the session's would disturb the
    other tests): ``down`` names each process it stopped, then nothing is running."""
    state = Path(tempfile.gettempdir()) / f"wedding-down-{os.getpid()}"
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o755)  # the postgres user (when run as root) reads its folder
    try:
        started = manager.up(state)
        capsys.readouterr()
        assert main(["down", "--state-dir", str(state)]) == 0
        assert capsys.readouterr().out == (
            f"# stopped kafka (pid {started.kafka_pid}), redis (pid {started.redis_pid}),"
            f" postgres (pid {started.postgres_pid}) (state folder {state})\n"
        )
        assert main(["status", "--state-dir", str(state)]) == 3
        capsys.readouterr()
        assert main(["down", "--state-dir", str(state)]) == 0
        assert capsys.readouterr().out == f"# nothing running (state folder {state})\n"
    finally:
        manager.down(state)
        shutil.rmtree(state, ignore_errors=True)


def test_a_postgresql_restarted_or_stopped_by_hand_keeps_its_data(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The s12 fresh user restarted PostgreSQL with ``pg_ctl``; ``status`` said it was not
    running (its recorded pid was gone), and the ``services up`` it advised emptied the
    cluster while the broker, and the worker's tables, ran on. Now ``status`` finds the
    restarted cluster, and ``up`` starts a stopped one again on its data and port."""
    state = Path(tempfile.gettempdir()) / f"wedding-pg-by-hand-{os.getpid()}"
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o755)
    try:
        started = manager.up(state)

        async def mark() -> None:
            conn = await asyncpg.connect(started.postgres_dsn)
            try:
                await conn.execute("CREATE TABLE by_hand (n int); INSERT INTO by_hand VALUES (42)")
            finally:
                await conn.close()

        async def marked(dsn: str) -> int | None:
            conn = await asyncpg.connect(dsn)
            try:
                found = await conn.fetchval("SELECT to_regclass('by_hand') IS NOT NULL")
                return int(await conn.fetchval("SELECT n FROM by_hand")) if found else None
            finally:
                await conn.close()

        asyncio.run(mark())
        restarted = postgres.restart(started.postgres_instance, state)  # pg_ctl restart
        assert restarted.pid != started.postgres_pid
        assert main(["status", "--state-dir", str(state)]) == 0
        assert printed(capsys)["POSTGRES_RUNNING"] == "yes"
        again = manager.up(state)
        assert (again.postgres_dsn, again.postgres_pid) == (started.postgres_dsn, restarted.pid)
        assert asyncio.run(marked(again.postgres_dsn)) == 42

        postgres.stop(state)  # pg_ctl stop, the broker running on
        assert main(["status", "--state-dir", str(state)]) == 3
        capsys.readouterr()
        # a stale postmaster.pid naming a live process that is not the cluster, and something
        # else on its port, is not the cluster (the s12 attacker round)
        pid_file = state / "postgres" / "data" / "postmaster.pid"
        pid_file.write_text(f"{os.getpid()}\n")
        squatter = socket.socket()
        try:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", started.postgres_instance.port))
            squatter.listen()
            assert postgres.running_instance(state, started.postgres_instance) is None
        finally:
            squatter.close()
            pid_file.unlink()
        resumed = manager.up(state)
        assert resumed.postgres_dsn == started.postgres_dsn  # the same port
        assert asyncio.run(marked(resumed.postgres_dsn)) == 42
    finally:
        manager.down(state)
        shutil.rmtree(state, ignore_errors=True)
