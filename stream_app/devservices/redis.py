"""A throw-away Redis server (Debian's ``redis-server``) for the shared rate-limit counters.

Listens on a free port of 127.0.0.1 only, keeps nothing on disk (no RDB snapshots, no AOF):
rate-limit windows last minutes, so losing them with the process is harmless. Never for
anything that must survive a restart.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from stream_app.devservices.common import (
    ServiceError,
    free_ports,
    log_tail,
    pid_alive,
    port_of,
    port_open,
)

START_TIMEOUT_S = 20


@dataclass(frozen=True, slots=True)
class RedisInstance:
    """A started server.

    Attributes:
        url: ``redis://127.0.0.1:PORT`` (what ``WEDDING_REDIS_URL`` takes).
        pid: the server's process id.
        log_path: its log.
    """

    url: str
    pid: int
    log_path: Path


def start(state_dir: Path) -> RedisInstance:
    """Start a fresh server with its files in ``<state_dir>/redis`` (wiped first).

    Raises:
        ServiceError: ``redis-server`` is not installed, or it did not answer in time (with
            its log's tail).
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError(
            "redis: no `redis-server` on PATH; install it (apt-get install redis-server)"
        )
    home = state_dir / "redis"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    log_path = home / "redis.log"
    (port,) = free_ports(1)
    command = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes",
        "--save", "", "--appendonly", "no", "--dir", str(home), "--logfile", str(log_path),
        "--daemonize", "no",
    ]  # fmt: skip
    with open(os.devnull, "wb") as devnull:
        proc = subprocess.Popen(
            command, stdout=devnull, stderr=subprocess.STDOUT, start_new_session=True
        )
    # keep the handle while the server runs in this process's lifetime: dropping a running
    # Popen raises a ResourceWarning, and the handle reaps the server when it is stopped
    _CHILDREN[proc.pid] = proc
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"redis: exited with {proc.returncode}\n{log_tail(log_path)}")
        if port_open(port):
            return RedisInstance(f"redis://127.0.0.1:{port}", proc.pid, log_path)
        time.sleep(0.1)
    stop(proc.pid)
    raise ServiceError(f"redis: not listening after {START_TIMEOUT_S} s\n{log_tail(log_path)}")


def is_running(instance: RedisInstance) -> bool:
    """Return whether the server is alive and accepts connections on its port."""
    return pid_alive(instance.pid) and port_open(port_of(instance.url))


_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
"""Servers started by this process, by pid (reaped by :func:`stop`)."""


def _is_redis(pid: int) -> bool:
    try:
        return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop(pid: int) -> bool:
    """Stop the server ``pid`` (SIGTERM, then SIGKILL after 10 s).

    A process that is gone, or a pid now used by something other than a Redis server, is
    left alone.

    Returns:
        Whether a running server was stopped (False: nothing to stop).
    """
    running = pid_alive(pid) and _is_redis(pid)
    if running:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        child.wait(timeout=5)
    return running
