"""Worker processes for the demo, the tests and the benchmarks.

Starts ``wedding-engine worker`` as a child process with its own RocksDB folder and HTTP
port, waits until it serves ``/health`` with partitions assigned, and stops it gracefully
(SIGTERM) or abruptly (SIGKILL, as a crash would).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from stream_app.db.roles import APP_ROLE, SYSTEM_ROLE, as_role
from stream_app.devservices.common import ServiceError, free_ports, log_tail

UNLIMITED_RATES: dict[str, str] = {
    "WEDDING_RATE_LIMITS": "reads=1000000/minute,reports=1000000/minute,"
    "aggregations=1000000/minute,downloads=1000000/minute,admin=1000000/minute",
    "WEDDING_ORG_RATE_LIMITS": "reads=1000000/minute,reports=1000000/minute,"
    "aggregations=1000000/minute,downloads=1000000/minute,admin=1000000/minute",
    "WEDDING_AUTH_FAILURE_LIMIT": "1000000/minute",
}
"""Rate limits no functional test or benchmark reaches (:mod:`stream_app.web.ratelimit`)."""


@dataclass
class WorkerProcess:
    """A running worker.

    Attributes:
        web_port: its HTTP port on 127.0.0.1.
        data_dir: its RocksDB folder.
        log_path: its stdout/stderr.
        env: the environment it was started with.
    """

    web_port: int
    data_dir: Path
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        """Base URL of its HTTP API."""
        return f"http://127.0.0.1:{self.web_port}"

    async def wait_ready(self, timeout_s: float = 90.0, min_partitions: int = 1) -> list[int]:
        """Wait until ``/health`` answers with at least ``min_partitions`` partitions.

        Returns:
            The partitions of ``wedding-bookings`` it owns.

        Raises:
            ServiceError: the process exited or did not get ready in time (with its log tail).
        """
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise ServiceError(
                        f"worker exited with {self.process.returncode}\n{log_tail(self.log_path)}"
                    )
                try:
                    async with session.get(f"{self.url}/health") as resp:
                        if resp.status == 200:
                            body = await resp.json()
                            parts: list[int] = body["bookings_partitions"]
                            if len(parts) >= min_partitions:
                                return parts
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.5)
        raise ServiceError(f"worker not ready after {timeout_s} s\n{log_tail(self.log_path)}")

    def stop(self, timeout_s: float = 30.0) -> int:
        """Stop gracefully (SIGTERM, then SIGKILL after ``timeout_s``); return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> int:
        """Kill with SIGKILL, as a crash would; return the exit code."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        return self.process.returncode


def start_worker(
    *,
    kafka_bootstrap: str,
    postgres_dsn: str,
    data_dir: Path,
    log_path: Path,
    artifact_dir: Path | None = None,
    app_id: str | None = None,
    web_port: int | None = None,
    extra_env: dict[str, str] | None = None,
    redis_url: str | None = None,
    dev_mode: bool = False,
    unlimited_rates: bool = False,
) -> WorkerProcess:
    """Start ``wedding-engine worker`` as a child process (see the module docstring).

    ``postgres_dsn`` may be any login of the local cluster: the worker logs in as the
    application and system roles (:mod:`stream_app.db.roles`) on the same host and database.
    ``redis_url`` becomes ``WEDDING_REDIS_URL`` (the shared rate-limit store); ``dev_mode``
    sets ``WEDDING_DEV_MODE=1``, which lets the worker run with the public development JWT
    secret (demo and tests only; ``extra_env`` can still override it). ``unlimited_rates``
    sets :data:`UNLIMITED_RATES` (before ``extra_env``).
    """
    port = web_port or free_ports(1)[0]
    env = dict(os.environ)
    env.update(
        {
            "KAFKA_BOOTSTRAP": kafka_bootstrap,
            "POSTGRES_DSN": as_role(postgres_dsn, APP_ROLE),
            "POSTGRES_SYSTEM_DSN": as_role(postgres_dsn, SYSTEM_ROLE),
            "WEDDING_WEB_PORT": str(port),
            "WEDDING_DATA_DIR": str(data_dir),
        }
    )
    if artifact_dir is not None:
        env["WEDDING_ARTIFACT_DIR"] = str(artifact_dir)
    if app_id is not None:
        env["WEDDING_APP_ID"] = app_id
    if redis_url:
        env["WEDDING_REDIS_URL"] = redis_url
    if dev_mode:
        env["WEDDING_DEV_MODE"] = "1"
    if unlimited_rates:
        env.update(UNLIMITED_RATES)
    env.update(extra_env or {})
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "stream_app.cli",
                "worker",
                "--loglevel",
                os.environ.get("WEDDING_WORKER_LOGLEVEL", "warning"),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return WorkerProcess(port, data_dir, log_path, env, proc)
